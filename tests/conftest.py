"""Test harness: real daemons on free loopback ports, with temp config and state dirs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def require_binary(name: str) -> str:
    """Path of a Debian binary a test needs; skip without it, except in CI where it must exist."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (installed by .ci/run) but is not on PATH")
        pytest.skip(f"{name} is not installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


def http(method: str, url: str, *, key: str | None = None, body: Any = None,
         headers: dict[str, str] | None = None, raw: bytes | None = None, timeout: float = 10) -> Response:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Response(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, dict(exc.headers), exc.read())


class Vigil:
    """One agent process: `start()`, use `get/post/...`, then `stop()` or `kill9()`."""

    def __init__(self, root: Path, config: dict[str, Any] | None = None, env: dict[str, str] | None = None):
        self.root = root
        self.config_dir = root / "etc"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = root / "state"
        self.config_path = self.config_dir / "vigil.yaml"
        self.port = free_port()
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "vigil.log"
        base: dict[str, Any] = {
            "listen": f"127.0.0.1:{self.port}",
            "state_dir": str(self.state_dir),
            "environment": "test",
            "collectors": {"interval": "15s"},
        }
        if config:
            base.update(config)
        self.state_dir = Path(base["state_dir"])
        self.write_config(base)

    def write_config(self, doc: dict[str, Any] | str) -> None:
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, extra_args: list[str] | None = None) -> Vigil:
        log = open(self.log_path, "ab")  # noqa: SIM115 (handed to the child)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.config_path), *(extra_args or [])],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"vigil exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return http("GET", self.url + "/readyz", timeout=2).status == 200
            except OSError:
                return False

        wait_for(ready, timeout, "/readyz to return 200")

    @property
    def admin_key(self) -> str:
        return (self.state_dir / "admin.key").read_text().strip()

    def request(self, method: str, path: str, key: str | bool | None = True, **kw: Any) -> Response:
        token = self.admin_key if key is True else (key or None)
        return http(method, self.url + path, key=token, **kw)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, body=body, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """A sample's value from /metrics (text format), or None when absent."""
        from prometheus_client.parser import text_string_to_metric_families

        text = http("GET", self.url + "/metrics").body.decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                    return float(sample.value)
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"vigil did not stop within {timeout}s of SIGTERM:\n{self.log()}") from None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def make_vigil(tmp_path: Path) -> Iterator[Callable[..., Vigil]]:
    started: list[Vigil] = []

    def factory(config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                name: str = "v") -> Vigil:
        v = Vigil(tmp_path / name, config, env)
        started.append(v)
        return v

    yield factory
    for v in started:
        if v.proc is not None and v.proc.poll() is None:
            v.proc.kill()
            v.proc.wait()


@pytest.fixture
def vigil(make_vigil: Callable[..., Vigil]) -> Vigil:
    """A running agent with default settings."""
    return make_vigil().start()
