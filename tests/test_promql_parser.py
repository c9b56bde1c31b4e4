"""PromQL lexer and parser: AST shapes, precedence, positions, and Prometheus 2.42's exact errors.

The expected error messages were taken from a real Prometheus 2.42 (`/api/v1/query` answers, with
its `invalid parameter "query": ` prefix removed).
"""

from __future__ import annotations

import math

import pytest

from agent.promql import ast
from agent.promql.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    Matcher,
    MatchType,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    VectorMatching,
    VectorSelector,
)
from agent.promql.lexer import describe, tokenize, unquote_string
from agent.promql.parser import (
    compile_matcher_regex,
    expr_type,
    matcher_matches_empty,
    parse,
    parse_duration,
    parse_matchers,
)
from agent.promql.values import ParseError


def name_eq(name: str) -> Matcher:
    return Matcher(MatchType.EQL, "__name__", name)


def vs(name: str, *matchers: Matcher, **kw: object) -> VectorSelector:
    return VectorSelector(name, [*matchers, name_eq(name)], **kw)  # type: ignore[arg-type]


def render(node: ast.Expr) -> str:
    """A compact, fully parenthesized rendering, to assert tree shapes in one line."""
    if isinstance(node, NumberLiteral):
        return repr(node.value)
    if isinstance(node, StringLiteral):
        return repr(node.value)
    if isinstance(node, VectorSelector):
        text = node.name or "{" + ",".join(f"{m.name}{m.type.value}{m.value!r}" for m in node.matchers) + "}"
        if node.offset:
            text += f" offset {node.offset}"
        if node.timestamp is not None:
            text += f" @{node.timestamp}"
        if node.start_or_end:
            text += f" @{node.start_or_end}"
        return text
    if isinstance(node, MatrixSelector):
        return f"{render(node.vector)}[{node.range}]"
    if isinstance(node, SubqueryExpr):
        text = f"{render(node.expr)}[{node.range}:{node.step}]"
        if node.offset:
            text += f" offset {node.offset}"
        if node.timestamp is not None:
            text += f" @{node.timestamp}"
        if node.start_or_end:
            text += f" @{node.start_or_end}"
        return text
    if isinstance(node, ParenExpr):
        return f"paren({render(node.expr)})"
    if isinstance(node, UnaryExpr):
        return f"({node.op}{render(node.expr)})"
    if isinstance(node, BinaryExpr):
        op = node.op + (" bool" if node.return_bool else "")
        return f"({render(node.lhs)} {op} {render(node.rhs)})"
    if isinstance(node, Call):
        return f"{node.func}({', '.join(render(a) for a in node.args)})"
    if isinstance(node, AggregateExpr):
        args = ([render(node.param)] if node.param is not None else []) + [render(node.expr)]
        mod = ""
        if node.grouping or node.without:
            mod = f" {'without' if node.without else 'by'}({','.join(node.grouping)})"
        return f"{node.op}{mod}({', '.join(args)})"
    raise AssertionError(node)


def parse_error(query: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(query)
    return info.value


# --- AST shapes ---


def test_vector_selector_with_name_and_matchers() -> None:
    got = parse('http_requests_total{job="api", code=~"5..", method!="GET", path!~"/health.*"}')
    assert got == VectorSelector(
        "http_requests_total",
        [
            Matcher(MatchType.EQL, "job", "api"),
            Matcher(MatchType.RE, "code", "5.."),
            Matcher(MatchType.NEQ, "method", "GET"),
            Matcher(MatchType.NRE, "path", "/health.*"),
            name_eq("http_requests_total"),
        ],
    )


def test_selector_without_name_keeps_matchers_only() -> None:
    got = parse('{__name__=~"up|down", job="x",}')
    want = [Matcher(MatchType.RE, "__name__", "up|down"), Matcher(MatchType.EQL, "job", "x")]
    assert got == VectorSelector(None, want)


def test_metric_names_with_colons_and_keywords_as_names() -> None:
    assert parse("job:rate5m:sum") == vs("job:rate5m:sum")
    assert parse(":") == vs(":")
    for word in ("sum", "by", "without", "and", "or", "unless", "offset", "start", "end", "topk", "count_values"):
        assert parse(word) == vs(word), word
    assert parse('sum{a="b"}') == vs("sum", Matcher(MatchType.EQL, "a", "b"))
    assert parse("Sum") == vs("Sum")  # names keep their case
    assert render(parse("a and and")) == "(a and and)"
    assert render(parse("or or or")) == "(or or or)"
    assert render(parse("offset offset 5m")) == "offset offset 300000"


def test_keywords_are_label_names_inside_braces() -> None:
    got = parse('a{sum="x", by="y", on!="z", offset=~"o", bool!~"b"}')
    assert [m.name for m in got.matchers] == ["sum", "by", "on", "offset", "bool", "__name__"]


def test_matrix_selector_offset_and_at_live_on_the_inner_selector() -> None:
    got = parse('rate(a{b="c"}[5m] offset -1h @ 1609746000.5)')
    inner = VectorSelector(
        "a", [Matcher(MatchType.EQL, "b", "c"), name_eq("a")], offset=-3_600_000, timestamp=1_609_746_000_500
    )
    assert got == Call("rate", [MatrixSelector(inner, 300_000)])


def test_offset_and_at_in_either_order() -> None:
    for query in ("a offset 5m @ 100", "a @ 100 offset 5m", "a[1m] @ 100 offset 5m", "a[1m] offset 5m @ 100"):
        node = parse(query)
        selector = node.vector if isinstance(node, MatrixSelector) else node
        assert (selector.offset, selector.timestamp) == (300_000, 100_000), query


def test_at_start_and_end() -> None:
    assert parse("a @ start()") == vs("a", start_or_end="start")
    assert parse("a @ END()") == vs("a", start_or_end="end")
    # Prometheus only refuses a numeric @ before a range, so `@ start()` may precede it.
    assert parse("a @ start() [5m]") == MatrixSelector(vs("a", start_or_end="start"), 300_000)


def test_at_timestamps_are_float_seconds_rounded_half_away_from_zero() -> None:
    assert parse("a @ 0.0025").timestamp == 3
    assert parse("a @ -0.0025").timestamp == -3
    assert parse("a @ +3.5").timestamp == 3500
    assert parse("a @ 1e3").timestamp == 1_000_000
    assert parse("a @ 0x10").timestamp == 16_000
    assert parse("a @ -3").timestamp == -3000


def test_subqueries() -> None:
    rate = Call("rate", [MatrixSelector(vs("a"), 300_000)])
    assert parse("rate(a[5m])[1h:1m]") == SubqueryExpr(rate, 3_600_000, 60_000)
    assert parse("a[10m:]") == SubqueryExpr(vs("a"), 600_000, 0)
    assert parse("(a)[5m:1m] @ 1 offset -2m") == SubqueryExpr(
        ParenExpr(vs("a")), 300_000, 60_000, offset=-120_000, timestamp=1000
    )
    assert parse("sum(a)[1h:] @ end()").start_or_end == "end"
    got = render(parse("max_over_time(rate(a[5m])[1h:] offset 1h)"))
    assert got == "max_over_time(rate(a[300000])[3600000:0] offset 3600000)"
    # Prometheus 2.42 takes any letter inside brackets for the colon.
    assert parse("a[5m x]") == SubqueryExpr(vs("a"), 300_000, 0)
    assert parse("a[5m y 1m]") == SubqueryExpr(vs("a"), 300_000, 60_000)


def test_aggregations() -> None:
    assert parse("sum by (job, le) (a)") == AggregateExpr("sum", vs("a"), grouping=["job", "le"])
    assert parse("sum(a) by (job)") == AggregateExpr("sum", vs("a"), grouping=["job"])
    assert parse("avg without (instance) (a)") == AggregateExpr("avg", vs("a"), grouping=["instance"], without=True)
    assert parse("count(a) without ()") == AggregateExpr("count", vs("a"), without=True)
    assert parse("max(a)") == AggregateExpr("max", vs("a"))
    assert parse("topk(5, a)") == AggregateExpr("topk", vs("a"), NumberLiteral(5.0))
    assert parse('count_values("value", a) by (x)') == AggregateExpr(
        "count_values", vs("a"), StringLiteral("value"), ["x"]
    )
    assert parse("quantile without (a,) (0.9, b)") == AggregateExpr(
        "quantile", vs("b"), NumberLiteral(0.9), ["a"], without=True
    )
    assert parse("SUM BY (Job) (a)") == AggregateExpr("sum", vs("a"), grouping=["Job"])
    for op in ast.AGGREGATORS:
        arg = "1, a" if op in ("topk", "bottomk", "quantile") else '"l", a' if op == "count_values" else "a"
        assert parse(f"{op}({arg})").op == op


def test_grouping_labels_may_be_keywords() -> None:
    got = parse("sum by (offset, by, on, sum, start, end, atan2, bool, group_left) (a)")
    assert got.grouping == ["offset", "by", "on", "sum", "start", "end", "atan2", "bool", "group_left"]


def test_binary_vector_matching() -> None:
    got = parse("a * on(x, y) group_left(z) b")
    assert got == BinaryExpr("*", vs("a"), vs("b"), VectorMatching("many-to-one", ["x", "y"], True, ["z"]))
    got = parse("a / ignoring(x) group_right b")
    assert got.matching == VectorMatching("one-to-many", ["x"], False, [])
    assert parse("a + b").matching == VectorMatching()
    assert parse("a + on() b").matching == VectorMatching(on=True)
    assert parse("a > bool on(x) group_left(y) b") == BinaryExpr(
        ">", vs("a"), vs("b"), VectorMatching("many-to-one", ["x"], True, ["y"]), return_bool=True
    )
    # `(b)` right after group_left is its label list, not the right-hand side.
    assert parse("a * on(x) group_left (b) c").matching == VectorMatching("many-to-one", ["x"], True, ["b"])


def test_set_operators_are_many_to_many() -> None:
    assert parse("a and b").matching == VectorMatching("many-to-many")
    assert parse("a or on(x) b").matching == VectorMatching("many-to-many", ["x"], True)
    assert parse("a unless ignoring(x) b").matching == VectorMatching("many-to-many", ["x"])


def test_matching_is_dropped_unless_both_sides_are_vectors() -> None:
    assert parse("a + 1").matching is None
    assert parse("1 + on() a").matching is None
    assert parse("1 == bool 2").matching is None
    assert parse("scalar(a) * 2").matching is None
    assert parse("a + sum(b)").matching is not None


def test_numbers() -> None:
    cases = {
        "1": 1.0, "1.5": 1.5, ".5": 0.5, "5.": 5.0, "1e3": 1000.0, "1E-2": 0.01, "1e+3": 1000.0, "1.e3": 1000.0,
        "0x1f": 31.0, "0X1F": 31.0, "010": 8.0, "0777": 511.0, "09": 9.0, "0778": 778.0,
        "99999999999999999999": 1e20, "0x7FFFFFFFFFFFFFFF": float(2**63 - 1), "1e-400": 0.0,
        "Inf": math.inf, "inf": math.inf, "+Inf": math.inf, "-inf": -math.inf,
    }
    for text, value in cases.items():
        got = parse(text)
        assert isinstance(got, NumberLiteral), text
        assert got.value == value, text
    assert math.isnan(parse("NaN").value)
    assert math.isnan(parse("nAn").value)
    assert math.copysign(1, parse("-0").value) == -1
    assert parse("infinity") == vs("infinity")


def test_strings_and_escapes() -> None:
    assert parse('"a\\"b"') == StringLiteral('a"b')
    assert parse("'it\\'s'") == StringLiteral("it's")
    assert parse("'say \"hi\"'") == StringLiteral('say "hi"')
    assert parse("`raw\\d\n`") == StringLiteral("raw\\d\n")
    assert parse('"\\x41\\u00e9\\U0001F600\\101\\n\\t\\\\"') == StringLiteral("A\u00e9\U0001f600A\n\t\\")
    assert parse('"\\xc3\\xa9"') == StringLiteral("é")  # \x escapes are bytes, as in Go
    assert parse('"\\a\\b\\f\\r\\v"') == StringLiteral("\a\b\f\r\v")
    assert parse('a{b="x\\ty"}').matchers[0] == Matcher(MatchType.EQL, "b", "x\ty")
    assert parse('""') == StringLiteral("")


def test_comments_and_whitespace() -> None:
    assert render(parse("a # comment\n + # another\n\tb")) == "(a + b)"
    assert parse('a{ # c\n b="x" # d\n}') == vs("a", Matcher(MatchType.EQL, "b", "x"))
    assert parse("a[5m # c\n]") == MatrixSelector(vs("a"), 300_000)
    assert render(parse("\r\n sum(a)by(b) \t")) == "sum by(b)(a)"


def test_durations() -> None:
    assert parse("a[1h30m]").range == 5_400_000
    assert parse("a[5m30s]").range == 330_000
    assert parse("a[ 5m ]").range == 300_000
    assert parse("a offset 1y2w3d4h5m6s7ms").offset == (
        365 * 86_400_000 + 2 * 7 * 86_400_000 + 3 * 86_400_000 + 4 * 3_600_000 + 5 * 60_000 + 6000 + 7
    )
    assert parse("a offset - 5m").offset == -300_000


# --- precedence and associativity ---


@pytest.mark.parametrize(
    ("query", "shape"),
    [
        ("-2^2", "(-(2.0 ^ 2.0))"),
        ("2 ^ 3 ^ 2", "(2.0 ^ (3.0 ^ 2.0))"),
        ("(2 ^ 3) ^ 2", "(paren((2.0 ^ 3.0)) ^ 2.0)"),
        ("a ^ -b ^ c", "(a ^ (-(b ^ c)))"),
        ("a * -b * c", "((a * (-b)) * c)"),
        ("a + -b * c", "(a + ((-b) * c))"),
        ("-a * b", "((-a) * b)"),
        ("-a + b", "((-a) + b)"),
        ("1 - 2 - 3", "((1.0 - 2.0) - 3.0)"),
        ("8 / 4 / 2", "((8.0 / 4.0) / 2.0)"),
        ("1 + 2 * 3", "(1.0 + (2.0 * 3.0))"),
        ("1 * 2 + 3", "((1.0 * 2.0) + 3.0)"),
        ("a % b * c", "((a % b) * c)"),
        ("a + b > c", "((a + b) > c)"),
        ("a > b and c", "((a > b) and c)"),
        ("a or b and c", "(a or (b and c))"),
        ("a and b or c", "((a and b) or c)"),
        ("a unless b or c", "((a unless b) or c)"),
        ("a and b unless c", "((a and b) unless c)"),
        ("a or b or c", "((a or b) or c)"),
        ("a == b != c", "((a == b) != c)"),
        ("a + b == bool c", "((a + b) == bool c)"),
        ("1 + 2 * 3 ^ 2 ^ 0.5", "(1.0 + (2.0 * (3.0 ^ (2.0 ^ 0.5))))"),
        ("- - a", "(-(-a))"),
        ("-a offset 5m", "(-a offset 300000)"),
        ("a + b offset 5m", "(a + b offset 300000)"),
        ("a ^ b @ 3", "(a ^ b @3000)"),
        ("a - -1", "(a - -1.0)"),
        ("+a", "(+a)"),
        ("-(1)", "(-paren(1.0))"),
    ],
)
def test_precedence(query: str, shape: str) -> None:
    assert render(parse(query)) == shape


def test_sign_folds_into_number_literals() -> None:
    assert parse("-1") == NumberLiteral(-1.0)
    assert parse("- -1") == NumberLiteral(1.0)
    assert parse("-+-1") == NumberLiteral(1.0)
    assert parse("+5") == NumberLiteral(5.0)
    assert parse("-1").pos == 0
    assert parse("- - 1").pos == 0


# --- positions ---


def test_node_positions() -> None:
    query = 'sum by (x) (rate(foo{a="b"}[5m])) / on(x) -(1 + bar)'
    got = parse(query)
    assert got.pos == 0
    assert got.lhs.pos == 0  # the aggregation
    call = got.lhs.expr
    assert call.pos == query.index("rate")
    assert call.args[0].pos == call.args[0].vector.pos == query.index("foo")
    unary = got.rhs
    assert unary.pos == query.index("-")
    assert unary.expr.pos == query.index("(1")
    assert unary.expr.expr.pos == query.index("1 +")
    assert unary.expr.expr.rhs.pos == query.index("bar")
    assert parse('  {job="x"}').pos == 2
    assert parse("x + rate(y[1h])").rhs.pos == 4
    assert parse('"s"').pos == 0
    assert parse("x offset 5m").pos == 0


# --- type inference ---


def test_expr_type() -> None:
    cases = {
        "1": "scalar", '"s"': "string", "a": "vector", "a[5m]": "matrix", "a[5m:]": "matrix",
        "(a[5m])": "matrix", "-a": "vector", "-1": "scalar", "1 + 2": "scalar", "a + 1": "vector",
        "sum(a)": "vector", "time()": "scalar", "scalar(a)": "scalar", "rate(a[5m])": "vector",
        "(1) * -(2)": "scalar", "vector(1)": "vector",
    }
    for query, typ in cases.items():
        assert expr_type(parse(query)) == typ, query


# --- functions ---


_ARG_TEXT = {"vector": "v", "matrix": "m[5m]", "scalar": "1", "string": '"s"'}


@pytest.mark.parametrize("name", sorted(ast.FUNCTIONS))
def test_every_function_parses_with_its_arity(name: str) -> None:
    sig = ast.FUNCTIONS[name]
    args = [_ARG_TEXT[t] for t in sig.arg_types]
    required = args if sig.variadic == 0 else args[:-1]
    node = parse(f"{name}({', '.join(required)})")
    assert node == Call(name, node.args) and len(node.args) == len(required)
    assert expr_type(node) == sig.return_type
    if sig.variadic != 0:
        assert len(parse(f"{name}({', '.join(args)})").args) == len(args)
    if sig.variadic == -1:
        assert len(parse(f"{name}({', '.join([*args, args[-1], args[-1]])})").args) == len(args) + 2
    too_many = ", ".join([*args, args[-1] if args else "1"])
    if sig.variadic == 0:
        message = f'expected {len(args)} argument(s) in call to "{name}", got {len(args) + 1}'
        assert parse_error(f"{name}({too_many})").args[0] == f"1:1: parse error: {message}"
    elif sig.variadic > 0:
        message = f'expected at most {len(args)} argument(s) in call to "{name}", got {len(args) + 1}'
        assert parse_error(f"{name}({too_many})").args[0] == f"1:1: parse error: {message}"
    if required:
        short = ", ".join(required[:-1])
        count = f"{len(args)}" if sig.variadic == 0 else f"at least {len(required)}"
        want = f"expected {count} argument(s)"
        assert want in str(parse_error(f"{name}({short})"))


@pytest.mark.parametrize("name", sorted(ast.UNSUPPORTED_FUNCTIONS))
def test_unsupported_functions_are_refused_by_name(name: str) -> None:
    err = parse_error(f"{name}(a)")
    assert str(err) == f'1:1: parse error: function "{name}" is not supported by Vigil'
    assert err.error_type == "bad_data"


def test_unsupported_constructs_come_after_errors_prometheus_reports() -> None:
    assert str(parse_error("a atan2 b")) == '1:3: parse error: operator "atan2" is not supported by Vigil'
    assert str(parse_error("1 atan2 2")) == '1:3: parse error: operator "atan2" is not supported by Vigil'
    # A syntax or type error Prometheus would report wins over "not supported".
    assert str(parse_error("sin(a) b")) == '1:8: parse error: unexpected identifier "b"'
    assert str(parse_error('a atan2 , b')) == '1:9: parse error: unexpected ","'
    assert str(parse_error('sum(a) atan2 #c\n "x"')).startswith("2:2: parse error: binary expression must contain")
    assert str(parse_error("rate(a) + sin(b)")) == (
        '1:6: parse error: expected type range vector in call to function "rate", got instant vector'
    )


# --- errors: exact messages and positions, as Prometheus 2.42 reports them ---


@pytest.mark.parametrize(
    ("query", "message"),
    [
        # lexing
        ("a)", "1:3: parse error: unexpected right parenthesis ')'"),
        ("(a", "1:3: parse error: unclosed left parenthesis"),
        ("rate(a[5m]", "1:11: parse error: unclosed left parenthesis"),
        ("a[5m", "1:5: parse error: unclosed left bracket"),
        ("a[5m]]", "1:6: parse error: unexpected right bracket ']'"),
        ("]", "1:1: parse error: unexpected right bracket ']'"),
        ("a[5m:[1m]", "1:6: parse error: unexpected left bracket '['"),
        ("a[[5m]", "1:3: parse error: missing unit character in duration"),
        ("a =~ b", "1:3: parse error: unexpected character after '=': '~'"),
        ("a ! b", "1:3: parse error: unexpected character after '!': ' '"),
        (".", "1:1: parse error: unexpected character: '.'"),
        ("f$", "1:2: parse error: unexpected character: '$'"),
        ("é", "1:1: parse error: unexpected character: 'é'"),
        ('a{b="é"} + $', "1:13: parse error: unexpected character: '$'"),  # columns count bytes
        ('"abc', "1:1: parse error: unterminated quoted string"),
        ('"a\nb"', "1:1: parse error: unterminated quoted string"),
        ("`ab", "1:1: parse error: unterminated raw string"),
        ('"\\q"', "1:1: parse error: unknown escape sequence U+0071 'q'"),
        ('"\\\'"', "1:1: parse error: unknown escape sequence U+0027 '''"),
        ('"\\400"', "1:1: parse error: escape sequence is an invalid Unicode code point"),
        ('"\\uD800"', "1:1: parse error: escape sequence is an invalid Unicode code point"),
        ('"\\xZZ"', "1:1: parse error: illegal character U+005A 'Z' in escape sequence"),
        ('"\\u12"', "1:1: parse error: illegal character U+0022 '\"' in escape sequence"),
        ('"\\u12', "1:1: parse error: escape sequence not terminated"),
        ('{a="\\q"}', "1:4: parse error: unknown escape sequence U+0071 'q'"),
        ("a{b~\"x\"}", "1:4: parse error: unexpected character inside braces: '~'"),
        ('a{b!"x"}', "1:4: parse error: unexpected character after '!' inside braces: '\"'"),
        ('a{a:b="x"}', "1:4: parse error: unexpected character inside braces: ':'"),
        ('a{b="c"', "1:8: parse error: unexpected end of input inside braces"),
        ('a{b="c"{', "1:8: parse error: unexpected left brace '{'"),
        ("a[", "1:3: parse error: missing unit character in duration"),
        ("a[]", "1:3: parse error: missing unit character in duration"),
        ("a[5]", "1:3: parse error: missing unit character in duration"),
        ("a[5mm]", '1:3: parse error: bad duration syntax: "5mm"'),
        ("a offset 1mm", '1:10: parse error: bad number or duration syntax: "1mm"'),
        ("a[5m:1m x]", "1:9: parse error: unexpected colon 'x'"),
        ("a[5m:5m:]", "1:8: parse error: unexpected colon ':'"),
        # numbers and durations
        ("0x1.8", '1:1: parse error: error parsing number: strconv.ParseFloat: parsing "0x1.8": invalid syntax'),
        ("1 + 1e", '1:5: parse error: error parsing number: strconv.ParseFloat: parsing "1e": invalid syntax'),
        ("0x", '1:1: parse error: error parsing number: strconv.ParseFloat: parsing "0x": invalid syntax'),
        (
            "0xFFFFFFFFFFFFFFFFF",
            "1:1: parse error: error parsing number: strconv.ParseFloat: parsing "
            '"0xFFFFFFFFFFFFFFFFF": invalid syntax',
        ),
        ("-1e400", '1:2: parse error: error parsing number: strconv.ParseFloat: parsing "1e400": value out of range'),
        ("a[0s]", "1:3: parse error: duration must be greater than 0"),
        ("a[0s", "1:3: parse error: duration must be greater than 0"),
        ("a[5m:0s]", "1:6: parse error: duration must be greater than 0"),
        ("a offset -0s", "1:11: parse error: duration must be greater than 0"),
        ("a[30m1h]", '1:3: parse error: not a valid duration string: "30m1h"'),
        ("a[1.5h]", '1:3: parse error: not a valid duration string: "1.5h"'),
        ("a[300000y]", "1:3: parse error: duration out of range"),
        # syntax
        ("", "1:1: parse error: no expression found in input"),
        ("  # only a comment", "1:1: parse error: no expression found in input"),
        ("a +", "1:4: parse error: unexpected end of input"),
        ("a b", '1:3: parse error: unexpected identifier "b"'),
        ("1 2", '1:3: parse error: unexpected number "2"'),
        ("1.2.3", '1:4: parse error: unexpected number ".3"'),
        ("5m", '1:1: parse error: unexpected duration "5m"'),
        ("on", "1:1: parse error: unexpected <on>"),
        ("bool", "1:1: parse error: unexpected <bool>"),
        ("atan2", "1:1: parse error: unexpected <op:atan2>"),
        ("@ 5", '1:1: parse error: unexpected "<Item 57385>" <op:@>'),
        ("start()", '1:6: parse error: unexpected "("'),
        ("foo:bar(a)", '1:8: parse error: unexpected "("'),
        ("rate(a[5m]) (b)", '1:13: parse error: unexpected "("'),
        ("a + group_left b", "1:5: parse error: unexpected <group_left>"),
        ("a > on(x) bool b", "1:11: parse error: unexpected <bool>"),
        ("(a b)", '1:4: parse error: unexpected identifier "b"'),
        ("rate(,a)", '1:6: parse error: unexpected ","'),
        ("b=\"c\"}", '1:2: parse error: unexpected "="'),
        ('"abcdefghijklmnop" "x"', '1:20: parse error: unexpected string "\\"x\\""'),
        ('"x" "abcdefghijklmnop"', '1:5: parse error: unexpected string "\\"abcdefghi"...'),
        ("sum(a,)", "1:6: parse error: trailing commas not allowed in function call args"),
        ("rate(a[5m],)", "1:11: parse error: trailing commas not allowed in function call args"),
        ("topk(1, bool", "1:7: parse error: trailing commas not allowed in function call args"),
        ("rate(a, ]", "1:9: parse error: unexpected right bracket ']'"),
        ("sum(a, ", "1:8: parse error: unclosed left parenthesis"),
        # which of a semantic and a later lexing error comes first follows the grammar's lookahead
        ("sum by (x) () }", "1:1: parse error: no arguments for aggregate expression provided"),
        ("sum() }", "1:7: parse error: unexpected character: '}'"),
        ("foo() }", '1:1: parse error: unknown function with name "foo"'),
        # aggregation context
        ("sum a", '1:5: parse error: unexpected identifier "a"'),
        ("sum by", '1:7: parse error: unexpected end of input in grouping opts, expected "("'),
        ("sum by (a)", "1:11: parse error: unexpected end of input in aggregation"),
        ("sum by (a) b", '1:12: parse error: unexpected identifier "b" in aggregation'),
        ("sum(a b)", '1:7: parse error: unexpected identifier "b" in aggregation'),
        ("sum(rate(a b))", '1:12: parse error: unexpected identifier "b" in aggregation'),
        ("sum(a +)", '1:8: parse error: unexpected ")" in aggregation'),
        ("rate(sum(a) b)", '1:13: parse error: unexpected identifier "b"'),
        ("sum (a) b", '1:9: parse error: unexpected identifier "b"'),
        ("sum by (a) (b) by (c)", "1:16: parse error: unexpected <by>"),
        ("sum(a) by", '1:10: parse error: unexpected end of input in grouping opts, expected "("'),
        # grouping labels
        ("sum by (a:b) (a)", '1:9: parse error: unexpected metric identifier "a:b" in grouping opts, expected label'),
        ('sum by ("a") (a)', '1:9: parse error: unexpected string "\\"a\\"" in grouping opts, expected label'),
        ("sum by (inf) (a)", '1:9: parse error: unexpected number "inf" in grouping opts, expected label'),
        ("sum by (a,,b) (c)", '1:11: parse error: unexpected "," in grouping opts, expected label'),
        ("sum by (a (c)", '1:11: parse error: unexpected "(" in grouping opts, expected "," or ")"'),
        ("a + on b", '1:8: parse error: unexpected identifier "b" in grouping opts, expected "("'),
        ("a + on(1) b", '1:8: parse error: unexpected number "1" in grouping opts, expected label'),
        ("a + on(x b", '1:10: parse error: unexpected identifier "b" in grouping opts, expected "," or ")"'),
        ("a * on(x) group_left (b + 1)", '1:25: parse error: unexpected <op:+> in grouping opts, expected "," or ")"'),
        # label matchers
        ("a{,}", '1:3: parse error: unexpected "," in label matching, expected identifier or "}"'),
        ('a{"b"="c"}', '1:3: parse error: unexpected string "\\"b\\"" in label matching, expected identifier or "}"'),
        ("a{b}", '1:4: parse error: unexpected "}" in label matching, expected label matching operator'),
        ("a{b=}", '1:5: parse error: unexpected "}" in label matching, expected string'),
        ('a{b=="x"}', '1:5: parse error: unexpected "=" in label matching, expected string'),
        ('a{b="c" d}', '1:9: parse error: unexpected identifier "d" in label matching, expected "," or "}"'),
        ('{a=~"a{2,1}"}', "1:2: parse error: error parsing regexp"),
        # offset, @, ranges and subqueries
        ("a offset", "1:9: parse error: unexpected end of input in offset, expected duration"),
        ("a offset 5", '1:10: parse error: unexpected number "5" in offset, expected duration'),
        ("a offset - 5", '1:12: parse error: unexpected number "5" in offset, expected duration'),
        ("a offset +5m", "1:10: parse error: unexpected <op:+> in offset, expected duration"),
        ("a offset 1m offset 2m", "1:1: parse error: offset may not be set multiple times"),
        ("a[5m:1m] offset 5m offset 1m", "1:1: parse error: offset may not be set multiple times"),
        (
            "a > bool 1 offset 5m",
            "1:10: parse error: offset modifier must be preceded by an instant vector selector or "
            "range vector selector or a subquery",
        ),
        ("a @", "1:4: parse error: unexpected end of input in @, expected timestamp"),
        ("a @ start", "1:10: parse error: unexpected end of input in @, expected timestamp"),
        ("a @ start(1)", '1:11: parse error: unexpected number "1" in @, expected timestamp'),
        ("a @ foo()", '1:5: parse error: unexpected identifier "foo" in @, expected timestamp'),
        ("a @ - foo", '1:7: parse error: unexpected identifier "foo" in @, expected timestamp'),
        ("a @ start(", "1:11: parse error: unclosed left parenthesis"),
        ("a @ inf", "1:1: parse error: timestamp out of bounds for @ modifier: +Inf"),
        ("a @ nan", "1:1: parse error: timestamp out of bounds for @ modifier: NaN"),
        (
            "a @ 1e400",
            '1:5: parse error: error parsing number: strconv.ParseFloat: parsing "1e400": value out of '
            "range",
        ),
        ("a @ 3 @ 4", "1:1: parse error: @ <timestamp> may not be set multiple times"),
        ("a @ start() @ end()", "1:1: parse error: @ <timestamp> may not be set multiple times"),
        ("rate(a[5m] @ 3 @ 4)", "1:6: parse error: @ <timestamp> may not be set multiple times"),
        (
            "sum(a) @ 3",
            "1:1: parse error: @ modifier must be preceded by an instant vector selector or range "
            "vector selector or a subquery",
        ),
        ("sum @ 3 (a)", '1:9: parse error: unexpected "("'),
        ("a[5m:5]", '1:6: parse error: unexpected number "5" in subquery selector, expected duration or "]"'),
        ("a[5m 5m]", '1:6: parse error: unexpected duration "5m" in subquery or range, expected ":" or "]"'),
        ("a[5m] [5m]", "1:7: parse error: ranges only allowed for vector selectors"),
        ("(a)[5m]", "1:4: parse error: ranges only allowed for vector selectors"),
        ("a offset 5m[5m]", "1:12: parse error: no offset modifiers allowed before range"),
        ("a @ 3 offset 5m [5m]", "1:17: parse error: no offset modifiers allowed before range"),
        ("a @ 3 [5m]", "1:7: parse error: no @ modifiers allowed before range"),
        # function and aggregation semantics
        ("foo(a)", '1:1: parse error: unknown function with name "foo"'),
        ("Rate(a[5m])", '1:1: parse error: unknown function with name "Rate"'),
        ("sum()", "1:1: parse error: no arguments for aggregate expression provided"),
        (
            "sum(a, b)",
            "1:1: parse error: wrong number of arguments for aggregate expression provided, expected "
            "1, got 2",
        ),
        ("topk(a)", "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1"),
        (
            "topk(1, a, b)",
            "1:1: parse error: wrong number of arguments for aggregate expression provided, expected "
            "2, got 3",
        ),
        ('topk("x", a)', "1:6: parse error: expected type scalar in aggregation parameter, got string"),
        ("count_values(1, a)", "1:14: parse error: expected type string in aggregation parameter, got scalar"),
        ("sum(1)", "1:5: parse error: expected type instant vector in aggregation expression, got scalar"),
        ("sum(a[5m])", "1:5: parse error: expected type instant vector in aggregation expression, got range vector"),
        ("rate(a)", '1:6: parse error: expected type range vector in call to function "rate", got instant vector'),
        ("rate(a[5m], 1)", '1:1: parse error: expected 1 argument(s) in call to "rate", got 2'),
        ("rate()", '1:1: parse error: expected 1 argument(s) in call to "rate", got 0'),
        ("round(a, 1, 2)", '1:1: parse error: expected at most 2 argument(s) in call to "round", got 3'),
        ("label_join(a)", '1:1: parse error: expected at least 3 argument(s) in call to "label_join", got 1'),
        (
            'label_join(a, "x", "y", "z", "w", 1)',
            '1:35: parse error: expected type string in call to function "label_join", got '
            "scalar",
        ),
        ("time(1)", '1:1: parse error: expected 0 argument(s) in call to "time", got 1'),
        ('abs("a")', '1:5: parse error: expected type instant vector in call to function "abs", got string'),
        ("vector(a)", '1:8: parse error: expected type scalar in call to function "vector", got instant vector'),
        # binary and unary semantics
        ("2 > 1", "1:3: parse error: comparisons between scalars must use BOOL modifier"),
        ("a and 1", '1:1: parse error: set operator "and" not allowed in binary scalar expression'),
        ("a + on(b) group_left(b) c", '1:3: parse error: label "b" must not occur in ON and GROUP clause at once'),
        ("a and on(x) group_left c", '1:1: parse error: no grouping allowed for "and" operation'),
        ("a or on(x) group_right(y) b", '1:1: parse error: no grouping allowed for "or" operation'),
        ("a + bool b", "1:3: parse error: bool modifier can only be used on comparison operators"),
        ("a unless bool b", "1:3: parse error: bool modifier can only be used on comparison operators"),
        ("1 + on(x) a", "1:1: parse error: vector matching only allowed between instant vectors"),
        ("a + b[5m]", "1:5: parse error: binary expression must contain only scalar and instant vector types"),
        ("a[5m] + b", "1:1: parse error: binary expression must contain only scalar and instant vector types"),
        ('"a" + 1', "1:1: parse error: binary expression must contain only scalar and instant vector types"),
        (
            '-"a"',
            "1:1: parse error: unary expression only allowed on expressions of type scalar or instant "
            'vector, got "string"',
        ),
        (
            "-a[5m]",
            "1:1: parse error: unary expression only allowed on expressions of type scalar or instant "
            'vector, got "range vector"',
        ),
        ("1[5m:]", "1:1: parse error: subquery is only allowed on instant vector, got scalar instead"),
        ("a[5m][5m:]", "1:1: parse error: subquery is only allowed on instant vector, got matrix instead"),
        # selectors
        ("{}", "1:1: parse error: vector selector must contain at least one non-empty matcher"),
        ('{a=""}', "1:1: parse error: vector selector must contain at least one non-empty matcher"),
        ('{a=~".*"}', "1:1: parse error: vector selector must contain at least one non-empty matcher"),
        ('{a=~"x*?"}', "1:1: parse error: vector selector must contain at least one non-empty matcher"),
        ('{__name__!="a"}', "1:1: parse error: vector selector must contain at least one non-empty matcher"),
        ("{}[5m]", "1:1: parse error: vector selector must contain at least one non-empty matcher"),
        ('a{__name__="b"}', '1:1: parse error: metric name must not be set twice: "a" or "b"'),
        # multi-line positions
        ("a\n+\nb c", '3:3: parse error: unexpected identifier "c"'),
        ('a{b="c",\n d="e" f}', '2:8: parse error: unexpected identifier "f" in label matching, expected "," or "}"'),
        ("sum(\n  rate(a[5m]\n)", "3:2: parse error: unclosed left parenthesis"),
    ],
)
def test_error_messages(query: str, message: str) -> None:
    err = parse_error(query)
    assert str(err).startswith(message)
    assert err.error_type == "bad_data"


def test_error_position_attribute_is_a_character_offset() -> None:
    assert parse_error('a{b="é"} + $').pos == 11
    assert parse_error("a\n+\nb c").pos == 6
    assert parse_error("").pos == 0
    assert parse_error("sum(a) @ 3").pos == 0


def test_accepted_edge_cases() -> None:
    """Queries Prometheus 2.42 accepts that look suspicious (checked against a real 2.42)."""
    for query in (
        "a{}", "a{}[5m]", '{a!=""}', 'a{a!~".*"}', '{a=~".+"}', '{__name__="b", __name__="c"}',
        "sum without () (a)", "sum by (a,) (a)", "a + on(x,) b", "a + on(x, y,) group_left(z,) b", "1 == bool 2",
        "a == bool 1", "(a[5m])", "rate((a[5m]))", "a offset -5m", "time()", "day_of_week()", 'label_join(a, "x", "y")',
        "absent(sum(a))", "a # trailing comment", "+ b", "a{b=\"c\",}", "a @ 0x10", "{b=\"c\"}[5m] offset 1h",
        'a{b=~"\\\\d+", c=~"[[:alpha:]]+", d=~"(?i)x"}',
    ):
        parse(query)


def test_deep_nesting_and_long_chains() -> None:
    parse("(" * 200 + "a" + ")" * 200)
    parse(" or ".join(f"m{i}" for i in range(5000)))
    parse(" ^ ".join(["2"] * 300))
    err = parse_error("(" * 5000 + "a" + ")" * 5000)
    assert "nested too deeply" in str(err)


# --- lexer ---


def test_tokens() -> None:
    tokens = tokenize('a{b="c"}[5m:1m] offset -5m @ start() # c')
    assert [(t.typ, t.pos, t.val) for t in tokens] == [
        ("IDENTIFIER", 0, "a"), ("LEFT_BRACE", 1, "{"), ("IDENTIFIER", 2, "b"), ("EQL", 3, "="),
        ("STRING", 4, '"c"'), ("RIGHT_BRACE", 7, "}"), ("LEFT_BRACKET", 8, "["), ("DURATION", 9, "5m"),
        ("COLON", 11, ":"), ("DURATION", 12, "1m"), ("RIGHT_BRACKET", 14, "]"), ("OFFSET", 16, "offset"),
        ("SUB", 23, "-"), ("DURATION", 24, "5m"), ("AT", 27, "@"), ("START", 29, "start"),
        ("LEFT_PAREN", 34, "("), ("RIGHT_PAREN", 35, ")"), ("EOF", 40, ""),
    ]


def test_token_kinds() -> None:
    def kinds(query: str) -> list[str]:
        return [t.typ for t in tokenize(query)][:-1]

    assert kinds("sum SUM by AND Or unless atan2 bool") == [
        "SUM", "SUM", "BY", "LAND", "LOR", "LUNLESS", "ATAN2", "BOOL",
    ]
    assert kinds("inf NaN Infinity a:b :x") == [
        "NUMBER", "NUMBER", "IDENTIFIER", "METRIC_IDENTIFIER", "METRIC_IDENTIFIER",
    ]
    assert kinds("== != < <= > >= = + - * / % ^") == [
        "EQLC", "NEQ", "LSS", "LTE", "GTR", "GTE", "EQL", "ADD", "SUB", "MUL", "DIV", "MOD", "POW",
    ]
    assert kinds('{sum=~"x", on!~"y", by!="z"}') == [
        "LEFT_BRACE", "IDENTIFIER", "EQL_REGEX", "STRING", "COMMA", "IDENTIFIER", "NEQ_REGEX", "STRING", "COMMA",
        "IDENTIFIER", "NEQ", "STRING", "RIGHT_BRACE",
    ]
    assert kinds("5m 1h30m 5ms 1.5 .5 0x1F 1e3") == [
        "DURATION", "DURATION", "DURATION", "NUMBER", "NUMBER", "NUMBER", "NUMBER",
    ]
    assert tokenize("a)")[-1].typ == "ERROR"


def test_describe_tokens_like_prometheus() -> None:
    def first(query: str) -> str:
        return describe(tokenize(query)[0])

    assert first("+") == "<op:+>"
    assert first("AND") == "<op:AND>"
    assert first("by") == "<by>"
    assert first("sum") == "<aggr:sum>"
    assert first("start") == '"start"'
    assert first("(") == '"("'
    assert first("foo") == 'identifier "foo"'
    assert first("a:b") == 'metric identifier "a:b"'
    assert first("12") == 'number "12"'
    assert first("5m") == 'duration "5m"'
    assert first("'abcdefghijkl'") == "string \"'abcdefghi\"..."
    assert first("") == "end of input"


def test_unquote_string() -> None:
    assert unquote_string('"plain"') == "plain"
    assert unquote_string("`a\\nb`") == "a\\nb"
    assert unquote_string('"\\xff"') == "\ufffd"  # an invalid UTF-8 byte, as Go's JSON would print it
    assert unquote_string("'\\''") == "'"


# --- helpers for the HTTP API ---


def test_parse_duration() -> None:
    assert parse_duration("5m") == 300_000
    assert parse_duration("1h30m") == 5_400_000
    assert parse_duration("1d") == 86_400_000
    assert parse_duration("2w") == 14 * 86_400_000
    assert parse_duration("1y") == 365 * 86_400_000
    assert parse_duration("150ms") == 150
    assert parse_duration("0") == 0
    assert parse_duration("0s") == 0
    for bad in ("", "5", "1.5h", "30m1h", "5M", "-5m", "5m ", "1e3s"):
        with pytest.raises(ParseError):
            parse_duration(bad)
    with pytest.raises(ParseError, match="duration out of range"):
        parse_duration("300000y")
    with pytest.raises(ParseError, match='not a valid duration string: "30m1h"'):
        parse_duration("30m1h")


def test_parse_matchers() -> None:
    assert parse_matchers("up") == [name_eq("up")]
    assert parse_matchers('up{job="x"}') == [Matcher(MatchType.EQL, "job", "x"), name_eq("up")]
    assert parse_matchers('{__name__=~"a.*"}') == [Matcher(MatchType.RE, "__name__", "a.*")]
    assert parse_matchers("sum") == [name_eq("sum")]
    # Like Prometheus's ParseMetricSelector: no non-empty-matcher check here (the API does that).
    assert parse_matchers("{}") == []
    for text, message in [
        ("rate(x[5m])", '1:5: parse error: unexpected "("'),
        ("up offset 5m", "1:4: parse error: unexpected <offset>"),
        ("up[5m]", '1:3: parse error: unexpected "["'),
        ("", "1:1: parse error: unexpected end of input"),
        ("up{", "1:4: parse error: unexpected end of input inside braces"),
        ("up +", "1:4: parse error: unexpected <op:+>"),
        ("1", '1:1: parse error: unexpected number "1"'),
        ("sum(a)", '1:4: parse error: unexpected "("'),
    ]:
        with pytest.raises(ParseError) as info:
            parse_matchers(text)
        assert str(info.value) == message, text
    with pytest.raises(ParseError, match="error parsing regexp"):
        parse_matchers('{a=~"("}')


def test_matcher_matches_empty() -> None:
    assert matcher_matches_empty(Matcher(MatchType.EQL, "a", ""))
    assert not matcher_matches_empty(Matcher(MatchType.EQL, "a", "x"))
    assert matcher_matches_empty(Matcher(MatchType.NEQ, "a", "x"))
    assert not matcher_matches_empty(Matcher(MatchType.NEQ, "a", ""))
    assert matcher_matches_empty(Matcher(MatchType.RE, "a", "x|"))
    assert not matcher_matches_empty(Matcher(MatchType.RE, "a", "x+"))
    assert matcher_matches_empty(Matcher(MatchType.NRE, "a", "x+"))
    assert not matcher_matches_empty(Matcher(MatchType.NRE, "a", ".*"))


def test_compile_matcher_regex_is_anchored_re2() -> None:
    assert compile_matcher_regex("a|b").match("b")
    assert not compile_matcher_regex("a|b").match("ab")
    assert not compile_matcher_regex("a").match("a\n")  # Go's `$` does not match before a final newline
    assert compile_matcher_regex("(?i)abc").match("ABC")
    assert compile_matcher_regex("[[:digit:]]+").match("123")
    assert not compile_matcher_regex("\\d").match("\u0663")  # \d is ASCII-only in RE2
    for bad in ("(", "a**", "(?=a)", "\\1", "x{1001}"):
        with pytest.raises(ValueError, match="error parsing regexp"):
            compile_matcher_regex(bad)
