"""Go (RE2) regular expressions on Python's `re`, for label_replace().

Prometheus compiles label_replace()'s regex with Go's regexp package, whose syntax differs from
Python's in ways that change answers: `$` never matches before a trailing newline, `\\d`/`\\s`/`\\w` are
ASCII-only, `{,n}` is a literal, inline flags may appear anywhere, `[[:alpha:]]` and `\\Q...\\E` exist,
and backreferences, lookarounds and possessive quantifiers are errors. `translate` rewrites an RE2
pattern into an equivalent Python pattern (same capture-group numbering) or raises ValueError where
Go would refuse to compile it. Go's submatch semantics (leftmost-first) are the same as Python's, so
captures agree. `expand` is Go's Regexp.Expand template language (`$1`, `${1}`, `$name`, `$$`).

Unicode classes `\\p{..}` cover the general categories (`L`, `Lu`, `Nd`, ...) and `Any`, from Python's
unicodedata; script names (`\\p{Greek}`) are not supported and raise ValueError. Named groups become
plain groups (Go allows names Python does not, like `1a`, and duplicates); `GoRegex.names` maps them.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]

_ASCII_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}

# Perl classes as Go defines them (ASCII only): d, s, w and their negations.
_PERL_CLASSES = {"d": "0-9", "s": "\\t\\n\\f\\r ", "w": "0-9A-Za-z_"}

# Complements of the ASCII sets above, as ranges, for use inside a bracket class.
_PERL_COMPLEMENTS = {
    "d": "\\x00-/:-\\U0010ffff",
    "s": "\\x00-\\x08\\x0b\\x0e-\\x1f!-\\U0010ffff",
    "w": "\\x00-/:-@\\[-\\^`{-\\U0010ffff",
}

_MAX_REPEAT = 1000
_ASCII_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_REPEAT_RE = re.compile(r"\{(\d+)(,(\d*))?\}")
_FLAG_GROUP_RE = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?([:)])")


def _unicode_ranges(name: str) -> list[tuple[int, int]] | None:
    """Code point ranges of a Unicode general category (one or two letters) or `Any`; None if unknown."""
    if name == "Any":
        return [(0, sys.maxunicode)]
    table = _category_table()
    if len(name) == 2:
        return table.get(name, [] if name in _KNOWN_CATEGORIES else None)
    if len(name) == 1 and name in "LMNPSZC":
        # Go's one-letter classes; `C` excludes unassigned code points (Cn), as in Go.
        return sorted(r for cat, rs in table.items() if cat[0] == name and cat != "Cn" for r in rs)
    return None


@functools.cache
def _category_table() -> dict[str, list[tuple[int, int]]]:
    """General category -> code point ranges; built once (a fraction of a second), on first use of `\\p`."""
    table: dict[str, list[tuple[int, int]]] = {}
    start = 0
    current = unicodedata.category("\x00")
    for code in range(1, sys.maxunicode + 2):
        category = unicodedata.category(chr(code)) if code <= sys.maxunicode else ""
        if category != current:
            table.setdefault(current, []).append((start, code - 1))
            start, current = code, category
    return table


_KNOWN_CATEGORIES = frozenset({
    "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po",
    "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co",
})


def _ranges_text(ranges: list[tuple[int, int]], negate: bool) -> str:
    if negate:
        inverse = []
        nxt = 0
        for low, high in ranges:
            if low > nxt:
                inverse.append((nxt, low - 1))
            nxt = max(nxt, high + 1)
        if nxt <= sys.maxunicode:
            inverse.append((nxt, sys.maxunicode))
        ranges = inverse
    return "".join(_char(low) if low == high else f"{_char(low)}-{_char(high)}" for low, high in ranges)


def _char(code: int) -> str:
    """One code point as a Python regex escape that is literal in and out of classes."""
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


class _Translator:
    def __init__(self, pattern: str):
        self.src = pattern
        self.pos = 0
        self.out: list[str] = []
        # One entry per open group: whether `$`/`^` are multi-line in it, whether repetitions are
        # ungreedy (Go's U flag), and the implicit "(?flags:" groups opened in it by mid-group flag
        # settings (closed at `|` and at the group's end, reopened after `|`).
        self.groups: list[tuple[bool, bool, list[str]]] = [(False, False, [])]
        self.captures = 0
        self.names: dict[str, list[int]] = {}

    def error(self, message: str) -> ValueError:
        return ValueError(f"error parsing regexp: {message}: `{self.src[self.pos:]}`")

    def run(self) -> str:
        src = self.src
        while self.pos < len(src):
            c = src[self.pos]
            if c == "\\":
                self.out.append(self.escape(in_class=False))
            elif c == "[":
                self.out.append(self.char_class())
            elif c == "(":
                self.open_group()
            elif c == ")":
                self.close_group()
            elif c == "|":
                implicit = self.groups[-1][2]
                self.out.append(")" * len(implicit) + "|" + "".join(f"(?{flags}:" for flags in implicit))
                self.pos += 1
            elif c == "$":
                self.out.append("$" if self.groups[-1][0] else "\\Z")
                self.pos += 1
            elif c == "{":
                self.brace()
            elif c in "*+?":
                self.quantifier(c)
            else:
                self.out.append(c)
                self.pos += 1
        if len(self.groups) > 1:
            raise self.error("missing closing )")
        self.out.append(")" * len(self.groups[0][2]))
        return "".join(self.out)

    def quantifier(self, c: str) -> None:
        self.pos += 1
        self.out.append(c)
        self.after_repeat()

    def after_repeat(self) -> None:
        """Go allows one `?` (laziness, inverted by the U flag) after a repetition, nothing more."""
        src = self.src
        lazy = self.pos < len(src) and src[self.pos] == "?"
        if lazy:
            self.pos += 1
        if lazy != self.groups[-1][1]:
            self.out.append("?")
        if self.pos < len(src) and (src[self.pos] in "*+?" or _REPEAT_RE.match(src, self.pos)):
            raise self.error("invalid nested repetition operator")

    def brace(self) -> None:
        match = _REPEAT_RE.match(self.src, self.pos)
        if match is None:
            self.out.append("\\{")
            self.pos += 1
            return
        low = int(match.group(1))
        high = match.group(3)
        if low > _MAX_REPEAT or (high and int(high) > _MAX_REPEAT) or (high and int(high) < low):
            raise self.error("invalid repeat count")
        self.out.append(match.group(0))
        self.pos = match.end()
        self.after_repeat()

    def open_group(self) -> None:
        src = self.src
        if not src.startswith("(?", self.pos):
            self.open_capture(None)
            self.pos += 1
            return
        if src.startswith("(?P<", self.pos):
            end = src.find(">", self.pos)
            name = src[self.pos + 4 : end] if end >= 0 else ""
            if end < 0 or not name or not all(ch in _ASCII_ALNUM for ch in name):
                raise self.error("invalid named capture")
            self.open_capture(name)
            self.pos = end + 1
            return
        match = _FLAG_GROUP_RE.match(src, self.pos)
        if match is None or (not match.group(1) and match.group(2) is None and match.group(3) == ")"):
            raise self.error("invalid or unsupported Perl syntax")
        on, off, kind = match.group(1), match.group(2), match.group(3)
        off = off or ""
        if match.group(2) == "":
            raise self.error("invalid or unsupported Perl syntax")
        multiline, ungreedy, implicit = self.groups[-1]
        multiline = ("m" in on or multiline) and "m" not in off
        ungreedy = ("U" in on or ungreedy) and "U" not in off
        on, off = on.replace("U", ""), off.replace("U", "")
        flags = on + (f"-{off}" if off else "")
        self.pos = match.end()
        if kind == ":":
            self.out.append(f"(?{flags}:" if flags else "(?:")
            self.groups.append((multiline, ungreedy, []))
        else:
            # Python only accepts global flags at the very start: scope them to the rest of the group.
            if flags:
                self.out.append(f"(?{flags}:")
                implicit.append(flags)
            self.groups[-1] = (multiline, ungreedy, implicit)

    def open_capture(self, name: str | None) -> None:
        """A capturing group; Go's group names are tracked here, Python sees an unnamed group."""
        self.captures += 1
        if name is not None:
            self.names.setdefault(name, []).append(self.captures)
        self.out.append("(")
        self.groups.append((self.groups[-1][0], self.groups[-1][1], []))

    def close_group(self) -> None:
        if len(self.groups) == 1:
            raise self.error("unexpected )")
        implicit = self.groups.pop()[2]
        self.out.append(")" * len(implicit) + ")")
        self.pos += 1

    def escape(self, in_class: bool) -> str:
        """Translate the escape at self.pos (a backslash) and advance past it."""
        src = self.src
        if self.pos + 1 >= len(src):
            raise self.error("trailing backslash at end of expression")
        c = src[self.pos + 1]
        self.pos += 2
        if c in "1234567":
            if self.pos < len(src) and "0" <= src[self.pos] <= "7":
                return self.octal(c)
            raise self.error("invalid escape sequence")
        if c == "0":
            return self.octal(c)
        if c == "x":
            return self.hex_escape()
        if c in "dsw":
            return _PERL_CLASSES[c] if in_class else f"[{_PERL_CLASSES[c]}]"
        if c in "DSW":
            lower = c.lower()
            return _PERL_COMPLEMENTS[lower] if in_class else f"[^{_PERL_CLASSES[lower]}]"
        if c in "aftnrv":
            return "\\" + c
        if not in_class:
            if c == "z":
                return "\\Z"
            if c in "AbB":
                return "\\" + c
            if c == "C":
                return "(?s:.)"
            if c == "Q":
                end = src.find("\\E", self.pos)
                end = len(src) if end < 0 else end
                literal = "".join(_char(ord(ch)) for ch in src[self.pos : end])
                self.pos = min(len(src), end + 2)
                return f"(?:{literal})" if literal else ""
        if c in "pP":
            return self.unicode_class(negate=c == "P", in_class=in_class)
        if c.isascii() and not c.isalnum():
            return _char(ord(c))
        raise self.error("invalid escape sequence")

    def unicode_class(self, negate: bool, in_class: bool) -> str:
        src = self.src
        if src.startswith("{", self.pos):
            end = src.find("}", self.pos)
            if end < 0:
                raise self.error("invalid character class range")
            name = src[self.pos + 1 : end]
            self.pos = end + 1
        elif self.pos < len(src):
            name = src[self.pos]
            self.pos += 1
        else:
            raise self.error("invalid character class range")
        if name.startswith("^"):
            negate = not negate
            name = name[1:]
        ranges = _unicode_ranges(name)
        if ranges is None:
            raise self.error("invalid character class range (Unicode scripts are not supported by Vigil)")
        text = _ranges_text(ranges, negate)
        if in_class:
            return text
        return f"[{text}]" if text else "(?!)"

    def octal(self, first: str) -> str:
        digits = first
        while len(digits) < 3 and self.pos < len(self.src) and "0" <= self.src[self.pos] <= "7":
            digits += self.src[self.pos]
            self.pos += 1
        return _char(int(digits, 8))

    def hex_escape(self) -> str:
        src = self.src
        if src.startswith("{", self.pos):
            end = src.find("}", self.pos)
            digits = src[self.pos + 1 : end] if end >= 0 else ""
            if not digits or not all(ch in "0123456789abcdefABCDEF" for ch in digits) or int(digits, 16) > 0x10FFFF:
                raise self.error("invalid escape sequence")
            self.pos = end + 1
            return _char(int(digits, 16))
        digits = src[self.pos : self.pos + 2]
        if len(digits) < 2 or not all(ch in "0123456789abcdefABCDEF" for ch in digits):
            raise self.error("invalid escape sequence")
        self.pos += 2
        return _char(int(digits, 16))

    def char_class(self) -> str:
        src = self.src
        start = self.pos
        self.pos += 1
        negate = src.startswith("^", self.pos)
        if negate:
            self.pos += 1
        items: list[str] = []
        first = True
        while True:
            if self.pos >= len(src):
                self.pos = start
                raise self.error("missing closing ]")
            c = src[self.pos]
            if c == "]" and not first:
                self.pos += 1
                break
            first = False
            if src.startswith("[:", self.pos):
                end = src.find(":]", self.pos + 2)
                name = src[self.pos + 2 : end] if end >= 0 else ""
                if end >= 0 and name.lstrip("^") in _ASCII_CLASSES and name.count("^") <= 1:
                    ranges = _ASCII_CLASSES[name.lstrip("^")]
                    items.append(_complement(ranges) if name.startswith("^") else ranges)
                    self.pos = end + 2
                    continue
            if c == "\\" and self.pos + 1 < len(src) and src[self.pos + 1] in "dswDSWpP":
                items.append(self.escape(in_class=True))
                continue
            low_text, low = self.class_char()
            if src.startswith("-", self.pos) and self.pos + 1 < len(src) and src[self.pos + 1] != "]":
                self.pos += 1
                high_text, high = self.class_char()
                if high < low:
                    raise self.error("invalid character class range")
                items.append(f"{low_text}-{high_text}")
            else:
                items.append(low_text)
        return f"[{'^' if negate else ''}{''.join(items)}]"

    def class_char(self) -> tuple[str, int]:
        """One character of a bracket class, as (escaped text, code point)."""
        c = self.src[self.pos]
        if c != "\\":
            self.pos += 1
            return _char(ord(c)), ord(c)
        if self.pos + 1 < len(self.src) and self.src[self.pos + 1] in "dswDSWpP":
            raise self.error("invalid character class range")
        text = self.escape(in_class=True)
        return text, _code_of(text)


def _code_of(escaped: str) -> int:
    """The code point of one escaped character produced by `escape`/`_char`."""
    simple = {"\\a": 7, "\\f": 12, "\\t": 9, "\\n": 10, "\\r": 13, "\\v": 11}
    if escaped in simple:
        return simple[escaped]
    return int(escaped[2:], 16)


def _complement(ranges: str) -> str:
    """The complement (within Unicode) of a set of ASCII ranges written like `0-9A-Za-z`."""
    codes: list[tuple[int, int]] = []
    text = ranges.encode().decode("unicode_escape")
    i = 0
    while i < len(text):
        if i + 2 < len(text) and text[i + 1] == "-":
            codes.append((ord(text[i]), ord(text[i + 2])))
            i += 3
        else:
            codes.append((ord(text[i]), ord(text[i])))
            i += 1
    codes.sort()
    out = []
    nxt = 0
    for low, high in codes:
        if low > nxt:
            out.append(f"{_char(nxt)}-{_char(low - 1)}")
        nxt = max(nxt, high + 1)
    out.append(f"{_char(nxt)}-{_char(0x10FFFF)}")
    return "".join(out)


@dataclass(frozen=True, eq=False)
class GoRegex:
    """A compiled Go pattern and Go's group names (name -> group numbers, in order). Hashed by identity
    (compilations are cached), so it can key caches.

    Matching runs on RE2 (`linear`), Go's own engine: linear time, so a viewer's `=~"(.*)*x"` cannot
    hold the interpreter for minutes as Python's backtracking `re` would. The translated Python
    `pattern` validates exactly as Go does and serves only text RE2 cannot take (lone surrogates).
    """

    pattern: re.Pattern[str]
    names: dict[str, list[int]]
    linear: Any = None

    def search(self, text: str) -> Any:
        return self._run("search", text)

    def match(self, text: str) -> Any:
        return self._run("match", text)

    def fullmatch(self, text: str) -> Any:
        return self._run("fullmatch", text)

    def _run(self, how: str, text: str) -> Any:
        if self.linear is not None:
            with contextlib.suppress(UnicodeEncodeError):  # lone surrogates: only Python's re takes them
                return getattr(self.linear, how)(text)
        return getattr(self.pattern, how)(text)


def translate(pattern: str) -> tuple[str, dict[str, list[int]]]:
    """The Python equivalent of a Go regexp pattern and its group names; ValueError where Go would not
    compile it."""
    translator = _Translator(pattern)
    return translator.run(), translator.names


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported by the translator; keep stderr quiet


def compile_go(pattern: str) -> GoRegex:
    """Compile a Go regexp pattern (ValueError when invalid in Go, or unsupported)."""
    text, names = translate(pattern)
    try:
        python = re.compile(text)
    except re.error as err:
        raise ValueError(str(err)) from err
    try:
        linear = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        linear = None  # beyond RE2's memory budget: the backtracking engine is all there is
    return GoRegex(python, names, linear)


def _extract(template: str) -> tuple[str, int, str] | None:
    """Go's regexp `extract`: the name after a `$` (bare or braced), its number or -1, and the rest."""
    if not template:
        return None
    brace = template[0] == "{"
    body = template[1:] if brace else template
    i = 0
    while i < len(body) and (body[i].isalpha() or body[i].isdecimal() or body[i] == "_"):
        i += 1
    if i == 0:
        return None
    name = body[:i]
    if brace:
        if i >= len(body) or body[i] != "}":
            return None
        i += 1
    num = 0
    for ch in name:
        if not "0" <= ch <= "9" or num >= 100_000_000:
            num = -1
            break
        num = num * 10 + ord(ch) - 48
    if name[0] == "0" and len(name) > 1:
        num = -1
    return name, num, body[i:]


def expand(regex: GoRegex, template: str, match: re.Match[str]) -> str:
    """Go's Regexp.ExpandString: `$n`/`${n}`/`$name` become the submatch (empty if none), `$$` is `$`.
    A name shared by several groups means the first of them that took part in the match."""
    if "$" not in template:
        return template
    out: list[str] = []
    groups = match.re.groups
    while True:
        before, sep, after = template.partition("$")
        if not sep:
            break
        out.append(before)
        template = after
        if template.startswith("$"):
            out.append("$")
            template = template[1:]
            continue
        extracted = _extract(template)
        if extracted is None:
            out.append("$")
            continue
        name, num, template = extracted
        indexes = regex.names.get(name, []) if num < 0 else [num] if num <= groups else []
        for index in indexes:
            group = match.group(index)
            if group is not None:
                out.append(group)
                break
    out.append(template)
    return "".join(out)
