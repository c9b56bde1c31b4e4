"""Process lifecycle: sd_notify, SIGTERM, kill -9 durability, and start-up failures."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO, Vigil, free_port, http, wait_for


def test_sd_notify_ready_watchdog_reloading_stopping(make_vigil, tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    messages: list[tuple[float, str]] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except TimeoutError:
                continue

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    v = make_vigil(env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
    v.start(wait=False)

    def seen(word: str) -> bool:
        return any(word in m for _, m in messages)

    try:
        wait_for(lambda: seen("READY=1"), 20, "READY=1")
        ready_at = next(t for t, m in messages if "READY=1" in m)
        # READY only once the API listens: it must answer right away.
        assert http("GET", v.url + "/readyz").status == 200
        wait_for(lambda: sum("WATCHDOG=1" in m for _, m in messages) >= 2, 5, "WATCHDOG=1 keep-alives")
        v.signal(1)  # SIGHUP
        wait_for(lambda: seen("RELOADING=1"), 5, "RELOADING=1")
        reloading = next(m for _, m in messages if "RELOADING=1" in m)
        assert "MONOTONIC_USEC=" in reloading
        wait_for(lambda: sum("READY=1" in m for _, m in messages) >= 2, 5, "READY=1 after the reload")
        started = time.monotonic()
        assert v.stop() == 0
        assert time.monotonic() - started < 10
        wait_for(lambda: seen("STOPPING=1"), 5, "STOPPING=1")
        assert ready_at < next(t for t, m in messages if "STOPPING=1" in m)
    finally:
        done.set()
        reader.join(2)
        sock.close()


def test_sigterm_finishes_in_flight_requests(vigil: Vigil) -> None:
    """A request the server has accepted (it answered 100 Continue) and whose body is still
    arriving when SIGTERM comes is completed and committed, and the process exits 0."""
    body = json.dumps({"name": "in flight"}).encode()
    conn = socket.create_connection(("127.0.0.1", vigil.port), timeout=10)
    head = (f"POST /api/v1/api-keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {vigil.admin_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n")
    conn.sendall(head.encode())
    assert conn.recv(1024).startswith(b"HTTP/1.1 100 Continue")
    vigil.signal(15)
    wait_for(lambda: http("GET", vigil.url + "/readyz").status == 503 if _accepts(vigil) else True, 5,
             "the server to start shutting down")
    conn.sendall(body)
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        reply += chunk
    conn.close()
    assert reply.startswith(b"HTTP/1.1 201"), reply[:200]
    key_id = json.loads(reply.split(b"\r\n\r\n", 1)[1])["data"]["id"]
    assert vigil.proc is not None and vigil.proc.wait(10) == 0
    db = sqlite3.connect(vigil.state_dir / "vigil.db")
    assert db.execute("SELECT count(*) FROM api_keys WHERE id=?", (key_id,)).fetchone()[0] == 1


def _accepts(v: Vigil) -> bool:
    """Whether the listener still accepts connections (it closes first on SIGTERM)."""
    try:
        socket.create_connection(("127.0.0.1", v.port), timeout=1).close()
        return True
    except OSError:
        return False


def test_kill9_during_key_creation_burst_loses_no_acknowledged_key(make_vigil) -> None:
    v = make_vigil().start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def create(i: int) -> None:
        while not stop.is_set():
            try:
                r = v.post("/api/v1/api-keys", {"name": f"burst-{i}"}, timeout=5)
            except OSError:
                return
            if r.status == 201:
                with lock:
                    acknowledged.append(r.json()["data"]["id"])

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acknowledged) >= 150, 30, "a burst of key creations")
    v.kill9()
    stop.set()
    for t in threads:
        t.join(10)
    count = len(acknowledged)
    db = sqlite3.connect(v.state_dir / "vigil.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    v.start()
    listed = {k["id"] for k in v.get("/api/v1/api-keys").json()["data"]["api_keys"]}
    missing = set(acknowledged) - listed
    assert not missing, f"{len(missing)} of {count} acknowledged keys lost"
    assert v.stop() == 0


def _run_expect_failure(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "agent", "run", *args], cwd=REPO, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode != 0, out
    return out


def test_port_in_use_exits_with_reason(make_vigil) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        v = make_vigil()
        out = _run_expect_failure(["--config", str(v.config_path), "--listen", f"127.0.0.1:{port}"])
        assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
        assert "in use" in out.stderr.lower()
    finally:
        holder.close()


def test_invalid_config_exits_with_file_line(make_vigil) -> None:
    v = make_vigil()
    v.write_config("listen: 127.0.0.1:1\nstate_dir: /tmp/x\ncollectors:\n  cpu:\n    enabled: maybe\n")
    out = _run_expect_failure(["--config", str(v.config_path)])
    assert "vigil.yaml:5: collectors.cpu.enabled:" in out.stderr


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if result.returncode != 0:
        if IN_CI:
            pytest.fail(f"cannot mount a tmpfs in CI: {result.stderr!r}")
        pytest.skip(f"mounting a tmpfs needs root: {result.stderr.decode().strip()}")
    return True


def test_read_only_state_dir_exits_with_reason(make_vigil, tmp_path: Path) -> None:
    state = tmp_path / "ro-state"
    _mount_tmpfs(state, "size=1m,ro")
    try:
        v = make_vigil()
        out = _run_expect_failure(["--config", str(v.config_path), "--state-dir", str(state),
                                   "--listen", f"127.0.0.1:{free_port()}"])
        assert str(state) in out.stderr and ("read-only" in out.stderr or "not writable" in out.stderr)
    finally:
        subprocess.run(["umount", str(state)], check=False)


def test_full_state_dir_fails_writes_cleanly_and_daemon_survives(make_vigil, tmp_path: Path) -> None:
    state = tmp_path / "small-state"
    _mount_tmpfs(state, "size=600k")
    v = make_vigil({"state_dir": str(state)})
    try:
        v.start()
        filler = state / "filler"
        with open(filler, "wb") as fh, contextlib.suppress(OSError):  # until the disk is full
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        statuses = set()
        for i in range(40):
            r = v.post("/api/v1/api-keys", {"name": f"k{i}" + "x" * 90})
            statuses.add(r.status)
            if r.status >= 500:
                body = r.json()
                assert body["status"] == "error" and "full" in body["error"].lower()
                break
        assert any(s >= 500 for s in statuses), statuses
        assert v.get("/readyz", key=None).status == 200
        filler.unlink()
        r = v.post("/api/v1/api-keys", {"name": "after space freed"})
        assert r.status == 201
        assert v.stop() == 0
    finally:
        if v.proc is not None and v.proc.poll() is None:
            v.kill9()
        subprocess.run(["umount", str(state)], check=False)
