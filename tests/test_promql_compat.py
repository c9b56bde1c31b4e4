"""Same answers as Prometheus: one seeded data set in a real Prometheus and in Vigil, hundreds of queries
to both HTTP APIs, and every difference reported at once.

The data goes into Prometheus with `promtool tsdb create-blocks-from openmetrics` and into Vigil
with `POST /api/v1/import`, from the same OpenMetrics file. Prometheus's answers are the
specification: a mismatch is a Vigil bug to fix, never a case to drop. The query list and the data
set live in tests/promql_compat/.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.promql.ast import AGGREGATORS, FUNCTIONS
from tests.conftest import Response, Vigil, http, require_binary
from tests.promql_compat import compare, dataset, queries
from tests.promql_compat.prom import PrometheusHandle, create_blocks, start_prometheus

pytestmark = pytest.mark.timeout(120)

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
COLLECTORS = ("cpu", "loadavg", "meminfo", "filesystem", "diskstats", "netdev", "stat", "time", "uname", "filefd",
              "hwmon")
IMPORT_CHUNK = 8 * 1024 * 1024
MIN_CASES = 150
MIN_NON_EMPTY_SHARE = 0.85
WORKERS = 4


@dataclass
class Servers:
    ds: dataset.Dataset
    prom: PrometheusHandle
    vigil: Vigil
    cases: list[queries.Case]
    imported: list[dict[str, Any]]
    _prom_answers: list[tuple[int, Any]] = field(default_factory=list)

    def prom_answers(self) -> list[tuple[int, Any]]:
        """Prometheus's answer to every case (in case order), asked once for all tests of the module."""
        if not self._prom_answers:
            with ThreadPoolExecutor(WORKERS) as pool:
                self._prom_answers = list(pool.map(lambda c: ask(self.prom.url, c, None), self.cases))
        return self._prom_answers


def ask(base: str, case: queries.Case, key: str | None) -> tuple[int, Any]:
    """One case's HTTP answer as (status, decoded JSON or the raw text when it is not JSON)."""
    encoded = urllib.parse.urlencode(case.params)
    if case.method == "GET":
        resp = http("GET", f"{base}{case.path}?{encoded}", key=key, timeout=60)
    else:
        resp = http("POST", base + case.path, key=key, raw=encoded.encode(), timeout=60,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    return resp.status, _decode(resp)


def _decode(resp: Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.body.decode(errors="replace")[:500]


def _vigil_config() -> dict[str, Any]:
    """No host collectors (only the imported data is in the history) and no rate limit in the way."""
    return {
        "collectors": {"interval": "15s", **{name: {"enabled": False} for name in COLLECTORS}},
        "api": {"max_body_bytes": 64 * 1024 * 1024, "rate_limit": {"default": 1_000_000, "categories": {}}},
    }


def _import(v: Vigil, ds: dataset.Dataset) -> list[dict[str, Any]]:
    answers = []
    for chunk in ds.chunks(IMPORT_CHUNK):
        resp = v.post("/api/v1/import", raw=chunk.encode(), headers={"Content-Type": OPENMETRICS}, timeout=120)
        assert resp.status == 200, f"import failed: {resp!r}\n{v.log()[-3000:]}"
        answers.append(resp.json())
    return answers


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    require_binary("prometheus")
    require_binary("promtool")
    root = tmp_path_factory.mktemp("promql_compat")
    ds = dataset.generate(dataset.default_end(time.time()))
    om = root / "data.om"
    om.write_text(ds.openmetrics())
    create_blocks(om, root / "tsdb")
    prom = start_prometheus(root / "tsdb")
    vigil = Vigil(root / "vigil", _vigil_config())
    try:
        vigil.start()
        imported = _import(vigil, ds)
        yield Servers(ds, prom, vigil, queries.build(ds), imported)
    finally:
        prom.stop()
        if vigil.proc is not None and vigil.proc.poll() is None:
            vigil.proc.kill()
            vigil.proc.wait()


@pytest.fixture(scope="module")
def prometheus_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dataset.Dataset, PrometheusHandle]]:
    """Prometheus over the data set without Vigil: checks the query list itself."""
    require_binary("prometheus")
    require_binary("promtool")
    root = tmp_path_factory.mktemp("promql_reference")
    ds = dataset.generate(dataset.default_end(time.time()))
    om = root / "data.om"
    om.write_text(ds.openmetrics())
    create_blocks(om, root / "tsdb")
    with start_prometheus(root / "tsdb") as prom:
        yield ds, prom


def test_query_list_is_meaningful_on_prometheus(prometheus_only: tuple[dataset.Dataset, PrometheusHandle]) -> None:
    """Each case gets from Prometheus what it was written for, so "both empty" can not pass for agreement."""
    ds, prom = prometheus_only
    cases = queries.build(ds)
    assert len(cases) >= MIN_CASES
    assert len({c.id for c in cases}) == len(cases), "case ids must be unique"
    with ThreadPoolExecutor(WORKERS) as pool:
        answers = list(pool.map(lambda c: ask(prom.url, c, None), cases))
    wrong = []
    successes = non_empty = 0
    for case, (status, body) in zip(cases, answers, strict=True):
        if body["status"] == "error":
            if case.expect != "error":
                wrong.append(f"{case.id}: unexpected error {status} {body['errorType']}: {body['error']}")
            continue
        successes += 1
        empty = compare.is_empty(body["data"])
        non_empty += not empty
        if case.expect == "error" or (case.expect == "data" and empty) or (case.expect == "empty" and not empty):
            wrong.append(f"{case.id}: expected {case.expect}, got {compare.trim(body['data'], 200)}")
    assert not wrong, "\n".join(wrong)
    assert non_empty / successes >= MIN_NON_EMPTY_SHARE, f"only {non_empty} of {successes} answers have data"


def test_query_list_covers_the_subset() -> None:
    """Every function, aggregator, operator and modifier of the supported subset is asked about."""
    text = "\n".join(c.query for c in queries.build(dataset.generate(1_700_000_000)))
    missing = [f for f in (*FUNCTIONS, *AGGREGATORS) if not re.search(rf"\b{f}\s*(\(|(by|without)\s*\()", text)]
    missing += [f"by/without on {a}" for a in AGGREGATORS
                if not re.search(rf"\b{a}\s+(by|without)\b|\b{a}\s*\(.*\)\s*(by|without)\b", text)]
    tokens = (" + ", " - ", " * ", " / ", " % ", " ^ ", " == ", " != ", " > ", " < ", " >= ", " <= ", " bool ",
              " and ", " or ", " unless ", "on(", "ignoring(", "group_left", "group_right", " offset ", " @ ",
              "start()", "end()", ":]", "=~", "!~", "!=", "offset -")
    missing += [t for t in tokens if t not in text]
    assert not missing, missing


def test_import_stores_every_sample(servers: Servers) -> None:
    samples = sum(a["data"]["samples"] for a in servers.imported)
    series = sum(a["data"]["series"] for a in servers.imported)
    assert (samples, series) == (servers.ds.samples, servers.ds.series)


def test_same_answers_as_prometheus(servers: Servers) -> None:
    want = servers.prom_answers()
    key = servers.vigil.admin_key
    with ThreadPoolExecutor(WORKERS) as pool:
        got = list(pool.map(lambda c: ask(servers.vigil.url, c, key), servers.cases))
    failures = []
    for case, (w_status, w_body), (g_status, g_body) in zip(servers.cases, want, got, strict=True):
        try:
            compare.compare_answers(w_status, w_body, g_status, g_body, case.ordered)
        except compare.Mismatch as exc:
            failures.append(_describe(case, exc, (w_status, w_body), (g_status, g_body)))
    assert not failures, (f"{len(failures)} of {len(servers.cases)} queries differ from Prometheus:\n\n"
                          + "\n\n".join(failures))


def _describe(case: queries.Case, why: Exception, want: tuple[int, Any], got: tuple[int, Any]) -> str:
    return (f"* {case.id}\n  {case.method} {case.path} {json.dumps(case.params)}\n  why: {why}\n"
            f"  prometheus {want[0]}: {compare.trim(want[1])}\n  vigil {got[0]}: {compare.trim(got[1])}")


def _meta_requests(ds: dataset.Dataset) -> list[tuple[str, dict[str, Any]]]:
    """Series and label look-ups over a span well around the data (Prometheus answers at block granularity)."""
    span = {"start": str(ds.start - 3600), "end": str(ds.end + 1800)}
    return [
        ("/api/v1/series", {"match[]": "up", **span}),
        ("/api/v1/series", {"match[]": ['http_requests_total{code=~"5.."}', 'queue_depth{queue!="sms"}'], **span}),
        ("/api/v1/series", {"match[]": '{__name__=~"request_duration_seconds_.*", le=~"0.0.*|"}', **span}),
        ("/api/v1/labels", span),
        ("/api/v1/labels", {"match[]": "node_filesystem_avail_bytes", **span}),
        ("/api/v1/label/__name__/values", span),
        ("/api/v1/label/job/values", span),
        ("/api/v1/label/le/values", {"match[]": "request_duration_seconds_bucket", **span}),
        ("/api/v1/label/note/values", span),
        ("/api/v1/label/mountpoint/values", {"match[]": ['node_filesystem_size_bytes{fstype="ext4"}'], **span}),
        ("/api/v1/label/nonexistent/values", span),
        ("/api/v1/series", {"match[]": "nonexistent_metric", **span}),
    ]


def _sorted_data(path: str, data: Any) -> Any:
    if path == "/api/v1/series":
        return sorted(json.dumps(s, sort_keys=True) for s in data)
    return data


def test_series_and_label_lookups_match(servers: Servers) -> None:
    failures = []
    for path, params in _meta_requests(servers.ds):
        url = path + "?" + urllib.parse.urlencode(params, doseq=True)
        w = http("GET", servers.prom.url + url)
        g = servers.vigil.get(url)
        w_body, g_body = w.json(), _decode(g)
        if g.status != w.status or not isinstance(g_body, dict) or g_body.get("status") != w_body["status"]:
            failures.append(f"{url}: prometheus {w.status} {compare.trim(w_body)}; vigil {g.status} "
                            f"{compare.trim(g_body)}")
        elif _sorted_data(path, w_body["data"]) != _sorted_data(path, g_body.get("data")):
            failures.append(f"{url}:\n  prometheus {compare.trim(w_body['data'])}\n  vigil {compare.trim(g_body)}")
    assert not failures, "\n".join(failures)


def test_compare_catches_differences() -> None:
    """The comparison itself must be able to fail, or a green run proves nothing."""
    vec = {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [10, "1.5"]}]}
    compare.compare_data(vec, json.loads(json.dumps(vec)))
    for changed in (
        {"resultType": "vector", "result": [{"metric": {"a": "2"}, "value": [10, "1.5"]}]},
        {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [10, "1.50001"]}]},
        {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [10.001, "1.5"]}]},
        {"resultType": "vector", "result": []},
        {"resultType": "matrix", "result": [{"metric": {"a": "1"}, "values": [[10, "1.5"]]}]},
    ):
        with pytest.raises(compare.Mismatch):
            compare.compare_data(vec, changed)
    nan = {"resultType": "scalar", "result": [1, "NaN"]}
    compare.compare_data(nan, {"resultType": "scalar", "result": [1, "NaN"]})
    with pytest.raises(compare.Mismatch):
        compare.compare_data(nan, {"resultType": "scalar", "result": [1, "nan"]})
    with pytest.raises(compare.Mismatch):
        compare.compare_data({"resultType": "scalar", "result": [1, "1000000"]},
                             {"resultType": "scalar", "result": [1, "1e+06"]})
    compare.compare_data({"resultType": "scalar", "result": [1, "0.30000000000000004"]},
                         {"resultType": "scalar", "result": [1, "0.3"]})
    ordered = {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [1, "1"]},
                                                  {"metric": {"a": "2"}, "value": [1, "2"]}]}
    reversed_ = {"resultType": "vector", "result": ordered["result"][::-1]}
    compare.compare_data(ordered, reversed_)
    with pytest.raises(compare.Mismatch):
        compare.compare_data(ordered, reversed_, ordered=True)
    err = {"status": "error", "errorType": "bad_data", "error": "x"}
    compare.compare_answers(400, err, 400, {"status": "error", "errorType": "bad_data", "error": "other text"})
    with pytest.raises(compare.Mismatch):
        compare.compare_answers(400, err, 422, {"status": "error", "errorType": "execution", "error": "x"})


def test_dataset_is_deterministic() -> None:
    a, b = dataset.generate(1_700_000_000), dataset.generate(1_700_000_000)
    assert a.openmetrics() == b.openmetrics()
    text = a.openmetrics()
    assert text.endswith("# EOF\n") and "NaN" in text and "+Inf" in text and "-Inf" in text
    chunks = list(a.chunks(1024 * 1024))
    assert len(chunks) > 1 and all(len(c) <= 1024 * 1024 and c.endswith("# EOF\n") for c in chunks)
    sample_lines = [line for c in chunks for line in c.splitlines() if not line.startswith("#")]
    assert sample_lines == [line for line in text.splitlines() if not line.startswith("#")]
    assert len(sample_lines) == a.samples
