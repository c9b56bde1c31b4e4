"""label_replace(), label_join(), and the labels absent()/absent_over_time() report.

These keep `__name__` (unless it is the destination label), as in Prometheus. Duplicate output
label sets are the evaluator's to detect ("vector cannot contain metrics with the same labelset").
Errors are raised when the call is evaluated, even for an empty input vector, with Prometheus's
messages; Prometheus reports them as errorType "execution".
"""

from __future__ import annotations

import functools
import re
from typing import Any

from agent.promql.ast import MatchType, MatrixSelector, ParenExpr, VectorSelector
from agent.promql.functions_regex import GoRegex, compile_go, expand
from agent.promql.values import CallContext, Labels, PromQLError, Sample, Vector, label_value

_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _valid_label_name(name: str) -> bool:
    return _LABEL_NAME_RE.fullmatch(name) is not None


def _with_label(labels: Labels, name: str, value: str) -> Labels:
    """`labels` with `name` set to `value`, or removed when `value` is empty; stays sorted."""
    kept = [p for p in labels if p[0] != name]
    if value:
        kept.append((name, value))
        kept.sort()
    return tuple(kept)


@functools.lru_cache(maxsize=256)
def _compile_replace_regex(regex: str) -> GoRegex:
    try:
        return compile_go("^(?:" + regex + ")$")
    except ValueError:
        raise PromQLError(f"invalid regular expression in label_replace(): {regex}") from None


def func_label_replace(args: list[Any], ctx: CallContext) -> Vector:
    vector, dst, replacement, src, regex = args
    pattern = _compile_replace_regex(regex)
    if not _valid_label_name(dst):
        raise PromQLError(f"invalid destination label name in label_replace(): {dst}")
    return [Sample(_replaced(sample.labels, pattern, dst, replacement, src), ctx.t, sample.v) for sample in vector]


@functools.lru_cache(maxsize=8192)
def _replaced(labels: Labels, pattern: GoRegex, dst: str, replacement: str, src: str) -> Labels:
    """One series' labels after label_replace; cached because every step of a range query repeats it."""
    match = pattern.search(label_value(labels, src))
    return labels if match is None else _with_label(labels, dst, expand(pattern, replacement, match))


def func_label_join(args: list[Any], ctx: CallContext) -> Vector:
    vector, dst, separator, *sources = args
    for src in sources:
        if not _valid_label_name(src):
            raise PromQLError(f"invalid source label name in label_join(): {src}")
    if not _valid_label_name(dst):
        raise PromQLError(f"invalid destination label name in label_join(): {dst}")
    out: Vector = []
    for sample in vector:
        joined = separator.join(label_value(sample.labels, src) for src in sources)
        out.append(Sample(_with_label(sample.labels, dst, joined), ctx.t, sample.v))
    return out


def labels_for_absent(expr: Any) -> Labels:
    """Prometheus's createLabelsForAbsentFunction: the labels an absent selector pins down exactly.

    Equality matchers (not on `__name__`) give their label, in order; any other matcher on a label,
    or a second matcher on it, removes it again. Anything but a (parenthesised) selector gives none.
    """
    while isinstance(expr, ParenExpr):
        expr = expr.expr
    if isinstance(expr, MatrixSelector):
        expr = expr.vector
    if not isinstance(expr, VectorSelector):
        return ()
    result: dict[str, str] = {}
    seen: set[str] = set()
    for matcher in expr.matchers:
        if matcher.name == "__name__":
            continue
        if matcher.type is MatchType.EQL and matcher.name not in seen:
            if matcher.value:
                result[matcher.name] = matcher.value
            else:
                result.pop(matcher.name, None)
            seen.add(matcher.name)
        else:
            result.pop(matcher.name, None)
    return tuple(sorted(result.items()))


LABEL_FUNCTIONS = {
    "label_replace": func_label_replace,
    "label_join": func_label_join,
}
