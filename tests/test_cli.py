"""The CLI against a running agent: status and keys, with the key from admin.key or the env."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO, Vigil


def vigil_cli(v: Vigil, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: val for k, val in os.environ.items() if k != "VIGIL_API_KEY"}
    return subprocess.run([sys.executable, "-m", "agent", *args, "--config", str(v.config_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env={**environ, **(env or {})})


def test_status_and_keys(vigil: Vigil) -> None:
    out = vigil_cli(vigil, "status")
    assert out.returncode == 0, out.stderr
    assert "vigil " in out.stdout and "components:" in out.stdout and "store=healthy" in out.stdout

    out = vigil_cli(vigil, "keys", "create", "ci-reader", "--role", "viewer")
    assert out.returncode == 0, out.stderr
    key_id = out.stdout.split()[1]
    token = out.stdout.strip().splitlines()[-1]
    assert token.startswith("vgl_")

    listed = vigil_cli(vigil, "keys", "list")
    assert key_id in listed.stdout and "ci-reader" in listed.stdout and token not in listed.stdout

    # A viewer key from the environment can read status but not manage keys.
    assert vigil_cli(vigil, "status", env={"VIGIL_API_KEY": token}).returncode == 0
    denied = vigil_cli(vigil, "keys", "list", env={"VIGIL_API_KEY": token})
    assert denied.returncode == 1 and "HTTP 403" in denied.stderr

    revoked = vigil_cli(vigil, "keys", "revoke", key_id)
    assert revoked.returncode == 0 and key_id in revoked.stdout
    gone = vigil_cli(vigil, "status", env={"VIGIL_API_KEY": token})
    assert gone.returncode == 1 and "revoked" in gone.stderr


def test_status_when_agent_is_down(make_vigil) -> None:
    v = make_vigil()
    v.state_dir.mkdir(parents=True)
    (v.state_dir / "admin.key").write_text("vgl_x\n")
    out = vigil_cli(v, "status")
    assert out.returncode == 1 and "cannot reach the agent" in out.stderr


def test_admin_key_is_regenerated_when_no_admin_key_is_usable(make_vigil) -> None:
    import sqlite3

    v = make_vigil().start()
    first = v.admin_key
    assert (v.state_dir / "admin.key").stat().st_mode & 0o777 == 0o600
    assert v.stop() == 0
    v.start()
    assert v.admin_key == first  # a restart keeps the key
    assert v.stop() == 0
    db = sqlite3.connect(v.state_dir / "vigil.db")
    db.execute("UPDATE api_keys SET revoked_at = 1")  # the documented recovery for a lost key
    db.commit()
    db.close()
    v.start()
    assert v.admin_key != first
    assert v.get("/api/v1/api-keys").status == 200
    assert v.stop() == 0
