"""The Nagios plugin output format: message, long text, performance data, and units in base units."""

from __future__ import annotations

import pydantic
import pytest

from agent.checks.base import Perfdata
from agent.checks.perfdata import (
    ByteSize,
    human_age,
    human_bytes,
    normalise,
    parse_perfdata,
    parse_plugin_output,
    parse_size,
)


def test_guidelines_example_with_long_output() -> None:
    text = (
        "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
        "/ 15272 MB (77%);\n"
        "/boot 68 MB (69%);\n"
        "/home 69357 MB (27%);\n"
        "/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n"
        "/home=69357MB;253404;253409;0;253414\n"
        "/var/log=818MB;970;975;0;980\n"
    )
    out = parse_plugin_output(text)
    assert out.message == "DISK OK - free space: / 3326 MB (56%);"
    assert out.long_output == "/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%);"
    assert [p.label for p in out.perfdata] == ["/", "/boot", "/home", "/var/log"]
    assert out.perfdata[0] == Perfdata("/", 2643.0, "MB", "5948", "5958", 0.0, 5968.0)
    assert out.skipped == []


def test_message_without_perfdata_and_empty_output() -> None:
    assert parse_plugin_output("OK: all good\n").message == "OK: all good"
    out = parse_plugin_output("")
    assert (out.message, out.long_output, out.perfdata) == ("", "", [])
    out = parse_plugin_output("WARNING - 2 users\nalice\nbob\n")
    assert out.long_output == "alice\nbob"
    assert out.perfdata == []


def test_quoted_labels_with_spaces_and_escaped_quotes() -> None:
    items, skipped = parse_perfdata("'in use'=12% 'it''s'=3;;;0 'x=y'=1s")
    assert [(p.label, p.value, p.uom) for p in items] == [("in use", 12.0, "%"), ("it's", 3.0, ""), ("x=y", 1.0, "s")]
    assert items[1].min == 0.0
    assert skipped == []


def test_thresholds_kept_as_written_and_bounds_parsed() -> None:
    (p,), _ = parse_perfdata("time=0.005s;@1:2;~:10;0.000000;10.000000")
    assert (p.value, p.uom, p.warn, p.crit, p.min, p.max) == (0.005, "s", "@1:2", "~:10", 0.0, 10.0)
    (p,), _ = parse_perfdata("load1=0.180;5.000;9.000;0; ")
    assert (p.warn, p.crit, p.min, p.max) == ("5.000", "9.000", 0.0, None)
    (p,), _ = parse_perfdata("mem=1.5e3KB;;;0KB;10KB")
    assert (p.value, p.uom, p.min, p.max) == (1500.0, "KB", 0.0, 10.0)
    (p,), _ = parse_perfdata("temp=-3.5°C;;;junk")
    assert (p.value, p.uom, p.min) == (-3.5, "°C", None)


def test_malformed_items_are_skipped_not_fatal() -> None:
    items, skipped = parse_perfdata("good=1 bare U=U comma=12,5% nolabel =3 semi=1;2;3;4;5;6 also=2c 'open=3 x=1")
    assert [(p.label, p.value, p.uom) for p in items] == [("good", 1.0, ""), ("also", 2.0, "c")]
    assert skipped == ["bare", "U=U", "comma=12,5%", "nolabel", "=3", "semi=1;2;3;4;5;6", "'open=3 x=1"]


def test_unquoted_label_with_a_quote_is_skipped() -> None:
    items, skipped = parse_perfdata("it's=1 ok=2")
    assert [p.label for p in items] == ["ok"]
    assert skipped == ["it's=1"]


@pytest.mark.parametrize(
    ("value", "uom", "expected"),
    [
        (1.5, "s", (1.5, "seconds")),
        (250, "ms", (0.25, "seconds")),
        (40, "us", (40e-6, "seconds")),
        (3, "B", (3.0, "bytes")),
        (2, "KB", (2048.0, "bytes")),
        (2, "kB", (2048.0, "bytes")),
        (1, "MB", (1048576.0, "bytes")),
        (1, "MiB", (1048576.0, "bytes")),
        (1, "GB", (1024.0**3, "bytes")),
        (1, "TB", (1024.0**4, "bytes")),
        (75, "%", (75.0, "percent")),
        (1234, "c", (1234.0, "counter")),
        (7, "", (7.0, "")),
        (21.5, "°C", (21.5, "°C")),
    ],
)
def test_normalise_to_base_units(value: float, uom: str, expected: tuple[float, str]) -> None:
    got = normalise(Perfdata("x", float(value), uom))
    assert got[1] == expected[1]
    assert got[0] == pytest.approx(expected[0])


def test_sizes_for_config() -> None:
    assert parse_size(4096) == 4096
    assert parse_size("4096") == 4096
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("1.5 GiB") == int(1.5 * 1024**3)
    assert parse_size("10B") == 10
    with pytest.raises(ValueError, match="write MiB"):
        parse_size("512MB")
    with pytest.raises(ValueError, match="expected a size"):
        parse_size("lots")
    with pytest.raises(ValueError, match="negative"):
        parse_size(-1)

    class M(pydantic.BaseModel):
        size: ByteSize

    assert M.model_validate({"size": "2KiB"}).size == 2048
    with pytest.raises(pydantic.ValidationError, match="write KiB"):
        M.model_validate({"size": "2kb"})


def test_human_formats() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 1024**3) == "3.0 GiB"
    assert human_age(45) == "45s"
    assert human_age(750) == "12m30s"
    assert human_age(26 * 3600) == "26h"
    assert human_age(25 * 3600 + 59 * 60 + 59) == "25h59m"
    assert human_age(3 * 86400 + 4 * 3600) == "3d4h"
