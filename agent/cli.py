"""`vigil`: run the daemon, check config, and talk to a running daemon over its API."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any

from agent import __version__, checkcli, logcli, opscli, querycli, taskcli

# Re-exported for the commands that start a task: `--wait` follows it with a progress bar.
from agent.taskcli import add_wait_flag as add_wait_flag
from agent.taskcli import follow as follow
from agent.taskcli import wait_for_task as wait_for_task

DEFAULT_CONFIG = "/etc/vigil/vigil.yaml"


def default_config() -> str:
    env = os.environ.get("VIGIL_CONFIG")
    if env:
        return env
    if os.path.exists(DEFAULT_CONFIG):
        return DEFAULT_CONFIG
    return "config/vigil.yaml"


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help=f"config file (default: $VIGIL_CONFIG or {DEFAULT_CONFIG})")


def _add_client(p: argparse.ArgumentParser) -> None:
    _add_config(p)
    p.add_argument("--url", help="API base URL (default: from the config's listen address)")
    p.add_argument("--state-dir", help="where admin.key is (default: from the config)")
    p.add_argument("--insecure", action="store_true", help="do not verify the API's TLS certificate")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vigil", description="Vigil per-host monitoring agent")
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the agent in the foreground")
    _add_config(run)
    run.add_argument("--listen", help="host:port, overrides the config's listen")
    run.add_argument("--state-dir", help="overrides the config's state_dir")

    check = sub.add_parser("check-config", help="validate the config; exit 1 listing every error")
    _add_config(check)

    cfg = sub.add_parser("config", help="config utilities")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    cfg_sub.add_parser("schema", help="print the config's JSON Schema")

    status = sub.add_parser("status", help="a summary of the running agent")
    _add_client(status)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once)")
    _add_client(create)
    create.add_argument("name")
    create.add_argument("--role", default="viewer", choices=["viewer", "operator", "admin"])
    create.add_argument("--expires-at", help="ISO 8601 expiry time")
    lst = keys_sub.add_parser("list", help="list keys")
    _add_client(lst)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    _add_client(revoke)
    revoke.add_argument("id")

    sub.add_parser("version", help="print the version")
    test = sub.add_parser("test", help="run tests locally, without a daemon")
    test_sub = test.add_subparsers(dest="test_command", required=True)
    test_rules = test_sub.add_parser("rules", help="run rule unit tests (promtool's format); exit 1 on failure")
    test_rules.add_argument("files", nargs="+", metavar="FILE", help="unit test files")
    querycli.add_commands(sub, _add_client)
    checkcli.add_commands(sub, _add_client)
    taskcli.add_commands(sub, _add_client)
    logcli.add_commands(sub, _add_client, _add_config)
    opscli.add_commands(sub, cfg_sub, _add_client)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "config", "unset") is None:
        args.config = default_config()
    if args.command == "run":
        from agent.daemon import Options, run

        return run(Options(args.config, args.listen, args.state_dir))
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "config" and args.config_command == "schema":
        from agent.config.schema import Config

        print(json.dumps(Config.model_json_schema(), indent=2))
        return 0
    if args.command == "test":
        from agent.alerting import unittest as rule_tests

        return rule_tests.run(args.files)
    if args.command == "version":
        print(f"vigil {__version__}")
        return 0
    if args.command == "audit":
        return logcli.audit_verify(args)
    try:
        client = Client.from_args(args)
        if args.command == "status":
            return show_status(client, args.json)
        if args.command == "keys":
            return keys_command(client, args)
        if args.command in ("query", "query-range"):
            return querycli.run(client, args)
        if args.command in ("checks", "check"):
            return checkcli.run(client, args)
        if args.command == "tasks":
            return taskcli.run(client, args)
        if args.command == "logs":
            return logcli.logs_command(client, args)
        if args.command in opscli.COMMANDS or args.command == "config":
            return opscli.run(client, args)
    except (ClientError, querycli.UsageError) as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 1
    return 2


def check_config(path: str) -> int:
    from agent.config import ConfigError, load_config

    try:
        load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} error(s) in {path}", file=sys.stderr)
        return 1
    print(f"{path}: OK")
    return 0


class ClientError(Exception):
    """The agent could not be asked (unreachable, no key, or it answered with an error)."""


def _lenient_config(path: str, error: Exception) -> Any:
    """Just the keys a client needs (listen, state_dir, TLS), from a file that may not validate."""
    import yaml

    from agent.config.schema import Config

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        keys = ("listen", "state_dir", "tls_server_config")
        return Config.model_validate({k: doc[k] for k in keys if isinstance(doc, dict) and k in doc})
    except Exception:
        raise ClientError(f"cannot read {path} to find the API:\n{error}") from None


class Client:
    """A small synchronous client of the admin API (the CLI needs no event loop)."""

    def __init__(self, base_url: str, key: str | None, insecure: bool = False):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.ssl: ssl.SSLContext | None = None
        if base_url.startswith("https") and insecure:
            self.ssl = ssl._create_unverified_context()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Client:
        from agent.config import ConfigError, load_config
        from agent.config.schema import split_listen

        url, state_dir = args.url, args.state_dir
        key = os.environ.get("VIGIL_API_KEY")
        if url is None or (state_dir is None and not key):
            try:
                config = load_config(args.config).config
            except ConfigError as exc:
                # A broken edit must not hide the running agent: `vigil status` is how one sees it.
                config = _lenient_config(args.config, exc)
            host, port = split_listen(config.listen)
            if host in ("", "0.0.0.0"):
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            host = f"[{host}]" if ":" in host else host
            url = url or f"{'https' if config.tls_server_config else 'http'}://{host}:{port}"
            state_dir = state_dir or config.state_dir
        if not key:
            path = os.path.join(state_dir or ".", "admin.key")
            try:
                with open(path, encoding="utf-8") as fh:
                    key = fh.read().strip()
            except OSError as exc:
                raise ClientError(f"no API key: set VIGIL_API_KEY or make {path} readable ({exc.strerror})") from None
        return cls(url, key, args.insecure)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.ssl) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read())
                message = err.get("error", exc.reason)
            except ValueError:
                message = exc.reason
            raise ClientError(f"{method} {path}: HTTP {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach the agent at {self.base_url}: {reason}") from None


def show_status(client: Client, raw: bool) -> int:
    data = client.call("GET", "/api/v1/status")["data"]
    if raw:
        print(json.dumps(data, indent=2))
        return 0
    cfg = data["config"]
    reload = cfg.get("last_reload") or {}
    print(f"vigil {data['version']} on {data['hostname']} ({data['environment']}): {data['status']}")
    print(f"  up {data['uptime']} since {data['started_at']}")
    print(f"  config {cfg['path']} version {cfg['version']}, loaded {cfg['loaded_at']}")
    if reload and not reload.get("successful"):
        print(f"  LAST RELOAD FAILED at {reload['at']} ({reload['source']}); still running the previous config:")
        for err in reload.get("errors", []):
            print(f"    {err}")
    if cfg.get("pending_restart"):
        print(f"  changes waiting for a restart: {', '.join(cfg['pending_restart'])}")
    print("  components: " + ", ".join(f"{k}={v}" for k, v in data["components"].items()))
    failing = {k: v for k, v in data["collectors"].items() if not v["success"]}
    print(f"  collectors: {len(data['collectors'])} running, {len(failing)} failing")
    for name, info in failing.items():
        print(f"    {name}: {info['error']}")
    return 0


def keys_command(client: Client, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        body: dict[str, Any] = {"name": args.name, "role": args.role}
        if args.expires_at:
            body["expires_at"] = args.expires_at
        data = client.call("POST", "/api/v1/api-keys", body)["data"]
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            print(f"created {data['id']} ({data['role']}); the key is shown only this once:")
            print(data["key"])
        return 0
    if args.keys_command == "list":
        data = client.call("GET", "/api/v1/api-keys")["data"]
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        print(f"{'ID':<18} {'NAME':<24} {'ROLE':<9} {'STATUS':<8} {'LAST USED':<21} EXPIRES")
        for k in data["api_keys"]:
            print(f"{k['id']:<18} {k['name'][:24]:<24} {k['role']:<9} {k['status']:<8} "
                  f"{k['last_used'] or '-':<21} {k['expires_at'] or '-'}")
        return 0
    data = client.call("DELETE", f"/api/v1/api-keys/{args.id}")["data"]
    print(f"revoked {data['id']} ({data['name']})")
    return 0
