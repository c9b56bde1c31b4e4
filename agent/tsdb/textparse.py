"""Parser for `POST /api/v1/import` bodies: the Prometheus text format 0.0.4 and OpenMetrics 1.0 text.

It follows Prometheus 2.42's `model/textparse`, the parser behind scrapes and behind
`promtool tsdb create-blocks-from openmetrics`, so that a body Prometheus takes is also taken
here. OpenMetrics `_created` samples stay ordinary series, as they do in 2.42. The differences
are deliberate:
- a sample without a timestamp gets the caller's "now";
- a label set with a duplicate name is refused here, where Prometheus's TSDB refuses it at append;
- timestamps must lie between 1970 and the end of year 9999;
- the whole body must be UTF-8, comments included;
- a raw newline inside a quoted label value ends the line (Prometheus's text lexer would let the
  value run on), because the body is split into lines before anything else.

Speed: a body holds many samples of a few series, so the text in front of the value
(`name{...}`) is parsed once per distinct spelling and cached. The loop over lines handles only
the common layout with str methods. Anything unusual (comments, odd whitespace, exemplars,
special floats, errors) goes through a slow path that reads the line token by token and produces
every error message. Because the fast path falls back to the slow path on any doubt, it needs no
error handling of its own.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from dataclasses import dataclass

from agent.promql.values import Labels

# 9999-12-31T23:59:59.999Z: the last millisecond of year 9999.
MAX_TIMESTAMP_MS = 253_402_300_799_999

TEXT_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary",
              "untyped": "unknown"}
OPENMETRICS_TYPES = frozenset({"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset",
                               "unknown"})

# The sample-name suffixes each OpenMetrics type adds to its family name. The text format names
# counters with `_total` in the family itself, which family_of() handles by checking the exact name first.
FAMILY_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("_sum", "_count", "_created"),
    "info": ("_info",),
}

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# A label value as the lexers read it: a backslash escapes any one character.
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_PAIR_SYNTAX = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
# `name{n="v",n="v"}` with no blanks and no trailing comma: valid in both formats, read by regex alone.
_PLAIN_SERIES = re.compile(rf"[a-zA-Z_:][a-zA-Z0-9_:]*\{{(?:{_PAIR_SYNTAX}(?:,{_PAIR_SYNTAX})*)?\}}")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
# Go's strconv.ParseFloat without hex floats and underscores, which Prometheus refuses.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INFINITY = re.compile(r"[+-]?(?:inf|infinity)", re.IGNORECASE)
_NOT_A_NUMBER = re.compile(r"nan", re.IGNORECASE)
_NEGATIVE_INT = re.compile(r"-[0-9]+")
# Characters Python's float()/int() skip or accept where Go's parsers do not. A body without
# any of them (and all ASCII) lets the fast path skip per-value checks for them.
_LENIENT_CHARS = "\t\r\x0b\x0c\x1c\x1d\x1e\x1f"
# The spellings of NaN and infinities that the fast path takes without the slow path's checks.
_SPECIALS = {"NaN": math.nan, "nan": math.nan, "+Inf": math.inf, "-Inf": -math.inf, "Inf": math.inf,
             "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}
_TS_LIMIT = float(MAX_TIMESTAMP_MS + 1)


class TextParseError(ValueError):
    """A body that cannot be imported. `line` is 1-based; `message` says what is wrong there."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(slots=True)
class ParsedBatch:
    """All samples of a body, column-wise. `refs[i]` indexes `series` for sample i."""

    series: list[Labels]
    refs: array[int]
    ts: array[int]
    values: array[float]
    types: dict[str, str]


def is_openmetrics(content_type: str | None, body: bytes) -> bool:
    """OpenMetrics when the media type says so. With no Content-Type at all, a body that ends in a
    `# EOF` line is OpenMetrics too."""
    if content_type is not None and content_type.strip():
        media = content_type.split(";", 1)[0].strip().lower()
        return media == "application/openmetrics-text"
    tail = bytes(body[-7:])
    return tail.endswith(b"\n# EOF") or tail.endswith(b"\n# EOF\n") or tail in (b"# EOF", b"# EOF\n")


def parse(body: bytes, content_type: str | None, default_ts: int | None) -> ParsedBatch:
    """Parse a whole body or raise TextParseError for its first bad line.

    The text format has timestamps in integer milliseconds, OpenMetrics in float seconds. A sample
    without a timestamp gets `default_ts`; if that is None, such a sample is an error.
    """
    om = is_openmetrics(content_type, body)
    try:
        text = str(body, "utf-8")
    except UnicodeDecodeError as exc:
        raise _utf8_error(bytes(body), exc.start) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    has_eof = False
    if om and lines and lines[-1] == "# EOF":
        lines.pop()
        has_eof = True
    parser = _Parser(om, default_ts, text.isascii() and not any(c in text for c in _LENIENT_CHARS))
    refs, ts, values = parser.run(lines)
    if om and not has_eof:
        raise TextParseError(len(lines) + 1, 'missing "# EOF" line at the end of the OpenMetrics body')
    return ParsedBatch(parser.series, array("I", refs), array("q", ts), array("d", values), parser.types)


def family_of(name: str, types: dict[str, str]) -> str | None:
    """The metric family (a key of `types`) a sample name belongs to, or None if no TYPE line covers it."""
    if name in types:
        return name
    for suffix in ("_total", "_created", "_bucket", "_sum", "_count", "_gsum", "_gcount", "_info"):
        if name.endswith(suffix):
            family = name[: -len(suffix)]
            kind = types.get(family)
            if kind is not None and suffix in FAMILY_SUFFIXES.get(kind, ()):
                return family
    return None


class _Slow(Exception):
    """The fast path met something it does not check; the line goes to the slow path."""


class _Parser:
    """State of one parse: the series seen so far and the caches from series text to series index.

    `by_head` maps `name{...` (a line's text before its last `}`) and `by_name` maps a bare metric
    name (text before the first space of a line without `}`) to an index into `series`. A key is
    only ever stored after it parsed as a complete series, so a cache hit leaves only the value and
    timestamp to check.
    """

    def __init__(self, om: bool, default_ts: int | None, clean: bool):
        self.om = om
        self.default_ts = default_ts
        self.clean = clean
        self.series: list[Labels] = []
        self.index: dict[Labels, int] = {}
        self.by_head: dict[str, int] = {}
        self.by_name: dict[str, int] = {}
        self.types: dict[str, str] = {}

    def run(self, lines: list[str]) -> tuple[list[int], list[int], list[float]]:
        refs: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        add_ref, add_ts, add_value = refs.append, stamps.append, values.append
        by_head_get, by_name_get = self.by_head.get, self.by_name.get
        head_ref, name_ref, slow_line = self._head_ref, self._name_ref, self._slow_line
        om, clean, default_ts, specials = self.om, self.clean, self.default_ts, _SPECIALS
        for lineno, line in enumerate(lines, 1):
            try:
                head, brace, rest = line.rpartition("}")
                if brace:
                    ref = by_head_get(head)
                    if ref is None:
                        ref = head_ref(head, lineno)
                    parts = rest.split(" ")
                    if parts[0]:
                        raise _Slow
                    count = len(parts)
                    if count == 3:
                        value, stamp = parts[1], parts[2]
                    elif count == 2:
                        value, stamp = parts[1], None
                    else:
                        raise _Slow
                else:
                    head, space, rest = line.partition(" ")
                    ref = by_name_get(head)
                    if ref is None:
                        ref = name_ref(head, lineno)
                    parts = rest.split(" ")
                    count = len(parts)
                    if count == 2:
                        value, stamp = parts
                    elif count == 1 and space:
                        value, stamp = parts[0], None
                    else:
                        raise _Slow
                number = float(value)
                if number - number != 0.0:
                    number = specials[value]
                elif "_" in value:
                    raise _Slow
                if not clean and not (value.isascii() and value.isprintable()):
                    raise _Slow
                if stamp is None:
                    if default_ts is None:
                        raise _Slow
                    ms = default_ts
                elif om:
                    seconds = float(stamp)
                    if "_" in stamp or not (clean or (stamp.isascii() and stamp.isprintable())):
                        raise _Slow
                    scaled = seconds * 1000.0
                    if not 0.0 <= scaled < _TS_LIMIT:
                        raise _Slow
                    ms = int(scaled)
                else:
                    if not stamp.isdigit() or not (clean or stamp.isascii()):
                        raise _Slow
                    ms = int(stamp)
                    if ms > MAX_TIMESTAMP_MS:
                        raise _Slow
                add_ref(ref)
                add_ts(ms)
                add_value(number)
                continue
            except (_Slow, ValueError, LookupError):
                pass
            # Outside the except block, so that its errors do not chain to the fast path's.
            sample = slow_line(line, lineno)
            if sample is not None:
                add_ref(sample[0])
                add_ts(sample[1])
                add_value(sample[2])
        return refs, stamps, values

    # --- cache misses -------------------------------------------------------------------------

    def _head_ref(self, head: str, lineno: int) -> int:
        """Index of the series spelled `head + "}"`; raises (sending the line to the slow path) if it is not one."""
        spec = head + "}"
        if _PLAIN_SERIES.fullmatch(spec):
            brace = spec.index("{")
            found = _PAIR.findall(spec, brace + 1)
            if "\\" in spec:
                found = [(name, _unescape(raw)) for name, raw in found]
            pairs = [("__name__", spec[:brace]), *found]
        else:
            pairs, end = self._scan_series(spec, lineno)
            if end != len(spec):
                raise _Slow
        ref = self._intern(pairs, lineno)
        self.by_head[head] = ref
        return ref

    def _name_ref(self, name: str, lineno: int) -> int:
        if _NAME.fullmatch(name) is None:
            raise _Slow
        ref = self._intern([("__name__", name)], lineno)
        self.by_name[name] = ref
        return ref

    def _intern(self, pairs: list[tuple[str, str]], lineno: int) -> int:
        if len({name for name, _ in pairs}) != len(pairs):
            seen: set[str] = set()
            for name, _ in pairs:
                if name in seen:
                    raise TextParseError(lineno, f"duplicate label name {_q(name)}")
                seen.add(name)
        labels: Labels = tuple(sorted(p for p in pairs if p[1] != ""))
        ref = self.index.get(labels)
        if ref is None:
            ref = len(self.series)
            self.series.append(labels)
            self.index[labels] = ref
        return ref

    def _remember(self, line: str, end: int, pairs: list[tuple[str, str]], lineno: int) -> int:
        """Intern a series the slow path read from line[:end], and cache its spelling for the fast path."""
        ref = self._intern(pairs, lineno)
        if line[end - 1] == "}":
            self.by_head[line[: end - 1]] = ref
        else:
            self.by_name[line[:end]] = ref
        return ref

    # --- the slow path: one line, token by token --------------------------------------------

    def _slow_line(self, line: str, lineno: int) -> tuple[int, int, float] | None:
        """The sample on `line` as (series index, timestamp ms, value), or None for a comment or blank line."""
        if self.om:
            return self._om_line(line, lineno)
        return self._text_line(line, lineno)

    def _scan_series(self, s: str, lineno: int) -> tuple[list[tuple[str, str]], int]:
        if self.om:
            return _scan_om_series(s, lineno)
        return _scan_text_series(s, lineno)

    def _text_line(self, line: str, lineno: int) -> tuple[int, int, float] | None:
        n = len(line)
        i = _skip_blanks(line, 0)
        if i == n:
            return None
        if line[i] == "#":
            self._text_comment(line, i, lineno)
            return None
        pairs, end = _scan_text_series(line, lineno)
        ref = self._remember(line, end, pairs, lineno)
        j = _skip_blanks(line, end)
        after = "labels" if line[end - 1] == "}" else "metric name"
        if j == n:
            raise TextParseError(lineno, f"expected a value after the {after}")
        k = j
        while k < n and line[k] not in " \t{":
            k += 1
        token = line[j:k]
        if not token:
            raise TextParseError(lineno, f'unexpected "{{" after the {after}')
        try:
            value = _go_float(token)
        except OverflowError:
            raise TextParseError(lineno, f"value {_q(token)} out of range") from None
        except ValueError:
            raise TextParseError(lineno, f"invalid value {_q(token)}") from None
        j = _skip_blanks(line, k)
        if j == n:
            return ref, self._missing_ts(lineno), value
        if j == k:
            raise TextParseError(lineno, f"unexpected {_q(line[k:])} after the value")
        k = j
        while k < n and line[k] not in " \t":
            k += 1
        ms = _text_ts(line[j:k], lineno)
        k = _skip_blanks(line, k)
        if k != n:
            raise TextParseError(lineno, f"unexpected {_q(line[k:])} after the timestamp")
        return ref, ms, value

    def _text_comment(self, line: str, i: int, lineno: int) -> None:
        """`# HELP name text` and `# TYPE name type` are checked; any other `#` line is a comment."""
        n = len(line)
        i += 1
        if i == n or line[i] not in " \t":
            return
        i = _skip_blanks(line, i)
        keyword = line[i : i + 4]
        if keyword not in ("HELP", "TYPE") or i + 4 == n or line[i + 4] not in " \t":
            return
        i = _skip_blanks(line, i + 4)
        match = _NAME.match(line, i)
        if match is None:
            raise TextParseError(lineno, f"expected a metric name after {keyword}, got {_q(_token(line, i))}")
        # As Prometheus's lexer does: the text starts one character after the name.
        text = line[match.end() + 1 :]
        if keyword == "TYPE":
            kind = TEXT_TYPES.get(text)
            if kind is None:
                raise TextParseError(lineno, f"invalid metric type {_q(text)}")
            self.types[match.group()] = kind

    def _om_line(self, line: str, lineno: int) -> tuple[int, int, float] | None:
        if not line:
            raise TextParseError(lineno, "blank lines are not allowed in OpenMetrics")
        if line[0] == "#":
            self._om_comment(line, lineno)
            return None
        pairs, end = _scan_om_series(line, lineno)
        ref = self._remember(line, end, pairs, lineno)
        n = len(line)
        after = "labels" if line[end - 1] == "}" else "metric name"
        if end == n:
            raise TextParseError(lineno, f"expected a value after the {after}")
        if line[end] != " ":
            raise TextParseError(lineno, f"expected a space after the {after}, got {_q(line[end])}")
        k = line.find(" ", end + 1)
        k = n if k < 0 else k
        token = line[end + 1 : k]
        if not token:
            raise TextParseError(lineno, f"expected a value after the {after}, got another space")
        value = _float_or_error(token, "value", lineno)
        if k == n:
            return ref, self._missing_ts(lineno), value
        if line.startswith(" # {", k):
            _om_exemplar(line, k + 4, pairs[0][1], lineno)
            return ref, self._missing_ts(lineno), value
        j = line.find(" ", k + 1)
        j = n if j < 0 else j
        stamp = line[k + 1 : j]
        if not stamp:
            raise TextParseError(lineno, "expected a timestamp after the value, got another space"
                                 if j < n else "trailing space after the value")
        ms = _om_ts(stamp, lineno)
        if j == n:
            return ref, ms, value
        if line.startswith(" # {", j):
            _om_exemplar(line, j + 4, pairs[0][1], lineno)
            return ref, ms, value
        raise TextParseError(lineno, f"unexpected {_q(line[j:])} after the timestamp")

    def _om_comment(self, line: str, lineno: int) -> None:
        if line.startswith("# EOF"):
            raise TextParseError(lineno, '"# EOF" must be the last line')
        keyword = line[2:6]
        if not line.startswith("# ") or keyword not in ("HELP", "TYPE", "UNIT") or line[6:7] != " ":
            raise TextParseError(lineno, 'OpenMetrics allows only "# HELP", "# TYPE", "# UNIT" and a final "# EOF" '
                                 f"comment lines, got {_q(line)}")
        match = _NAME.match(line, 7)
        if match is None:
            raise TextParseError(lineno, f"expected a metric name after {keyword}, got {_q(_token(line, 7))}")
        name, end = match.group(), match.end()
        if end == len(line) or line[end] != " ":
            raise TextParseError(lineno, f"expected a space and text after the metric name in {keyword}")
        text = line[end + 1 :]
        if keyword == "TYPE":
            if text not in OPENMETRICS_TYPES:
                raise TextParseError(lineno, f"invalid metric type {_q(text)}")
            self.types[name] = text
        elif keyword == "UNIT" and text and not name.endswith("_" + text):
            raise TextParseError(lineno, f"unit {_q(text)} is not a suffix of metric {_q(name)}")

    def _missing_ts(self, lineno: int) -> int:
        if self.default_ts is None:
            raise TextParseError(lineno, "sample has no timestamp")
        return self.default_ts


# --- scanners shared by the fast path's cache misses and the slow path -------------------------


def _scan_text_series(s: str, lineno: int) -> tuple[list[tuple[str, str]], int]:
    """`[blanks] name [blanks] [{labels}]` at the start of `s`: the label pairs (with __name__) and where they end.

    Prometheus's text lexer allows blanks around every token, a comma after the last pair and no
    comma at all between pairs.
    """
    n = len(s)
    i = _skip_blanks(s, 0)
    match = _NAME.match(s, i)
    if match is None:
        raise TextParseError(lineno, f"invalid metric name {_q(_token(s, i))}")
    name_end = match.end()
    if name_end < n and s[name_end] not in " \t{":
        # "foo-bar 1": Prometheus would read "-bar" as the value; name the real mistake instead.
        token = _token(s, i)
        if _NAME.fullmatch(token) is None and not _looks_numeric(s[name_end:]):
            raise TextParseError(lineno, f"invalid metric name {_q(token)}")
    pairs = [("__name__", match.group())]
    j = _skip_blanks(s, name_end)
    if j == n or s[j] != "{":
        return pairs, name_end
    i = j + 1
    while True:
        i = _skip_blanks(s, i)
        if i == n:
            raise TextParseError(lineno, 'missing closing "}" of the label set')
        if s[i] == "}":
            return pairs, i + 1
        label = _LABEL_NAME.match(s, i)
        if label is None:
            raise _label_set_error(s, i, lineno)
        lname = label.group()
        i = _skip_blanks(s, label.end())
        if i == n or s[i] != "=":
            raise _no_equals(s, label.start(), lname, lineno)
        i = _skip_blanks(s, i + 1)
        value, i = _quoted(s, i, lname, lineno)
        pairs.append((lname, value))
        i = _skip_blanks(s, i)
        if i < n and s[i] == ",":
            i += 1


def _scan_om_series(s: str, lineno: int) -> tuple[list[tuple[str, str]], int]:
    """`name` or `name{n="v",...}` at the start of `s`, with OpenMetrics's strict spacing (none)."""
    match = _NAME.match(s)
    end = match.end() if match is not None else 0
    if match is None or (end < len(s) and s[end] not in " {"):
        raise TextParseError(lineno, f"invalid metric name {_q(_token(s, 0, ' {'))}")
    pairs = [("__name__", match.group())]
    if end == len(s) or s[end] != "{":
        return pairs, end
    return _scan_om_labels(s, end + 1, pairs, lineno)


def _scan_om_labels(s: str, i: int, pairs: list[tuple[str, str]], lineno: int) -> tuple[list[tuple[str, str]], int]:
    """The label pairs after the `{` at i-1, up to and including `}`: `}` or `n="v"` pairs joined by single commas."""
    n = len(s)
    if i < n and s[i] == "}":
        return pairs, i + 1
    while True:
        label = _LABEL_NAME.match(s, i)
        if label is None:
            if i == n:
                raise TextParseError(lineno, 'missing closing "}" of the label set')
            raise _label_set_error(s, i, lineno)
        lname = label.group()
        i = label.end()
        if i == n or s[i] != "=":
            raise _no_equals(s, label.start(), lname, lineno)
        value, i = _quoted(s, i + 1, lname, lineno)
        pairs.append((lname, value))
        if i == n:
            raise TextParseError(lineno, 'missing closing "}" of the label set')
        if s[i] == "}":
            return pairs, i + 1
        if s[i] != ",":
            raise TextParseError(lineno, f'expected "," or "}}" after the value of label {_q(lname)}, got {_q(s[i])}')
        i += 1
        if i < n and s[i] == "}":
            raise TextParseError(lineno, 'a comma must be followed by another label in OpenMetrics (no trailing ",")')


def _om_exemplar(line: str, i: int, name: str, lineno: int) -> None:
    """Check the exemplar `{labels} value [timestamp]` after " # {" (its `{` at i-1); exemplars are not stored.

    Like Prometheus, only counter totals and histogram buckets may carry one.
    """
    if not name.endswith(("_total", "_bucket")):
        raise TextParseError(lineno, f"metric {_q(name)} cannot have an exemplar (only _total and _bucket samples can)")
    _, end = _scan_om_labels(line, i, [], lineno)
    n = len(line)
    if end == n or line[end] != " ":
        raise TextParseError(lineno, "expected a space and a value after the exemplar labels")
    k = line.find(" ", end + 1)
    k = n if k < 0 else k
    _float_or_error(line[end + 1 : k], "exemplar value", lineno)
    if k == n:
        return
    j = line.find(" ", k + 1)
    j = n if j < 0 else j
    stamp = line[k + 1 : j]
    try:
        seconds = _go_float(stamp)
    except ValueError:
        raise TextParseError(lineno, f"invalid exemplar timestamp {_q(stamp)}") from None
    if math.isnan(seconds) or math.isinf(seconds):
        raise TextParseError(lineno, f"invalid exemplar timestamp {_q(stamp)}")
    if j != n:
        raise TextParseError(lineno, f"unexpected {_q(line[j:])} after the exemplar timestamp")


def _quoted(s: str, i: int, lname: str, lineno: int) -> tuple[str, int]:
    """The label value whose opening quote is at i, unescaped, and the index after its closing quote."""
    if i == len(s) or s[i] != '"':
        raise TextParseError(lineno, f"expected a quoted value for label {_q(lname)}")
    match = _QUOTED.match(s, i)
    if match is None:
        raise TextParseError(lineno, f"missing closing quote in the value of label {_q(lname)}")
    return _unescape(match.group(1)), match.end()


def _unescape(raw: str) -> str:
    """Prometheus unescapes \\\\, \\" and \\n only and keeps any other backslash pair as written."""
    if "\\" not in raw:
        return raw
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), raw)


def _no_equals(s: str, start: int, lname: str, lineno: int) -> TextParseError:
    token = _token(s, start, ' \t=,}"')
    if token != lname:
        return TextParseError(lineno, f"invalid label name {_q(token)}")
    return TextParseError(lineno, f'expected "=" after label name {_q(lname)}')


def _label_set_error(s: str, i: int, lineno: int) -> TextParseError:
    if "}" not in s[i:]:
        return TextParseError(lineno, 'missing closing "}" of the label set')
    token = _token(s, i, ' \t=,}"')
    if token:
        return TextParseError(lineno, f"invalid label name {_q(token)}")
    return TextParseError(lineno, f"expected a label name, got {_q(s[i])}")


# --- values and timestamps ----------------------------------------------------------------------


def _go_float(token: str) -> float:
    """Go's strconv.ParseFloat as Prometheus calls it: ValueError for bad syntax, OverflowError when out of range."""
    if _DECIMAL.fullmatch(token):
        number = float(token)
        if math.isinf(number):
            raise OverflowError(token)
        return number
    if _INFINITY.fullmatch(token):
        return -math.inf if token[0] == "-" else math.inf
    if _NOT_A_NUMBER.fullmatch(token):
        return math.nan
    raise ValueError(token)


def _float_or_error(token: str, what: str, lineno: int) -> float:
    try:
        return _go_float(token)
    except OverflowError:
        raise TextParseError(lineno, f"{what} {_q(token)} out of range") from None
    except ValueError:
        raise TextParseError(lineno, f"invalid {what} {_q(token)}") from None


def _text_ts(token: str, lineno: int) -> int:
    """Integer milliseconds, digits only as in Prometheus's lexer, between 1970 and the end of year 9999."""
    if token.isascii() and (token.isdigit() or _NEGATIVE_INT.fullmatch(token)):
        try:
            ms = int(token)
        except ValueError:  # more digits than int() converts
            ms = -1
        if 0 <= ms <= MAX_TIMESTAMP_MS:
            return ms
        raise TextParseError(lineno, f"timestamp {token} out of range")
    hint = ""
    if _DECIMAL.fullmatch(token) and any(c in token for c in ".eE"):
        hint = " (the text format wants integer milliseconds)"
    raise TextParseError(lineno, f"invalid timestamp {_q(token)}{hint}")


def _om_ts(token: str, lineno: int) -> int:
    """Float seconds, truncated to milliseconds as Prometheus does (int64(ts * 1000))."""
    try:
        seconds = _go_float(token)
    except OverflowError:
        raise TextParseError(lineno, f"timestamp {token} out of range") from None
    except ValueError:
        raise TextParseError(lineno, f"invalid timestamp {_q(token)}") from None
    if math.isnan(seconds) or math.isinf(seconds):
        raise TextParseError(lineno, f"invalid timestamp {_q(token)}")
    scaled = seconds * 1000.0
    if not 0.0 <= scaled < _TS_LIMIT:
        raise TextParseError(lineno, f"timestamp {token} out of range")
    return int(scaled)


# --- small helpers ------------------------------------------------------------------------------


def _skip_blanks(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in " \t":
        i += 1
    return i


def _token(s: str, i: int, stops: str = " \t{") -> str:
    """The run of characters at i up to the next stop character (for error messages)."""
    j = i
    while j < len(s) and s[j] not in stops:
        j += 1
    return s[i:j]


def _looks_numeric(s: str) -> bool:
    """Whether s starts with a value Go would parse ("foo+1" is a sample of foo in Prometheus's text format)."""
    token = _token(s, 0)
    try:
        _go_float(token)
    except (ValueError, OverflowError):
        return False
    return True


def _q(s: str) -> str:
    """A token quoted for an error message, shortened if long."""
    if len(s) > 80:
        s = s[:77] + "..."
    return json.dumps(s, ensure_ascii=False)


def _utf8_error(body: bytes, offset: int) -> TextParseError:
    """Name the line holding the first invalid byte and, roughly, which part of it."""
    start = body.rfind(b"\n", 0, offset) + 1
    lineno = body.count(b"\n", 0, offset) + 1
    before = body[start:offset]
    if before.lstrip(b" \t").startswith(b"#"):
        part = "comment"
    elif b"{" in before and b"}" not in before[before.rfind(b"{"):]:
        part = "label value"
    else:
        part = "line"
    column = offset - start + 1
    return TextParseError(lineno, f"{part} is not valid UTF-8 (byte {body[offset]:#04x} at column {column})")
