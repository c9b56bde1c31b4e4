"""Schemathesis (property-based API testing from PyPI) against the live daemon and its own OpenAPI document.

Every operation in `/api/v1/openapi.json` gets generated requests, valid and invalid; the run fails on any
5xx, an undocumented status code, or an answer that does not match the documented schema and content type.
The number of examples per operation is bounded and the seed fixed so CI is repeatable; `VIGIL_ST_EXAMPLES`
and `VIGIL_ST_SEED` change them for a deeper local run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
EXAMPLES = os.environ.get("VIGIL_ST_EXAMPLES", "8")
SEED = os.environ.get("VIGIL_ST_SEED", "20261123")
# Operations that change how the API answers everything after them run last, each group on its own:
# config and security settings changes and rollbacks (rate limits, body size, lockouts: documented
# 429/413 answers that would leave the rest of the run testing little), then maintenance (every later
# write gets the intended 503). The event stream is a WebSocket, which schemathesis cannot speak.
CHANGES = r"/api/v1/(config|config/rollback/\{id\}|security/settings)$"
MAINTENANCE = r"/api/v1/maintenance/enable$"
SKIP = r"/api/v1/events$"


def schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if found is None:
        pytest.fail("schemathesis is not installed (it is a test dependency in pyproject.toml)")
    return found


def run(v, tmp_path: Path, *filters: str) -> None:  # type: ignore[no-untyped-def]
    """One schemathesis run over the document as the daemon served it at the start (a later run may find
    the API rate-limited by an earlier run's settings change: the schema must still load)."""
    document = tmp_path / "openapi.json"
    if not document.exists():
        answer = v.get("/api/v1/openapi.json")
        assert answer.status == 200, answer
        document.write_bytes(answer.body)
    cmd = [
        schemathesis(), "run", str(document), "--url", v.url, "-H", f"Authorization: Bearer {v.admin_key}",
        "--checks", CHECKS, "--max-examples", EXAMPLES, "--seed", SEED, "--phases", "examples,coverage,fuzzing",
        "--workers", "1", "--no-color", "--request-timeout", "20", "--generation-database", "none", *filters,
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, f"schemathesis found problems:\n{proc.stdout[-20000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in proc.stdout, proc.stdout[-3000:]


def test_every_operation_answers_as_documented(make_vigil, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    limits = {c: 1_000_000 for c in ("health", "metrics", "config", "backup", "maintenance")}
    v = make_vigil({
        "api": {"rate_limit": {"default": 1_000_000, "categories": limits}},
        "collectors": {"interval": "1h"},
    }).start()
    run(v, tmp_path, "--exclude-path-regex", f"{CHANGES}|{MAINTENANCE}|{SKIP}")
    run(v, tmp_path, "--include-path-regex", CHANGES)
    run(v, tmp_path, "--include-path-regex", MAINTENANCE)
    assert v.get("/healthz").status == 200, v.log()[-3000:]
    assert v.stop() == 0
