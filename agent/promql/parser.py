"""PromQL parser: query text to the `ast` tree, accepting and rejecting what Prometheus 2.42 does.

A recursive-descent (Pratt) rewrite of Prometheus's yacc grammar (`generated_parser.y`) with its
semantic actions (`parse.go`) and, after a successful parse, its type check (`checkAST`), so the
first error reported is the one Prometheus reports, in its words: `1:14: parse error: unexpected
<op:+>`. Columns count bytes like Prometheus's; `ParseError.pos` is the 0-based character offset.

Operator binding, loosest first: `or`; `and` `unless`; comparisons; `+ -`; `* / % atan2`; unary
`+ -` (its operand may contain `^` but not `*`, so `-2^2` is -4); `^` (right-associative); then the
postfix modifiers `offset`, `@`, `[range]`, `[range:step]`, which bind to the closest operand.

Constructs Prometheus 2.42 accepts but Vigil does not evaluate (`atan2`, the functions in
`ast.UNSUPPORTED_FUNCTIONS`, some RE2-only regex syntax) are parse errors naming the construct.
"""

from __future__ import annotations

import functools
import math
import re
from typing import NoReturn

from agent.promql import lexer as lx
from agent.promql.ast import (
    FUNCTIONS,
    PARAM_AGGREGATORS,
    UNSUPPORTED_FUNCTIONS,
    AggregateExpr,
    BinaryExpr,
    Call,
    Expr,
    Matcher,
    MatchType,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    ValueType,
    VectorMatching,
    VectorSelector,
)
from agent.promql.functions_regex import GoRegex, compile_go
from agent.promql.lexer import Token
from agent.promql.values import ParseError

__all__ = [
    "compile_matcher_regex",
    "expr_type",
    "matcher_matches_empty",
    "parse",
    "parse_duration",
    "parse_matchers",
]

_MAX_INT64 = 2**63 - 1

_BINARY_PRECEDENCE = {
    lx.LOR: 1, lx.LAND: 2, lx.LUNLESS: 2,
    lx.EQLC: 3, lx.NEQ: 3, lx.LSS: 3, lx.LTE: 3, lx.GTR: 3, lx.GTE: 3,
    lx.ADD: 4, lx.SUB: 4,
    lx.MUL: 5, lx.DIV: 5, lx.MOD: 5, lx.ATAN2: 5,
    lx.POW: 6,
}
_UNARY_PRECEDENCE = 5  # Prometheus gives unary +/- the precedence of `*`.
_OP_TEXT = {
    lx.LOR: "or", lx.LAND: "and", lx.LUNLESS: "unless", lx.EQLC: "==", lx.NEQ: "!=", lx.LSS: "<", lx.LTE: "<=",
    lx.GTR: ">", lx.GTE: ">=", lx.ADD: "+", lx.SUB: "-", lx.MUL: "*", lx.DIV: "/", lx.MOD: "%", lx.ATAN2: "atan2",
    lx.POW: "^",
}
_COMPARISON_OPS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_SET_OPS = frozenset({"and", "or", "unless"})
_MATCH_TYPES = {lx.EQL: MatchType.EQL, lx.NEQ: MatchType.NEQ, lx.EQL_REGEX: MatchType.RE, lx.NEQ_REGEX: MatchType.NRE}

# Tokens that name a metric when they start an expression (Prometheus's metric_identifier rule).
_METRIC_NAME_TOKENS = frozenset({
    lx.IDENTIFIER, lx.METRIC_IDENTIFIER, lx.BY, lx.WITHOUT, lx.LAND, lx.LOR, lx.LUNLESS, lx.OFFSET, lx.START, lx.END,
}) | lx.AGGREGATOR_TOKENS
_EXPR_START_TOKENS = _METRIC_NAME_TOKENS | {lx.NUMBER, lx.STRING, lx.LEFT_PAREN, lx.LEFT_BRACE, lx.ADD, lx.SUB}
# Tokens accepted as label names in by/without/on/ignoring/group_x lists (the maybe_label rule).
_LABEL_TOKENS = lx.AGGREGATOR_TOKENS | lx.KEYWORDS | {
    lx.IDENTIFIER, lx.METRIC_IDENTIFIER, lx.LAND, lx.LOR, lx.LUNLESS, lx.START, lx.END, lx.ATAN2,
}
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_DURATION_RE = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)
_DURATION_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
_DOCUMENTED_TYPE = {"vector": "instant vector", "matrix": "range vector", "scalar": "scalar", "string": "string"}


def parse(query: str) -> Expr:
    """Parses and type-checks a PromQL expression; raises ParseError (bad_data) for anything invalid."""
    parser = _Parser(query)
    try:
        if parser.peek().typ == lx.EOF:
            raise parser.error("no expression found in input", 0)
        expr = parser.expr(0)
        tok = parser.peek()
        if tok.typ != lx.EOF:
            parser.unexpected(tok)
        parser.check(expr)
        if parser.unsupported is not None:
            raise parser.error(*parser.unsupported)
    except RecursionError:
        raise parser.error("query is nested too deeply", 0) from None
    return expr


def parse_matchers(text: str) -> list[Matcher]:
    """The matchers of a series selector (`match[]` of the metadata APIs), like Prometheus's ParseMetricSelector.

    Only a plain vector selector is accepted. As in Prometheus, this does not demand a non-empty
    matcher: the API answers "match[] must contain at least one non-empty matcher" itself (see
    `matcher_matches_empty`).
    """
    parser = _Parser(text)
    tok = parser.peek()
    if tok.typ == lx.LEFT_BRACE:
        selector = parser.selector(None)
    elif tok.typ in _METRIC_NAME_TOKENS:
        selector = parser.selector(tok)
    else:
        parser.unexpected(tok, "")
    tok = parser.peek()
    if tok.typ != lx.EOF:
        parser.unexpected(tok, "")
    return selector.matchers


def parse_duration(text: str) -> int:
    """A Prometheus duration (`1h30m`, `5ms`, `2w`; units in descending order) in milliseconds.

    Follows model.ParseDuration: "0" is allowed here; the query parser additionally rejects zero
    ranges, steps and offsets. The ParseError carries the bare message, without a position.
    """
    if text == "0":
        return 0
    if text == "":
        raise ParseError("empty duration string")
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ParseError(f"not a valid duration string: {lx.go_quote(text)}")
    total = 0
    for group, unit in zip(match.groups(), _DURATION_UNITS_MS, strict=True):
        if group is not None:
            total += int(group) * unit
    if total * 1_000_000 > _MAX_INT64:
        raise ParseError("duration out of range")
    return total


def expr_type(expr: Expr) -> ValueType:
    """The value type an expression evaluates to (Prometheus's Expr.Type())."""
    while isinstance(expr, ParenExpr | UnaryExpr):
        expr = expr.expr
    if isinstance(expr, NumberLiteral):
        return "scalar"
    if isinstance(expr, StringLiteral):
        return "string"
    if isinstance(expr, VectorSelector | AggregateExpr):
        return "vector"
    if isinstance(expr, MatrixSelector | SubqueryExpr):
        return "matrix"
    if isinstance(expr, BinaryExpr):
        if expr_type(expr.lhs) == "scalar" and expr_type(expr.rhs) == "scalar":
            return "scalar"
        return "vector"
    if isinstance(expr, Call):
        return FUNCTIONS[expr.func].return_type
    raise TypeError(f"not a PromQL expression node: {type(expr).__name__}")


def matcher_matches_empty(matcher: Matcher) -> bool:
    """Whether the matcher accepts a missing label (the empty value), as labels.Matcher.Matches("")."""
    if matcher.type is MatchType.EQL:
        return matcher.value == ""
    if matcher.type is MatchType.NEQ:
        return matcher.value != ""
    matched = compile_matcher_regex(matcher.value).match("") is not None
    return matched if matcher.type is MatchType.RE else not matched


def _go_parse_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64) for the lexer's number shapes; None where Go reports an error."""
    if text[:2] in ("0x", "0X"):
        digits, base, valid = text[2:], 16, "0123456789abcdefABCDEF"
    elif len(text) > 1 and text[0] == "0":
        digits, base, valid = text[1:], 8, "01234567"
    else:
        digits, base, valid = text, 10, "0123456789"
    if not digits or any(c not in valid for c in digits):
        return None
    value = int(digits, base)
    return value if value <= _MAX_INT64 else None


def _go_parse_number(text: str) -> float:
    """A NUMBER token's value as Prometheus computes it: an int64 (octal with a leading 0, hex) or a float."""
    as_int = _go_parse_int(text)
    if as_int is not None:
        return float(as_int)
    invalid = ValueError(f"strconv.ParseFloat: parsing {lx.go_quote(text)}: invalid syntax")
    lowered = text.lower()
    if lowered in ("inf", "nan"):
        return float(lowered)
    if lowered.startswith("0x"):
        raise invalid  # Go needs a `p` exponent in a hex float, which the lexer never lets through.
    try:
        value = float(text)
    except ValueError:
        raise invalid from None
    if math.isinf(value):
        raise ValueError(f"strconv.ParseFloat: parsing {lx.go_quote(text)}: value out of range")
    return value


def _go_float_f(value: float) -> str:
    """Go's %f."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6f}"


def _round_half_away(value: float) -> int:
    """Go's math.Round then int64(): halves round away from zero (Python's round() would go to even)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


class _Parser:
    __slots__ = ("agg_depth", "i", "op_pos", "query", "tokens", "unsupported")

    def __init__(self, query: str):
        self.query = query
        self.tokens = lx.tokenize(query)
        self.i = 0
        self.agg_depth = 0  # aggregations being parsed: their error context is "in aggregation"
        self.op_pos: dict[int, int] = {}  # id(BinaryExpr) -> offset of its operator, for check errors
        # The first construct Prometheus accepts but Vigil does not evaluate, as (message, pos). It is
        # reported once the query parsed and type-checked, so an error Prometheus would report wins.
        self.unsupported: tuple[str, int] | None = None

    # --- errors ---

    def error(self, message: str, pos: int) -> ParseError:
        before = self.query[:pos]
        line = before.count("\n") + 1
        column = len(before[before.rfind("\n") + 1:].encode("utf-8", "surrogatepass")) + 1
        return ParseError(f"{line}:{column}: parse error: {message}", pos)

    def unexpected(self, tok: Token, context: str | None = None, expected: str = "") -> NoReturn:
        """Raises Prometheus's "unexpected <token> [in <context>][, expected <what>]"."""
        if context is None:
            context = "aggregation" if self.agg_depth else ""
        message = "unexpected " + lx.describe(tok)
        if context:
            message += " in " + context
        if expected:
            message += ", expected " + expected
        raise self.error(message, tok.pos)

    # --- tokens ---

    def peek(self) -> Token:
        tok = self.tokens[self.i]
        if tok.typ == lx.ERROR:
            raise self.error(tok.val, tok.pos)
        return tok

    def peek2(self) -> Token:
        """The token after the next one (EOF if there is none)."""
        if self.i + 1 >= len(self.tokens):
            return self.tokens[-1]
        tok = self.tokens[self.i + 1]
        if tok.typ == lx.ERROR:
            raise self.error(tok.val, tok.pos)
        return tok

    def next(self) -> Token:
        tok = self.peek()
        if tok.typ != lx.EOF:
            self.i += 1
        return tok

    # --- expressions ---

    def expr(self, min_precedence: int) -> Expr:
        """An expression whose binary operators all bind tighter than min_precedence."""
        left = self.primary()
        while True:
            tok = self.peek()
            typ = tok.typ
            precedence = _BINARY_PRECEDENCE.get(typ)
            if precedence is not None:
                if precedence <= min_precedence:
                    return left
                left = self.binary(left, tok, precedence)
            elif typ == lx.OFFSET:
                left = self.offset(left)
            elif typ == lx.AT:
                left = self.at(left)
            elif typ == lx.LEFT_BRACKET:
                left = self.range(left)
            else:
                return left

    def primary(self) -> Expr:
        tok = self.peek()
        typ = tok.typ
        if typ == lx.NUMBER:
            self.i += 1
            return NumberLiteral(self.number(tok), pos=tok.pos)
        if typ == lx.STRING:
            self.i += 1
            return StringLiteral(lx.unquote_string(tok.val), pos=tok.pos)
        if typ in (lx.ADD, lx.SUB):
            self.i += 1
            operand = self.expr(_UNARY_PRECEDENCE)
            if isinstance(operand, NumberLiteral):
                # Prometheus folds a sign into a number literal (position included).
                if typ == lx.SUB:
                    operand.value = -operand.value
                operand.pos = tok.pos
                return operand
            return UnaryExpr("-" if typ == lx.SUB else "+", operand, pos=tok.pos)
        if typ == lx.LEFT_PAREN:
            self.i += 1
            inner = self.expr(0)
            close = self.peek()
            if close.typ != lx.RIGHT_PAREN:
                self.unexpected(close)
            self.i += 1
            return ParenExpr(inner, pos=tok.pos)
        if typ == lx.LEFT_BRACE:
            return self.selector(None)
        if typ == lx.IDENTIFIER and self.peek2().typ == lx.LEFT_PAREN:
            return self.call(tok)
        if typ in lx.AGGREGATOR_TOKENS and self.peek2().typ in (lx.LEFT_PAREN, lx.BY, lx.WITHOUT):
            return self.aggregate(tok)
        if typ in _METRIC_NAME_TOKENS:
            return self.selector(tok)
        self.unexpected(tok)

    def binary(self, lhs: Expr, op_tok: Token, precedence: int) -> BinaryExpr:
        self.i += 1
        if op_tok.typ == lx.ATAN2 and self.unsupported is None:
            self.unsupported = ('operator "atan2" is not supported by Vigil', op_tok.pos)
        matching = VectorMatching()
        return_bool = False
        if self.peek().typ == lx.BOOL:
            self.i += 1
            return_bool = True
        tok = self.peek()
        if tok.typ in (lx.ON, lx.IGNORING):
            self.i += 1
            matching.on = tok.typ == lx.ON
            matching.matching_labels = self.grouping_labels()
            tok = self.peek()
            if tok.typ in (lx.GROUP_LEFT, lx.GROUP_RIGHT):
                self.i += 1
                matching.card = "many-to-one" if tok.typ == lx.GROUP_LEFT else "one-to-many"
                if self.peek().typ == lx.LEFT_PAREN:
                    matching.include = self.grouping_labels()
        # `^` is right-associative: its right side may hold further `^`s.
        rhs = self.expr(precedence - 1 if op_tok.typ == lx.POW else precedence)
        node = BinaryExpr(_OP_TEXT[op_tok.typ], lhs, rhs, matching, return_bool, pos=lhs.pos)
        self.op_pos[id(node)] = op_tok.pos
        return node

    def selector(self, name_tok: Token | None) -> VectorSelector:
        matchers: list[Matcher] = []
        if name_tok is not None:
            self.i += 1
        pos = name_tok.pos if name_tok is not None else self.peek().pos
        if self.peek().typ == lx.LEFT_BRACE:
            matchers = self.label_matchers()
        name = None
        if name_tok is not None:
            name = name_tok.val
            matchers.append(Matcher(MatchType.EQL, "__name__", name))
        return VectorSelector(name, matchers, pos=pos)

    def label_matchers(self) -> list[Matcher]:
        self.i += 1  # `{`
        matchers: list[Matcher] = []
        tok = self.next()
        if tok.typ == lx.RIGHT_BRACE:
            return matchers
        while True:
            if tok.typ != lx.IDENTIFIER:
                self.unexpected(tok, "label matching", 'identifier or "}"')
            op = self.next()
            match_type = _MATCH_TYPES.get(op.typ)
            if match_type is None:
                self.unexpected(op, "label matching", "label matching operator")
            value_tok = self.next()
            if value_tok.typ != lx.STRING:
                self.unexpected(value_tok, "label matching", "string")
            value = lx.unquote_string(value_tok.val)
            if match_type in (MatchType.RE, MatchType.NRE):
                try:
                    compile_matcher_regex(value)
                except ValueError as err:
                    raise self.error(str(err), tok.pos) from None
            matchers.append(Matcher(match_type, tok.val, value))
            tok = self.next()
            if tok.typ == lx.RIGHT_BRACE:
                return matchers
            if tok.typ != lx.COMMA:
                self.unexpected(tok, "label matching", '"," or "}"')
            tok = self.next()
            if tok.typ == lx.RIGHT_BRACE:
                return matchers

    def call_args(self) -> list[Expr]:
        """Arguments after an opening `(`, through the closing `)`."""
        if self.peek().typ == lx.RIGHT_PAREN:
            self.i += 1
            return []
        args: list[Expr] = []
        while True:
            args.append(self.expr(0))
            tok = self.next()
            if tok.typ == lx.RIGHT_PAREN:
                return args
            if tok.typ != lx.COMMA:
                self.unexpected(tok)
            if self.peek().typ not in _EXPR_START_TOKENS:
                # Prometheus's grammar takes a comma not followed by an argument as a trailing comma.
                raise self.error("trailing commas not allowed in function call args", tok.pos)

    def call(self, name_tok: Token) -> Call:
        self.i += 2  # name and `(`
        args = self.call_args()
        name = name_tok.val
        if name in UNSUPPORTED_FUNCTIONS:
            if self.unsupported is None:
                self.unsupported = (f"function {lx.go_quote(name)} is not supported by Vigil", name_tok.pos)
        elif name not in FUNCTIONS:
            raise self.error(f"unknown function with name {lx.go_quote(name)}", name_tok.pos)
        return Call(name, args, pos=name_tok.pos)

    def aggregate(self, op_tok: Token) -> AggregateExpr:
        self.i += 1
        self.agg_depth += 1
        grouping: list[str] | None = None
        without = False
        tok = self.peek()
        if tok.typ in (lx.BY, lx.WITHOUT):
            self.i += 1
            without = tok.typ == lx.WITHOUT
            grouping = self.grouping_labels()
        tok = self.peek()
        if tok.typ != lx.LEFT_PAREN:
            self.unexpected(tok)
        self.i += 1
        args = self.call_args()
        # Only without a leading by/without is the next token looked at (it may be a trailing one);
        # this decides whether a lexing error after the aggregation or the checks below come first.
        if grouping is None and self.peek().typ in (lx.BY, lx.WITHOUT):
            without = self.next().typ == lx.WITHOUT
            grouping = self.grouping_labels()
        self.agg_depth -= 1

        op = op_tok.typ.lower()
        if not args:
            raise self.error("no arguments for aggregate expression provided", op_tok.pos)
        wanted = 2 if op in PARAM_AGGREGATORS else 1
        if len(args) != wanted:
            raise self.error(
                f"wrong number of arguments for aggregate expression provided, expected {wanted}, got {len(args)}",
                op_tok.pos,
            )
        return AggregateExpr(
            op, args[-1], args[0] if wanted == 2 else None, grouping or [], without, pos=op_tok.pos
        )

    def grouping_labels(self) -> list[str]:
        """`(label, ...)` after by/without/on/ignoring/group_left/group_right."""
        tok = self.next()
        if tok.typ != lx.LEFT_PAREN:
            self.unexpected(tok, "grouping opts", '"("')
        labels: list[str] = []
        tok = self.next()
        if tok.typ == lx.RIGHT_PAREN:
            return labels
        while True:
            if tok.typ not in _LABEL_TOKENS or not _LABEL_NAME_RE.fullmatch(tok.val):
                self.unexpected(tok, "grouping opts", "label")
            labels.append(tok.val)
            tok = self.next()
            if tok.typ == lx.RIGHT_PAREN:
                return labels
            if tok.typ != lx.COMMA:
                self.unexpected(tok, "grouping opts", '"," or ")"')
            tok = self.next()
            if tok.typ == lx.RIGHT_PAREN:
                return labels

    # --- postfix modifiers ---

    def offset(self, expr: Expr) -> Expr:
        self.i += 1
        tok = self.next()
        negative = tok.typ == lx.SUB
        if negative:
            tok = self.next()
        if tok.typ != lx.DURATION:
            self.unexpected(tok, "offset", "duration")
        offset = self.duration(tok)
        target = expr.vector if isinstance(expr, MatrixSelector) else expr
        if not isinstance(target, VectorSelector | SubqueryExpr):
            raise self.error(
                "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                expr.pos,
            )
        if target.offset != 0:
            raise self.error("offset may not be set multiple times", expr.pos)
        target.offset = -offset if negative else offset
        return expr

    def at(self, expr: Expr) -> Expr:
        self.i += 1
        tok = self.next()
        timestamp: float | None = None
        start_or_end = None
        if tok.typ in (lx.START, lx.END):
            start_or_end = "start" if tok.typ == lx.START else "end"
            for wanted in (lx.LEFT_PAREN, lx.RIGHT_PAREN):
                paren = self.next()
                if paren.typ != wanted:
                    self.unexpected(paren, "@", "timestamp")
        else:
            sign = 1.0
            if tok.typ in (lx.ADD, lx.SUB):
                sign = -1.0 if tok.typ == lx.SUB else 1.0
                tok = self.next()
            if tok.typ != lx.NUMBER:
                self.unexpected(tok, "@", "timestamp")
            timestamp = sign * self.number(tok)
            if math.isinf(timestamp) or math.isnan(timestamp) or abs(timestamp) >= 2.0**63:
                raise self.error(f"timestamp out of bounds for @ modifier: {_go_float_f(timestamp)}", expr.pos)
        target = expr.vector if isinstance(expr, MatrixSelector) else expr
        if not isinstance(target, VectorSelector | SubqueryExpr):
            raise self.error(
                "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                expr.pos,
            )
        if target.timestamp is not None or target.start_or_end is not None:
            raise self.error("@ <timestamp> may not be set multiple times", expr.pos)
        if timestamp is not None:
            target.timestamp = _round_half_away(timestamp * 1000)
        else:
            target.start_or_end = start_or_end
        return expr

    def range(self, expr: Expr) -> Expr:
        """`[range]` (a matrix selector) or `[range:step]` / `[range:]` (a subquery)."""
        bracket = self.next()
        tok = self.next()
        if tok.typ != lx.DURATION:
            self.unexpected(tok, "subquery selector", "duration")
        range_ms = self.duration(tok)
        tok = self.next()
        if tok.typ == lx.RIGHT_BRACKET:
            if not isinstance(expr, VectorSelector):
                raise self.error("ranges only allowed for vector selectors", bracket.pos)
            if expr.offset != 0:
                raise self.error("no offset modifiers allowed before range", bracket.pos)
            if expr.timestamp is not None:
                raise self.error("no @ modifiers allowed before range", bracket.pos)
            return MatrixSelector(expr, range_ms, pos=expr.pos)
        if tok.typ != lx.COLON:
            self.unexpected(tok, "subquery or range", '":" or "]"')
        tok = self.next()
        step = 0
        if tok.typ == lx.DURATION:
            step = self.duration(tok)
            tok = self.next()
            if tok.typ != lx.RIGHT_BRACKET:
                self.unexpected(tok, "subquery selector", '"]"')
        elif tok.typ != lx.RIGHT_BRACKET:
            self.unexpected(tok, "subquery selector", 'duration or "]"')
        return SubqueryExpr(expr, range_ms, step, pos=expr.pos)

    # --- literals ---

    def number(self, tok: Token) -> float:
        try:
            return _go_parse_number(tok.val)
        except ValueError as err:
            raise self.error(f"error parsing number: {err}", tok.pos) from None

    def duration(self, tok: Token) -> int:
        try:
            value = parse_duration(tok.val)
        except ParseError as err:
            raise self.error(str(err), tok.pos) from None
        if value == 0:
            raise self.error("duration must be greater than 0", tok.pos)
        return value

    # --- type check (Prometheus's checkAST), run once the whole query parsed ---

    def check(self, node: Expr) -> ValueType:
        if isinstance(node, BinaryExpr):
            return self.check_binary(node)
        if isinstance(node, Call):
            return self.check_call(node)
        if isinstance(node, AggregateExpr):
            self.expect_type(node.expr, "vector", "aggregation expression")
            if node.op in ("topk", "bottomk", "quantile"):
                self.expect_type(node.param, "scalar", "aggregation parameter")
            elif node.op == "count_values":
                self.expect_type(node.param, "string", "aggregation parameter")
            return "vector"
        if isinstance(node, VectorSelector):
            self.check_selector(node)
            return "vector"
        if isinstance(node, MatrixSelector):
            self.check_selector(node.vector)
            return "matrix"
        if isinstance(node, SubqueryExpr):
            inner = self.check(node.expr)
            if inner != "vector":
                raise self.error(f"subquery is only allowed on instant vector, got {inner} instead", node.pos)
            return "matrix"
        if isinstance(node, ParenExpr):
            return self.check(node.expr)
        if isinstance(node, UnaryExpr):
            inner = self.check(node.expr)
            if inner not in ("scalar", "vector"):
                raise self.error(
                    "unary expression only allowed on expressions of type scalar or instant vector, "
                    f"got {lx.go_quote(_DOCUMENTED_TYPE[inner])}",
                    node.pos,
                )
            return inner
        if isinstance(node, NumberLiteral):
            return "scalar"
        return "string"

    def expect_type(self, node: Expr | None, want: ValueType, context: str) -> None:
        assert node is not None
        got = self.check(node)
        if got != want:
            raise self.error(
                f"expected type {_DOCUMENTED_TYPE[want]} in {context}, got {_DOCUMENTED_TYPE[got]}", node.pos
            )

    def check_binary(self, node: BinaryExpr) -> ValueType:
        # Long chains (`a or b or c ...`) nest on the left; walk them in a loop rather than recursing
        # once per operator, checking in the same order as the recursion would.
        chain = [node]
        while isinstance(chain[-1].lhs, BinaryExpr):
            chain.append(chain[-1].lhs)
        typ = self.check(chain[-1].lhs)
        for link in reversed(chain):
            typ = self.check_binary_node(link, typ, self.check(link.rhs))
        return typ

    def check_binary_node(self, node: BinaryExpr, lt: ValueType, rt: ValueType) -> ValueType:
        op = node.op
        op_pos = self.op_pos[id(node)]
        matching = node.matching
        assert matching is not None
        if node.return_bool and op not in _COMPARISON_OPS:
            raise self.error("bool modifier can only be used on comparison operators", op_pos)
        if op in _COMPARISON_OPS and not node.return_bool and lt == "scalar" and rt == "scalar":
            raise self.error("comparisons between scalars must use BOOL modifier", op_pos)
        if op in _SET_OPS and matching.card == "one-to-one":
            matching.card = "many-to-many"
        if matching.on:
            for label in matching.matching_labels:
                if label in matching.include:
                    raise self.error(
                        f"label {lx.go_quote(label)} must not occur in ON and GROUP clause at once", op_pos
                    )
        if lt not in ("scalar", "vector"):
            raise self.error("binary expression must contain only scalar and instant vector types", node.lhs.pos)
        if rt not in ("scalar", "vector"):
            raise self.error("binary expression must contain only scalar and instant vector types", node.rhs.pos)
        if lt != "vector" or rt != "vector":
            if matching.matching_labels:
                raise self.error("vector matching only allowed between instant vectors", node.pos)
            node.matching = None
        elif op in _SET_OPS and matching.card != "many-to-many":
            raise self.error(f"no grouping allowed for {lx.go_quote(op)} operation", node.pos)
        if op in _SET_OPS and "scalar" in (lt, rt):
            raise self.error(f"set operator {lx.go_quote(op)} not allowed in binary scalar expression", node.pos)
        return "scalar" if lt == "scalar" and rt == "scalar" else "vector"

    def check_call(self, node: Call) -> ValueType:
        if node.func in UNSUPPORTED_FUNCTIONS:
            # Reported after the check; only its type matters here (pi() is the one scalar among them).
            return "scalar" if node.func == "pi" else "vector"
        sig = FUNCTIONS[node.func]
        name = lx.go_quote(node.func)
        n_types, n_args = len(sig.arg_types), len(node.args)
        if sig.variadic == 0:
            if n_types != n_args:
                raise self.error(f"expected {n_types} argument(s) in call to {name}, got {n_args}", node.pos)
        else:
            required = n_types - 1
            if required > n_args:
                raise self.error(f"expected at least {required} argument(s) in call to {name}, got {n_args}", node.pos)
            if sig.variadic > 0 and required + sig.variadic < n_args:
                raise self.error(
                    f"expected at most {required + sig.variadic} argument(s) in call to {name}, got {n_args}",
                    node.pos,
                )
        for i, arg in enumerate(node.args):
            want = sig.arg_types[min(i, n_types - 1)]
            got = self.check(arg)
            if got != want:
                raise self.error(
                    f"expected type {_DOCUMENTED_TYPE[want]} in call to function {name}, "
                    f"got {_DOCUMENTED_TYPE[got]}",
                    arg.pos,
                )
        return sig.return_type

    def check_selector(self, node: VectorSelector) -> None:
        if node.name is not None:
            for matcher in node.matchers[:-1]:
                if matcher.name == "__name__":
                    raise self.error(
                        "metric name must not be set twice: "
                        f"{lx.go_quote(node.name)} or {lx.go_quote(matcher.value)}",
                        node.pos,
                    )
            return
        if all(matcher_matches_empty(m) for m in node.matchers):
            raise self.error("vector selector must contain at least one non-empty matcher", node.pos)



@functools.lru_cache(maxsize=4096)
def compile_matcher_regex(value: str) -> GoRegex:
    """A `=~`/`!~` matcher's regex compiled as Prometheus does (RE2 syntax, anchored `^(?:value)$`).

    The pattern must match the whole label value; use `.match()` (or `.fullmatch()`). Raises
    ValueError("error parsing regexp: ...") where Go would not compile it or Vigil cannot translate it.
    """
    try:
        return compile_go(f"^(?:{value})$")
    except ValueError as err:
        message = str(err)
        if not message.startswith("error parsing regexp:"):
            message = f"error parsing regexp: {message}: `{value}`"
        raise ValueError(message) from None
