"""Prometheus alert templates: Go's text/template language and Prometheus's template functions.

Rule files written for Prometheus put Go templates in alert labels and annotations, and operators expect
the same text out of Vigil, byte for byte, including the error messages Prometheus shows in a rule's
lastError. So this is a port of Go's text/template (lexer, parser and executor, as in Go 1.19, which
Prometheus 2.42 is built with) and of the functions Prometheus 2.42 adds (template/template.go), checked
against promtool's own expansions. Go's dynamic types are modelled on Python values: str is string,
float is float64, int is int, bool is bool, None is a missing value (printed `<no value>`), a dict is a
map[string]string (a missing key is ""), a list is a slice; AlertData is the struct Prometheus passes.

Like Prometheus's rules manager, `compile(text, name)` prepends the header that defines `$labels`,
`$externalLabels`, `$externalURL` and `$value` (so error columns count it, as Go's do), and the
template is parsed once and executed many times; `compile` keeps a bounded cache keyed by the text.
`query` runs only when the caller gives a query function (the rule evaluator's PromQL); `tmpl`
exists only in Prometheus's HTML console templates and is not defined here, as in alert templates.

Where this differs from Go, on purpose: pointers nested in printed values (a query result inside a
slice) print as made-up addresses, as Go's own vary from run to run; {{template}} calls nest at most
64 deep and parentheses 100 deep (Go: 100000 and 10000), which keeps within Python's stack; Go's
unsigned integer types do not exist here (Python ints are Go's int); text mode only, as alert
templates are (no html/template escaping); Go regexps go through agent.promql.functions_regex, whose
error texts can differ slightly from Go's.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.promql.functions_regex import GoRegex, compile_go
from agent.promql.functions_regex import expand as regex_expand

__all__ = [
    "HEADER",
    "AlertData",
    "Sample",
    "Template",
    "TemplateError",
    "compile",
    "expand",
    "expand_alert_template",
]

HEADER = ("{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}"
          "{{$value := .Value}}")
"""What Prometheus's rules manager puts before every alert label and annotation template."""

_CACHE_SIZE = 4096
_MAX_TEMPLATE_DEPTH = 64  # Go allows 100000 nested {{template}} calls; Python's stack does not
_MAX_PAREN_DEPTH = 100


class TemplateError(Exception):
    """A template that does not parse or fails to execute; the text is Go's error message."""


class _CallError(Exception):
    """A template function's error result (Go's second return value)."""


# ---------------------------------------------------------------------------------------------
# Values


@dataclass(slots=True)
class AlertData:
    """The data of an alert template: Prometheus's AlertTemplateData (`.Labels`, `.Value`, ...)."""

    labels: Mapping[str, str]
    value: float
    external_labels: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""


_ALERT_DATA_TYPE = ("struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; "
                    "Value float64 }")
_ALERT_DATA_FIELDS = {"Labels": "labels", "ExternalLabels": "external_labels", "ExternalURL": "external_url",
                      "Value": "value"}


@dataclass(eq=False, slots=True)
class Sample:
    """One element of a `query` result, as Prometheus's templates see it (`.Labels`, `.Value`)."""

    labels: dict[str, str]
    value: float


class _QueryResult(list):  # type: ignore[type-arg]
    """Prometheus's queryResult: what `query` returns and `first`/`sortByLabel` take."""


class _AnyMap(dict):  # type: ignore[type-arg]
    """A map[string]interface{} (what `args` makes): a missing key is a nil interface, not ""."""


class _SafeHTML(str):
    """html/template.HTML, what `safeHtml` returns: a string, but not of Go type string."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _Deref:
    """The template.sample a *template.sample points to, as a template prints it."""

    sample: Sample


class _NilInterface:
    """A nil interface{} value met inside a field chain (Go tells it apart from a missing value)."""

    __slots__ = ()


_NIL_IFACE = _NilInterface()


class _Missing:
    __slots__ = ()


_MISSING = _Missing()  # "no final pipeline argument", Go's missingVal


class _GoTime:
    """A *time.Time in UTC, what `toTime` returns; prints and formats as Go's time does."""

    __slots__ = ("nsec", "sec")

    def __init__(self, sec: int, nsec: int):
        self.sec = sec
        self.nsec = nsec

    def datetime(self) -> datetime:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=self.sec)

    def format(self, layout: str) -> str:
        return _time_format(self.datetime(), self.nsec, layout)

    def __str__(self) -> str:
        return self.format("2006-01-02 15:04:05.999999999 -0700 MST")


def _go_type(v: Any) -> str:
    """The Go type name of a value, as %T and Go's error messages write it."""
    if v is None:
        return "<nil>"
    if v is True or v is False:
        return "bool"
    t = type(v)
    if t is str:
        return "string"
    if t is float:
        return "float64"
    if t is int:
        return "int"
    if t is _SafeHTML:
        return "template.HTML"
    if t is complex:
        return "complex128"
    if t is _AnyMap:
        return "map[string]interface {}"
    if isinstance(v, Mapping):
        return "map[string]string"
    if t is _QueryResult:
        return "template.queryResult"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if t is Sample:
        return "*template.sample"
    if t is _GoTime:
        return "*time.Time"
    if t is _Deref:
        return "template.sample"
    if t is AlertData:
        return _ALERT_DATA_TYPE
    if t is _NilInterface:
        return "interface {}"
    return t.__name__


def _is_map(v: Any) -> bool:
    return type(v) is dict or type(v) is _AnyMap or isinstance(v, Mapping)


def _is_slice(v: Any) -> bool:
    return type(v) is list or type(v) is _QueryResult or type(v) is tuple


def _is_true(v: Any) -> tuple[bool, bool]:
    """Go's truth: not the zero value of its type (and whether the value has a truth at all)."""
    if v is None or v is _NIL_IFACE:
        return False, True
    if v is True or v is False:
        return v, True
    t = type(v)
    if t is str or t is _SafeHTML or _is_map(v) or _is_slice(v):
        return len(v) > 0, True
    if t is int or t is float or t is complex:
        return v != 0, True
    return True, True  # structs and non-nil pointers


# ---------------------------------------------------------------------------------------------
# Go's fmt: %v and Printf on the values above


def _go_isprint(c: str) -> bool:
    return c == " " or unicodedata.category(c)[0] in "LMNPS"


def _go_quote(s: str, ascii_only: bool = False, quote: str = '"') -> str:
    """strconv.Quote (QuoteToASCII with ascii_only; QuoteRune with quote="'")."""
    out = [quote]
    for c in s:
        o = ord(c)
        if c == quote or c == "\\":
            out.append("\\" + c)
        elif (o < 0x80 and 0x20 <= o < 0x7F) or (o >= 0x80 and not ascii_only and _go_isprint(c)):
            out.append(c)
        elif c in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                        "\v": "\\v"}[c])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\\ufffd")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append(quote)
    return "".join(out)


def _go_u(c: str) -> str:
    """Go's %#U without the prefix check: `U+00E9 'é'` (the character only when printable)."""
    o = ord(c)
    return f"U+{o:04X} '{c}'" if _go_isprint(c) else f"U+{o:04X}"


def _shortest_digits(x: float) -> tuple[str, int]:
    """The shortest decimal digits that round-trip |x| (finite, non-zero) and the decimal point position:
    |x| = 0.d1d2...dn * 10**dp. Python's repr and Go's strconv pick the same digits."""
    r = repr(abs(x))
    mant, _, exp = r.partition("e")
    ip, _, fp = mant.partition(".")
    digits = ip + fp
    dp = len(ip) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    return stripped.rstrip("0"), dp


def _fmt_e_digits(digits: str, dp: int, upper: bool) -> str:
    exp = dp - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mant}{'E' if upper else 'e'}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _fmt_f_digits(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _float_text(x: float, verb: str, prec: int) -> str:
    """strconv.FormatFloat(x, verb, prec, 64), with a leading sign only for negative numbers."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if math.isnan(x):
        return "NaN"
    neg = math.copysign(1.0, x) < 0
    if verb in "gG":
        if prec < 0:
            if x == 0:
                text = "0"
            else:
                digits, dp = _shortest_digits(x)
                if dp - 1 < -4 or dp - 1 >= 6:  # Go uses %e for shortest %g when exp < -4 || exp >= 6
                    text = _fmt_e_digits(digits, dp, verb == "G")
                else:
                    text = _fmt_f_digits(digits, dp)
            return ("-" if neg else "") + text
        text = f"{abs(x):.{max(prec, 1)}{verb}}"
    elif verb in "eE":
        if prec < 0:
            digits, dp = _shortest_digits(x) if x else ("0", 1)
            text = _fmt_e_digits(digits, dp, verb == "E")
        else:
            text = f"{abs(x):.{prec}{verb}}"
    elif verb in "fF":
        text = f"{abs(x):.{prec}f}" if prec >= 0 else _fmt_f_digits(*_shortest_digits(x)) if x else "0"
    elif verb in "xX":
        text = _float_hex(abs(x), verb == "X")
    else:  # 'b'
        mant, exp = math.frexp(abs(x))
        text = f"{int(mant * (1 << 53))}p{exp - 53:+d}" if x else "0p-1074"
    return ("-" if neg else "") + text


def _float_hex(x: float, upper: bool) -> str:
    """Go's %x for a float: 0x1.8p+01 (shortest hex mantissa, exponent of at least two digits)."""
    if x == 0:
        text = "0x0p+00"
    else:
        h = x.hex()  # '0x1.8000000000000p+1'
        mant, _, exp = h.partition("p")
        mant = mant.rstrip("0").rstrip(".")
        e = int(exp)
        text = f"{mant}p{'-' if e < 0 else '+'}{abs(e):02d}"
    return text.upper() if upper else text


def _fmt_g4(x: float) -> str:
    """Go's fmt %.4g, which the humanize functions use."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if math.isnan(x):
        return "NaN"
    return f"{x:.4g}"


def _fmt_float_v(x: float) -> str:
    """Go's %v for a float64: the shortest digits that round-trip; %e form for exponents < -4 or >= 6."""
    a = abs(x)
    if 1e-4 <= a < 1e6:  # Python's repr has the same digits in the same form here (less its ".0")
        r = repr(x)
        return r[:-2] if r.endswith(".0") else r
    if 0 < a < 1e-4 or 1e16 <= a < math.inf:  # and the same %e form here
        return repr(x)
    if 1e6 <= a < 1e16:  # repr's fixed-point digits, written in Go's %e form
        ip, _, fp = repr(a).partition(".")
        digits = (ip + ("" if fp == "0" else fp)).rstrip("0")
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + f"e+{len(ip) - 1:02d}"
        return "-" + text if x < 0 else text
    return _float_text(x, "g", -1)


def _sprint_value(v: Any) -> str:
    """fmt.Sprint of one value (%v), the way a template prints an action's result."""
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if t is float:
        return _fmt_float_v(v)
    if v is True:
        return "true"
    if v is False:
        return "false"
    if t is int:
        return str(v)
    return _Printer().arg(v, "v")


class _Flags:
    __slots__ = ("minus", "plus", "plus_v", "prec", "sharp", "sharp_v", "space", "wid", "zero")

    def __init__(self) -> None:
        self.minus = self.plus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = False
        self.wid: int | None = None
        self.prec: int | None = None


class _Printer:
    """A port of the parts of Go's fmt printer that templates reach: Sprint, Sprintln and Sprintf."""

    def __init__(self) -> None:
        self.f = _Flags()

    # -- padding

    def pad(self, s: str) -> str:
        f = self.f
        if f.wid is None or f.wid <= len(s):
            return s
        fill = f.wid - len(s)
        if f.minus:
            return s + " " * fill
        return ("0" if f.zero else " ") * fill + s

    # -- scalars

    def fmt_bool(self, v: bool, verb: str) -> str:
        if verb in "tv":
            return self.pad("true" if v else "false")
        return self.bad_verb(v, verb)

    def fmt_integer(self, v: int, verb: str) -> str:
        f = self.f
        if verb in "vd":
            base = 10
        elif verb == "b":
            base = 2
        elif verb in "oO":
            base = 8
        elif verb in "xX":
            base = 16
        elif verb == "c":
            return self.pad(chr(v) if 0 <= v <= 0x10FFFF else "\ufffd")
        elif verb == "q":
            c = chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd"
            return self.pad(_go_quote(c, ascii_only=f.plus, quote="'"))
        elif verb == "U":
            text = f"U+{v:04X}" if v >= 0 else f"U+{v & 0xFFFFFFFFFFFFFFFF:04X}"
            if f.sharp and 0 <= v <= 0x10FFFF and _go_isprint(chr(v)):
                text += f" '{chr(v)}'"
            return self.pad(text)
        else:
            return self.bad_verb(v, verb)
        neg = v < 0
        digits = "" if v == 0 and f.prec == 0 else format(abs(v), {2: "b", 8: "o", 10: "d", 16: "x"}[base])
        if verb == "X":
            digits = digits.upper()
        prec = f.prec or 0
        if f.prec is None and f.zero and f.wid is not None and not f.minus:
            prec = f.wid - (1 if neg or f.plus or f.space else 0)
        if len(digits) < prec:
            digits = "0" * (prec - len(digits)) + digits
        prefix = ""
        if f.sharp:
            if base == 2:
                prefix = "0b"
            elif base == 8 and not digits.startswith("0"):
                prefix = "0"
            elif base == 16:
                prefix = "0X" if verb == "X" else "0x"
        if verb == "O":
            prefix = "0o"
        sign = "-" if neg else "+" if f.plus else " " if f.space else ""
        zero, f.zero = f.zero, False
        try:
            return self.pad(sign + prefix + digits)
        finally:
            f.zero = zero

    def fmt_float(self, v: float, verb: str) -> str:
        f = self.f
        if verb == "v":
            verb, prec = "g", -1
        elif verb in "bgGxX":
            prec = -1
        elif verb in "feEF":
            prec = 6
        else:
            return self.bad_verb(v, verb)
        if f.prec is not None:
            prec = f.prec
        num = _float_text(v, verb, prec)
        if num[0] not in "+-":
            num = "+" + num
        if f.space and num[0] == "+" and not f.plus:
            num = " " + num[1:]
        if num[1] in "IN":  # Inf and NaN are never zero padded
            if num[1] == "N" and not f.space and not f.plus:
                num = num[1:]
            zero, f.zero = f.zero, False
            try:
                return self.pad(num)
            finally:
                f.zero = zero
        if f.plus or num[0] != "+":
            if f.zero and f.wid is not None and f.wid > len(num) and not f.minus:
                return num[0] + "0" * (f.wid - len(num)) + num[1:]
            return self.pad(num)
        return self.pad(num[1:])

    def fmt_complex(self, v: complex, verb: str) -> str:
        if verb not in "vbgGxXfFeE":
            return self.bad_verb(v, verb)
        wid, plus = self.f.wid, self.f.plus
        self.f.wid = None
        try:
            real = self.fmt_float(v.real, verb)
            self.f.plus = True
            imag = self.fmt_float(v.imag, verb)
        finally:
            self.f.wid, self.f.plus = wid, plus
        return self.pad(f"({real}{imag}i)")

    def fmt_string(self, s: str, verb: str, gotype: str = "string") -> str:
        f = self.f
        if verb == "v" and f.sharp_v:
            verb = "q"
        if verb in "vs":
            return self.pad(s[: f.prec] if f.prec is not None else s)
        if verb == "q":
            s = s[: f.prec] if f.prec is not None else s
            if f.sharp and "`" not in s and all(_go_isprint(c) or c == "\t" for c in s):
                return self.pad("`" + s + "`")
            return self.pad(_go_quote(s, ascii_only=f.plus))
        if verb in "xX":
            data = s.encode("utf-8", "surrogatepass")
            if f.prec is not None:
                data = data[: f.prec]
            digits = "0123456789ABCDEF" if verb == "X" else "0123456789abcdef"
            parts = []
            for i, b in enumerate(data):
                piece = digits[b >> 4] + digits[b & 15]
                if f.sharp and (f.space or i == 0):
                    piece = ("0X" if verb == "X" else "0x") + piece
                parts.append(piece)
            return self.pad((" " if f.space else "").join(parts))
        return self.bad_verb(_SafeHTML(s) if gotype != "string" else s, verb)

    def bad_verb(self, v: Any, verb: str) -> str:
        if v is None:
            return f"%!{verb}(<nil>)"
        return f"%!{verb}({_go_type(v)}={self.arg(v, 'v')})"

    # -- any value

    def arg(self, v: Any, verb: str, depth: int = 0) -> str:
        """printArg / printValue: one argument with a verb."""
        if v is None or v is _NIL_IFACE:
            if depth > 0 or verb in "Tv":
                return self.pad("<nil>")
            return self.bad_verb(None, verb)
        if verb == "T" and depth == 0:
            return self.fmt_string(_go_type(v), "s")
        t = type(v)
        if t is str:
            return self.fmt_string(v, verb)
        if t is float:
            return self.fmt_float(v, verb)
        if v is True or v is False:
            return self.fmt_bool(v, verb)
        if t is int:
            return self.fmt_integer(v, verb)
        if t is _SafeHTML:
            return self.fmt_string(str(v), verb, "template.HTML")
        if t is complex:
            return self.fmt_complex(v, verb)
        if t is _GoTime:
            if verb in "vsxXq" and not self.f.sharp_v:
                return self.fmt_string(str(v), verb)
            return self.bad_verb(v, verb)
        if _is_map(v):
            items = sorted(v.items(), key=lambda kv: _sort_key(kv[0]))
            inner = " ".join(f"{self.arg(k, verb, depth + 1)}:{self.arg(x, verb, depth + 1)}" for k, x in items)
            return f"map[{inner}]"
        if _is_slice(v):
            return "[" + " ".join(self.arg(x, verb, depth + 1) for x in v) + "]"
        if t is AlertData:
            fields = [("Labels", v.labels), ("ExternalLabels", v.external_labels),
                      ("ExternalURL", v.external_url), ("Value", float(v.value))]
            return "{" + self.struct_fields(fields, verb, depth) + "}"
        if t is Sample:
            if depth == 0:  # a pointer to a struct prints as &{...} at the top only
                return "&{" + self.struct_fields([("Labels", v.labels), ("Value", v.value)], verb, depth) + "}"
            return self.fmt_pointer(v, verb)
        if t is _Deref:
            s = v.sample
            return "{" + self.struct_fields([("Labels", s.labels), ("Value", s.value)], verb, depth) + "}"
        return self.pad(str(v))

    def fmt_pointer(self, v: Any, verb: str) -> str:
        """A pointer below the top level prints as its address (Go's will differ from run to run)."""
        address = 0xC000000000 + (id(v) & 0xFFFFFFF)
        if verb == "v":
            return self.pad(f"0x{address:x}")
        if verb in "bodxX":
            return self.fmt_integer(address, verb)
        return f"%!{verb}({_go_type(v)}={self.arg(v, 'v')})"

    def struct_fields(self, fields: list[tuple[str, Any]], verb: str, depth: int) -> str:
        named = self.f.plus_v or self.f.sharp_v
        return " ".join((f"{name}:" if named else "") + self.arg(value, verb, depth + 1) for name, value in fields)

    # -- the entry points

    def sprint(self, args: Sequence[Any]) -> str:
        out = []
        prev_string = False
        for i, a in enumerate(args):
            is_string = type(a) is str or type(a) is _SafeHTML
            if i > 0 and not is_string and not prev_string:
                out.append(" ")
            out.append(self.arg(a, "v"))
            prev_string = is_string
        return "".join(out)

    def sprintln(self, args: Sequence[Any]) -> str:
        return " ".join(self.arg(a, "v") for a in args) + "\n"

    def sprintf(self, fmt: str, args: Sequence[Any]) -> str:
        """fmt.Sprintf; formats without `*` or `[n]` are parsed once and kept (they do not depend on args)."""
        pieces = _simple_format(fmt) if "*" not in fmt and "[" not in fmt else None
        if pieces is None:
            return self.sprintf_general(fmt, args)
        out: list[str] = []
        arg_num = 0
        for piece in pieces:
            if type(piece) is str:
                out.append(piece)
                continue
            verb, minus, plus, sharp, space, zero, wid, prec = piece
            if verb == "%":
                out.append("%")
            elif verb == "":
                out.append("%!(NOVERB)")
            elif arg_num >= len(args):
                out.append(f"%!{verb}(MISSING)")
            else:
                f = self.f = _Flags()
                f.minus, f.plus, f.sharp, f.space, f.zero, f.wid, f.prec = minus, plus, sharp, space, zero, wid, prec
                if verb == "v":
                    f.sharp_v, f.sharp = f.sharp, False
                    f.plus_v, f.plus = f.plus, False
                out.append(self.arg(args[arg_num], verb))
                arg_num += 1
        if arg_num < len(args):
            self.f = _Flags()
            extra = ", ".join("<nil>" if a is None else f"{_go_type(a)}={self.arg(a, 'v')}" for a in args[arg_num:])
            out.append(f"%!(EXTRA {extra})")
        return "".join(out)

    def sprintf_general(self, fmt: str, args: Sequence[Any]) -> str:
        out: list[str] = []
        end = len(fmt)
        arg_num = 0
        reordered = False
        i = 0
        while i < end:
            good_arg_num = True
            lasti = i
            i = fmt.find("%", i)
            if i < 0:
                i = end
            if i > lasti:
                out.append(fmt[lasti:i])
            if i >= end:
                break
            i += 1
            f = self.f = _Flags()
            while i < end:
                c = fmt[i]
                if c == "#":
                    f.sharp = True
                elif c == "0":
                    f.zero = not f.minus
                elif c == "+":
                    f.plus = True
                elif c == "-":
                    f.minus = True
                    f.zero = False
                elif c == " ":
                    f.space = True
                else:
                    break
                i += 1
            if i < end and "a" <= fmt[i] <= "z" and arg_num < len(args):  # Go's fast path: a plain verb
                verb = fmt[i]
                if verb == "v":
                    f.sharp_v, f.sharp = f.sharp, False
                    f.plus_v, f.plus = f.plus, False
                out.append(self.arg(args[arg_num], verb))
                arg_num += 1
                i += 1
                continue
            arg_num, i, after_index, reordered, ok = self._arg_number(arg_num, fmt, i, len(args), reordered)
            good_arg_num = good_arg_num and ok
            if i < end and fmt[i] == "*":
                i += 1
                f.wid, arg_num = _int_from_arg(args, arg_num)
                if f.wid is None:
                    out.append("%!(BADWIDTH)")
                elif f.wid < 0:
                    f.wid = -f.wid
                    f.minus = True
                    f.zero = False
                after_index = False
            else:
                f.wid, i = _parse_num(fmt, i, end)
                if after_index and f.wid is not None:
                    good_arg_num = False
            if i + 1 < end and fmt[i] == ".":
                i += 1
                if after_index:
                    good_arg_num = False
                arg_num, i, after_index, reordered, ok = self._arg_number(arg_num, fmt, i, len(args), reordered)
                good_arg_num = good_arg_num and ok
                if i < end and fmt[i] == "*":
                    i += 1
                    f.prec, arg_num = _int_from_arg(args, arg_num)
                    if f.prec is not None and f.prec < 0:
                        f.prec = None
                        out.append("%!(BADPREC)")
                    elif f.prec is None:
                        out.append("%!(BADPREC)")
                    after_index = False
                else:
                    f.prec, i = _parse_num(fmt, i, end)
                    if f.prec is None:
                        f.prec = 0
            if not after_index:
                arg_num, i, after_index, reordered, ok = self._arg_number(arg_num, fmt, i, len(args), reordered)
                good_arg_num = good_arg_num and ok
            if i >= end:
                out.append("%!(NOVERB)")
                break
            verb = fmt[i]
            i += 1
            if verb == "%":
                out.append("%")
            elif not good_arg_num:
                out.append(f"%!{verb}(BADINDEX)")
            elif arg_num >= len(args):
                out.append(f"%!{verb}(MISSING)")
            else:
                if verb == "v":
                    f.sharp_v, f.sharp = f.sharp, False
                    f.plus_v, f.plus = f.plus, False
                out.append(self.arg(args[arg_num], verb))
                arg_num += 1
        if not reordered and arg_num < len(args):
            self.f = _Flags()
            extra = ", ".join("<nil>" if a is None else f"{_go_type(a)}={self.arg(a, 'v')}" for a in args[arg_num:])
            out.append(f"%!(EXTRA {extra})")
        return "".join(out)

    @staticmethod
    def _arg_number(arg_num: int, fmt: str, i: int, num_args: int,
                    reordered: bool) -> tuple[int, int, bool, bool, bool]:
        """An explicit argument index `[n]`: (arg number, new i, found, reordered, index is good)."""
        if i >= len(fmt) or fmt[i] != "[":
            return arg_num, i, False, reordered, True
        close = fmt.find("]", i + 1)
        if close < 0 or len(fmt) - i < 3:
            return arg_num, i + 1, False, True, False
        num, newi = _parse_num(fmt, i + 1, close)
        if num is None or newi != close:
            return arg_num, close + 1, False, True, False
        index = num - 1
        if 0 <= index < num_args:
            return index, close + 1, True, True, True
        return arg_num, close + 1, True, True, False


@functools.lru_cache(maxsize=1024)
def _simple_format(fmt: str) -> tuple[Any, ...]:
    """A Printf format without `*` or `[n]`, split into literal text and verbs with their flags:
    (verb, minus, plus, sharp, space, zero, width, precision); verb "" is a trailing lone `%`."""
    pieces: list[Any] = []
    end = len(fmt)
    i = 0
    while i < end:
        j = fmt.find("%", i)
        if j < 0:
            pieces.append(fmt[i:])
            break
        if j > i:
            pieces.append(fmt[i:j])
        i = j + 1
        minus = plus = sharp = space = zero = False
        while i < end and fmt[i] in "#0+- ":
            c = fmt[i]
            if c == "#":
                sharp = True
            elif c == "0":
                zero = not minus
            elif c == "+":
                plus = True
            elif c == "-":
                minus, zero = True, False
            else:
                space = True
            i += 1
        wid, i = _parse_num(fmt, i, end)
        prec = None
        if i + 1 < end and fmt[i] == ".":
            prec, i = _parse_num(fmt, i + 1, end)
            if prec is None:
                prec = 0
        if i >= end:
            pieces.append(("", minus, plus, sharp, space, zero, wid, prec))
            break
        pieces.append((fmt[i], minus, plus, sharp, space, zero, wid, prec))
        i += 1
    return tuple(pieces)


def _parse_num(s: str, start: int, end: int) -> tuple[int | None, int]:
    i = start
    while i < end and "0" <= s[i] <= "9":
        i += 1
    if i == start:
        return None, start
    num = int(s[start:i])
    return (num if num <= 1_000_000 else None), i


def _int_from_arg(args: Sequence[Any], arg_num: int) -> tuple[int | None, int]:
    if arg_num >= len(args):
        return None, arg_num
    a = args[arg_num]
    if type(a) is int and abs(a) <= 1_000_000:
        return a, arg_num + 1
    return None, arg_num + 1


def _sort_key(k: Any) -> Any:
    return (0, k) if type(k) is str else (1, str(k))


# ---------------------------------------------------------------------------------------------
# Go's strconv and friends


_DEC_FLOAT = re.compile(r"[+-]?(?:[0-9_]+\.?[0-9_]*|\.[0-9_]+)(?:[eE][+-]?[0-9_]+)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F_]+\.?[0-9a-fA-F_]*|\.[0-9a-fA-F_]+)[pP][+-]?[0-9_]+")


def _underscore_ok(s: str) -> bool:
    """strconv's underscoreOK: `_` only between digits, or between a base prefix and a digit."""
    saw = "^"
    i = 0
    if s[:1] in "+-":
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1] in "bBoOxX":
        i = 2
        saw = "0"
        hexa = s[1] in "xX"
    while i < len(s):
        c = s[i]
        if "0" <= c <= "9" or (hexa and c in "abcdefABCDEF"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"


def _parse_float(s: str) -> float:
    """strconv.ParseFloat(s, 64), raising _CallError with Go's message."""
    lower = s.lower()
    body = lower[1:] if lower[:1] in "+-" else lower
    if body in ("inf", "infinity"):
        return -math.inf if lower[0] == "-" else math.inf
    if lower == "nan":
        return math.nan
    if (_DEC_FLOAT.fullmatch(s) or _HEX_FLOAT.fullmatch(s)) and any(c.isdigit() for c in s) \
            and ("_" not in s or _underscore_ok(s)):
        clean = s.replace("_", "")
        try:
            value = float.fromhex(clean) if "x" in lower else float(clean)
        except (ValueError, OverflowError):
            value = math.inf
        if math.isinf(value):
            raise _CallError(f"strconv.ParseFloat: parsing {_go_quote(s)}: value out of range")
        return value
    raise _CallError(f"strconv.ParseFloat: parsing {_go_quote(s)}: invalid syntax")


def _parse_int_base0(s: str, unsigned: bool) -> int | None:
    """strconv.ParseInt(s, 0, 64) / ParseUint: None when it fails."""
    sign = 1
    body = s
    if body[:1] in "+-":
        if unsigned:
            return None
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    base = 10
    digits = body
    if len(body) >= 2 and body[0] == "0" and body[1] in "xXoObB":
        base = {"x": 16, "o": 8, "b": 2}[body[1].lower()]
        digits = body[2:]
    elif len(body) >= 1 and body[0] == "0":
        base = 8
        digits = body[1:] or "0"
    if "_" in body and not _underscore_ok(body):
        return None
    digits = digits.replace("_", "")
    if not digits:
        return None
    try:
        n = sign * int(digits, base)
    except ValueError:
        return None
    if unsigned:
        return n if n < 1 << 64 else None
    return n if -(1 << 63) <= n < 1 << 63 else None


def _unquote(text: str) -> str:
    """strconv.Unquote of a Go string literal ("..." or `...`); ValueError("invalid syntax") if bad."""
    if len(text) < 2 or text[0] != text[-1]:
        raise ValueError("invalid syntax")
    body = text[1:-1]
    if text[0] == "`":
        if "`" in body:
            raise ValueError("invalid syntax")
        return body.replace("\r", "")
    if text[0] != '"' or "\n" in body:
        raise ValueError("invalid syntax")
    if "\\" not in body:
        if '"' in body:
            raise ValueError("invalid syntax")
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        value, i, is_byte = _unquote_char(body, i, '"')
        if is_byte:
            out.append(value)
        else:
            out += chr(value).encode("utf-8", "surrogatepass")
    return out.decode("utf-8", "replace")


_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


def _unquote_char(s: str, i: int, quote: str) -> tuple[int, int, bool]:
    """strconv.UnquoteChar: (code point or byte, next index, whether it is a single byte)."""
    c = s[i]
    if c == quote and quote in "'\"":
        raise ValueError("invalid syntax")
    if c != "\\":
        return ord(c), i + 1, False
    if i + 1 >= len(s):
        raise ValueError("invalid syntax")
    c = s[i + 1]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i + 2, False
    if c in "xuU":
        n = {"x": 2, "u": 4, "U": 8}[c]
        hexs = s[i + 2 : i + 2 + n]
        if len(hexs) < n or any(h not in "0123456789abcdefABCDEF" for h in hexs):
            raise ValueError("invalid syntax")
        v = int(hexs, 16)
        if c == "x":
            return v, i + 2 + n, True
        if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
            raise ValueError("invalid syntax")
        return v, i + 2 + n, False
    if "0" <= c <= "7":
        octs = s[i + 1 : i + 4]
        if len(octs) < 3 or any(o not in "01234567" for o in octs) or int(octs, 8) > 255:
            raise ValueError("invalid syntax")
        return int(octs, 8), i + 4, True
    if c in "'\"" and c == quote:
        return ord(c), i + 2, False
    raise ValueError("invalid syntax")


def _go_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _go_mod(a: int, b: int) -> int:
    return a - _go_div(a, b) * b


def _go_int64(v: float) -> int:
    """Go's int64(v) for a float64 (amd64: out of range gives the minimum int64)."""
    if math.isnan(v) or not -(2.0**63) <= v < 2.0**63:
        return -(1 << 63)
    return int(v)


# ---------------------------------------------------------------------------------------------
# Go's time formatting (for toTime's *time.Time)

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_STD_CHUNKS = ("January", "Jan", "Monday", "Mon", "MST", "2006", "002", "01", "02", "03", "04", "05", "06", "15",
               "__2", "_2", "1", "2", "3", "4", "5", "PM", "pm", "-07:00:00", "-070000", "-07:00", "-0700", "-07",
               "Z07:00:00", "Z070000", "Z07:00", "Z0700", "Z07")


def _next_std_chunk(layout: str, i: int) -> tuple[int, str, int]:
    """The next layout element at or after i: (start, element, end); element "" when there is none."""
    n = len(layout)
    while i < n:
        c = layout[i]
        if c in ".," and i + 1 < n and layout[i + 1] in "09":
            j = i + 1
            while j < n and layout[j] == layout[i + 1]:
                j += 1
            if not (j < n and layout[j].isdigit()):
                return i, layout[i : j], j
        if c == "_" and layout.startswith("_2006", i):
            return i + 1, "2006", i + 5
        for chunk in _STD_CHUNKS:
            if layout.startswith(chunk, i):
                end = i + len(chunk)
                if chunk in ("Jan", "Mon") and end < n and "a" <= layout[end] <= "z":
                    continue
                if chunk == "2" and layout.startswith("2006", i):
                    continue
                return i, chunk, end
        i += 1
    return n, "", n


def _time_format(dt: datetime, nsec: int, layout: str) -> str:
    """time.Time.Format for a UTC time."""
    out: list[str] = []
    i = 0
    while True:
        start, chunk, end = _next_std_chunk(layout, i)
        out.append(layout[i:start])
        if not chunk:
            return "".join(out)
        i = end
        hour12 = dt.hour % 12 or 12
        values = {
            "January": _MONTHS[dt.month - 1], "Jan": _MONTHS[dt.month - 1][:3], "Monday": _DAYS[dt.weekday()],
            "Mon": _DAYS[dt.weekday()][:3], "MST": "UTC", "2006": f"{dt.year:04d}", "06": f"{dt.year % 100:02d}",
            "01": f"{dt.month:02d}", "1": str(dt.month), "02": f"{dt.day:02d}", "2": str(dt.day),
            "_2": f"{dt.day:2d}", "002": f"{dt.timetuple().tm_yday:03d}", "__2": f"{dt.timetuple().tm_yday:3d}",
            "15": f"{dt.hour:02d}", "3": str(hour12), "03": f"{hour12:02d}", "04": f"{dt.minute:02d}",
            "4": str(dt.minute), "05": f"{dt.second:02d}", "5": str(dt.second), "PM": "PM" if dt.hour >= 12 else "AM",
            "pm": "pm" if dt.hour >= 12 else "am", "-07:00:00": "+00:00:00", "-070000": "+000000",
            "-07:00": "+00:00", "-0700": "+0000", "-07": "+00",
        }
        if chunk in values:
            out.append(values[chunk])
        elif chunk.startswith("Z"):
            out.append("Z")
        else:  # fractional seconds: ".000" fixed width, ".999" without trailing zeros
            digits = f"{nsec:09d}"[: len(chunk) - 1]
            if chunk[1] == "9":
                digits = digits.rstrip("0")
                if digits:
                    out.append(chunk[0] + digits)
            else:
                out.append(chunk[0] + digits)


def _time_from_float(v: float) -> _GoTime:
    """model.TimeFromUnixNano(int64(v*1e9)).Time().UTC(): a time to the millisecond."""
    ns = v * 1e9
    if ns > 2.0**63 - 1 or ns < -(2.0**63):
        raise _CallError(f"{_fmt_float_v(v)} cannot be represented as a nanoseconds timestamp since it overflows int64")
    ms = _go_div(_go_int64(ns), 1_000_000)
    sec = _go_div(ms, 1000)
    nsec = _go_mod(ms, 1000) * 1_000_000
    if nsec < 0:
        sec -= 1
        nsec += 1_000_000_000
    return _GoTime(sec, nsec)


# ---------------------------------------------------------------------------------------------
# Lexer (text/template/parse/lex.go)

(_I_ERROR, _I_BOOL, _I_CHAR, _I_CHARCONST, _I_COMPLEX, _I_ASSIGN, _I_DECLARE, _I_EOF, _I_FIELD, _I_IDENT,
 _I_LDELIM, _I_LPAREN, _I_NUMBER, _I_PIPE, _I_RAWSTRING, _I_RDELIM, _I_RPAREN, _I_SPACE, _I_STRING, _I_TEXT,
 _I_VARIABLE, _I_KEYWORD, _I_BLOCK, _I_BREAK, _I_CONTINUE, _I_DOT, _I_DEFINE, _I_ELSE, _I_END, _I_IF, _I_NIL,
 _I_RANGE, _I_TEMPLATE, _I_WITH) = range(34)

_KEYWORDS = {".": _I_DOT, "block": _I_BLOCK, "break": _I_BREAK, "continue": _I_CONTINUE, "define": _I_DEFINE,
             "else": _I_ELSE, "end": _I_END, "if": _I_IF, "range": _I_RANGE, "nil": _I_NIL,
             "template": _I_TEMPLATE, "with": _I_WITH}

_SPACE_CHARS = " \t\r\n"


@dataclass(slots=True)
class _Item:
    typ: int
    pos: int
    val: str
    line: int

    def __str__(self) -> str:
        if self.typ == _I_EOF:
            return "EOF"
        if self.typ == _I_ERROR:
            return self.val
        if self.typ > _I_KEYWORD:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return _go_quote(self.val[:10]) + "..."
        return _go_quote(self.val)


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or c.isdecimal()


def _has_left_trim(s: str, i: int) -> bool:
    return i + 1 < len(s) and s[i] == "-" and s[i + 1] in _SPACE_CHARS


def _has_right_trim(s: str, i: int) -> bool:
    return i + 1 < len(s) and s[i] in _SPACE_CHARS and s[i + 1] == "-"


class _Lexer:
    """Go's template lexer, run to the end (or the first error) up front; the parser reads the items."""

    def __init__(self, text: str):
        self.input = text
        self.pos = 0
        self.start = 0
        self.paren_depth = 0
        self.items: list[_Item] = []

    def run(self) -> list[_Item]:
        state: Callable[[], Any] | None = self.lex_text
        while state is not None:
            state = state()
        return self.items

    def line_of(self, pos: int) -> int:
        return 1 + self.input.count("\n", 0, pos)

    def next(self) -> str:
        if self.pos >= len(self.input):
            self.pos = len(self.input) + 1  # remember that EOF was read (backup is then a no-op)
            return ""
        c = self.input[self.pos]
        self.pos += 1
        return c

    def backup(self) -> None:
        if self.pos > len(self.input):
            self.pos = len(self.input)
        elif self.pos > 0:
            self.pos -= 1

    def peek(self) -> str:
        return self.input[self.pos] if self.pos < len(self.input) else ""

    def emit(self, typ: int) -> Callable[[], Any]:
        end = min(self.pos, len(self.input))
        self.items.append(_Item(typ, self.start, self.input[self.start : end], self.line_of(self.start)))
        self.start = end
        return self.lex_inside_action

    def errorf(self, message: str) -> None:
        self.items.append(_Item(_I_ERROR, self.start, message, self.line_of(self.start)))

    def accept(self, valid: str) -> bool:
        c = self.next()
        if c and c in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            c = self.next()
            if not c or c not in valid:
                self.backup()
                return

    def at_right_delim(self) -> tuple[bool, bool]:
        if _has_right_trim(self.input, self.pos) and self.input.startswith("}}", self.pos + 2):
            return True, True
        return self.input.startswith("}}", self.pos), False

    def at_terminator(self) -> bool:
        c = self.peek()
        return c == "" or c in _SPACE_CHARS or c in ".,|:)(}"

    # -- states

    def lex_text(self) -> Callable[[], Any] | None:
        text = self.input
        x = text.find("{{", self.pos)
        if x >= 0:
            if x > self.pos:
                self.pos = x
                trim = 0
                if _has_left_trim(text, x + 2):
                    segment = text[self.start : x]
                    trim = len(segment) - len(segment.rstrip(_SPACE_CHARS))
                self.pos -= trim
                if self.pos > self.start:
                    self.items.append(_Item(_I_TEXT, self.start, text[self.start : self.pos],
                                            self.line_of(self.start)))
                self.pos += trim
                self.start = self.pos
            return self.lex_left_delim
        self.pos = len(text)
        if self.pos > self.start:
            self.items.append(_Item(_I_TEXT, self.start, text[self.start :], self.line_of(self.start)))
            self.start = self.pos
        self.items.append(_Item(_I_EOF, self.pos, "", self.line_of(self.pos)))
        return None

    def lex_left_delim(self) -> Callable[[], Any] | None:
        self.pos += 2
        trim = _has_left_trim(self.input, self.pos)
        after = 2 if trim else 0
        if self.input.startswith("/*", self.pos + after):
            self.pos += after
            self.start = self.pos
            return self.lex_comment
        self.emit(_I_LDELIM)
        self.pos += after
        self.start = self.pos
        self.paren_depth = 0
        return self.lex_inside_action

    def lex_comment(self) -> Callable[[], Any] | None:
        self.pos += 2
        x = self.input.find("*/", self.pos)
        if x < 0:
            return self.errorf("unclosed comment")
        self.pos = x + 2
        delim, trim = self.at_right_delim()
        if not delim:
            return self.errorf("comment ends before closing delimiter")
        if trim:
            self.pos += 2
        self.pos += 2
        if trim:
            self.pos = len(self.input) - len(self.input[self.pos :].lstrip(_SPACE_CHARS))
        self.start = self.pos
        return self.lex_text

    def lex_right_delim(self) -> Callable[[], Any] | None:
        _, trim = self.at_right_delim()
        if trim:
            self.pos += 2
            self.start = self.pos
        self.pos += 2
        self.emit(_I_RDELIM)
        if trim:
            self.pos = len(self.input) - len(self.input[self.pos :].lstrip(_SPACE_CHARS))
            self.start = self.pos
        return self.lex_text

    def lex_inside_action(self) -> Callable[[], Any] | None:
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim
            return self.errorf("unclosed left paren")
        c = self.next()
        if c == "":
            return self.errorf("unclosed action")
        if c in _SPACE_CHARS:
            self.backup()
            return self.lex_space
        if c == "=":
            return self.emit(_I_ASSIGN)
        if c == ":":
            if self.next() != "=":
                return self.errorf("expected :=")
            return self.emit(_I_DECLARE)
        if c == "|":
            return self.emit(_I_PIPE)
        if c == '"':
            return self.lex_quote
        if c == "`":
            return self.lex_raw_quote
        if c == "$":
            return self.lex_variable
        if c == "'":
            return self.lex_char
        if c == "." and self.pos < len(self.input) and not "0" <= self.input[self.pos] <= "9":
            return self.lex_field
        if c in "+-." or "0" <= c <= "9":
            self.backup()
            return self.lex_number
        if _is_alnum(c):
            self.backup()
            return self.lex_identifier
        if c == "(":
            self.emit(_I_LPAREN)
            self.paren_depth += 1
            return self.lex_inside_action
        if c == ")":
            self.emit(_I_RPAREN)
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.errorf("unexpected right paren U+0029 ')'")
            return self.lex_inside_action
        if ord(c) < 0x7F and c >= " ":
            return self.emit(_I_CHAR)
        return self.errorf(f"unrecognized character in action: {_go_u(c)}")

    def lex_space(self) -> Callable[[], Any] | None:
        num = 0
        while self.peek() and self.peek() in _SPACE_CHARS:
            self.next()
            num += 1
        if _has_right_trim(self.input, self.pos - 1) and self.input.startswith("}}", self.pos + 1):
            self.backup()
            if num == 1:
                return self.lex_right_delim
        return self.emit(_I_SPACE)

    def lex_identifier(self) -> Callable[[], Any] | None:
        while True:
            c = self.next()
            if c and _is_alnum(c):
                continue
            self.backup()
            word = self.input[self.start : self.pos]
            if not self.at_terminator():
                return self.errorf(f"bad character {_go_u(c)}")
            if word in _KEYWORDS and _KEYWORDS[word] > _I_KEYWORD:
                return self.emit(_KEYWORDS[word])
            if word in ("true", "false"):
                return self.emit(_I_BOOL)
            return self.emit(_I_IDENT)

    def lex_field(self) -> Callable[[], Any] | None:
        return self.lex_field_or_variable(_I_FIELD)

    def lex_variable(self) -> Callable[[], Any] | None:
        if self.at_terminator():
            return self.emit(_I_VARIABLE)
        return self.lex_field_or_variable(_I_VARIABLE)

    def lex_field_or_variable(self, typ: int) -> Callable[[], Any] | None:
        if self.at_terminator():
            return self.emit(_I_VARIABLE if typ == _I_VARIABLE else _I_DOT)
        c = ""
        while True:
            c = self.next()
            if not c or not _is_alnum(c):
                self.backup()
                break
        if not self.at_terminator():
            return self.errorf(f"bad character {_go_u(c)}")
        return self.emit(typ)

    def lex_char(self) -> Callable[[], Any] | None:
        while True:
            c = self.next()
            if c == "\\":
                c2 = self.next()
                if c2 and c2 != "\n":
                    continue
                return self.errorf("unterminated character constant")
            if c in ("", "\n"):
                return self.errorf("unterminated character constant")
            if c == "'":
                return self.emit(_I_CHARCONST)

    def lex_number(self) -> Callable[[], Any] | None:
        if not self.scan_number():
            return self.errorf(f"bad number syntax: {_go_quote(self.input[self.start : self.pos])}")
        if self.peek() in ("+", "-"):
            if not self.scan_number() or self.input[self.pos - 1] != "i":
                return self.errorf(f"bad number syntax: {_go_quote(self.input[self.start : self.pos])}")
            return self.emit(_I_COMPLEX)
        return self.emit(_I_NUMBER)

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        c = self.peek()
        if c and _is_alnum(c):
            self.next()
            return False
        return True

    def lex_quote(self) -> Callable[[], Any] | None:
        while True:
            c = self.next()
            if c == "\\":
                c2 = self.next()
                if c2 and c2 != "\n":
                    continue
                return self.errorf("unterminated quoted string")
            if c in ("", "\n"):
                return self.errorf("unterminated quoted string")
            if c == '"':
                return self.emit(_I_STRING)

    def lex_raw_quote(self) -> Callable[[], Any] | None:
        while True:
            c = self.next()
            if c == "":
                return self.errorf("unterminated raw quoted string")
            if c == "`":
                return self.emit(_I_RAWSTRING)


# ---------------------------------------------------------------------------------------------
# Parse tree (text/template/parse/node.go) and parser (parse.go)


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int):
        self.pos = pos


class _ListNode(_Node):
    __slots__ = ("nodes",)

    def __init__(self, pos: int):
        super().__init__(pos)
        self.nodes: list[_Node] = []

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


class _TextNode(_Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str):
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return self.text


class _PipeNode(_Node):
    __slots__ = ("cmds", "decl", "is_assign")

    def __init__(self, pos: int):
        super().__init__(pos)
        self.is_assign = False
        self.decl: list[_VariableNode] = []
        self.cmds: list[_CommandNode] = []

    def __str__(self) -> str:
        decl = ", ".join(str(v) for v in self.decl) + " := " if self.decl else ""
        return decl + " | ".join(str(c) for c in self.cmds)


class _ActionNode(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos: int, pipe: _PipeNode):
        super().__init__(pos)
        self.pipe = pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class _CommandNode(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int):
        super().__init__(pos)
        self.args: list[_Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if type(a) is _PipeNode else str(a) for a in self.args)


class _IdentifierNode(_Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, ident: str):
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return self.ident


class _VariableNode(_Node):
    __slots__ = ("hint", "ident")

    def __init__(self, pos: int, ident: str, hint: int = -1):
        super().__init__(pos)
        self.ident = ident.split(".")
        self.hint = hint  # where the variable is on the stack when the tree's scopes run as parsed

    def __str__(self) -> str:
        return ".".join(self.ident)


class _DotNode(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "."


class _NilNode(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "nil"


class _FieldNode(_Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, ident: str):
        super().__init__(pos)
        self.ident = ident[1:].split(".")

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


class _ChainNode(_Node):
    __slots__ = ("field", "node")

    def __init__(self, pos: int, node: _Node):
        super().__init__(pos)
        self.node = node
        self.field: list[str] = []

    def __str__(self) -> str:
        base = f"({self.node})" if type(self.node) is _PipeNode else str(self.node)
        return base + "".join("." + f for f in self.field)


class _BoolNode(_Node):
    __slots__ = ("true",)

    def __init__(self, pos: int, true: bool):
        super().__init__(pos)
        self.true = true

    def __str__(self) -> str:
        return "true" if self.true else "false"


class _NumberNode(_Node):
    __slots__ = ("complex128", "float64", "ideal", "int64", "is_complex", "is_float", "is_int", "is_uint", "text",
                 "uint64")

    def __init__(self, pos: int, text: str):
        super().__init__(pos)
        self.text = text
        self.is_int = self.is_uint = self.is_float = self.is_complex = False
        self.int64 = self.uint64 = 0
        self.float64 = 0.0
        self.complex128 = 0j
        self.ideal: Any = None  # the value where no type is expected (set by _new_number)

    def set_ideal(self) -> _NumberNode:
        """Go's idealConstant, decided once: complex, then float if written like one, then int.
        _MISSING stands for Go's "overflows int" error (an unsigned value too large for int)."""
        text = self.text
        is_hex_int = len(text) > 2 and text[0] == "0" and text[1] in "xX" and not any(p in text for p in "pP")
        if self.is_complex:
            self.ideal = self.complex128
        elif self.is_float and not is_hex_int and not text.startswith("'") and any(c in text for c in ".eEpP"):
            self.ideal = self.float64
        elif self.is_int:
            self.ideal = self.int64
        elif self.is_uint:
            self.ideal = _MISSING
        return self

    def __str__(self) -> str:
        return self.text


class _StringNode(_Node):
    __slots__ = ("quoted", "text")

    def __init__(self, pos: int, quoted: str, text: str):
        super().__init__(pos)
        self.quoted = quoted
        self.text = text

    def __str__(self) -> str:
        return self.quoted


class _EndNode(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{end}}"


class _ElseNode(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{else}}"


class _BranchNode(_Node):
    __slots__ = ("else_list", "list", "pipe")
    keyword = ""

    def __init__(self, pos: int, pipe: _PipeNode, lst: _ListNode, else_list: _ListNode | None):
        super().__init__(pos)
        self.pipe = pipe
        self.list = lst
        self.else_list = else_list

    def __str__(self) -> str:
        text = "{{" + self.keyword + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            text += "{{else}}" + str(self.else_list)
        return text + "{{end}}"


class _IfNode(_BranchNode):
    __slots__ = ()
    keyword = "if"


class _RangeNode(_BranchNode):
    __slots__ = ()
    keyword = "range"


class _WithNode(_BranchNode):
    __slots__ = ()
    keyword = "with"


class _TemplateNode(_Node):
    __slots__ = ("name", "pipe")

    def __init__(self, pos: int, name: str, pipe: _PipeNode | None):
        super().__init__(pos)
        self.name = name
        self.pipe = pipe

    def __str__(self) -> str:
        pipe = " " + str(self.pipe) if self.pipe is not None else ""
        return "{{template " + _go_quote(self.name) + pipe + "}}"


class _BreakNode(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{break}}"


class _ContinueNode(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{continue}}"


def _new_number(pos: int, text: str, typ: int) -> _NumberNode:
    """parse.newNumber: a literal's value under every type that can hold it (Go's ideal constants)."""
    n = _NumberNode(pos, text)
    if typ == _I_CHARCONST:
        try:
            value, end, _ = _unquote_char(text, 1, "'")
        except (ValueError, IndexError):
            raise ValueError("invalid syntax") from None
        if text[end:] != "'":
            raise ValueError(f"malformed character constant: {text}")
        n.int64 = n.uint64 = value
        n.float64 = float(value)
        n.is_int = n.is_uint = n.is_float = True
        return n.set_ideal()
    if typ == _I_COMPLEX:
        z = _parse_complex(text)
        if z is None:
            raise ValueError(f"expected integer; found {text}")
        n.is_complex = True
        n.complex128 = z
        _simplify_complex(n)
        return n.set_ideal()
    if text.endswith("i"):
        try:
            f = _parse_float(text[:-1])
        except _CallError:
            f = None
        if f is not None:
            n.is_complex = True
            n.complex128 = complex(0, f)
            _simplify_complex(n)
            return n.set_ideal()
    u = _parse_int_base0(text, unsigned=True)
    if u is not None:
        n.is_uint = True
        n.uint64 = u
    i = _parse_int_base0(text, unsigned=False)
    if i is not None:
        n.is_int = True
        n.int64 = i
        if i == 0:
            n.is_uint = True
            n.uint64 = u or 0
    if n.is_int:
        n.is_float = True
        n.float64 = float(n.int64)
    elif n.is_uint:
        n.is_float = True
        n.float64 = float(n.uint64)
    else:
        try:
            f = _parse_float(text)
        except _CallError:
            f = None
        if f is not None:
            if not any(c in text for c in ".eEpP"):
                raise ValueError(f"integer overflow: {_go_quote(text)}")
            n.is_float = True
            n.float64 = f
            if math.isfinite(f) and f == int(f) and -(2**63) <= f < 2**63:
                n.is_int = True
                n.int64 = int(f)
            if math.isfinite(f) and f == int(f) and 0 <= f < 2**64:
                n.is_uint = True
                n.uint64 = int(f)
    if not (n.is_int or n.is_uint or n.is_float):
        raise ValueError(f"illegal number syntax: {_go_quote(text)}")
    return n.set_ideal()


def _parse_complex(text: str) -> complex | None:
    """fmt.Sscan of a complex constant such as 1+2i."""
    for k in range(len(text) - 1, 0, -1):
        if text[k] in "+-" and text[k - 1] not in "eEpP":
            try:
                return complex(_parse_float(text[:k]), _parse_float(text[k:-1]))
            except _CallError:
                return None
    return None


def _simplify_complex(n: _NumberNode) -> None:
    n.is_float = n.complex128.imag == 0
    if n.is_float:
        f = n.complex128.real
        n.float64 = f
        finite = math.isfinite(f)
        n.is_int = finite and f == int(f) and -(2**63) <= f < 2**63
        if n.is_int:
            n.int64 = int(f)
        n.is_uint = finite and f == int(f) and 0 <= f < 2**64
        if n.is_uint:
            n.uint64 = int(f)


class _ParseError(Exception):
    """Go's parse error text; the parser raises it where Go's panics."""


class _Tree:
    """One parsed template (the main one or a {{define}}) and, while parsing, the parser's state."""

    def __init__(self, name: str, parse_name: str, items: list[_Item], cursor: list[int],
                 tree_set: dict[str, _Tree], funcs: Mapping[str, Any]):
        self.name = name
        self.parse_name = parse_name
        self.root: _ListNode | None = None
        self.items = items
        self.cursor = cursor  # shared with the trees of {{define}}s: one lexer for the whole text
        self.tree_set = tree_set
        self.funcs = funcs
        self.token: list[_Item] = [items[0], items[0], items[0]]
        self.peek_count = 0
        self.vars = ["$"]
        self.action_line = 0
        self.range_depth = 0
        self.paren_depth = 0

    # -- token stream (three-token lookahead, as Go's)

    def lex_next(self) -> _Item:
        i = self.cursor[0]
        if i < len(self.items) - 1:
            self.cursor[0] = i + 1
        return self.items[i]

    def next(self) -> _Item:
        if self.peek_count > 0:
            self.peek_count -= 1
        else:
            self.token[0] = self.lex_next()
        return self.token[self.peek_count]

    def backup(self) -> None:
        self.peek_count += 1

    def backup2(self, t1: _Item) -> None:
        self.token[1] = t1
        self.peek_count = 2

    def backup3(self, t2: _Item, t1: _Item) -> None:
        self.token[1] = t1
        self.token[2] = t2
        self.peek_count = 3

    def peek(self) -> _Item:
        if self.peek_count > 0:
            return self.token[self.peek_count - 1]
        self.peek_count = 1
        self.token[0] = self.lex_next()
        return self.token[0]

    def next_non_space(self) -> _Item:
        while True:
            token = self.next()
            if token.typ != _I_SPACE:
                return token

    def peek_non_space(self) -> _Item:
        token = self.next_non_space()
        self.backup()
        return token

    # -- errors

    def errorf(self, message: str) -> _ParseError:
        return _ParseError(f"template: {self.parse_name}:{self.token[0].line}: {message}")

    def expect(self, expected: int, context: str) -> _Item:
        token = self.next_non_space()
        if token.typ != expected:
            raise self.unexpected(token, context)
        return token

    def expect_one_of(self, expected1: int, expected2: int, context: str) -> _Item:
        token = self.next_non_space()
        if token.typ not in (expected1, expected2):
            raise self.unexpected(token, context)
        return token

    def unexpected(self, token: _Item, context: str) -> _ParseError:
        if token.typ == _I_ERROR:
            extra = ""
            if self.action_line != 0 and self.action_line != token.line:
                extra = f" in action started at {self.parse_name}:{self.action_line}"
                if token.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            return self.errorf(f"{token}{extra}")
        return self.errorf(f"unexpected {token} in {context}")

    # -- grammar

    def parse(self) -> None:
        self.root = _ListNode(self.peek().pos)
        while self.peek().typ != _I_EOF:
            if self.peek().typ == _I_LDELIM:
                delim = self.next()
                if self.next_non_space().typ == _I_DEFINE:
                    new = _Tree("definition", self.parse_name, self.items, self.cursor, self.tree_set, self.funcs)
                    new.parse_definition()
                    continue
                self.backup2(delim)
            n = self.text_or_action()
            if isinstance(n, (_EndNode, _ElseNode)):
                raise self.errorf(f"unexpected {n}")
            self.root.nodes.append(n)

    def add(self) -> None:
        tree = self.tree_set.get(self.name)
        if tree is None or _is_empty_tree(tree.root):
            self.tree_set[self.name] = self
            return
        if not _is_empty_tree(self.root):
            raise self.errorf(f"template: multiple definition of template {_go_quote(self.name)}")

    def parse_definition(self) -> None:
        context = "define clause"
        name = self.expect_one_of(_I_STRING, _I_RAWSTRING, context)
        try:
            self.name = _unquote(name.val)
        except ValueError as exc:
            raise self.errorf(str(exc)) from None
        self.expect(_I_RDELIM, context)
        self.root, end = self.item_list()
        if not isinstance(end, _EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        self.add()

    def item_list(self) -> tuple[_ListNode, _Node]:
        lst = _ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != _I_EOF:
            n = self.text_or_action()
            if isinstance(n, (_EndNode, _ElseNode)):
                return lst, n
            lst.nodes.append(n)
        raise self.errorf("unexpected EOF")

    def text_or_action(self) -> _Node:
        token = self.next_non_space()
        if token.typ == _I_TEXT:
            return _TextNode(token.pos, token.val)
        if token.typ == _I_LDELIM:
            self.action_line = token.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        raise self.unexpected(token, "input")

    def action(self) -> _Node:
        token = self.next_non_space()
        typ = token.typ
        if typ == _I_BLOCK:
            return self.block_control()
        if typ == _I_BREAK:
            return self.break_control(token, "break")
        if typ == _I_CONTINUE:
            return self.break_control(token, "continue")
        if typ == _I_ELSE:
            return self.else_control()
        if typ == _I_END:
            return _EndNode(self.expect(_I_RDELIM, "end").pos)
        if typ == _I_IF:
            return _IfNode(*self.parse_control("if"))
        if typ == _I_RANGE:
            return _RangeNode(*self.parse_control("range"))
        if typ == _I_TEMPLATE:
            return self.template_control()
        if typ == _I_WITH:
            return _WithNode(*self.parse_control("with"))
        self.backup()
        token = self.peek()
        return _ActionNode(token.pos, self.pipeline("command", _I_RDELIM))

    def break_control(self, token: _Item, word: str) -> _Node:
        after = self.next_non_space()
        if after.typ != _I_RDELIM:
            raise self.unexpected(after, "{{" + word + "}}")
        if self.range_depth == 0:
            raise self.errorf("{{" + word + "}} outside {{range}}")
        return _BreakNode(token.pos) if word == "break" else _ContinueNode(token.pos)

    def pipeline(self, context: str, end: int) -> _PipeNode:
        pipe = _PipeNode(self.peek_non_space().pos)
        while True:  # declarations (Go's "goto decls")
            v = self.peek_non_space()
            if v.typ != _I_VARIABLE:
                break
            self.next()
            token_after_variable = self.peek()
            nxt = self.peek_non_space()
            if nxt.typ in (_I_ASSIGN, _I_DECLARE):
                pipe.is_assign = nxt.typ == _I_ASSIGN
                self.next_non_space()
                pipe.decl.append(_VariableNode(v.pos, v.val, len(self.vars)))
                self.vars.append(v.val)
            elif nxt.typ == _I_CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(_VariableNode(v.pos, v.val, len(self.vars)))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (_I_VARIABLE, _I_RDELIM, _I_RPAREN):
                        continue
                    raise self.errorf("range can only initialize variables")
                raise self.errorf(f"too many declarations in {context}")
            elif token_after_variable.typ == _I_SPACE:
                self.backup3(v, token_after_variable)
            else:
                self.backup2(v)
            break
        while True:
            token = self.next_non_space()
            if token.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.typ in (_I_BOOL, _I_CHARCONST, _I_COMPLEX, _I_DOT, _I_FIELD, _I_IDENT, _I_NUMBER, _I_NIL,
                             _I_RAWSTRING, _I_STRING, _I_VARIABLE, _I_LPAREN):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(token, context)

    def check_pipeline(self, pipe: _PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.errorf(f"missing value for {context}")
        for i, c in enumerate(pipe.cmds[1:]):
            if isinstance(c.args[0], (_BoolNode, _DotNode, _NilNode, _NumberNode, _StringNode)):
                raise self.errorf(f"non executable command in pipeline stage {i + 2}")

    def parse_control(self, context: str) -> tuple[int, _PipeNode, _ListNode, _ListNode | None]:
        nvars = len(self.vars)
        try:
            pipe = self.pipeline(context, _I_RDELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list = None
            if isinstance(nxt, _ElseNode):
                if context == "if" and self.peek().typ == _I_IF:
                    # {{if a}}_{{else if b}}_{{end}} is {{if a}}_{{else}}{{if b}}_{{end}}{{end}}.
                    self.next()
                    else_list = _ListNode(nxt.pos)
                    else_list.nodes.append(_IfNode(*self.parse_control("if")))
                else:
                    else_list, nxt = self.item_list()
                    if not isinstance(nxt, _EndNode):
                        raise self.errorf(f"expected end; found {nxt}")
            return pipe.pos, pipe, lst, else_list
        finally:
            del self.vars[nvars:]

    def else_control(self) -> _Node:
        peek = self.peek_non_space()
        if peek.typ == _I_IF:
            return _ElseNode(peek.pos)
        return _ElseNode(self.expect(_I_RDELIM, "else").pos)

    def block_control(self) -> _Node:
        context = "block clause"
        token = self.next_non_space()
        name = self.parse_template_name(token, context)
        pipe = self.pipeline(context, _I_RDELIM)
        block = _Tree(name, self.parse_name, self.items, self.cursor, self.tree_set, self.funcs)
        block.root, end = block.item_list()
        if not isinstance(end, _EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        block.add()
        return _TemplateNode(token.pos, name, pipe)

    def template_control(self) -> _Node:
        context = "template clause"
        token = self.next_non_space()
        name = self.parse_template_name(token, context)
        pipe = None
        if self.next_non_space().typ != _I_RDELIM:
            self.backup()
            pipe = self.pipeline(context, _I_RDELIM)
        return _TemplateNode(token.pos, name, pipe)

    def parse_template_name(self, token: _Item, context: str) -> str:
        if token.typ in (_I_STRING, _I_RAWSTRING):
            try:
                return _unquote(token.val)
            except ValueError as exc:
                raise self.errorf(str(exc)) from None
        raise self.unexpected(token, context)

    def command(self) -> _CommandNode:
        cmd = _CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.typ == _I_SPACE:
                continue
            if token.typ in (_I_RDELIM, _I_RPAREN):
                self.backup()
            elif token.typ != _I_PIPE:
                raise self.unexpected(token, "operand")
            break
        if not cmd.args:
            raise self.errorf("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == _I_FIELD:
            chain = _ChainNode(self.peek().pos, node)
            while self.peek().typ == _I_FIELD:
                chain.field.append(self.next().val[1:])
            if isinstance(node, _FieldNode):
                return _FieldNode(chain.pos, str(chain))
            if isinstance(node, _VariableNode):
                return _VariableNode(chain.pos, str(chain), node.hint)
            if isinstance(node, (_BoolNode, _StringNode, _NumberNode, _NilNode, _DotNode)):
                raise self.errorf(f"unexpected . after term {_go_quote(str(node))}")
            return chain
        return node

    def term(self) -> _Node | None:
        token = self.next_non_space()
        typ = token.typ
        if typ == _I_IDENT:
            if token.val not in self.funcs:
                raise self.errorf(f"function {_go_quote(token.val)} not defined")
            return _IdentifierNode(token.pos, token.val)
        if typ == _I_DOT:
            return _DotNode(token.pos)
        if typ == _I_NIL:
            return _NilNode(token.pos)
        if typ == _I_VARIABLE:
            return self.use_var(token.pos, token.val)
        if typ == _I_FIELD:
            return _FieldNode(token.pos, token.val)
        if typ == _I_BOOL:
            return _BoolNode(token.pos, token.val == "true")
        if typ in (_I_CHARCONST, _I_COMPLEX, _I_NUMBER):
            try:
                return _new_number(token.pos, token.val, typ)
            except ValueError as exc:
                raise self.errorf(str(exc)) from None
        if typ == _I_LPAREN:
            if self.paren_depth >= _MAX_PAREN_DEPTH:
                raise self.errorf("max expression depth exceeded")
            self.paren_depth += 1
            try:
                return self.pipeline("parenthesized pipeline", _I_RPAREN)
            finally:
                self.paren_depth -= 1
        if typ in (_I_STRING, _I_RAWSTRING):
            try:
                return _StringNode(token.pos, token.val, _unquote(token.val))
            except ValueError as exc:
                raise self.errorf(str(exc)) from None
        self.backup()
        return None

    def use_var(self, pos: int, name: str) -> _Node:
        first = name.split(".", 1)[0]
        for index in range(len(self.vars) - 1, -1, -1):
            if self.vars[index] == first:
                return _VariableNode(pos, name, index)
        raise self.errorf(f"undefined variable {_go_quote(first)}")


def _is_empty_tree(n: _Node | None) -> bool:
    if n is None:
        return True
    if isinstance(n, _ListNode):
        return all(_is_empty_tree(x) for x in n.nodes)
    if isinstance(n, _TextNode):
        return not n.text.strip(" \t\n\r\v\f")
    return False


# ---------------------------------------------------------------------------------------------
# Template functions: Go's builtins (text/template/funcs.go) and Prometheus's (template/template.go)


@dataclass(frozen=True, slots=True)
class _Func:
    """A template function with its Go signature: parameter types ("string", "float64", "int", "any" for
    interface{}, "value" for reflect.Value, "*sample", "queryResult"); the last one repeats if variadic."""

    fn: Callable[..., Any]
    params: tuple[str, ...]
    variadic: bool = False
    needs_state: bool = False  # gets the executing state first (query, externalURL, pathPrefix)


_GO_PARAM_TYPES = {"string": "string", "float64": "float64", "int": "int", "bool": "bool", "any": "interface {}",
                   "value": "reflect.Value", "*sample": "*template.sample", "queryResult": "template.queryResult"}


def _assignable(v: Any, typ: str) -> bool:
    if typ == "any" or typ == "value":
        return True
    t = type(v)
    if typ == "string":
        return t is str
    if typ == "float64":
        return t is float
    if typ == "int":
        return t is int
    if typ == "bool":
        return t is bool
    if typ == "*sample":
        return t is Sample
    return t is _QueryResult


def _basic_kind(v: Any) -> str:
    if v is True or v is False:
        return "bool"
    t = type(v)
    if t is int:
        return "int"
    if t is float:
        return "float"
    if t is str or t is _SafeHTML:
        return "string"
    if t is complex:
        return "complex"
    return ""


def _comparable(v: Any) -> bool:
    return not (_is_map(v) or _is_slice(v) or type(v) is AlertData)


def _eq(arg1: Any, *arg2: Any) -> bool:
    if not arg2:
        raise _CallError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in arg2:
        k2 = _basic_kind(arg)
        if k1 != k2:
            if arg1 is not None and arg is not None:
                raise _CallError("incompatible types for comparison")
            truth = False
        elif k1:
            truth = arg1 == arg
        else:
            if arg1 is None or arg is None:
                truth = (arg1 is None) == (arg is None)
            elif _kind_name(arg1) != _kind_name(arg):
                raise _CallError(f"non-comparable types {_Printer().arg(arg1, 's')}: {_go_type(arg1)}, "
                                 f"{_go_type(arg)}: {_sprint_value(arg)}")
            elif not _comparable(arg):
                raise _CallError(f"non-comparable type {_Printer().arg(arg, 's')}: {_go_type(arg)}")
            else:
                truth = arg1 is arg
        if truth:
            return True
    return False


def _kind_name(v: Any) -> str:
    if _is_map(v):
        return "map"
    if _is_slice(v):
        return "slice"
    if type(v) is AlertData:
        return "struct"
    return "ptr"


def _ne(arg1: Any, arg2: Any) -> bool:
    return not _eq(arg1, arg2)


def _lt(arg1: Any, arg2: Any) -> bool:
    k1 = _basic_kind(arg1)
    k2 = _basic_kind(arg2)
    if not k1 or not k2:
        raise _CallError("invalid type for comparison")
    if k1 != k2:
        raise _CallError("incompatible types for comparison")
    if k1 in ("bool", "complex"):
        raise _CallError("invalid type for comparison")
    return arg1 < arg2  # type: ignore[no-any-return]


def _le(arg1: Any, arg2: Any) -> bool:
    return _lt(arg1, arg2) or _eq(arg1, arg2)


def _gt(arg1: Any, arg2: Any) -> bool:
    return not _le(arg1, arg2)


def _ge(arg1: Any, arg2: Any) -> bool:
    return not _lt(arg1, arg2)


def _not(arg: Any) -> bool:
    return not _is_true(arg)[0]


def _len(item: Any) -> int:
    if item is None:
        raise _CallError("reflect: call of reflect.Value.Type on zero Value")
    t = type(item)
    if t is str or t is _SafeHTML:
        return len(item.encode("utf-8", "surrogatepass"))
    if _is_map(item) or _is_slice(item):
        return len(item)
    name = _go_type(item)
    raise _CallError(f"len of type {name[1:] if name.startswith('*') else name}")


def _index_arg(index: Any, cap: int) -> int:
    if index is None:
        raise _CallError("cannot index slice/array with nil")
    if type(index) is not int:
        raise _CallError(f"cannot index slice/array with type {_go_type(index)}")
    if index < 0 or index > cap:
        raise _CallError(f"index out of range: {index}")
    return index


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise _CallError("index of untyped nil")
    for index in indexes:
        t = type(item)
        if t is str or t is _SafeHTML:
            data = item.encode("utf-8", "surrogatepass")
            x = _index_arg(index, len(data))
            if x == len(data):
                raise _CallError("reflect: string index out of range")
            item = data[x]
        elif _is_slice(item):
            x = _index_arg(index, len(item))
            if x == len(item):
                raise _CallError("reflect: slice index out of range")
            item = item[x]
        elif _is_map(item):
            if index is None:
                raise _CallError("value is nil; should be of type string")
            if type(index) is not str:
                raise _CallError(f"value has type {_go_type(index)}; should be string")
            found = item.get(index, _MISSING)
            if found is _MISSING:
                found = _NIL_IFACE if type(item) is _AnyMap else ""
            item = found
        else:
            raise _CallError(f"can't index item of type {_go_type(item).removeprefix('*')}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise _CallError("slice of untyped nil")
    if len(indexes) > 3:
        raise _CallError(f"too many slice indexes: {len(indexes)}")
    t = type(item)
    if t is str or t is _SafeHTML:
        if len(indexes) == 3:
            raise _CallError("cannot 3-index slice a string")
        data = item.encode("utf-8", "surrogatepass")
        cap = len(data)
    elif _is_slice(item):
        data = item
        cap = len(item)
    else:
        raise _CallError(f"can't slice item of type {_go_type(item)}")
    idx = [0, len(data), cap]
    for i, index in enumerate(indexes):
        idx[i] = _index_arg(index, cap)
    if idx[0] > idx[1]:
        raise _CallError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise _CallError(f"invalid slice index: {idx[1]} > {idx[2]}")
    part = data[idx[0] : idx[1]]
    if isinstance(part, bytes):
        return part.decode("utf-8", "replace")
    return type(item)(part) if type(item) is _QueryResult else list(part)


def _call(fn: Any, *args: Any) -> Any:
    if fn is None:
        raise _CallError("call of nil")
    raise _CallError(f"non-function of type {_go_type(fn)}")


def _eval_args(args: Sequence[Any]) -> str:
    """fmt.Sprint of the arguments as a template prints them (html, js, urlquery)."""
    if len(args) == 1 and type(args[0]) is str:
        return args[0]  # type: ignore[no-any-return]
    return _Printer().sprint([_printable(a) for a in args])


def _printable(v: Any) -> Any:
    """Go's printableValue: a missing value prints `<no value>`, a pointer prints what it points to."""
    if v is None or v is _NIL_IFACE:
        return "<no value>"
    if type(v) is Sample:
        return _Deref(v)
    return v


def _html_escape(*args: Any) -> str:
    s = _eval_args(args)
    if not any(c in s for c in "'\"&<>\0"):
        return s
    return (s.replace("&", "&amp;").replace("'", "&#39;").replace('"', "&#34;").replace("<", "&lt;")
            .replace(">", "&gt;").replace("\0", "\ufffd"))


_JS_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def _js_escape(*args: Any) -> str:
    out = []
    for c in _eval_args(args):
        if c in _JS_ESCAPES:
            out.append(_JS_ESCAPES[c])
        elif c < " ":
            out.append(f"\\u00{ord(c):02X}")
        elif ord(c) >= 0x80 and not _go_isprint(c):
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _query_escape(s: str) -> str:
    return urllib.parse.quote_plus(s, safe="")


def _urlquery(*args: Any) -> str:
    return _query_escape(_eval_args(args))


def _printf(fmt: str, *args: Any) -> str:
    return _Printer().sprintf(fmt, args)


def _print(*args: Any) -> str:
    return _Printer().sprint(args)


def _println(*args: Any) -> str:
    return _Printer().sprintln(args)


def _to_float(v: Any) -> float:
    """Prometheus's convertToFloat."""
    t = type(v)
    if t is float:
        return v  # type: ignore[no-any-return]
    if t is str:
        return _parse_float(v)
    if t is int:
        return float(v)
    raise _CallError(f"can't convert {_go_type(v)} to float")


def _humanize(v: Any) -> str:
    x = _to_float(v)
    if x == 0 or math.isnan(x) or math.isinf(x):
        return _fmt_g4(x)
    if abs(x) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(x) < 1000:
                break
            prefix = p
            x /= 1000
        return _fmt_g4(x) + prefix
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(x) >= 1:
            break
        prefix = p
        x *= 1000
    return _fmt_g4(x) + prefix


def _humanize1024(v: Any) -> str:
    x = _to_float(v)
    if abs(x) <= 1 or math.isnan(x) or math.isinf(x):
        return _fmt_g4(x)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(x) < 1024:
            break
        prefix = p
        x /= 1024
    return _fmt_g4(x) + prefix


def _humanize_duration(v: Any) -> str:
    x = _to_float(v)
    if math.isnan(x) or math.isinf(x):
        return _fmt_g4(x)
    if x == 0:
        return _fmt_g4(x) + "s"
    if abs(x) >= 1:
        sign = ""
        if x < 0:
            sign = "-"
            x = -x
        duration = _go_int64(x)
        seconds = _go_mod(duration, 60)
        minutes = _go_mod(_go_div(duration, 60), 60)
        hours = _go_mod(_go_div(_go_div(duration, 60), 60), 24)
        days = _go_div(_go_div(_go_div(duration, 60), 60), 24)
        if days != 0:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours != 0:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes != 0:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_fmt_g4(x)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(x) >= 1:
            break
        prefix = p
        x *= 1000
    return f"{_fmt_g4(x)}{prefix}s"


def _humanize_percentage(v: Any) -> str:
    return _fmt_g4(_to_float(v) * 100) + "%"


def _humanize_timestamp(v: Any) -> str:
    x = _to_float(v)
    if math.isnan(x) or math.isinf(x):
        return _fmt_g4(x)
    return str(_time_from_float(x))


def _to_time(v: Any) -> _GoTime:
    x = _to_float(v)
    if math.isnan(x) or math.isinf(x):
        raise _CallError("value is NaN or Inf")
    return _time_from_float(x)


def _title(s: str) -> str:
    """strings.Title: upper-case (title-case) the first letter of each word."""
    out = []
    prev = " "
    for c in s:
        if _is_separator(prev):
            t = c.title()
            out.append(t if len(t) == 1 else c)
        else:
            out.append(c)
        prev = c
    return "".join(out)


def _is_separator(c: str) -> bool:
    if c < "\x80":
        return not (c.isascii() and (c.isalnum() or c == "_"))
    if c.isalpha() or c.isdecimal():
        return False
    return c.isspace()


def _to_upper(s: str) -> str:
    if s.isascii():
        return s.upper()
    return "".join(u if len(u := c.upper()) == 1 else c for c in s)


def _to_lower(s: str) -> str:
    if s.isascii():
        return s.lower()
    return "".join("i" if c == "\u0130" else low if len(low := c.lower()) == 1 else c for c in s)


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> GoRegex | str:
    """A compiled Go regexp, or Go's compile error text."""
    try:
        return compile_go(pattern)
    except ValueError as exc:
        return str(exc)


def _match(pattern: str, s: str) -> bool:
    regex = _regex(pattern)
    if isinstance(regex, str):
        raise _CallError(regex)
    return regex.search(s) is not None


def _go_regex_quote(s: str) -> str:
    if "`" not in s and all(_go_isprint(c) or c == "\t" for c in s):
        return "`" + s + "`"
    return _go_quote(s)


def _re_replace_all(pattern: str, repl: str, text: str) -> str:
    """regexp.MustCompile(pattern).ReplaceAllString(text, repl), Go's empty-match rules included."""
    regex = _regex(pattern)
    if isinstance(regex, str):
        raise _CallError(f"regexp: Compile({_go_regex_quote(pattern)}): {regex}")
    engine = regex.linear if regex.linear is not None and text.isascii() else regex.pattern
    out: list[str] = []
    last_match_end = 0
    search_pos = 0
    end = len(text)
    while search_pos <= end:
        m = engine.search(text, search_pos)
        if m is None:
            break
        start, stop = m.span()
        out.append(text[last_match_end:start])
        if stop > last_match_end or start == 0:
            out.append(regex_expand(regex, repl, m))
        last_match_end = stop
        search_pos = search_pos + 1 if search_pos + 1 > stop else stop
    out.append(text[last_match_end:])
    return "".join(out)


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """net.SplitHostPort; None where Go returns an error."""
    i = hostport.rfind(":")
    if i < 0:
        return None
    j = k = 0
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0 or close + 1 == len(hostport) or close + 1 != i:
            return None
        host = hostport[1:close]
        j, k = 1, close + 1
    else:
        host = hostport[:i]
        if ":" in host:
            return None
    if "[" in hostport[j:] or "]" in hostport[k:]:
        return None
    return host, hostport[i + 1 :]


def _strip_port(hostport: str) -> str:
    split = _split_host_port(hostport)
    return hostport if split is None else split[0]


def _is_ip(host: str) -> bool:
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _strip_domain(hostport: str) -> str:
    split = _split_host_port(hostport)
    host, port = split if split is not None else (hostport, "")
    if _is_ip(host):
        return hostport
    host = host.split(".")[0]
    if port:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


_DURATION_RE = re.compile(r"(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?")


def _parse_duration(s: str) -> float:
    """Prometheus's model.ParseDuration, in seconds."""
    if s == "0":
        return 0.0
    if s == "":
        raise _CallError("empty duration string")
    m = _DURATION_RE.fullmatch(s)
    if m is None:
        raise _CallError(f"not a valid duration string: {_go_quote(s)}")
    ms = 0
    for group, mult in ((2, 31_536_000_000), (4, 604_800_000), (6, 86_400_000), (8, 3_600_000), (10, 60_000),
                        (12, 1000), (14, 1)):
        if m.group(group):
            ms += int(m.group(group)) * mult
    if ms * 1_000_000 >= 1 << 63:
        raise _CallError("duration out of range")
    return ms / 1000


def _first(v: _QueryResult) -> Sample:
    if not v:
        raise _CallError("first() called on vector with no elements")
    return v[0]  # type: ignore[no-any-return]


def _sort_by_label(label: str, v: _QueryResult | None) -> _QueryResult:
    if v is None:
        return _QueryResult()
    v.sort(key=lambda s: s.labels.get(label, ""))
    return v


def _deref(s: Sample | None) -> Sample:
    if s is None:
        raise _CallError("runtime error: invalid memory address or nil pointer dereference")
    return s


def _args(*args: Any) -> _AnyMap:
    return _AnyMap((f"arg{i}", a) for i, a in enumerate(args))


def _query(state: _State, q: str) -> _QueryResult:
    if state.query is None:
        raise _CallError("queries are not available in this template")
    try:
        result = state.query(q)
    except Exception as exc:
        raise _CallError(str(exc)) from exc
    out = _QueryResult()
    for s in result:
        if isinstance(s, Sample):
            out.append(s)
        elif hasattr(s, "labels") and hasattr(s, "v"):  # agent.promql.values.Sample
            out.append(Sample(dict(s.labels), float(s.v)))
        else:
            labels, value = s
            out.append(Sample(dict(labels), float(value)))
    return out


def _external_url(state: _State) -> str:
    return state.external_url


def _path_prefix(state: _State) -> str:
    return urllib.parse.urlsplit(state.external_url).path


def _graph_link(expr: str) -> str:
    return f"/graph?g0.expr={_query_escape(expr)}&g0.tab=0"


def _table_link(expr: str) -> str:
    return f"/graph?g0.expr={_query_escape(expr)}&g0.tab=1"


_S, _ANY, _V = "string", "any", "value"

_FUNCS: dict[str, _Func] = {
    # Go's builtins
    "and": _Func(lambda *a: None, (_V, _V), variadic=True),
    "or": _Func(lambda *a: None, (_V, _V), variadic=True),
    "not": _Func(_not, (_V,)),
    "len": _Func(_len, (_V,)),
    "index": _Func(_index, (_V, _V), variadic=True),
    "slice": _Func(_slice, (_V, _V), variadic=True),
    "call": _Func(_call, (_V, _V), variadic=True),
    "html": _Func(_html_escape, (_ANY,), variadic=True),
    "js": _Func(_js_escape, (_ANY,), variadic=True),
    "urlquery": _Func(_urlquery, (_ANY,), variadic=True),
    "print": _Func(_print, (_ANY,), variadic=True),
    "printf": _Func(_printf, (_S, _ANY), variadic=True),
    "println": _Func(_println, (_ANY,), variadic=True),
    "eq": _Func(_eq, (_V, _V), variadic=True),
    "ne": _Func(_ne, (_V, _V)),
    "lt": _Func(_lt, (_V, _V)),
    "le": _Func(_le, (_V, _V)),
    "gt": _Func(_gt, (_V, _V)),
    "ge": _Func(_ge, (_V, _V)),
    # Prometheus's
    "query": _Func(_query, (_S,), needs_state=True),
    "first": _Func(_first, ("queryResult",)),
    "label": _Func(lambda label, s: _deref(s).labels.get(label, ""), (_S, "*sample")),
    "value": _Func(lambda s: _deref(s).value, ("*sample",)),
    "strvalue": _Func(lambda s: _deref(s).labels.get("__value__", ""), ("*sample",)),
    "args": _Func(_args, (_ANY,), variadic=True),
    "reReplaceAll": _Func(_re_replace_all, (_S, _S, _S)),
    "safeHtml": _Func(_SafeHTML, (_S,)),
    "match": _Func(_match, (_S, _S)),
    "title": _Func(_title, (_S,)),
    "toUpper": _Func(_to_upper, (_S,)),
    "toLower": _Func(_to_lower, (_S,)),
    "graphLink": _Func(_graph_link, (_S,)),
    "tableLink": _Func(_table_link, (_S,)),
    "sortByLabel": _Func(_sort_by_label, (_S, "queryResult")),
    "stripPort": _Func(_strip_port, (_S,)),
    "stripDomain": _Func(_strip_domain, (_S,)),
    "humanize": _Func(_humanize, (_ANY,)),
    "humanize1024": _Func(_humanize1024, (_ANY,)),
    "humanizeDuration": _Func(_humanize_duration, (_ANY,)),
    "humanizePercentage": _Func(_humanize_percentage, (_ANY,)),
    "humanizeTimestamp": _Func(_humanize_timestamp, (_ANY,)),
    "toTime": _Func(_to_time, (_ANY,)),
    "pathPrefix": _Func(_path_prefix, (), needs_state=True),
    "externalURL": _Func(_external_url, (), needs_state=True),
    "parseDuration": _Func(_parse_duration, (_S,)),
}


def _time_methods(t: _GoTime) -> dict[str, _Func]:
    """The methods of *time.Time a template may call on toTime's result."""
    return {
        "Format": _Func(t.format, (_S,)),
        "String": _Func(lambda: str(t), ()),
        "Unix": _Func(lambda: t.sec, ()),
        "UnixMilli": _Func(lambda: t.sec * 1000 + t.nsec // 1_000_000, ()),
        "UnixNano": _Func(lambda: t.sec * 1_000_000_000 + t.nsec, ()),
        "UTC": _Func(lambda: t, ()),
        "Year": _Func(lambda: t.datetime().year, ()),
        "YearDay": _Func(lambda: t.datetime().timetuple().tm_yday, ()),
        "Day": _Func(lambda: t.datetime().day, ()),
        "Hour": _Func(lambda: t.datetime().hour, ()),
        "Minute": _Func(lambda: t.datetime().minute, ()),
        "Second": _Func(lambda: t.datetime().second, ()),
        "Nanosecond": _Func(lambda: t.nsec, ()),
    }


# ---------------------------------------------------------------------------------------------
# Execution (text/template/exec.go)


class _Break(Exception):
    """{{break}}: leaves the innermost range."""


class _Continue(Exception):
    """{{continue}}: goes on with the innermost range's next element."""


class _State:
    """One execution: the variable stack, the node being evaluated (for error messages), the output."""

    __slots__ = ("depth", "external_url", "name", "node", "out", "query", "template", "vars")

    def __init__(self, template: Template, external_url: str, query: Callable[[str], Any] | None):
        self.template = template
        self.name = template.name
        self.node: _Node | None = None
        self.vars: list[list[Any]] = []
        self.depth = 0
        self.out: list[str] = []
        self.external_url = external_url
        self.query = query

    # -- errors

    def errorf(self, message: str) -> TemplateError:
        node = self.node
        if node is None:
            return TemplateError(f"template: {self.name}: {message}")
        text = self.template.full_text
        pos = node.pos
        line_start = text.rfind("\n", 0, pos) + 1
        col = len(text[line_start:pos].encode("utf-8", "surrogatepass")) if line_start else \
            len(text[:pos].encode("utf-8", "surrogatepass"))
        line = 1 + text.count("\n", 0, pos)
        return TemplateError(f"template: {self.template.name}:{line}:{col}: executing {_go_quote(self.name)} "
                             f"at <{node}>: {message}")

    # -- variables

    def var_value(self, node: _VariableNode) -> Any:
        name = node.ident[0]
        stack = self.vars
        hint = node.hint
        if 0 <= hint < len(stack) and stack[hint][0] == name:
            return stack[hint][1]
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == name:
                return stack[i][1]
        raise self.errorf(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i][1] = value
                return
        raise self.errorf(f"undefined variable: {name}")

    # -- walking

    def walk(self, dot: Any, node: _Node) -> None:
        self.node = node
        t = type(node)
        if t is _ActionNode:
            val = self.eval_pipeline(dot, node.pipe)  # type: ignore[attr-defined]
            if not node.pipe.decl:  # type: ignore[attr-defined]
                self.node = node
                self.out.append(_sprint_value(_printable(val)))
        elif t is _TextNode:
            self.out.append(node.text)  # type: ignore[attr-defined]
        elif t is _ListNode:
            for n in node.nodes:  # type: ignore[attr-defined]
                self.walk(dot, n)
        elif t is _IfNode or t is _WithNode:
            self.walk_if_or_with(t is _WithNode, dot, node)  # type: ignore[arg-type]
        elif t is _RangeNode:
            self.walk_range(dot, node)  # type: ignore[arg-type]
        elif t is _TemplateNode:
            self.walk_template(dot, node)  # type: ignore[arg-type]
        elif t is _BreakNode:
            raise _Break
        elif t is _ContinueNode:
            raise _Continue
        else:
            raise self.errorf(f"unknown node: {node}")

    def walk_if_or_with(self, is_with: bool, dot: Any, node: _BranchNode) -> None:
        mark = len(self.vars)
        try:
            val = self.eval_pipeline(dot, node.pipe)
            truth, ok = _is_true(val)
            if not ok:
                raise self.errorf(f"if/with can't use {_sprint_value(val)}")
            if truth:
                self.walk(val if is_with else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: Any, r: _BranchNode) -> None:
        self.node = r
        outer = len(self.vars)
        try:
            val = self.eval_pipeline(dot, r.pipe)
            mark = len(self.vars)
            ndecl = len(r.pipe.decl)
            if val is None or val is _NIL_IFACE:
                items: Iterable[tuple[Any, Any]] = ()
            elif _is_slice(val):
                items = enumerate(val)
            elif _is_map(val):
                items = ((k, val[k]) for k in sorted(val, key=_sort_key))
            else:
                raise self.errorf(f"range can't iterate over {_sprint_value(_printable(val))}")
            empty = True
            with contextlib.suppress(_Break):
                for index, elem in items:
                    empty = False
                    if ndecl > 0:
                        self.vars[-1][1] = elem
                    if ndecl > 1:
                        self.vars[-2][1] = index
                    with contextlib.suppress(_Continue):
                        self.walk(elem, r.list)
                    del self.vars[mark:]
                if empty and r.else_list is not None:
                    self.walk(dot, r.else_list)
        finally:
            del self.vars[outer:]

    def walk_template(self, dot: Any, t: _TemplateNode) -> None:
        self.node = t
        tree = self.template.trees.get(t.name)
        if tree is None or tree.root is None:
            raise self.errorf(f"template {_go_quote(t.name)} not defined")
        if self.depth >= _MAX_TEMPLATE_DEPTH:
            raise self.errorf(f"exceeded maximum template depth ({_MAX_TEMPLATE_DEPTH})")
        dot = self.eval_pipeline(dot, t.pipe) if t.pipe is not None else None
        saved = (self.vars, self.name, self.node)
        self.vars = [["$", dot]]
        self.name = t.name
        self.depth += 1
        self.walk(dot, tree.root)
        self.depth -= 1
        self.vars, self.name, self.node = saved

    # -- evaluation

    def eval_pipeline(self, dot: Any, pipe: _PipeNode) -> Any:
        self.node = pipe
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if value is _NIL_IFACE:
                value = None
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.ident[0], value)
            else:
                self.vars.append([var.ident[0], value])
        return value

    def not_a_function(self, args: list[_Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: _CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        t = type(first)
        if t is _VariableNode:
            return self.eval_variable_node(dot, first, cmd.args, final)  # type: ignore[arg-type]
        if t is _FieldNode:
            self.node = first
            return self.eval_field_chain(dot, dot, first, first.ident, cmd.args, final)  # type: ignore[attr-defined]
        if t is _IdentifierNode:
            return self.eval_function(dot, first, cmd, cmd.args, final)  # type: ignore[arg-type]
        if t is _ChainNode:
            return self.eval_chain_node(dot, first, cmd.args, final)  # type: ignore[arg-type]
        if t is _PipeNode:
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)  # type: ignore[arg-type]
        self.node = first
        self.not_a_function(cmd.args, final)
        if t is _StringNode:
            return first.text  # type: ignore[attr-defined]
        if t is _NumberNode:
            return self.ideal_constant(first)  # type: ignore[arg-type]
        if t is _BoolNode:
            return first.true  # type: ignore[attr-defined]
        if t is _DotNode:
            return dot
        if t is _NilNode:
            raise self.errorf("nil is not a command")
        raise self.errorf(f"can't evaluate command {_go_quote(str(first))}")

    def ideal_constant(self, c: _NumberNode) -> Any:
        """A number literal's value where no type is expected: its syntax decides (Go's rules)."""
        self.node = c
        if c.ideal is _MISSING:
            raise self.errorf(f"{c.text} overflows int")
        return c.ideal

    def eval_chain_node(self, dot: Any, chain: _ChainNode, args: list[_Node] | None, final: Any) -> Any:
        self.node = chain
        if type(chain.node) is _NilNode:
            raise self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.field, args, final)

    def eval_variable_node(self, dot: Any, var: _VariableNode, args: list[_Node] | None, final: Any) -> Any:
        self.node = var
        value = self.var_value(var)
        ident = var.ident
        if len(ident) == 1:
            if args is not None:
                self.not_a_function(args, final)
            return value
        if len(ident) == 2 and type(value) is dict and (args is None or len(args) == 1) and final is _MISSING:
            return value.get(ident[1], "")  # the common $labels.name
        return self.eval_field_chain(dot, value, var, ident[1:], args, final)

    def eval_field_chain(self, dot: Any, receiver: Any, node: _Node, ident: list[str], args: list[_Node] | None,
                         final: Any) -> Any:
        n = len(ident)
        for i in range(n - 1):
            receiver = self.eval_field(dot, ident[i], node, None, _MISSING, receiver)
        return self.eval_field(dot, ident[n - 1], node, args, final, receiver)

    def eval_field(self, dot: Any, name: str, node: _Node, args: list[_Node] | None, final: Any,
                   receiver: Any) -> Any:
        if receiver is None:
            return None  # missingkey=zero: a missing value's fields are missing too
        if type(receiver) is dict:  # the common case: $labels.x
            has_args = (args is not None and len(args) > 1) or final is not _MISSING
            if has_args:
                raise self.errorf(f"{name} is not a method but has arguments")
            return receiver.get(name, "")
        if receiver is _NIL_IFACE:
            raise self.errorf(f"nil pointer evaluating interface {{}}.{name}")
        if type(receiver) is _GoTime:
            method = _time_methods(receiver).get(name)
            if method is not None:
                return self.eval_call(dot, method, node, name, args, final)
        has_args = (args is not None and len(args) > 1) or final is not _MISSING
        t = type(receiver)
        if t is AlertData and name in _ALERT_DATA_FIELDS:
            if has_args:
                raise self.errorf(f"{name} has arguments but cannot be invoked as function")
            value = getattr(receiver, _ALERT_DATA_FIELDS[name])
            return float(value) if name == "Value" else value
        if t is Sample and name in ("Labels", "Value"):
            if has_args:
                raise self.errorf(f"{name} has arguments but cannot be invoked as function")
            return receiver.labels if name == "Labels" else receiver.value
        if _is_map(receiver):
            if has_args:
                raise self.errorf(f"{name} is not a method but has arguments")
            found = receiver.get(name, _MISSING)
            if found is _MISSING:
                return _NIL_IFACE if t is _AnyMap else ""
            return found
        raise self.errorf(f"can't evaluate field {name} in type {_go_type(receiver)}")

    def eval_function(self, dot: Any, node: _IdentifierNode, cmd: _Node, args: list[_Node] | None,
                      final: Any) -> Any:
        self.node = node
        name = node.ident
        return self.eval_call(dot, _FUNCS[name], cmd, name, args, final, builtin=name in ("and", "or"))

    def eval_call(self, dot: Any, fn: _Func, node: _Node, name: str, args: list[_Node] | None, final: Any,
                  builtin: bool = False) -> Any:
        """Calls a function or method; `args` are the command's words with the function's own first."""
        nargs = len(args) - 1 if args is not None else 0
        params = fn.params
        has_final = final is not _MISSING
        num_in = nargs + has_final
        if fn.variadic:
            num_fixed = len(params) - 1
            if num_in < num_fixed:
                raise self.errorf(f"wrong number of args for {name}: want at least {num_fixed} got {nargs}")
        elif num_in != len(params):
            raise self.errorf(f"wrong number of args for {name}: want {len(params)} got {num_in}")
        if builtin:  # and/or evaluate their arguments lazily and return one of them
            v = None
            for arg in args[1:] if args is not None else ():
                v = self.eval_arg(dot, "value", arg)
                if _is_true(v)[0] == (name == "or"):
                    return v
            if has_final:
                v = self.validate_type(final, "value")
            return v
        argv: list[Any] = []
        if nargs:
            assert args is not None
            eval_arg = self.eval_arg
            if fn.variadic:
                last = len(params) - 1
                argv = [eval_arg(dot, params[min(i, last)], args[i + 1]) for i in range(nargs)]
            else:
                argv = [eval_arg(dot, params[i], args[i + 1]) for i in range(nargs)]
        if has_final:
            typ = params[num_in - 1] if num_in <= len(params) else params[-1]
            argv.append(self.validate_type(final, typ))
        try:
            if fn.needs_state:
                return fn.fn(self, *argv)
            return fn.fn(*argv)
        except TemplateError:
            raise
        except Exception as exc:  # Go recovers a function's panic as its error
            self.node = node
            raise self.errorf(f"error calling {name}: {exc}") from exc

    def validate_type(self, value: Any, typ: str | None) -> Any:
        """Go's validateType: the value as an argument of the parameter type, or Go's error."""
        if typ is None or typ == "any" or typ == "value":
            return None if value is _NIL_IFACE else value
        if value is None:
            if typ in ("*sample", "queryResult"):
                return None
            raise self.errorf(f"invalid value; expected {_GO_PARAM_TYPES[typ]}")
        if value is _NIL_IFACE:
            raise self.errorf(f"wrong type for value; expected {_GO_PARAM_TYPES[typ]}; got interface {{}}")
        if not _assignable(value, typ):
            raise self.errorf(f"wrong type for value; expected {_GO_PARAM_TYPES[typ]}; got {_go_type(value)}")
        return value

    def eval_arg(self, dot: Any, typ: str | None, n: _Node) -> Any:
        self.node = n
        t = type(n)
        if t is _VariableNode:
            return self.validate_type(self.eval_variable_node(dot, n, None, _MISSING), typ)  # type: ignore[arg-type]
        if t is _FieldNode:
            value = self.eval_field_chain(dot, dot, n, n.ident, [n], _MISSING)  # type: ignore[attr-defined]
            return self.validate_type(value, typ)
        if t is _DotNode:
            return self.validate_type(dot, typ)
        if t is _NilNode:
            if typ in ("any", "value", "*sample", "queryResult"):
                return None
            raise self.errorf(f"cannot assign nil to {_GO_PARAM_TYPES[typ] if typ else 'interface {}'}")
        if t is _PipeNode:
            return self.validate_type(self.eval_pipeline(dot, n), typ)  # type: ignore[arg-type]
        if t is _IdentifierNode:
            return self.validate_type(self.eval_function(dot, n, n, None, _MISSING), typ)  # type: ignore[arg-type]
        if t is _ChainNode:
            return self.validate_type(self.eval_chain_node(dot, n, None, _MISSING), typ)  # type: ignore[arg-type]
        if typ is None or typ in ("any", "value"):
            return self.eval_empty_interface(dot, n)
        if typ == "string":
            if t is _StringNode:
                return n.text  # type: ignore[attr-defined]
            raise self.errorf(f"expected string; found {n}")
        if typ == "float64":
            if t is _NumberNode and n.is_float:  # type: ignore[attr-defined]
                return n.float64  # type: ignore[attr-defined]
            raise self.errorf(f"expected float; found {n}")
        if typ == "int":
            if t is _NumberNode and n.is_int:  # type: ignore[attr-defined]
                return n.int64  # type: ignore[attr-defined]
            raise self.errorf(f"expected integer; found {n}")
        if typ == "bool":
            if t is _BoolNode:
                return n.true  # type: ignore[attr-defined]
            raise self.errorf(f"expected bool; found {n}")
        raise self.errorf(f"can't handle {n} for arg of type {_GO_PARAM_TYPES[typ]}")

    def eval_empty_interface(self, dot: Any, n: _Node) -> Any:
        self.node = n
        t = type(n)
        if t is _StringNode:
            return n.text  # type: ignore[attr-defined]
        if t is _NumberNode:
            return self.ideal_constant(n)  # type: ignore[arg-type]
        if t is _BoolNode:
            return n.true  # type: ignore[attr-defined]
        raise self.errorf(f"can't handle assignment of {n} to empty interface argument")


# ---------------------------------------------------------------------------------------------
# Public API


class Template:
    """A parsed template: parse once with `compile`, then `render` (or `execute`) as often as needed."""

    __slots__ = ("alert", "body", "full_text", "name", "root", "text", "trees")

    def __init__(self, text: str, name: str, alert: bool):
        self.text = text
        self.name = name
        self.alert = alert
        self.full_text = HEADER + text if alert else text
        items = _Lexer(self.full_text).run()
        trees: dict[str, _Tree] = {}
        main = _Tree(name, name, items, [0], trees, _FUNCS)
        try:
            main.parse()
            main.add()
        except _ParseError as exc:
            raise TemplateError(str(exc)) from None
        except RecursionError:
            raise TemplateError(f"template: {name}:1: max expression depth exceeded") from None
        self.trees = trees
        root = trees[name].root
        assert root is not None
        self.root = root
        self.body = root.nodes[4:] if alert else root.nodes  # after the header's four declarations

    def render(self, data: AlertData, query: Callable[[str], Any] | None = None) -> str:
        """Expands an alert template (compiled with alert=True) for one alert; TemplateError if it fails.

        `query` runs the `query` template function's PromQL: it returns samples with `.labels` and `.v`
        (agent.promql's), `Sample`s, or (labels, value) pairs; without it `query` is an error."""
        if not self.alert:
            return self.execute(data, external_url=data.external_url, query=query)
        state = _State(self, data.external_url, query)
        # The header only declares the four variables: declare them without evaluating it.
        state.vars = [["$", data], ["$labels", data.labels], ["$externalLabels", data.external_labels],
                      ["$externalURL", data.external_url], ["$value", float(data.value)]]
        try:
            for node in self.body:
                state.walk(data, node)
        except RecursionError:
            raise TemplateError(f"template: {self.name}: exceeded maximum template depth") from None
        return "".join(state.out)

    def execute(self, dot: Any, *, external_url: str = "", query: Callable[[str], Any] | None = None) -> str:
        """Executes the template with any data as dot (Go's Execute); TemplateError if it fails."""
        state = _State(self, external_url, query)
        state.vars = [["$", dot]]
        try:
            state.walk(dot, self.root)
        except RecursionError:
            raise TemplateError(f"template: {self.name}: exceeded maximum template depth") from None
        return "".join(state.out)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compiled(text: str, name: str, alert: bool) -> Template | TemplateError:
    try:
        return Template(text, name, alert)
    except TemplateError as exc:
        return exc


def compile_cache() -> functools._CacheInfo:
    """Hits, misses and size of the parsed-template cache behind `compile` (GET /api/v1/cache)."""
    return _compiled.cache_info()


def clear_compile_cache() -> int:
    """Forget parsed templates (each is parsed again at its next use); returns how many there were."""
    dropped = _compiled.cache_info().currsize
    _compiled.cache_clear()
    return dropped


def compile(text: str, name: str = "__alert_", *, alert: bool = True) -> Template:
    """Parses a template (cached). With `alert`, Prometheus's alert header is put first, as the rules
    manager does; `name` is what errors show ("__alert_" + the alert's name in Prometheus).
    Raises TemplateError with Go's message, e.g. `template: __alert_X:1: function "foo" not defined`."""
    result = _compiled(text, name, alert)
    if isinstance(result, TemplateError):
        raise TemplateError(str(result))
    return result


def expand(text: str, data: AlertData, name: str = "__alert_",
           query: Callable[[str], Any] | None = None) -> tuple[str, str | None]:
    """Prometheus's alert template expansion: (expanded text, None), or, when the template does not parse
    or fails, (`<error expanding template: ...>`, the error) as Prometheus shows both."""
    try:
        return expand_alert_template(name, text, data, query), None
    except TemplateError as exc:
        return f"<error expanding template: {exc}>", str(exc)


def expand_alert_template(name: str, text: str, data: Any, query: Callable[[str], Any] | None = None) -> str:
    """Expands one alert label or annotation template. `data` has `labels`, `value`, `external_labels`,
    `external_url` and optionally `query`. Raises TemplateError with Prometheus's wrapped text
    ("error parsing template NAME: ..." / "error executing template NAME: ...")."""
    try:
        template = compile(text, name)
    except TemplateError as exc:
        raise TemplateError(f"error parsing template {name}: {exc}") from None
    if type(data) is not AlertData:
        if query is None:
            query = getattr(data, "query", None)
        data = AlertData(data.labels, data.value, data.external_labels, data.external_url)
    try:
        return template.render(data, query)
    except TemplateError as exc:
        raise TemplateError(f"error executing template {name}: {exc}") from None
