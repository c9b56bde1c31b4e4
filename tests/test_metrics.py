"""/metrics through its real door: promtool, node_exporter for comparison, /proc for values."""

from __future__ import annotations

import base64
import os
import re
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Vigil, free_port, http, require_binary, wait_for

# node_exporter's own names that promtool calls camelCase; kept for compatibility with dashboards.
CAMEL_OK = re.compile(r"^node_memory_\w+ metric names should be written in 'snake_case' not 'camelCase'$")

REQUIRED = {
    "node_cpu_seconds_total": {"cpu", "mode"},
    "node_load1": set(), "node_load5": set(), "node_load15": set(),
    **{f"node_memory_{f}_bytes": set() for f in
       ("MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached", "SwapTotal", "SwapFree")},
    **{f"node_filesystem_{f}": {"device", "fstype", "mountpoint"} for f in
       ("size_bytes", "avail_bytes", "free_bytes", "files", "files_free", "readonly")},
    **{f"node_disk_{f}_total": {"device"} for f in
       ("reads_completed", "writes_completed", "read_bytes", "written_bytes", "io_time_seconds")},
    **{f"node_network_{d}_{f}_total": {"device"} for d in ("receive", "transmit")
       for f in ("bytes", "packets", "errs", "drop")},
    "node_boot_time_seconds": set(), "node_time_seconds": set(),
    "node_uname_info": {"sysname", "release", "version", "machine", "nodename", "domainname"},
    "node_procs_running": set(), "node_procs_blocked": set(), "node_context_switches_total": set(),
    "node_forks_total": set(), "node_filefd_allocated": set(), "node_filefd_maximum": set(),
}


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vigil]:
    v = Vigil(tmp_path_factory.mktemp("metrics")).start()
    wait_for(lambda: v.metric("vigil_collector_success", {"collector": "filesystem"}) is not None, 10,
             "the first collection")
    yield v
    assert v.stop() == 0


def test_promtool_check_metrics_is_clean(agent: Vigil) -> None:
    promtool = require_binary("promtool")
    body = http("GET", agent.url + "/metrics").body
    out = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    findings = [ln for ln in (out.stdout + out.stderr).decode().splitlines() if ln.strip()]
    unexpected = [ln for ln in findings if not CAMEL_OK.match(ln)]
    assert not unexpected, "\n".join(unexpected)


def test_required_families_with_node_exporter_labels(agent: Vigil) -> None:
    got = samples(http("GET", agent.url + "/metrics").body.decode())
    for name, labels in REQUIRED.items():
        assert name in got, f"{name} missing"
        assert set(got[name][0][0]) == labels, (name, got[name][0][0])


def test_same_names_and_labels_as_node_exporter(agent: Vigil, tmp_path: Path) -> None:
    binary = require_binary("prometheus-node-exporter")
    port = free_port()
    from agent.config.schema import NODE_FS_TYPES_EXCLUDE, NODE_MOUNT_POINTS_EXCLUDE

    # Our defaults are upstream node_exporter's; Debian's build changes them, so pass them along.
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}",
         f"--collector.filesystem.mount-points-exclude={NODE_MOUNT_POINTS_EXCLUDE}",
         f"--collector.filesystem.fs-types-exclude={NODE_FS_TYPES_EXCLUDE}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def scrape() -> str | None:
            try:
                return http("GET", f"http://127.0.0.1:{port}/metrics", timeout=5).body.decode()
            except OSError:
                return None

        theirs = samples(wait_for(scrape, 20, "node_exporter"))
    finally:
        proc.terminate()
        proc.wait(10)
    ours = samples(http("GET", agent.url + "/metrics").body.decode())
    for name in REQUIRED:
        assert name in theirs, f"node_exporter has no {name}?"
        assert set(theirs[name][0][0]) == set(ours[name][0][0]), name
    # Every node_* family we export that node_exporter also has carries the same labels.
    for name in set(ours) & set(theirs):
        if name.startswith("node_"):
            assert set(ours[name][0][0]) == set(theirs[name][0][0]), name
    # Same filesystems reported, with the same exclusions.
    mounts = {labels["mountpoint"] for labels, _ in ours["node_filesystem_size_bytes"]}
    assert mounts == {labels["mountpoint"] for labels, _ in theirs["node_filesystem_size_bytes"]}


def test_values_agree_with_proc(agent: Vigil) -> None:
    got = samples(http("GET", agent.url + "/metrics").body.decode())
    meminfo = {k: int(v.split()[0]) * 1024 for k, v in
               (ln.split(":", 1) for ln in Path("/proc/meminfo").read_text().splitlines()) if v.strip()}
    assert got["node_memory_MemTotal_bytes"][0][1] == meminfo["MemTotal"]
    assert got["node_memory_SwapTotal_bytes"][0][1] == meminfo["SwapTotal"]
    cpus = {labels["cpu"] for labels, _ in got["node_cpu_seconds_total"]}
    assert cpus == {str(i) for i in range(os.cpu_count() or 1)}
    btime = next(int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime"))
    assert got["node_boot_time_seconds"][0][1] == btime
    assert got["node_filefd_maximum"][0][1] == int(Path("/proc/sys/fs/file-nr").read_text().split()[2])
    uname = got["node_uname_info"][0][0]
    assert uname["release"] == os.uname().release and uname["machine"] == os.uname().machine
    for labels, value in got["node_filesystem_size_bytes"]:
        st = os.statvfs(labels["mountpoint"])
        assert value == st.f_blocks * st.f_frsize, labels


def test_collector_and_self_metrics(agent: Vigil) -> None:
    got = samples(http("GET", agent.url + "/metrics").body.decode())
    from agent.collectors import REGISTRY

    success = {labels["collector"]: v for labels, v in got["vigil_collector_success"]}
    assert set(success) == set(REGISTRY) and all(v == 1 for v in success.values())
    assert {labels["collector"] for labels, _ in got["vigil_collector_duration_seconds"]} == set(REGISTRY)
    for name in ("vigil_process_resident_memory_bytes", "vigil_process_cpu_seconds_total",
                 "vigil_process_open_fds", "vigil_event_loop_lag_seconds_count",
                 "vigil_scheduler_job_runs_total", "vigil_store_write_queue_length",
                 "vigil_store_commit_duration_seconds_count", "vigil_http_requests_total",
                 "vigil_http_request_duration_seconds_bucket", "vigil_config_last_reload_successful"):
        assert name in got, name
    runs = {labels["job"] for labels, _ in got["vigil_scheduler_job_runs_total"]}
    assert "collector.cpu" in runs


def test_openmetrics_when_asked(agent: Vigil) -> None:
    r = http("GET", agent.url + "/metrics",
             headers={"Accept": "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"})
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    text = r.body.decode()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    names = {f.name for f in parse_openmetrics(text)}
    assert {"node_cpu_seconds", "node_memory_MemTotal_bytes", "vigil_http_requests"} <= names
    plain = http("GET", agent.url + "/metrics")
    assert plain.headers["Content-Type"].startswith("text/plain")


def test_failing_collector_does_not_stop_others(make_vigil, tmp_path: Path) -> None:
    fake_proc = tmp_path / "proc"
    fake_proc.mkdir()
    v = make_vigil({"collectors": {"proc_path": str(fake_proc), "interval": "1s"}}).start()
    wait_for(lambda: v.metric("vigil_collector_success", {"collector": "meminfo"}) == 0, 10, "meminfo to fail")
    assert v.metric("vigil_collector_success", {"collector": "time"}) == 1
    assert v.metric("node_time_seconds") is not None
    assert v.metric("node_memory_MemTotal_bytes") is None
    health = v.get("/api/v1/health").json()["data"]
    assert health["components"]["collectors"]["status"] == "degraded"
    assert "meminfo" in health["components"]["collectors"]["failing"]
    shutil.copy("/proc/meminfo", fake_proc / "meminfo")
    wait_for(lambda: v.metric("vigil_collector_success", {"collector": "meminfo"}) == 1, 10, "meminfo to recover")
    assert v.metric("node_memory_MemTotal_bytes") is not None
    assert "collector_recovered" in v.log()
    assert v.stop() == 0


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_metrics_basic_and_bearer_auth(make_vigil, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    token_file = tmp_path / "metrics.token"
    token_file.write_text("tok-123\n")
    v = make_vigil({"metrics": {"basic_auth_users": {"prom": hashed},
                                "bearer_token": f"${{file:{token_file}}}"}}).start()
    r = http("GET", v.url + "/metrics")
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert r.json()["errorType"] == "unauthorized"
    assert http("GET", v.url + "/metrics", headers=_basic("prom", "wrong")).status == 401
    assert http("GET", v.url + "/metrics", headers=_basic("nobody", "s3cret")).status == 401
    assert http("GET", v.url + "/metrics", headers=_basic("prom", "s3cret")).status == 200
    assert http("GET", v.url + "/metrics", headers=_basic("prom", "s3cret")).status == 200
    assert http("GET", v.url + "/metrics", key="tok-123").status == 200
    assert http("GET", v.url + "/metrics", key="tok-999").status == 401
    # The token never shows in an API answer or the log.
    assert "tok-123" not in v.get("/api/v1/status").body.decode() and "tok-123" not in v.log()
    assert v.stop() == 0


def test_tls_listener(make_vigil, tmp_path: Path) -> None:
    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    v = make_vigil({"tls_server_config": {"cert_file": str(cert), "key_file": str(key)}})
    v.start(wait=False)
    ctx = ssl.create_default_context(cafile=str(cert))

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{v.port}/readyz", context=ctx, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(ready, 20, "TLS /readyz")
    with urllib.request.urlopen(f"https://127.0.0.1:{v.port}/metrics", context=ctx, timeout=5) as r:
        assert b"node_cpu_seconds_total" in r.read()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{v.port}/readyz", timeout=5)
    assert v.stop() == 0
