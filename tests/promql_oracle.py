"""Check the PromQL test scripts against a real Prometheus 2.42: `python -m tests.promql_oracle FILE.test...`.

Not a test (it needs the Debian binaries and a few seconds per script): the tool that keeps the
scripts in promql_testdata/ honest. For each block of data between `clear`s it backfills the
samples into a Prometheus server and asks every case there, instant and range alike; blocks with
staleness markers (which OpenMetrics cannot carry) go through `promtool test rules` instead, one
instant query per step, skipping `@ start()`/`@ end()`. Prometheus's answer is compared with Vigil's
engine exactly: floats to the bit, the order of instant vectors (except around subqueries, whose
series Prometheus orders by Go map iteration), error messages verbatim.
"""

from __future__ import annotations

import math
import re
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import reduce
from math import gcd
from pathlib import Path
from typing import Any

from agent.promql.engine import Engine
from agent.promql.memory import MemoryQueryable
from agent.promql.series_notation import expand_series_notation
from agent.promql.values import STALE_NAN, Labels, PromQLError, Scalar, Series, String
from tests.promql_compat.prom import api_get, create_blocks, start_prometheus
from tests.promql_testfmt import _EVAL, _EVAL_RANGE, parse_series, parse_time

Answer = Any  # ("error", msg) | ("string", v) | list[(labels, v)] | dict[labels, list[(t, v)]]


@dataclass
class _Block:
    series: dict[Labels, dict[int, float | str]] = field(default_factory=dict)
    intervals: list[int] = field(default_factory=list)
    cases: list[tuple[str, int, int, int]] = field(default_factory=list)  # expr, start, end, step (0: instant)


def _blocks(text: str) -> list[_Block]:
    blocks = [_Block()]
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        body = []
        while i < len(lines) and lines[i].startswith((" ", "\t")) and lines[i].strip():
            body.append(lines[i].strip())
            i += 1
        block = blocks[-1]
        if line == "clear":
            blocks.append(_Block())
        elif line.startswith("load "):
            interval = parse_time(line.split()[1])
            block.intervals.append(interval)
            for item in body:
                labels, rest = parse_series(item)
                points = block.series.setdefault(labels, {})
                for n, value in enumerate(expand_series_notation(rest)):
                    if value is not None:
                        points[n * interval] = value
        elif m := _EVAL.match(line):
            block.cases.append((m[3], parse_time(m[2]), parse_time(m[2]), 0))
        elif m := _EVAL_RANGE.match(line):
            block.cases.append((m[5], parse_time(m[2]), parse_time(m[3]), parse_time(m[4])))
    return [b for b in blocks if b.cases]


def _fmt(value: float | str) -> str:
    if value == "stale":
        return "stale"
    assert isinstance(value, float)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _series_text(labels: Labels, quote_name: bool = False) -> str:
    pairs = dict(labels)
    name = pairs.pop("__name__", "")
    inner = ",".join(f'{k}="' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
                     for k, v in sorted(pairs.items()))
    return name + ("{" + inner + "}" if inner or not name else "")


def _from_api(body: dict[str, Any]) -> Answer:
    if body.get("status") != "success":
        return ("error", body.get("error"))
    data = body["data"]
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return [((), float(result[1]))]
    if kind == "string":
        return ("string", result[1])
    if kind == "vector":
        return [(tuple(sorted(r["metric"].items())), float(r["value"][1])) for r in result]
    return {tuple(sorted(r["metric"].items())): [(round(t * 1000), float(v)) for t, v in r["values"]] for r in result}


def _server_answers(block: _Block, workdir: Path) -> dict[tuple[str, int, int, int], Answer]:
    families: dict[str, list[str]] = {}
    for labels, points in block.series.items():
        name = dict(labels)["__name__"]
        rows = families.setdefault(name, [f"# TYPE {name} gauge"])
        rows.extend(f"{_series_text(labels)} {_fmt(points[t])} {t / 1000:.3f}" for t in sorted(points))
    source = workdir / "data.om"
    source.write_text("".join(row + "\n" for rows in families.values() for row in rows) + "# EOF\n")
    create_blocks(source, workdir / "data")
    answers = {}
    with start_prometheus(workdir / "data") as prom:
        for expr, start, end, step in block.cases:
            if step:
                params = {"query": expr, "start": f"{start / 1000:.3f}", "end": f"{end / 1000:.3f}",
                          "step": f"{step / 1000:.3f}"}
                _, body = api_get(prom.url, "/api/v1/query_range", params)
            else:
                _, body = api_get(prom.url, "/api/v1/query", {"query": expr, "time": f"{start / 1000:.3f}"})
            answers[(expr, start, end, step)] = _from_api(body)
    return answers


_SUBQUERY = re.compile(r"\[[^\]]*:")
_GOT = re.compile(r'(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})\s+(\S+?)(?:,\s+|$)')


def _promtool_answers(block: _Block, workdir: Path) -> dict[tuple[str, int, int, int], Answer]:
    interval = reduce(gcd, [t for points in block.series.values() for t in points] + block.intervals, 0) or 1000
    lines = ["rule_files: []", "evaluation_interval: 1m", "tests:", f"  - interval: {interval}ms", "    input_series:"]
    for labels, points in block.series.items():
        values: list[str] = []
        gap = 0
        for n in range(max(points) // interval + 1):
            value = points.get(n * interval)
            if value is None:
                gap += 1
                continue
            if gap:
                values.append("_" if gap == 1 else f"_x{gap}")
                gap = 0
            values.append(_fmt(value))
        lines += [f"      - series: '{_series_text(labels)}'", f"        values: '{' '.join(values)}'"]
    lines.append("    promql_expr_test:")
    asked = []
    for expr, start, end, step in block.cases:
        if step and ("start()" in expr or "end()" in expr):
            continue
        for t in range(start, end + 1, step or 1):
            asked.append((expr, t))
            lines += ["      - expr: '" + expr.replace("'", "''") + "'", f"        eval_time: {t}ms"]
    path = workdir / "tests.yml"
    path.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    raw: dict[tuple[str, int], Answer] = {}
    for chunk in re.split(r"\n    expr: ", "\n" + output)[1:]:
        m = re.match(r'"((?:[^"\\]|\\.)*)", time: (\S+?),( err: (.*))?\n', chunk + "\n")
        if m is None:
            continue
        key = (re.sub(r"\\(.)", r"\1", m[1]), parse_time(m[2]))
        if m[4] is not None:
            raw[key] = ("error", m[4].strip())
            continue
        got = re.search(r"got: (.*)", chunk)
        raw[key] = [
            (tuple(sorted((n, v) for n, v in re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', g[1]))),
             float(g[2].replace("Inf", "inf")))
            for g in _GOT.finditer(got[1] if got else "")
        ]
    answers: dict[tuple[str, int, int, int], Answer] = {}
    for expr, start, end, step in block.cases:
        if step and ("start()" in expr or "end()" in expr):
            continue
        if not step:
            answers[(expr, start, end, step)] = raw.get((expr, start), [])
            continue
        matrix: dict[Labels, list[tuple[int, float]]] = {}
        for t in range(start, end + 1, step):
            answer = raw.get((expr, t), [])
            if isinstance(answer, tuple):
                matrix = answer  # type: ignore[assignment]
                break
            for labels, value in answer:
                matrix.setdefault(labels, []).append((t, value))
        answers[(expr, start, end, step)] = matrix
    return answers


def _vigil(engine: Engine, storage: MemoryQueryable, case: tuple[str, int, int, int]) -> Answer:
    expr, start, end, step = case
    try:
        if step:
            return {s.labels: s.points for s in engine.range_query(storage, expr, start, end, step)}
        result = engine.instant_query(storage, expr, start)
    except PromQLError as exc:
        return ("error", str(exc))
    if isinstance(result, Scalar):
        return [((), result.v)]
    if isinstance(result, String):
        return ("string", result.v)
    if result and isinstance(result[0], Series):
        return {s.labels: s.points for s in result}
    return [(s.labels, s.v) for s in result]


def _same(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b) or (a != a and b != b)


def _agree(want: Answer, got: Answer, ordered: bool) -> bool:
    if isinstance(want, tuple) or isinstance(got, tuple):
        return bool(want == got)
    if isinstance(want, dict) and isinstance(got, dict):
        return set(want) == set(got) and all(
            len(want[k]) == len(got[k])
            and all(p[0] == q[0] and _same(p[1], q[1]) for p, q in zip(want[k], got[k], strict=True))
            for k in want
        )
    if isinstance(want, list) and isinstance(got, list):
        if not ordered:
            want, got = sorted(want, key=lambda p: p[0]), sorted(got, key=lambda p: p[0])
        return len(want) == len(got) and all(p[0] == q[0] and _same(p[1], q[1]) for p, q in zip(want, got, strict=True))
    return False


def check(path: Path) -> int:
    """Prints every disagreement; returns their number."""
    engine = Engine()
    problems = total = 0
    for block in _blocks(path.read_text()):
        storage = MemoryQueryable()
        for labels, points in block.series.items():
            for t in sorted(points):
                value = points[t]
                storage.add(labels, t, STALE_NAN if value == "stale" else float(value))
        stale = any(v == "stale" for points in block.series.values() for v in points.values())
        unnamed = any("__name__" not in dict(labels) for labels in block.series)
        with tempfile.TemporaryDirectory() as tmp:
            answers = (_promtool_answers if stale or unnamed or not block.series else _server_answers)(block, Path(tmp))
        for case, want in answers.items():
            total += 1
            got = _vigil(engine, storage, case)
            # Prometheus orders a subquery's series by Go map iteration: only there is the order random.
            if not _agree(want, got, ordered=_SUBQUERY.search(case[0]) is None):
                problems += 1
                print(f"{path.name}: {case}:\n  prometheus: {want}\n  vigil:      {got}")
    print(f"{path}: {total} cases, {problems} disagreements")
    return problems


if __name__ == "__main__":
    sys.exit(1 if sum(check(Path(p)) for p in sys.argv[1:]) else 0)
