"""Every /proc/meminfo field as node_memory_<Field>[_bytes], named exactly as node_exporter does.

Fields in kB become `_bytes` (times 1024); unitless ones (HugePages_Total, ...) keep their
name. Parentheses become an underscore: `Active(anon)` is `node_memory_Active_anon_bytes`.
"""

from __future__ import annotations

import re

from agent.collectors.base import Collector, Family, register
from agent.config.schema import CollectorSettings

_PARENS = re.compile(r"\((.*)\)")


def _metric_name(field: str, unit: str | None) -> str:
    name = _PARENS.sub(r"_\1", field) if "(" in field else field
    return f"node_memory_{name}_bytes" if unit == "kB" else f"node_memory_{name}"


@register
class MeminfoCollector(Collector):
    name = "meminfo"

    def collect(self, settings: CollectorSettings) -> list[Family]:
        path, text = self.read_proc("meminfo")
        families = []
        for line in text.splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) not in (2, 3) or not parts[0].endswith(":"):
                raise ValueError(f"{path}: unexpected line {line!r}")
            unit = parts[2] if len(parts) == 3 else None
            try:
                value = float(parts[1])
            except ValueError:
                raise ValueError(f"{path}: non-numeric value in {line!r}") from None
            if unit == "kB":
                value *= 1024
            field = parts[0][:-1]
            name = _metric_name(field, unit)
            family = Family(
                name,
                f"Memory information field {name.removeprefix('node_memory_')}.",
                "counter" if name.endswith("_total") else "gauge",
            )
            family.add(value)
            families.append(family)
        if not families:
            raise ValueError(f"{path}: no fields")
        return families
