"""`vigil_rule_group_*` on /metrics, read from the rule manager at scrape time (Prometheus's
`prometheus_rule_group_*`, with its `rule_group` label: the group's file and name, `file;name`)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.alerting.manager import RuleManager


class RuleMetrics:
    def __init__(self, manager: RuleManager):
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        rules = GaugeMetricFamily("vigil_rule_group_rules", "Rules in the group.", labels=["rule_group"])
        unhealthy = GaugeMetricFamily(
            "vigil_rule_group_unhealthy_rules",
            "Rules of the group whose last evaluation failed (GET /api/v1/rules shows lastError).",
            labels=["rule_group"])
        duration = GaugeMetricFamily(
            "vigil_rule_group_last_duration_seconds", "How long the group's last evaluation took.",
            labels=["rule_group"])
        last = GaugeMetricFamily(
            "vigil_rule_group_last_evaluation_timestamp_seconds",
            "When the group was last evaluated (Unix time; absent before its first evaluation).",
            labels=["rule_group"])
        for entry in self.manager.rule_groups():
            key = [entry.group.key]
            rules.add_metric(key, len(entry.group.rules))
            unhealthy.add_metric(key, sum(1 for rs in entry.state.rules if rs.health == "err"))
            duration.add_metric(key, entry.state.evaluation_time_s)
            if entry.state.last_evaluation_ms is not None:
                last.add_metric(key, entry.state.last_evaluation_ms / 1000)
        yield from (rules, unhealthy, duration, last)
