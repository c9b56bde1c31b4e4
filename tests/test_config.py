"""Config loading: one schema, file:line errors, drop-ins, secret references, CLI doors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.config.durations import parse_duration
from tests.conftest import REPO


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def issues_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    return [str(i) for i in info.value.issues]


def test_shipped_config_is_valid() -> None:
    loaded = load_config(str(REPO / "config" / "vigil.yaml"))
    assert loaded.config.listen == "127.0.0.1:9847"
    assert loaded.config.state_dir == "./var"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path / "v.yaml", ""))).config
    assert cfg.collectors.interval == 15 and cfg.collectors.cpu.enabled


def test_every_error_with_file_line_and_path(tmp_path: Path) -> None:
    path = write(tmp_path / "v.yaml", (
        "listen: nowhere\n"
        "collectors:\n"
        "  interval: 15x\n"
        "  cpu:\n"
        "    enabled: perhaps\n"
        "    colour: red\n"
        "log:\n"
        "  level: loud\n"
    ))
    found = issues_of(path)
    assert found == [
        f"{path}:1: listen: expected host:port (e.g. 127.0.0.1:9847 or [::1]:9847), got 'nowhere'",
        f"{path}:3: collectors.interval: expected a duration like 15s, 1m or 2h30m, got '15x'",
        f"{path}:5: collectors.cpu.enabled: Input should be a valid boolean, unable to interpret input",
        f"{path}:6: collectors.cpu.colour: unknown key 'colour' (allowed: enabled, interval, timeout)",
        f"{path}:8: log.level: Input should be 'debug', 'info', 'warning' or 'error'",
    ]


def test_malformed_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "v.yaml", "listen: [1, 2\nstate_dir: x\n")
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}:") and "invalid YAML" in issue


def test_duplicate_keys_and_non_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "v.yaml", "environment: a\nenvironment: b\n")
    assert issues_of(path) == [f"{path}:2: environment: duplicate key (the earlier value would be ignored)"]
    path = write(tmp_path / "w.yaml", "- a\n- b\n")
    assert issues_of(path) == [f"{path}:1: <root>: the top level must be a mapping of keys"]


def test_drop_ins_merge_and_point_at_their_file(tmp_path: Path) -> None:
    main = write(tmp_path / "vigil.yaml", "environment: main\ncollectors:\n  interval: 30s\n")
    write(tmp_path / "conf.d" / "10-env.yaml", "environment: dropin\n")
    cfg = load_config(str(main)).config
    assert cfg.environment == "dropin" and cfg.collectors.interval == 30
    bad = write(tmp_path / "conf.d" / "20-bad.yaml", "\ncollectors:\n  timeout: never\n")
    assert issues_of(main) == [f"{bad}:3: collectors.timeout: expected a duration like 15s, 1m or 2h30m, got 'never'"]


def test_secret_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = write(tmp_path / "token", "from-file\n")
    monkeypatch.setenv("VIGIL_TEST_TOKEN", "from-env")
    path = write(tmp_path / "v.yaml",
                 f"metrics:\n  bearer_token: ${{file:{secret}}}\nenvironment: ${{env:VIGIL_TEST_TOKEN}}\n")
    loaded = load_config(str(path))
    assert loaded.config.metrics.bearer_token.get_secret_value() == "from-file"
    assert loaded.config.environment == "from-env"
    masked = loaded.masked()
    assert masked["metrics"]["bearer_token"] == "***" and masked["environment"] == "***"
    assert "from-file" not in json.dumps(loaded.raw) and "${file:" in json.dumps(loaded.raw)
    missing = write(tmp_path / "m.yaml", "metrics:\n  bearer_token: ${file:/nonexistent/token}\n"
                    "environment: ${env:VIGIL_NOT_SET_ANYWHERE}\nhostname: ${vault:x}\n")
    found = issues_of(missing)
    assert found[0].startswith(f"{missing}:2: metrics.bearer_token: cannot read secret file /nonexistent/token")
    assert found[1] == f"{missing}:3: environment: environment variable VIGIL_NOT_SET_ANYWHERE is not set"
    assert "unknown reference" in found[2]


def test_bcrypt_hashes_required_for_basic_auth(tmp_path: Path) -> None:
    path = write(tmp_path / "v.yaml", "metrics:\n  basic_auth_users:\n    prom: plaintext\n")
    (issue,) = issues_of(path)
    assert "metrics.basic_auth_users" in issue and "bcrypt" in issue


def test_stat_timeout_must_be_below_collector_timeout(tmp_path: Path) -> None:
    path = write(tmp_path / "v.yaml", "collectors:\n  filesystem:\n    timeout: 2s\n    stat_timeout: 5s\n")
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}:1: collectors:") and "stat_timeout (5s) must be below" in issue


def test_durations() -> None:
    assert parse_duration("1m30s") == 90 and parse_duration("500ms") == 0.5 and parse_duration(5) == 5
    for bad in ("", "5 minutes", "-1s", True, -3):
        with pytest.raises(ValueError):
            parse_duration(bad)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_check_config_cli(tmp_path: Path) -> None:
    good = run_cli("check-config", "--config", str(REPO / "config" / "vigil.yaml"))
    assert good.returncode == 0 and "OK" in good.stdout
    bad = write(tmp_path / "v.yaml", "listen: x\ncollectors:\n  cpu: {enabled: 3}\n")
    out = run_cli("check-config", "--config", str(bad))
    assert out.returncode == 1
    assert f"{bad}:1: listen:" in out.stderr and f"{bad}:3: collectors.cpu.enabled:" in out.stderr
    assert "2 error(s)" in out.stderr


def test_config_schema_cli() -> None:
    out = run_cli("config", "schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert schema["additionalProperties"] is False
    assert {"listen", "state_dir", "collectors", "metrics", "api"} <= set(schema["properties"])


def test_version_cli() -> None:
    from agent import __version__

    out = run_cli("version")
    assert out.returncode == 0 and __version__ in out.stdout
