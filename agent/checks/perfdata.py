"""The Nagios plugin output format, and units of measure turned into base units for metrics.

A plugin prints (https://nagios-plugins.org/doc/guidelines.html#AEN200)::

    TEXT OUTPUT | OPTIONAL PERFDATA
    LONG TEXT LINE 1
    LONG TEXT LINE 2 | PERFDATA LINE 2
    PERFDATA LINE 3

so performance data is what follows the `|` of the first line plus everything after the first `|`
of the long text. Each item is `'label'=value[UOM];[warn];[crit];[min];[max]`; a label with
spaces is quoted, a quote inside it doubled. Plugins in the wild print broken items (decimal
commas, stray words); those are skipped and reported, never allowed to fail a check.

Byte units are 1024-based: the guidelines list `B, KB, MB, TB` without saying, and the
reference plugins (monitoring-plugins' `check_disk -u MB`, `check_swap`) multiply by 1024, as do
the graphers built on them. The IEC spellings (`KiB`, `MiB`...) mean the same and are accepted too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

from agent.checks.base import Perfdata

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# A unit never starts like the rest of a number: `12,5%` is a decimal comma, not 12 with unit ",5%".
_UOM = re.compile(r"(?:[^\d\s;,.=+-][^\s;=]*)?")
MAX_SKIPPED_SHOWN = 5

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
# check_disk prints `kiB`, and kilo is lower case in SI: `kB` and `kiB` are accepted too.
BYTE_UNITS = {"B": 1, "kB": 1024, "kiB": 1024} | {
    f"{prefix}{suffix}": 1024**power for power, prefix in enumerate("KMGTP", start=1) for suffix in ("B", "iB")
}


@dataclass
class PluginOutput:
    message: str  # the first line's text, before its `|`
    long_output: str  # the lines after the first, up to the `|` that starts more perfdata
    perfdata: list[Perfdata] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # perfdata items that could not be read


def parse_plugin_output(text: str) -> PluginOutput:
    """Split a plugin's standard output into message, long text and performance data."""
    first, _, rest = text.partition("\n")
    message, bar, first_perf = first.partition("|")
    perf_lines = [first_perf] if bar else []
    long_text, bar, more_perf = rest.partition("|")
    if bar:
        perf_lines.extend(more_perf.split("\n"))
    perfdata: list[Perfdata] = []
    skipped: list[str] = []
    for line in perf_lines:
        found, bad = parse_perfdata(line)
        perfdata.extend(found)
        skipped.extend(bad)
    return PluginOutput(message.strip(), long_text.rstrip("\n").rstrip(), perfdata, skipped)


def parse_perfdata(text: str) -> tuple[list[Perfdata], list[str]]:
    """The items of one line of performance data, and the items that were not understood."""
    items: list[Perfdata] = []
    skipped: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        if text[i] == "'":
            label, i = _quoted_label(text, i)
            if label is None or i >= n or text[i] != "=":
                i = _token_end(text, i)
                skipped.append(text[start:i])
                continue
        else:
            end = _token_end(text, i)
            eq = text.find("=", i, end)
            if eq == -1 or "'" in text[start:eq]:
                skipped.append(text[start:end])
                i = end
                continue
            label, i = text[start:eq], eq
        end = _token_end(text, i + 1)
        item = _item(label, text[i + 1:end])
        if item is None:
            skipped.append(text[start:end])
        else:
            items.append(item)
        i = end
    return items, skipped


def _token_end(text: str, i: int) -> int:
    while i < len(text) and not text[i].isspace():
        i += 1
    return i


def _quoted_label(text: str, i: int) -> tuple[str | None, int]:
    """The label of `'it''s here'=...` starting at the quote, and the index after the closing quote."""
    chars: list[str] = []
    i += 1
    while i < len(text):
        if text[i] == "'":
            if text[i + 1:i + 2] == "'":
                chars.append("'")
                i += 2
                continue
            return "".join(chars), i + 1
        chars.append(text[i])
        i += 1
    return None, i


def _item(label: str, data: str) -> Perfdata | None:
    if not label:
        return None
    fields = data.split(";")
    if len(fields) > 5:
        return None
    number = _NUMBER.match(fields[0])
    if number is None:
        return None  # includes the guidelines' `U` (value could not be determined)
    uom = fields[0][number.end():]
    if not _UOM.fullmatch(uom):
        return None
    fields += [""] * (5 - len(fields))
    return Perfdata(label, float(number.group()), uom, fields[1] or None, fields[2] or None,
                    _bound(fields[3], uom), _bound(fields[4], uom))


def _bound(text: str, uom: str) -> float | None:
    """min or max: a number, which some plugins write with the value's unit."""
    if uom and text.endswith(uom):
        text = text[: -len(uom)]
    number = _NUMBER.fullmatch(text)
    return float(number.group()) if number else None


def normalise(p: Perfdata) -> tuple[float, str]:
    """The value in base units and the unit's name, for `vigil_check_perfdata{unit=...}`.

    Time becomes seconds and bytes bytes (1024-based multiples, see the module docstring), as
    Prometheus wants base units; `%` stays 0-100 as the plugin printed it (`percent`), and `c`
    (a counter that only grows, such as bytes sent) is `counter`, the cue that rate() applies.
    Units without a base (`""`, `°C`, `req/s`) are kept as they are."""
    if p.uom in TIME_UNITS:
        return p.value * TIME_UNITS[p.uom], "seconds"
    if p.uom in BYTE_UNITS:
        return p.value * BYTE_UNITS[p.uom], "bytes"
    if p.uom == "%":
        return p.value, "percent"
    if p.uom == "c":
        return p.value, "counter"
    return p.value, p.uom


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
_SIZE_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}


def parse_size(value: object) -> int:
    """Bytes from a number or a string such as `512MiB`. Decimal units (`MB`) are refused: in a
    threshold the factor 1000 vs 1024 is exactly the doubt an operator should not have."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 4096, 512KiB or 2GiB, got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("size must not be negative")
        return int(value)
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            number, unit = match.groups()
            if unit in _SIZE_UNITS:
                return int(float(number) * _SIZE_UNITS[unit])
            if unit.upper() in {"KB", "MB", "GB", "TB"}:
                raise ValueError(f"{value!r}: write {unit[0].upper()}iB (1024-based) or a number of bytes")
    raise ValueError(f"expected a size like 4096, 512KiB or 2GiB, got {value!r}")


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\d+(\.\d+)?\s*(B|KiB|MiB|GiB|TiB)?$"},
                {"type": "integer", "minimum": 0},
            ],
            "description": "bytes, or a size such as 512KiB, 64MiB, 2GiB",
        }
    ),
]


def human_bytes(size: float) -> str:
    """`12.3 MiB` for messages."""
    if abs(size) < 1024:
        return f"{size:.0f} B"
    units = ["KiB", "MiB", "GiB", "TiB"]
    size /= 1024
    while abs(size) >= 1024 and len(units) > 1:
        size /= 1024
        units.pop(0)
    return f"{size:.1f} {units[0]}"


def human_age(seconds: float) -> str:
    """`45s`, `12m30s`, `26h`, `3d4h`: two units at most, so `25h59m` is not rounded to a 25h limit."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" + (f"{s % 60}s" if s % 60 else "")
    if s < 48 * 3600:
        return f"{s // 3600}h" + (f"{s % 3600 // 60}m" if s % 3600 // 60 else "")
    return f"{s // 86400}d" + (f"{s % 86400 // 3600}h" if s % 86400 // 3600 else "")
