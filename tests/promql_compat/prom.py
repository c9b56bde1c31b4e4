"""A real Prometheus over backfilled blocks, on a loopback port: the reference answers for PromQL.

Used by the compatibility test and by benchmarks. Nothing here scrapes: the config has no scrape
jobs and no remote storage, so the only data Prometheus serves is the blocks `create_blocks` made.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CONFIG = "global:\n  evaluation_interval: 1m\nscrape_configs: []\n"


class PrometheusError(RuntimeError):
    """Prometheus or promtool failed; the message carries their output."""


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PrometheusError(f"{name} is not installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_blocks(openmetrics_path: Path, data_dir: Path, timeout: float = 120) -> str:
    """Backfill an OpenMetrics file (timestamps required) into TSDB blocks in `data_dir`; returns promtool's output."""
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(openmetrics_path), str(data_dir)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if proc.returncode != 0:
        raise PrometheusError(f"promtool exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@dataclass
class PrometheusHandle:
    """A running Prometheus; `url` is its base URL (http://127.0.0.1:port)."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    _stopped: bool = field(default=False, init=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> PrometheusHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_prometheus(data_dir: Path, port: int | None = None, *, timeout: float = 60,
                     lookback_delta: str = "5m", extra_args: list[str] | None = None) -> PrometheusHandle:
    """Start Prometheus on 127.0.0.1:`port` (a free one if None) over the TSDB in `data_dir`; wait for /-/ready.

    Its config, console dirs and log go in a sibling directory `<data_dir>.prom`, so `data_dir`
    holds nothing but blocks. Retention is ten years: backfilled data must never be deleted
    under a test, however old it is.
    """
    port = port or free_port()
    workdir = data_dir.with_name(data_dir.name + ".prom")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(CONFIG)
    # Debian's defaults point the console dirs at /etc/prometheus; empty dirs of our own keep the
    # server independent of what the package ships.
    (workdir / "consoles").mkdir(exist_ok=True)
    (workdir / "console_libraries").mkdir(exist_ok=True)
    log_path = workdir / "prometheus.log"
    url = f"http://127.0.0.1:{port}"
    args = [
        _binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=3650d",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.console.templates={workdir / 'consoles'}",
        f"--web.console.libraries={workdir / 'console_libraries'}",
        f"--query.lookback-delta={lookback_delta}",
        "--log.level=warn",
        *(extra_args or []),
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    handle = PrometheusHandle(url, proc, log_path, workdir)
    deadline = time.monotonic() + timeout
    while not _ready(url):
        if proc.poll() is not None:
            raise PrometheusError(f"prometheus exited with {proc.returncode}:\n{handle.log()}")
        if time.monotonic() > deadline:
            handle.stop()
            raise PrometheusError(f"prometheus not ready within {timeout}s:\n{handle.log()}")
        time.sleep(0.05)
    return handle


def api_get(url: str, path: str, params: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict]:
    """GET an API path; returns (HTTP status, decoded JSON body) for success and error answers alike."""
    query = "?" + urllib.parse.urlencode(params) if params else ""
    try:
        with urllib.request.urlopen(url + path + query, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
