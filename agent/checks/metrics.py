"""`vigil_check_*` on /metrics, read from the runner at scrape time.

The same families go into the history at each run (CheckRunner.families); here they are merged
across checks into one metric per name, each sample with its own label set (checks carry their
own extra labels, so a fixed label list per family would not fit).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from agent.checks.runner import CheckRunner


class CheckMetrics:
    def __init__(self, runner: CheckRunner):
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for entry in self.runner.entries.values():
            for fam in self.runner.families(entry):
                metric = merged.get(fam.name)
                if metric is None:
                    metric = merged[fam.name] = Metric(fam.name, fam.help, fam.type)
                for values, value in fam.samples:
                    metric.add_sample(fam.name, dict(zip(fam.label_names, values, strict=True)), value)
        yield from merged.values()
