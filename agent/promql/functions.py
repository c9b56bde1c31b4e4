"""Every PromQL function Vigil supports, with Prometheus 2.42's numbers: the evaluator's entry point.

`FUNCTIONS_IMPL[name](args, ctx)` is called once per evaluation step. `args` are the evaluated
arguments in order: a Vector (list[Sample]) for an instant vector, a float for a scalar, a str for a
string, a list[Window] for the range vector. `ctx.t` is the time the range windows end at (the step
time minus offset, or the `@` time), `ctx.range` the range in ms, `ctx.args` the argument expressions.
`time()` and `scalar()` return a float; every other function a Vector of Samples with `t = ctx.t`
and their final labels, in the order Prometheus produces them where that order is defined.

The metric name (`__name__`), which the engine does not drop for us:
- kept by: last_over_time, sort, sort_desc, label_replace, label_join (unless `__name__` is their
  destination label);
- no name by construction: vector, time, scalar, absent and absent_over_time (labels from the
  argument's equality matchers), histogram_quantile (also drops `le`);
- dropped by every other function: all other range-vector functions (rate, irate, increase, delta,
  idelta, deriv, predict_linear, changes, resets, *_over_time, present_over_time), and abs, ceil,
  floor, round, exp, ln, log2, log10, sqrt, clamp, clamp_min, clamp_max, timestamp and the date
  functions called with a vector.

Errors (invalid regex or label name in label_replace/label_join) are PromQLError with Prometheus's
message; Prometheus reports them as errorType "execution".
"""

from __future__ import annotations

from agent.promql.functions_common import FunctionImpl
from agent.promql.functions_instant import INSTANT_FUNCTIONS
from agent.promql.functions_labels import LABEL_FUNCTIONS
from agent.promql.functions_range import RANGE_FUNCTIONS
from agent.promql.functions_time import TIME_FUNCTIONS

FUNCTIONS_IMPL: dict[str, FunctionImpl] = {
    **INSTANT_FUNCTIONS,
    **LABEL_FUNCTIONS,
    **RANGE_FUNCTIONS,
    **TIME_FUNCTIONS,
}

__all__ = ["FUNCTIONS_IMPL", "FunctionImpl"]
