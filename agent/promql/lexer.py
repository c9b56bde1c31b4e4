"""PromQL tokenizer, a port of the state machine in Prometheus 2.42's `promql/parser/lex.go`.

The lexer is context-sensitive in the same places as Prometheus's: inside `{...}` every word is a
plain identifier (keywords and aggregators are label names there), inside `[...]` only durations
and one colon are allowed, and a stray `)` or an unclosed `(` / `[` is a lexing error. It stops at
the first error and ends the token list with an ERROR token, which the parser reports when it
reaches it (as Prometheus does, so an earlier syntax error wins).

Token values are the exact source text (strings keep their quotes); positions are 0-based
character offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Token types. The names are Prometheus's item types so error messages and code read alike.
EOF = "EOF"
ERROR = "ERROR"
IDENTIFIER = "IDENTIFIER"
METRIC_IDENTIFIER = "METRIC_IDENTIFIER"
NUMBER = "NUMBER"
STRING = "STRING"
DURATION = "DURATION"
LEFT_PAREN = "LEFT_PAREN"
RIGHT_PAREN = "RIGHT_PAREN"
LEFT_BRACE = "LEFT_BRACE"
RIGHT_BRACE = "RIGHT_BRACE"
LEFT_BRACKET = "LEFT_BRACKET"
RIGHT_BRACKET = "RIGHT_BRACKET"
COMMA = "COMMA"
EQL = "EQL"
COLON = "COLON"
# Operators.
ADD = "ADD"
SUB = "SUB"
MUL = "MUL"
DIV = "DIV"
MOD = "MOD"
POW = "POW"
EQLC = "EQLC"
NEQ = "NEQ"
LSS = "LSS"
LTE = "LTE"
GTR = "GTR"
GTE = "GTE"
EQL_REGEX = "EQL_REGEX"
NEQ_REGEX = "NEQ_REGEX"
LAND = "LAND"
LOR = "LOR"
LUNLESS = "LUNLESS"
ATAN2 = "ATAN2"
AT = "AT"
# Aggregators.
SUM = "SUM"
AVG = "AVG"
COUNT = "COUNT"
MIN = "MIN"
MAX = "MAX"
GROUP = "GROUP"
STDDEV = "STDDEV"
STDVAR = "STDVAR"
TOPK = "TOPK"
BOTTOMK = "BOTTOMK"
COUNT_VALUES = "COUNT_VALUES"
QUANTILE = "QUANTILE"
# Keywords.
OFFSET = "OFFSET"
BY = "BY"
WITHOUT = "WITHOUT"
ON = "ON"
IGNORING = "IGNORING"
GROUP_LEFT = "GROUP_LEFT"
GROUP_RIGHT = "GROUP_RIGHT"
BOOL = "BOOL"
# `@` preprocessors.
START = "START"
END = "END"

OPERATORS = frozenset({
    ADD, SUB, MUL, DIV, MOD, POW, EQLC, NEQ, LSS, LTE, GTR, GTE, EQL_REGEX, NEQ_REGEX, LAND, LOR, LUNLESS,
    ATAN2, AT,
})
AGGREGATOR_TOKENS = frozenset({SUM, AVG, COUNT, MIN, MAX, GROUP, STDDEV, STDVAR, TOPK, BOTTOMK, COUNT_VALUES, QUANTILE})
KEYWORDS = frozenset({OFFSET, BY, WITHOUT, ON, IGNORING, GROUP_LEFT, GROUP_RIGHT, BOOL})

# Words the lexer turns into keyword tokens, matched case-insensitively ("inf"/"nan" are numbers).
_KEYWORD_TOKENS: dict[str, str] = {
    "and": LAND, "or": LOR, "unless": LUNLESS, "atan2": ATAN2,
    "sum": SUM, "avg": AVG, "count": COUNT, "min": MIN, "max": MAX, "group": GROUP, "stddev": STDDEV,
    "stdvar": STDVAR, "topk": TOPK, "bottomk": BOTTOMK, "count_values": COUNT_VALUES, "quantile": QUANTILE,
    "offset": OFFSET, "by": BY, "without": WITHOUT, "on": ON, "ignoring": IGNORING, "group_left": GROUP_LEFT,
    "group_right": GROUP_RIGHT, "bool": BOOL, "start": START, "end": END,
    "inf": NUMBER, "nan": NUMBER,
}

# Types Prometheus prints by their text in "unexpected ..." messages (its ItemTypeStr table).
_PRINTED_BY_TEXT = OPERATORS | AGGREGATOR_TOKENS | KEYWORDS | {
    START, END, LEFT_PAREN, RIGHT_PAREN, LEFT_BRACE, RIGHT_BRACE, LEFT_BRACKET, RIGHT_BRACKET, COMMA, EQL, COLON,
}
_KIND_NAMES = {
    IDENTIFIER: "identifier", METRIC_IDENTIFIER: "metric identifier", STRING: "string", NUMBER: "number",
    DURATION: "duration", ERROR: "error",
}

_SINGLE_CHAR_TOKENS = {",": COMMA, "*": MUL, "/": DIV, "%": MOD, "+": ADD, "-": SUB, "^": POW, "@": AT}
_SPACE = " \t\n\r"
_DIGITS = "0123456789"
_HEX_DIGITS = "0123456789abcdefABCDEF"
_WORD_RE = re.compile(r"[A-Za-z0-9_:]*")
_IDENT_RE = re.compile(r"[A-Za-z0-9_]*")
_SPACE_RE = re.compile(r"[ \t\n\r]*")


@dataclass(slots=True)
class Token:
    typ: str
    pos: int
    val: str


class _LexError(Exception):
    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.message = message
        self.pos = pos


def _is_alpha(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_alnum(c: str) -> bool:
    return _is_alpha(c) or ("0" <= c <= "9")


def tokenize(query: str) -> list[Token]:
    """All tokens of `query`, comments dropped, ending with an EOF or ERROR token."""
    return _Lexer(query).run()


class _Lexer:
    __slots__ = ("bracket_open", "got_colon", "n", "paren_depth", "s", "tokens")

    def __init__(self, query: str):
        self.s = query
        self.n = len(query)
        self.tokens: list[Token] = []
        self.paren_depth = 0
        self.bracket_open = False
        self.got_colon = False

    def run(self) -> list[Token]:
        try:
            i = 0
            while True:
                i = self._statement(i)
                if i < 0:
                    return self.tokens
        except _LexError as err:
            self.tokens.append(Token(ERROR, err.pos, err.message))
            return self.tokens

    def _emit(self, typ: str, start: int, end: int) -> int:
        self.tokens.append(Token(typ, start, self.s[start:end]))
        return end

    def _statement(self, i: int) -> int:
        """Lexes one item outside braces starting at i; returns the next offset, or -1 after EOF."""
        s, n = self.s, self.n
        if i >= n:
            if self.paren_depth != 0:
                raise _LexError("unclosed left parenthesis", i)
            if self.bracket_open:
                raise _LexError("unclosed left bracket", i)
            self.tokens.append(Token(EOF, n, ""))
            return -1
        c = s[i]
        if c == "#":
            return _skip_comment(s, i)
        if c in _SPACE:
            return _SPACE_RE.match(s, i).end()
        typ = _SINGLE_CHAR_TOKENS.get(c)
        if typ is not None:
            return self._emit(typ, i, i + 1)
        nxt = s[i + 1] if i + 1 < n else ""
        if c == "=":
            if nxt == "=":
                return self._emit(EQLC, i, i + 2)
            if nxt == "~":
                raise _LexError("unexpected character after '=': '~'", i)
            return self._emit(EQL, i, i + 1)
        if c == "!":
            if nxt != "=":
                raise _LexError(f"unexpected character after '!': {go_quote_rune(nxt)}", i)
            return self._emit(NEQ, i, i + 2)
        if c in "<>":
            if nxt == "=":
                return self._emit(LTE if c == "<" else GTE, i, i + 2)
            return self._emit(LSS if c == "<" else GTR, i, i + 1)
        if c in _DIGITS or (c == "." and nxt != "" and nxt in _DIGITS):
            return self._number_or_duration(i)
        if c in "\"'":
            return self._emit(STRING, i, _scan_string(s, i, c))
        if c == "`":
            return self._emit(STRING, i, _scan_raw_string(s, i))
        if _is_alpha(c) or c == ":":
            if not self.bracket_open:
                return self._word(i)
            # Prometheus 2.42 takes any letter inside brackets for the subquery colon (so `a[5m x]`
            # means `a[5m:]`); kept for parity.
            if self.got_colon:
                raise _LexError(f"unexpected colon {go_quote_rune(c)}", i)
            self.got_colon = True
            return self._emit(COLON, i, i + 1)
        if c == "(":
            self.paren_depth += 1
            return self._emit(LEFT_PAREN, i, i + 1)
        if c == ")":
            self.paren_depth -= 1
            if self.paren_depth < 0:
                raise _LexError("unexpected right parenthesis ')'", i + 1)
            return self._emit(RIGHT_PAREN, i, i + 1)
        if c == "{":
            self._emit(LEFT_BRACE, i, i + 1)
            return self._inside_braces(i + 1)
        if c == "[":
            if self.bracket_open:
                raise _LexError("unexpected left bracket '['", i)
            self.got_colon = False
            self._emit(LEFT_BRACKET, i, i + 1)
            self.bracket_open = True
            return self._duration(_SPACE_RE.match(s, i + 1).end())
        if c == "]":
            if not self.bracket_open:
                raise _LexError("unexpected right bracket ']'", i)
            self.bracket_open = False
            return self._emit(RIGHT_BRACKET, i, i + 1)
        raise _LexError(f"unexpected character: {go_quote_rune(c)}", i)

    def _word(self, i: int) -> int:
        end = _WORD_RE.match(self.s, i).end()
        word = self.s[i:end]
        typ = _KEYWORD_TOKENS.get(word.lower())
        if typ is None:
            typ = METRIC_IDENTIFIER if ":" in word else IDENTIFIER
        return self._emit(typ, i, end)

    def _number_or_duration(self, i: int) -> int:
        ok, j = _scan_number(self.s, i)
        if ok:
            return self._emit(NUMBER, i, j)
        ok, j = _accept_remaining_duration(self.s, j)
        if ok:
            return self._emit(DURATION, i, j)
        raise _LexError(f"bad number or duration syntax: {go_quote(self.s[i:j])}", i)

    def _duration(self, i: int) -> int:
        """The range right after `[`: a duration is required (a bare number lacks its unit)."""
        ok, j = _scan_number(self.s, i)
        if ok:
            raise _LexError("missing unit character in duration", i)
        ok, j = _accept_remaining_duration(self.s, j)
        if not ok:
            raise _LexError(f"bad duration syntax: {go_quote(self.s[i:j])}", i)
        return self._emit(DURATION, i, j)

    def _inside_braces(self, i: int) -> int:
        """Lexes a label matcher list up to and including `}`."""
        s, n = self.s, self.n
        while True:
            if i >= n:
                raise _LexError("unexpected end of input inside braces", i)
            c = s[i]
            if c == "#":
                i = _skip_comment(s, i)
            elif c in _SPACE:
                i = _SPACE_RE.match(s, i).end()
            elif _is_alpha(c):
                i = self._emit(IDENTIFIER, i, _IDENT_RE.match(s, i).end())
            elif c == ",":
                i = self._emit(COMMA, i, i + 1)
            elif c in "\"'":
                i = self._emit(STRING, i, _scan_string(s, i, c))
            elif c == "`":
                i = self._emit(STRING, i, _scan_raw_string(s, i))
            elif c == "=":
                regex = i + 1 < n and s[i + 1] == "~"
                i = self._emit(EQL_REGEX, i, i + 2) if regex else self._emit(EQL, i, i + 1)
            elif c == "!":
                nxt = s[i + 1] if i + 1 < n else ""
                if nxt == "~":
                    i = self._emit(NEQ_REGEX, i, i + 2)
                elif nxt == "=":
                    i = self._emit(NEQ, i, i + 2)
                else:
                    raise _LexError(f"unexpected character after '!' inside braces: {go_quote_rune(nxt)}", i)
            elif c == "{":
                raise _LexError("unexpected left brace '{'", i)
            elif c == "}":
                return self._emit(RIGHT_BRACE, i, i + 1)
            else:
                raise _LexError(f"unexpected character inside braces: {go_quote_rune(c)}", i)


def _skip_comment(s: str, i: int) -> int:
    """Offset of the end of the line comment starting at i (the newline itself is kept)."""
    ends = [p for p in (s.find("\n", i), s.find("\r", i)) if p >= 0]
    return min(ends) if ends else len(s)


def _scan_number(s: str, i: int) -> tuple[bool, int]:
    """Prometheus's scanNumber: how far a number extends from i, and whether it ends cleanly.

    It is deliberately permissive (`1e`, `0x` are scanned); the parser rejects what does not parse.
    """
    n = len(s)
    digits = _DIGITS
    if i < n and s[i] == "0":
        i += 1
        if i < n and s[i] in "xX":
            i += 1
            digits = _HEX_DIGITS
    while i < n and s[i] in digits:
        i += 1
    if i < n and s[i] == ".":
        i += 1
        while i < n and s[i] in digits:
            i += 1
    if i < n and s[i] in "eE":
        i += 1
        if i < n and s[i] in "+-":
            i += 1
        while i < n and s[i] in _DIGITS:
            i += 1
    return (i >= n or not _is_alnum(s[i])), i


def _accept_remaining_duration(s: str, i: int) -> tuple[bool, int]:
    """After the leading digits: unit letters and further number+unit groups (`1h30m`, `5ms`).

    Returns (ok, end). On failure `end` includes the offending character, for the error text.
    """
    n = len(s)
    if i >= n or s[i] not in "smhdwy":
        return False, i
    i += 1
    if i < n and s[i] == "s":
        i += 1
    while i < n and s[i] in _DIGITS:
        while i < n and s[i] in _DIGITS:
            i += 1
        if i >= n or s[i] not in "smhdw":
            return False, i
        i += 1
        if i < n and s[i] == "s":
            i += 1
    if i < n and _is_alnum(s[i]):
        return False, i + 1
    return True, i


def _scan_string(s: str, start: int, quote: str) -> int:
    """End offset (after the closing quote) of the "..." or '...' string at start; checks escapes."""
    n = len(s)
    i = start + 1
    while True:
        if i >= n:
            raise _LexError("unterminated quoted string", start)
        c = s[i]
        i += 1
        if c == quote:
            return i
        if c == "\\":
            i = _check_escape(s, i, quote, start)
        elif c == "\n":
            raise _LexError("unterminated quoted string", start)
        elif c == "\ufffd":
            raise _LexError("invalid UTF-8 rune", start)


def _scan_raw_string(s: str, start: int) -> int:
    end = s.find("`", start + 1)
    bad = s.find("\ufffd", start + 1, end if end >= 0 else len(s))
    if bad >= 0:
        raise _LexError("invalid UTF-8 rune", start)
    if end < 0:
        raise _LexError("unterminated raw string", start)
    return end + 1


def _digit_val(c: str | None) -> int:
    if c is None:
        return 16
    if "0" <= c <= "9":
        return ord(c) - 48
    if "a" <= c <= "f":
        return ord(c) - 87
    if "A" <= c <= "F":
        return ord(c) - 55
    return 16


def _check_escape(s: str, i: int, quote: str, start: int) -> int:
    """Validates the escape whose backslash precedes i (Go's rules); returns the offset after it."""
    n = len(s)
    ch: str | None = s[i] if i < n else None
    i += 1
    if ch is None:
        raise _LexError("escape sequence not terminated", start)
    if ch in "abfnrtv\\" or ch == quote:
        return i
    if ch in "01234567":
        count, base, max_val = 3, 8, 255
    elif ch in "xuU":
        count, base, max_val = {"x": (2, 16, 255), "u": (4, 16, 0x10FFFF), "U": (8, 16, 0x10FFFF)}[ch]
        ch = s[i] if i < n else None
        i += 1
    else:
        raise _LexError(f"unknown escape sequence {go_rune_u(ch)}", start)
    value = 0
    while count > 0:
        digit = _digit_val(ch)
        if digit >= base:
            if ch is None:
                raise _LexError("escape sequence not terminated", start)
            raise _LexError(f"illegal character {go_rune_u(ch)} in escape sequence", start)
        value = value * base + digit
        count -= 1
        if count > 0:
            ch = s[i] if i < n else None
            i += 1
    if value > max_val or 0xD800 <= value < 0xE000:
        raise _LexError("escape sequence is an invalid Unicode code point", start)
    return i


_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39, '"': 34}


def unquote_string(text: str) -> str:
    """The value of a STRING token (quotes included), as Prometheus's strutil.Unquote computes it.

    `\\x` and octal escapes are bytes, as in Go, so the result is decoded as UTF-8 at the end
    (invalid sequences become U+FFFD, as Prometheus's JSON output would show them).
    """
    body = text[1:-1]
    if text[0] == "`" or "\\" not in body:
        return body
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c != "\\":
            j = body.find("\\", i)
            j = n if j < 0 else j
            out += body[i:j].encode("utf-8", "surrogatepass")
            i = j
            continue
        e = body[i + 1]
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
            i += 2
        elif e in "01234567":
            out.append(int(body[i + 1:i + 4], 8))
            i += 4
        elif e == "x":
            out.append(int(body[i + 2:i + 4], 16))
            i += 4
        else:
            width = 4 if e == "u" else 8
            out += chr(int(body[i + 2:i + 2 + width], 16)).encode()
            i += 2 + width
    return out.decode("utf-8", "replace")


# --- Go-style quoting for error messages ---

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v", "\\": "\\\\"}


def _go_escape_char(c: str, quote: str) -> str:
    if c == quote:
        return "\\" + c
    if c in _GO_ESCAPES:
        return _GO_ESCAPES[c]
    if c.isprintable():
        return c
    code = ord(c)
    if code < 0x80:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def go_quote(text: str) -> str:
    """Go's %q of a string."""
    return '"' + "".join(_go_escape_char(c, '"') for c in text) + '"'


def go_quote_rune(c: str) -> str:
    """Go's %q of a rune; "" stands for end of input (Go prints U+FFFD for it)."""
    return "'" + _go_escape_char(c or "\ufffd", "'") + "'"


def go_rune_u(c: str) -> str:
    """Go's %#U of a rune: `U+0071 'q'`."""
    code = f"U+{ord(c):04X}"
    return f"{code} '{c}'" if c.isprintable() else code


def describe(tok: Token) -> str:
    """How Prometheus names a token in "unexpected ..." errors: `<op:+>`, `identifier "foo"`, `end of input`."""
    typ, val = tok.typ, tok.val
    if typ == EOF:
        return "end of input"
    if typ == AT:
        # Prometheus 2.42 forgot `@` in its token-name table, so its yacc number shows through.
        return f'"<Item 57385>" <op:{val}>'
    if typ in _PRINTED_BY_TEXT:
        if typ in KEYWORDS:
            return f"<{val}>"
        if typ in OPERATORS:
            return f"<op:{val}>"
        if typ in AGGREGATOR_TOKENS:
            return f"<aggr:{val}>"
        return _quote_short(val)
    if typ in (IDENTIFIER, METRIC_IDENTIFIER):
        return f"{_KIND_NAMES[typ]} {go_quote(val)}"
    return f"{_KIND_NAMES.get(typ, typ.lower())} {_quote_short(val)}"


def _quote_short(val: str) -> str:
    if len(val.encode("utf-8", "surrogatepass")) > 10:
        return go_quote(val[:10]) + "..."
    return go_quote(val)
