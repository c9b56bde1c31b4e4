"""The import parser: Prometheus text format 0.0.4 and OpenMetrics 1.0, as Prometheus 2.42 reads them."""

from __future__ import annotations

import math
import random
import re
import subprocess
from pathlib import Path

import pytest

from agent.tsdb.textparse import (
    MAX_TIMESTAMP_MS,
    ParsedBatch,
    TextParseError,
    _Parser,
    family_of,
    is_openmetrics,
    parse,
)
from tests.conftest import require_binary

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
NOW = 1_700_000_000_000


def samples(batch: ParsedBatch) -> list[tuple[dict[str, str], int, float]]:
    return [(dict(batch.series[r]), t, v) for r, t, v in zip(batch.refs, batch.ts, batch.values, strict=True)]


def text(body: str, default_ts: int | None = NOW) -> ParsedBatch:
    return parse(body.encode(), TEXT, default_ts)


def om(body: str, default_ts: int | None = NOW) -> ParsedBatch:
    return parse(body.encode(), OM, default_ts)


def error(body: str | bytes, content_type: str | None = TEXT, default_ts: int | None = NOW) -> TextParseError:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(TextParseError) as info:
        parse(raw, content_type, default_ts)
    exc = info.value
    assert str(exc) == f"line {exc.line}: {exc.message}"
    return exc


def same_value(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


# --- the Prometheus text format ------------------------------------------------------------------


def test_text_format_example() -> None:
    batch = text(
        "# HELP http_requests_total The total number of HTTP requests.\n"
        "# TYPE http_requests_total counter\n"
        'http_requests_total{method="post",code="200"} 1027 1395066363000\n'
        'http_requests_total{method="post",code="400"}    3 1395066363000\n'
        "\n"
        "metric_without_timestamp_and_labels 12.47\n"
        "# A normal comment.\n"
        "# TYPE rpc_duration_seconds summary\n"
        'rpc_duration_seconds{quantile="0.5"} 4773 1395066363001\n'
        "rpc_duration_seconds_sum 1.7560473e+07 1395066363001\n"
        "rpc_duration_seconds_count 2693 1395066363001\n"
    )
    assert batch.types == {"http_requests_total": "counter", "rpc_duration_seconds": "summary"}
    assert samples(batch) == [
        ({"__name__": "http_requests_total", "method": "post", "code": "200"}, 1395066363000, 1027.0),
        ({"__name__": "http_requests_total", "method": "post", "code": "400"}, 1395066363000, 3.0),
        ({"__name__": "metric_without_timestamp_and_labels"}, NOW, 12.47),
        ({"__name__": "rpc_duration_seconds", "quantile": "0.5"}, 1395066363001, 4773.0),
        ({"__name__": "rpc_duration_seconds_sum"}, 1395066363001, 1.7560473e07),
        ({"__name__": "rpc_duration_seconds_count"}, 1395066363001, 2693.0),
    ]
    # Labels are sorted tuples with __name__, as agent.promql.values.Labels.
    assert batch.series[0] == (("__name__", "http_requests_total"), ("code", "200"), ("method", "post"))
    assert batch.refs.typecode == "I" and batch.ts.typecode == "q" and batch.values.typecode == "d"


def test_text_histogram_family() -> None:
    batch = text(
        "# TYPE http_request_duration_seconds histogram\n"
        'http_request_duration_seconds_bucket{le="0.05"} 24054 1000\n'
        'http_request_duration_seconds_bucket{le="+Inf"} 144320 1000\n'
        "http_request_duration_seconds_sum 53423 1000\n"
        "http_request_duration_seconds_count 144320 1000\n"
    )
    assert batch.types == {"http_request_duration_seconds": "histogram"}
    names = [(dict(batch.series[r])["__name__"], dict(batch.series[r]).get("le")) for r in batch.refs]
    assert names == [("http_request_duration_seconds_bucket", "0.05"), ("http_request_duration_seconds_bucket", "+Inf"),
                     ("http_request_duration_seconds_sum", None), ("http_request_duration_seconds_count", None)]
    for name, _ in names:
        assert family_of(name, batch.types) == "http_request_duration_seconds"


def test_text_whitespace_and_commas_as_prometheus_lexes_them() -> None:
    batch = text(
        '  m {a="1" , b="2" ,} 1 10\n'  # blanks around every token, trailing comma
        'm{a="1"\tb="2"}\t1\t11\n'  # tabs, and Prometheus needs no comma between pairs
        'm{a="1",b="2"}1 12\n'  # no blank between the label set and the value
        'm{b="2",a="1"} 1 13   \n'  # other label order, trailing blanks
        "\t\n"  # a line of blanks
        "m 2 14\n"
    )
    expected = {"__name__": "m", "a": "1", "b": "2"}
    assert samples(batch) == [(expected, 10, 1.0), (expected, 11, 1.0), (expected, 12, 1.0), (expected, 13, 1.0),
                              ({"__name__": "m"}, 14, 2.0)]
    assert len(batch.series) == 2


def test_text_label_value_escapes() -> None:
    batch = text(r'm{path="C:\\DIR\\FILE.TXT",msg="say \"hi\"\nbye",other="tab\tkept",q="}{,="} 1 1' + "\n")
    assert dict(batch.series[0]) == {
        "__name__": "m",
        "path": "C:\\DIR\\FILE.TXT",
        "msg": 'say "hi"\nbye',
        "other": "tab\\tkept",  # Prometheus unescapes only \\, \" and \n
        "q": "}{,=",
    }


def test_text_utf8_label_values() -> None:
    batch = text('m{city="Zürich",emoji="📈"} 1 1\n')
    assert dict(batch.series[0])["city"] == "Zürich"
    assert dict(batch.series[0])["emoji"] == "📈"


def test_empty_label_values_are_dropped() -> None:
    batch = text('m{a="",b="x"} 1 1\nm{b="x"} 2 2\n')
    assert batch.series == [(("__name__", "m"), ("b", "x"))]
    assert list(batch.refs) == [0, 0]


def test_reserved_label_prefix_is_allowed() -> None:
    batch = text('m{__meta_x="1",_y="2"} 1 1\n')
    assert dict(batch.series[0]) == {"__name__": "m", "__meta_x": "1", "_y": "2"}


@pytest.mark.parametrize(
    ("token", "expected"),
    [("NaN", math.nan), ("nan", math.nan), ("+Inf", math.inf), ("-Inf", -math.inf), ("Inf", math.inf),
     ("inf", math.inf), ("Infinity", math.inf), ("-infinity", -math.inf), ("+INF", math.inf),
     ("1e3", 1000.0), ("-1.5E-3", -0.0015), (".5", 0.5), ("5.", 5.0), ("007", 7.0), ("-0", -0.0),
     ("1e-400", 0.0), ("1.7976931348623157e308", 1.7976931348623157e308)],
)
def test_values_parse_like_go(token: str, expected: float) -> None:
    for batch in (text(f"m {token} 1\n"), text(f'm{{a="b"}} {token} 1\n'), om(f"m {token} 1\n# EOF\n")):
        (_, _, value), = samples(batch)
        assert same_value(value, expected), (token, value)


@pytest.mark.parametrize("token", ["-nan", "+NaN", "1_000", "0x10", "0x1p3", "1e", "abc", "1.2.3", "٣", "1e400",
                                   "-1e400", "Infinit", "1,5"])
def test_values_go_refuses(token: str) -> None:
    for body, content_type in ((f"m {token} 1\n", TEXT), (f'm{{a="b"}} {token} 1\n', TEXT),
                               (f"m {token} 1\n# EOF\n", OM)):
        exc = error(body, content_type)
        assert exc.line == 1
        assert token in exc.message, exc.message
        assert ("out of range" if "e400" in token else "invalid value") in exc.message


def test_text_timestamps_are_integer_milliseconds() -> None:
    batch = text(f"m 1 0\nm 2 {MAX_TIMESTAMP_MS}\nm 3 000000000000000000000042\n")
    assert list(batch.ts) == [0, MAX_TIMESTAMP_MS, 42]


@pytest.mark.parametrize(
    ("stamp", "message"),
    [("1.5", 'invalid timestamp "1.5" (the text format wants integer milliseconds)'),
     ("-1", "timestamp -1 out of range"),
     (str(MAX_TIMESTAMP_MS + 1), f"timestamp {MAX_TIMESTAMP_MS + 1} out of range"),
     ("9" * 5000, f"timestamp {'9' * 5000} out of range"),
     ("1e30", 'invalid timestamp "1e30" (the text format wants integer milliseconds)'),
     ("12abc", 'invalid timestamp "12abc"'),
     ("+5", 'invalid timestamp "+5"'),
     ("١٢", 'invalid timestamp "١٢"'),
     ("NaN", 'invalid timestamp "NaN"')],
)
def test_text_timestamp_errors(stamp: str, message: str) -> None:
    exc = error(f"ok 1 1\nm 1 {stamp}\n")
    assert (exc.line, exc.message) == (2, message)


def test_missing_timestamp_without_default_is_an_error() -> None:
    assert samples(text("m 1 5\n", default_ts=None)) == [({"__name__": "m"}, 5, 1.0)]
    for body, content_type in (("m 1 5\nm 1\n", TEXT), ('m 1 5\nm{a="b"} 1\n', TEXT), ("m 1 5\nm 1\n# EOF\n", OM)):
        exc = error(body, content_type, default_ts=None)
        assert (exc.line, exc.message) == (2, "sample has no timestamp")


@pytest.mark.parametrize(
    ("line", "message"),
    [("1abc 1 1", 'invalid metric name "1abc"'),
     ('1abc{a="b"} 1 1', 'invalid metric name "1abc"'),
     ("foo-bar 1 1", 'invalid metric name "foo-bar"'),
     ("föö 1 1", 'invalid metric name "föö"'),
     ('{a="b"} 1 1', 'invalid metric name ""'),
     ('m{1a="b"} 1 1', 'invalid label name "1a"'),
     ('m{a-b="c"} 1 1', 'invalid label name "a-b"'),
     ('m{,a="b"} 1 1', 'expected a label name, got ","'),
     ('m{a="b",,c="d"} 1 1', 'expected a label name, got ","'),
     ('m{a} 1 1', 'expected "=" after label name "a"'),
     ("m{a=b} 1 1", 'expected a quoted value for label "a"'),
     ('m{a="b} 1 1', 'missing closing quote in the value of label "a"'),
     ('m{a="b\\"} 1 1', 'missing closing quote in the value of label "a"'),
     ('m{a="b" 1 1', 'missing closing "}" of the label set'),
     ('m{a="b",', 'missing closing "}" of the label set'),
     ('m{a="b"}', "expected a value after the labels"),
     ('m{a="b"}   ', "expected a value after the labels"),
     ("m", "expected a value after the metric name"),
     ('m{a="b"}{c="d"} 1', 'unexpected "{" after the labels'),
     ('m{a="b"} 1{ 2', 'unexpected "{ 2" after the value'),
     ('m{a="b"} 1 2 3', 'unexpected "3" after the timestamp'),
     ("m 1 2 # comment", 'unexpected "# comment" after the timestamp'),
     ('m{a="b",a="c"} 1 1', 'duplicate label name "a"'),
     ('m{a="",a="c"} 1 1', 'duplicate label name "a"'),
     ('m{__name__="n"} 1 1', 'duplicate label name "__name__"'),
     ("m 1\r", 'invalid value "1\\r"'),
     ("# TYPE m gaugge", 'invalid metric type "gaugge"'),
     ("# TYPE m", 'invalid metric type ""'),
     ("# TYPE m counter ", 'invalid metric type "counter "'),
     ("# TYPE m unknown", 'invalid metric type "unknown"'),
     ("# TYPE 1m counter", 'expected a metric name after TYPE, got "1m"'),
     ("# HELP  ", 'expected a metric name after HELP, got ""')],
)
def test_text_errors_name_the_line(line: str, message: str) -> None:
    body = 'ok 1 1\nok{a="b"} 2 2\n# comment\n\n' + line + "\nlater 1 1\n"
    exc = error(body)
    assert (exc.line, exc.message) == (5, message)


def test_raw_newline_in_a_label_value_ends_the_line() -> None:
    exc = error('ok 1 1\nm{a="x\ny"} 1 1\n')
    assert (exc.line, exc.message) == (2, 'missing closing quote in the value of label "a"')


def test_text_comments_and_metadata() -> None:
    batch = text(
        "#no space is a comment\n"
        "# HELPER is a comment\n"
        "# HELP\n"
        "# HELP m\n"  # HELP without text is fine, TYPE without a type is not
        "\t# TYPE m untyped\n"
        "#\tTYPE g\tgauge\n"
        "# TYPE h histogram\n"
        "# TYPE h summary\n"  # Prometheus keeps no state between TYPE lines; the last one wins
        "# EOF\n"  # only a comment in the text format
        "m 1 1\n"
    )
    assert batch.types == {"m": "unknown", "g": "gauge", "h": "summary"}
    assert len(batch.refs) == 1


def test_name_followed_directly_by_a_value_as_prometheus_lexes_it() -> None:
    assert samples(text("foo+1 2\nfoo-1 3\n")) == [({"__name__": "foo"}, 2, 1.0), ({"__name__": "foo"}, 3, -1.0)]


def test_all_or_nothing() -> None:
    body = "".join(f'm{{i="{i}"}} {i} {i}\n' for i in range(1000)) + "m{i=1} 1 1\n"
    exc = error(body)
    assert exc.line == 1001


def test_same_series_and_timestamp_twice_is_kept() -> None:
    assert samples(text("m 1 5\nm 2 5\n")) == [({"__name__": "m"}, 5, 1.0), ({"__name__": "m"}, 5, 2.0)]


def test_empty_body() -> None:
    for body in (b"", b"\n", b"# just a comment\n"):
        batch = parse(body, TEXT, NOW)
        assert batch.series == [] and len(batch.refs) == 0 and batch.types == {}


# --- invalid UTF-8 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "part"),
    [(b'ok 1 1\nm{a="\xff"} 1 1\n', 2, "label value"),
     (b'ok 1 1\nok 1 1\nm{a="b",c="x\xc3("} 1 1\n', 3, "label value"),
     (b"# HELP m caf\xe9\nm 1 1\n", 1, "comment"),
     (b"ok 1 1\nm\xff 1 1\n", 2, "line"),
     (b'm{a="\xed\xa0\x80"} 1 1\n', 1, "label value"),  # an encoded surrogate is not UTF-8
     (b"ok 1 1\nm 1 1\xc0\x80\n", 2, "line")],  # nor is an overlong encoding
)
def test_invalid_utf8_names_the_line(body: bytes, line: int, part: str) -> None:
    for content_type in (TEXT, OM):
        exc = error(body + b"# EOF\n" if content_type == OM else body, content_type)
        assert exc.line == line
        assert exc.message.startswith(f"{part} is not valid UTF-8"), exc.message


# --- the cache from series text to series ----------------------------------------------------


def test_cache_keeps_series_apart() -> None:
    batch = text(
        'm{a="b"} 1 1\n'
        'm{a="b",c="d"} 2 2\n'
        'm{a="b}"} 3 3\n'  # a brace inside a value
        'm{a="b\\"} 1 2"} 4 4\n'  # an escaped quote, then what looks like a value and timestamp
        'mm{a="b"} 5 5\n'
        "m 6 6\n"
        'm{a="b"} 7 7\n'
        'm{a="b",} 8 8\n'  # another spelling of the first series
        'm {a="b"} 9 9\n'
    )
    got = [(dict(batch.series[r]), v) for r, v in zip(batch.refs, batch.values, strict=True)]
    assert got == [
        ({"__name__": "m", "a": "b"}, 1.0),
        ({"__name__": "m", "a": "b", "c": "d"}, 2.0),
        ({"__name__": "m", "a": "b}"}, 3.0),
        ({"__name__": "m", "a": 'b"} 1 2'}, 4.0),
        ({"__name__": "mm", "a": "b"}, 5.0),
        ({"__name__": "m"}, 6.0),
        ({"__name__": "m", "a": "b"}, 7.0),
        ({"__name__": "m", "a": "b"}, 8.0),
        ({"__name__": "m", "a": "b"}, 9.0),
    ]
    assert len(batch.series) == 6
    assert list(batch.refs) == [0, 1, 2, 3, 4, 5, 0, 0, 0]


@pytest.mark.parametrize(
    ("line", "message"),
    [('m{a="b" 1 1', 'missing closing "}" of the label set'),  # same text before the value, no brace
     ('m{a="b"} 1 1 1', 'unexpected "1" after the timestamp'),
     ('m{a="b"} 1 1}', 'invalid timestamp "1}"'),
     ("m 1 1 1", 'unexpected "1" after the timestamp'),
     ('m{a="b"} x 1', 'invalid value "x"')],
)
def test_cached_series_does_not_excuse_a_bad_line(line: str, message: str) -> None:
    exc = error(f'm{{a="b"}} 1 1\nm 1 1\n{line}\n')
    assert (exc.line, exc.message) == (3, message)


def _mutations(seed: int, count: int, lines: list[str]) -> list[str]:
    rng = random.Random(seed)
    alphabet = ' {}",=#\t.-+eE019aNnIi\\_:x\r'
    out = []
    for _ in range(count):
        chars = list(rng.choice(lines))
        for _ in range(rng.randint(1, 2)):
            pos = rng.randrange(len(chars) + 1)
            op = rng.random()
            if op < 0.4:
                chars.insert(pos, rng.choice(alphabet))
            elif chars and pos < len(chars):
                if op < 0.7:
                    del chars[pos]
                else:
                    chars[pos] = rng.choice(alphabet)
        out.append("".join(chars))
    return out


@pytest.mark.parametrize("openmetrics", [False, True])
def test_fast_path_agrees_with_the_token_by_token_reader(openmetrics: bool) -> None:
    """Mutated lines, parsed after a warm-up that fills the caches, give what the slow path gives alone."""
    warm = ['m{a="b",c="d"} 1.5 1700000000', 'm{a="b"} NaN 17', "m 2 3", 'm{a="x\\"}"} -Inf 4', "# TYPE m counter",
            "m 1"]
    if openmetrics:
        warm.append('m_total{a="b"} 1 2 # {t="x"} 1 5')
    content_type, eof = (OM, b"# EOF\n") if openmetrics else (TEXT, b"")
    warm_body = ("\n".join(warm) + "\n").encode()
    warm_count = len(parse(warm_body + eof, content_type, NOW).refs)
    for line in _mutations(11 if openmetrics else 12, 1500, warm):
        reference = _Parser(openmetrics, NOW, clean=False)
        try:
            expected = reference._slow_line(line, 1)
        except TextParseError as exc:
            expected = exc.message
        try:
            batch = parse(warm_body + line.encode() + b"\n" + eof, content_type, NOW)
        except TextParseError as exc:
            assert (exc.line, exc.message) == (len(warm) + 1, expected), line
            continue
        if expected is None:
            assert len(batch.refs) == warm_count, line
            continue
        assert not isinstance(expected, str), (line, expected)
        assert len(batch.refs) == warm_count + 1, line
        assert batch.series[batch.refs[-1]] == reference.series[expected[0]], line
        assert (batch.ts[-1], batch.values[-1]) == expected[1:] or (
            batch.ts[-1] == expected[1] and same_value(batch.values[-1], expected[2])), line


# --- OpenMetrics -----------------------------------------------------------------------------------


def test_openmetrics_families() -> None:
    batch = om(
        "# TYPE acme_http_router_request_seconds histogram\n"
        "# UNIT acme_http_router_request_seconds seconds\n"
        "# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.\n"
        'acme_http_router_request_seconds_bucket{path="/api/v1",method="GET",le="0.1"} 2 1520879607.789\n'
        'acme_http_router_request_seconds_bucket{path="/api/v1",method="GET",le="+Inf"} 3 1520879607.789'
        ' # {trace_id="KOO5S4vxi0o"} 0.67\n'
        'acme_http_router_request_seconds_sum{path="/api/v1",method="GET"} 9036.32 1520879607.789\n'
        'acme_http_router_request_seconds_count{path="/api/v1",method="GET"} 3 1520879607.789\n'
        'acme_http_router_request_seconds_created{path="/api/v1",method="GET"} 1520430000.123 1520879607.789\n'
        "# TYPE foo counter\n"
        'foo_total{a="b"} 17.0 1520879607.789 # {trace_id="KOO5S4vxi0o"} 0.67 1520879602.890\n'
        'foo_created{a="b"} 1520430000.123 1520879607.789\n'
        "# TYPE rpc summary\n"
        'rpc{quantile="0.5"} 4773 1520879607\n'
        "rpc_sum 1.7560473e+07 1520879607\n"
        "rpc_count 2693 1520879607\n"
        "# TYPE build info\n"
        'build_info{version="1.0"} 1 1520879607\n'
        "# TYPE state stateset\n"
        'state{state="a"} 1 1520879607\n'
        "# TYPE gh gaugehistogram\n"
        'gh_bucket{le="+Inf"} 1 1520879607\n'
        "gh_gcount 1 1520879607\n"
        "gh_gsum 1 1520879607\n"
        "# TYPE other unknown\n"
        "other 1 1520879607\n"
        "# EOF\n"
    )
    assert batch.types == {"acme_http_router_request_seconds": "histogram", "foo": "counter", "rpc": "summary",
                           "build": "info", "state": "stateset", "gh": "gaugehistogram", "other": "unknown"}
    got = samples(batch)
    assert got[0] == ({"__name__": "acme_http_router_request_seconds_bucket", "path": "/api/v1", "method": "GET",
                       "le": "0.1"}, 1520879607789, 2.0)
    assert got[4][0]["__name__"] == "acme_http_router_request_seconds_created"  # kept as a series, as in 2.42
    assert got[4][2] == 1520430000.123
    assert got[5] == ({"__name__": "foo_total", "a": "b"}, 1520879607789, 17.0)
    assert got[6][0]["__name__"] == "foo_created"
    assert got[7] == ({"__name__": "rpc", "quantile": "0.5"}, 1520879607000, 4773.0)
    families = [family_of(labels["__name__"], batch.types) for labels, _, _ in got]
    assert families == ["acme_http_router_request_seconds"] * 5 + ["foo"] * 2 + ["rpc"] * 3 + ["build", "state"] + \
        ["gh"] * 3 + ["other"]
    assert family_of("foo_bucket", batch.types) is None  # not a counter's suffix
    assert family_of("nothing_total", batch.types) is None


def test_openmetrics_timestamps_are_float_seconds_truncated_to_ms() -> None:
    batch = om("m 1 1700000000.123\nm 1 1.0005\nm 1 1.9999\nm 1 2\nm 1 2.5e0\nm 1 -0.0\nm 1 253402300799.999\n"
               "m 1 0.001\n# EOF\n")
    assert list(batch.ts) == [1700000000123, 1000, 1999, 2000, 2500, 0, MAX_TIMESTAMP_MS, 1]


@pytest.mark.parametrize(
    ("stamp", "message"),
    [("1e30", "timestamp 1e30 out of range"), ("-1", "timestamp -1 out of range"),
     ("-0.5", "timestamp -0.5 out of range"), ("253402300800", "timestamp 253402300800 out of range"),
     ("1e400", "timestamp 1e400 out of range"), ("NaN", 'invalid timestamp "NaN"'),
     ("+Inf", 'invalid timestamp "+Inf"'), ("1_0", 'invalid timestamp "1_0"'), ("x", 'invalid timestamp "x"')],
)
def test_openmetrics_timestamp_errors(stamp: str, message: str) -> None:
    exc = error(f"ok 1 1\nok 1 2\nok 1 3\nm 1 {stamp}\n# EOF\n", OM)
    assert (exc.line, exc.message) == (4, message)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [("m 1 1\n", 2, 'missing "# EOF" line at the end of the OpenMetrics body'),
     ("", 1, 'missing "# EOF" line at the end of the OpenMetrics body'),
     ("m 1 1\n# EOF\nm 1 2\n# EOF\n", 2, '"# EOF" must be the last line'),
     ("m 1 1\n# EOF\n\n", 2, '"# EOF" must be the last line'),
     ("m 1 1\n# EOF \n", 2, '"# EOF" must be the last line'),
     ("m 1 1\n# EOF\nm 1 2\n", 2, '"# EOF" must be the last line')],
)
def test_openmetrics_eof_rules(body: str, line: int, message: str) -> None:
    exc = error(body, OM)
    assert (exc.line, exc.message) == (line, message)


def test_openmetrics_eof_without_final_newline() -> None:
    assert samples(parse(b"m 1 1\n# EOF", OM, None)) == [({"__name__": "m"}, 1000, 1.0)]
    assert parse(b"# EOF\n", OM, None).series == []


@pytest.mark.parametrize(
    ("line", "message"),
    [("", "blank lines are not allowed in OpenMetrics"),
     ("# a comment", 'OpenMetrics allows only "# HELP", "# TYPE", "# UNIT" and a final "# EOF" comment lines, '
                     'got "# a comment"'),
     ("#HELP m x", 'OpenMetrics allows only "# HELP", "# TYPE", "# UNIT" and a final "# EOF" comment lines, '
                   'got "#HELP m x"'),
     ("# HELP m", 'expected a space and text after the metric name in HELP'),
     ("# HELP  m x", 'expected a metric name after HELP, got ""'),
     ("# TYPE m untyped", 'invalid metric type "untyped"'),
     ("# TYPE m  counter", 'invalid metric type " counter"'),
     ("# UNIT m_seconds bytes", 'unit "bytes" is not a suffix of metric "m_seconds"'),
     ("# UNIT mseconds seconds", 'unit "seconds" is not a suffix of metric "mseconds"'),
     (" m 1 1", 'invalid metric name ""'),
     ("m  1 1", "expected a value after the metric name, got another space"),
     ('m{a="b"}  1 1', "expected a value after the labels, got another space"),
     ('m {a="b"} 1 1', 'invalid value "{a=\\"b\\"}"'),
     ('m{a="b"}1 1', 'expected a space after the labels, got "1"'),
     ("m 1  1", "expected a timestamp after the value, got another space"),
     ("m 1 ", "trailing space after the value"),
     ("m 1 1 ", 'unexpected " " after the timestamp'),
     ("m\t1 1", 'invalid metric name "m\\t1"'),
     ('m{a="b",} 1 1', 'a comma must be followed by another label in OpenMetrics (no trailing ",")'),
     ('m{a="b" ,c="d"} 1 1', 'expected "," or "}" after the value of label "a", got " "'),
     ('m{ a="b"} 1 1', 'expected a label name, got " "'),
     ('m{a ="b"} 1 1', 'expected "=" after label name "a"'),
     ('m{a= "b"} 1 1', 'expected a quoted value for label "a"'),
     ('m{a="b"c="d"} 1 1', 'expected "," or "}" after the value of label "a", got "c"'),
     ('m{a="b"', 'missing closing "}" of the label set'),
     ('m{a="b",c="d"} 1 1 1', 'unexpected " 1" after the timestamp'),
     ("m 1 1 #x", 'unexpected " #x" after the timestamp'),
     ('m 1 1 # {a="b"} 1', 'metric "m" cannot have an exemplar (only _total and _bucket samples can)'),
     ('m_count 1 1 # {a="b"} 1', 'metric "m_count" cannot have an exemplar (only _total and _bucket samples can)'),
     ('m_total 1 1 # {a="b"}', "expected a space and a value after the exemplar labels"),
     ('m_total 1 1 # {a="b"} x', 'invalid exemplar value "x"'),
     ('m_total 1 1 # {a="b"} 1 NaN', 'invalid exemplar timestamp "NaN"'),
     ('m_total 1 1 # {a="b"} 1 1 x', 'unexpected " x" after the exemplar timestamp'),
     ('m_total 1 1 # {a="b",} 1', 'a comma must be followed by another label in OpenMetrics (no trailing ",")'),
     ('m_total 1 1  # {a="b"} 1', 'unexpected "  # {a=\\"b\\"} 1" after the timestamp'),
     ('m{a="b",a="c"} 1 1', 'duplicate label name "a"')],
)
def test_openmetrics_is_strict(line: str, message: str) -> None:
    exc = error(f'ok 1 1\nok{{a="b"}} 2 2\n{line}\n# EOF\n', OM)
    assert (exc.line, exc.message) == (3, message)


def test_openmetrics_exemplars_are_accepted_and_ignored() -> None:
    batch = om(
        'a_total 1 1 # {trace_id="abc",span="x\\"y"} 0.5 1.5\n'
        "a_total 2 # {} 1\n"
        'b_bucket{le="1"} 3 3 # {a=""} -Inf\n'
        "# EOF\n"
    )
    assert samples(batch) == [({"__name__": "a_total"}, 1000, 1.0), ({"__name__": "a_total"}, NOW, 2.0),
                              ({"__name__": "b_bucket", "le": "1"}, 3000, 3.0)]


# --- which format --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [("application/openmetrics-text", b"m 1 1\n", True),
     ("Application/OpenMetrics-Text; version=1.0.0; charset=utf-8", b"", True),
     ("text/plain; version=0.0.4", b"m 1 1\n# EOF\n", False),
     ("application/json", b"m 1 1\n# EOF\n", False),
     (None, b"m 1 1\n# EOF\n", True),
     (None, b"m 1 1\n# EOF", True),
     (None, b"# EOF", True),
     (None, b"m 1 1\n# EOF\n\n", False),
     (None, b"m 1 1\n#  EOF\n", False),
     (None, b"m 1 1\nx# EOF\n", False),
     (None, b"m 1 1\n", False),
     ("", b"m 1 1\n# EOF\n", True)],
)
def test_format_choice(content_type: str | None, body: bytes, expected: bool) -> None:
    assert is_openmetrics(content_type, body) is expected


def test_timestamp_unit_follows_the_format() -> None:
    body = b"m 1 1700000000\n# EOF\n"
    assert list(parse(body, None, None).ts) == [1_700_000_000_000]
    assert list(parse(body, "text/plain", None).ts) == [1_700_000_000]
    assert list(parse(body, OM, None).ts) == [1_700_000_000_000]


# --- against Prometheus itself ---------------------------------------------------------------------

PROMTOOL_BODIES = [
    b'# TYPE foo counter\nfoo_total{a="b",c="x\\"y\\\\z\\nw"} 1.5 1700000000.25\n'
    b'foo_created{a="b"} 1.6e9 1700000000.25\n'
    b"foo_total{a=\"b\",c=\"\"} NaN 1700000001.999 # {t=\"1\"} 1 1700000001.5\n# EOF\n",
    b'# TYPE h histogram\nh_bucket{le="0.5"} 1 1700000000\nh_bucket{le="+Inf"} 2 1700000000 # {} 1\n'
    b"h_sum -Inf 1700000000\nh_count 2 1700000000\n# EOF",
    b"m{} 1e-3 1.0005\nm +Inf 2.5\nm -Infinity 3\n# EOF\n",
    b'm{a="b",} 1 1\n# EOF\n',
    b"m 1 1\n\n# EOF\n",
    b"# TYPE m untyped\nm 1 1\n# EOF\n",
    b"m 1 1 # {a=\"b\"} 1\n# EOF\n",
    b"m -nan 1\n# EOF\n",
    b"m 1 1\n# EOF\nm 2 2\n# EOF\n",
    b"m  1 1\n# EOF\n",
    b"# UNIT m_seconds bytes\nm_seconds 1 1\n# EOF\n",
]


def _promtool_samples(promtool: str, body: bytes, tmp_path: Path) -> list[tuple[str, float, int]] | None:
    source, out = tmp_path / "in.om", tmp_path / "blocks"
    source.write_bytes(body)
    created = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(out)],
                             capture_output=True, text=True, timeout=60)
    if created.returncode != 0:
        return None
    (out / "wal").mkdir(exist_ok=True)
    dumped = subprocess.run([promtool, "tsdb", "dump", str(out)], capture_output=True, text=True, timeout=60,
                            check=True)
    result = []
    for line in dumped.stdout.splitlines():
        match = re.fullmatch(r"(\{.*\}) (\S+) (-?\d+)", line)
        assert match is not None, line
        result.append((match.group(1), float(match.group(2)), int(match.group(3))))
    return sorted(result, key=repr)


def _as_dump(batch: ParsedBatch) -> list[tuple[str, float, int]]:
    def fmt(labels: tuple[tuple[str, str], ...]) -> str:
        escaped = [(k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")) for k, v in labels]
        return "{" + ", ".join(f'{k}="{v}"' for k, v in escaped) + "}"

    return sorted(((fmt(batch.series[r]), v, t) for r, t, v in zip(batch.refs, batch.ts, batch.values, strict=True)),
                  key=repr)


@pytest.mark.parametrize("body", PROMTOOL_BODIES)
def test_openmetrics_agrees_with_promtool(body: bytes, tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    expected = _promtool_samples(promtool, body, tmp_path)
    try:
        got = _as_dump(parse(body, OM, None))
    except TextParseError:
        got = None
    if expected is None or got is None:
        assert expected is got
    else:
        assert [(s, t) for s, _, t in got] == [(s, t) for s, _, t in expected]
        assert all(same_value(a[1], b[1]) for a, b in zip(got, expected, strict=True))
