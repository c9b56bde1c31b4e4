"""A stand-in for systemctl, for tests on hosts where PID 1 is not systemd (containers, CI).

It prints what real systemctl prints for the verbs Vigil uses, from a JSON state file named by the
environment variable FAKE_SYSTEMCTL_STATE, and writes changes back to it:

    show UNIT... [--property=A,B | -p A] [--value] [--timestamp=pretty|unix|utc|us|us+utc]
    start UNIT...    restart UNIT...    stop UNIT...    is-active UNIT...    --version
    (--no-pager, --no-block, --no-ask-password, -q/--quiet are accepted and ignored)

State file (every key optional):

    {
      "units": {
        "nginx.service": {                  # a name without a type means .service, as for systemctl
          "LoadState": "loaded",            # default "loaded" for a listed unit; unlisted: "not-found"
          "ActiveState": "active",          # default "inactive"
          "SubState": "running",            # default follows ActiveState (running, dead, failed, start...)
          "NRestarts": 2,                   # automatic restarts; the restart verb leaves it alone, as systemd does
          "MainPID": 4242,
          "ActiveEnterTimestamp": 1700000000,  # Unix seconds; null or 0: never (printed empty)
          "MemoryCurrent": 1048576,         # null: "[not set]"
          "Description": "...", "ExecMainStatus": 0, "Result": "success", ...  # any other property too
          "start_fails": true               # not a property: start/restart fail and leave the unit failed
        }
      },
      "not_running": true,         # every verb fails as on a host not booted with systemd (exit 1)
      "no_unix_timestamps": true,  # reject --timestamp=unix as systemctl before 248 does ("Invalid value: unix.")
      "calls": [["show", "..."]]   # written by the fake: the arguments of every invocation, in order
    }

Tests call `install(directory, units)`, which writes the state file and an executable wrapper
`directory/systemctl` that runs this script with the test's Python; that path is what
`CheckContext(systemctl=...)` or `check_runner.systemctl` is given. `read_state` and `write_state`
look at or change the state between runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

STATE_ENV = "FAKE_SYSTEMCTL_STATE"
STATE_FILE = "systemctl-state.json"
UNIT_TYPES = ("service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice",
              "scope")
NOT_BOOTED = ("System has not been booted with systemd as init system (PID 1). Can't operate.\n"
              "Failed to connect to bus: Host is down\n")
SUB_STATE = {"active": "running", "inactive": "dead", "failed": "failed", "activating": "start",
             "deactivating": "stop", "reloading": "reload"}
IGNORED_OPTIONS = {"--no-pager", "--no-block", "--no-ask-password", "--quiet", "-q", "--system"}
FIRST_PID = 40000


def install(directory: Path, units: dict[str, dict[str, Any]] | None = None, **flags: Any) -> Path:
    """Write the state file and the `systemctl` wrapper into `directory`; the wrapper's path."""
    directory.mkdir(parents=True, exist_ok=True)
    state_path = directory / STATE_FILE
    state_path.write_text(json.dumps({"units": units or {}, **flags, "calls": []}, indent=2))
    wrapper = directory / "systemctl"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"{STATE_ENV}={shlex.quote(str(state_path))} "
        f"exec {shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))} \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return wrapper


def read_state(systemctl: Path) -> dict[str, Any]:
    return json.loads((systemctl.parent / STATE_FILE).read_text())


def write_state(systemctl: Path, state: dict[str, Any]) -> None:
    path = systemctl.parent / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def unit_name(name: str) -> str:
    return name if name.rpartition(".")[2] in UNIT_TYPES else f"{name}.service"


def properties(name: str, unit: dict[str, Any] | None) -> dict[str, Any]:
    """Every property of a unit as systemd would have it: defaults, then what the state file says."""
    props: dict[str, Any] = {
        "Id": name, "Names": name, "Description": name, "LoadState": "not-found" if unit is None else "loaded",
        "ActiveState": "inactive", "UnitFileState": "", "ActiveEnterTimestamp": None,
        "ActiveExitTimestamp": None, "InactiveEnterTimestamp": None, "InactiveExitTimestamp": None,
    }
    if name.endswith(".service"):
        props.update({"Type": "simple", "Result": "success", "MainPID": 0, "NRestarts": 0, "ExecMainStatus": 0,
                      "MemoryCurrent": None})
    props.update({k: v for k, v in (unit or {}).items() if k[:1].isupper()})
    props.setdefault("SubState", SUB_STATE.get(props["ActiveState"], "dead"))
    return props


def format_value(key: str, value: Any, style: str) -> str:
    if key.endswith("Timestamp"):
        if not value:
            return ""
        ts = float(value)
        if style == "unix":
            return f"@{int(ts)}"
        utc = style.endswith("utc")
        stamp = time.gmtime(ts) if utc else time.localtime(ts)
        micro = f".{int(ts % 1 * 1_000_000):06d}" if style.startswith("us") else ""
        zone = "UTC" if utc else time.strftime("%Z", stamp)
        return time.strftime("%a %Y-%m-%d %H:%M:%S", stamp) + f"{micro} {zone}"
    if value is None:
        return "[not set]"
    return str(value)


class Fail(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def parse_args(args: list[str]) -> tuple[list[str], list[str] | None, bool, str]:
    """Positional arguments, requested properties (None: all), --value, timestamp style."""
    positional: list[str] = []
    wanted: list[str] | None = None
    value_only = False
    style = "pretty"
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if arg in IGNORED_OPTIONS:
            continue
        if arg == "--value":
            value_only = True
        elif arg in ("-p", "--property") or arg.startswith(("--property=", "-p")):
            if arg in ("-p", "--property"):
                if i >= len(args):
                    raise Fail(f"systemctl: option '{arg}' requires an argument", 1)
                text, i = args[i], i + 1
            else:
                text = arg.split("=", 1)[1] if arg.startswith("--property=") else arg[2:]
            wanted = (wanted or []) + [p for p in text.split(",") if p]
        elif arg.startswith("--timestamp="):
            style = arg.split("=", 1)[1]
            if style not in ("pretty", "unix", "us", "utc", "us+utc"):
                raise Fail(f"Invalid value: {style}.", 1)
        elif arg.startswith("-"):
            raise Fail(f"systemctl: unrecognized option '{arg}'", 1)
        else:
            positional.append(arg)
    return positional, wanted, value_only, style


def show(state: dict[str, Any], names: list[str], wanted: list[str] | None, value_only: bool, style: str) -> str:
    blocks: list[str] = []
    for name in names:
        props = properties(name, state["units"].get(name))
        keys = wanted if wanted is not None else list(props)
        lines = [format_value(k, props[k], style) if value_only else f"{k}={format_value(k, props[k], style)}"
                 for k in keys if k in props]
        blocks.append("".join(line + "\n" for line in lines))
    return "\n".join(blocks)


def act(state: dict[str, Any], verb: str, name: str) -> None:
    unit = state["units"].get(name)
    if unit is None:
        raise Fail(f"Failed to {verb} {name}: Unit {name} {'not loaded' if verb == 'stop' else 'not found'}.", 5)
    if unit.get("LoadState") == "masked" and verb != "stop":
        raise Fail(f"Failed to {verb} {name}: Unit {name} is masked.", 1)
    now = time.time()
    if verb in ("stop", "restart"):
        unit.update({"ActiveState": "inactive", "SubState": "dead", "MainPID": 0, "ActiveExitTimestamp": now,
                     "InactiveEnterTimestamp": now})
    if verb == "start" and unit.get("ActiveState") == "active":
        return
    if verb in ("start", "restart"):
        if unit.get("start_fails"):
            unit.update({"ActiveState": "failed", "SubState": "failed", "MainPID": 0, "ExecMainStatus": 1,
                         "Result": "exit-code"})
            raise Fail(f"Job for {name} failed because the control process exited with error code.\n"
                       f"See \"systemctl status {name}\" and \"journalctl -xeu {name}\" for details.", 1)
        state["next_pid"] = state.get("next_pid", FIRST_PID) + 1
        unit.update({"ActiveState": "active", "SubState": "running", "MainPID": state["next_pid"],
                     "ActiveEnterTimestamp": now, "InactiveExitTimestamp": now, "ExecMainStatus": 0,
                     "Result": "success"})


def main(argv: list[str]) -> int:
    path = os.environ.get(STATE_ENV)
    if not path:
        sys.stderr.write(f"fake systemctl: {STATE_ENV} is not set\n")
        return 1
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(path) as fh:
            state = json.load(fh)
        state.setdefault("units", {})
        state.setdefault("calls", []).append(argv)
        try:
            out, code = run(state, argv)
        except Fail as exc:
            out, code = "", exc.code
            sys.stderr.write(f"{exc}\n")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(state, fh, indent=2)
        os.replace(tmp, path)
    sys.stdout.write(out)
    return code


def run(state: dict[str, Any], argv: list[str]) -> tuple[str, int]:
    if "--version" in argv:
        return "systemd 252 (252-fake)\n", 0
    if state.get("no_unix_timestamps") and "--timestamp=unix" in argv:
        raise Fail("Invalid value: unix.", 1)
    positional, wanted, value_only, style = parse_args(argv)
    if state.get("not_running"):
        raise Fail(NOT_BOOTED.rstrip("\n"), 1)
    if not positional:
        raise Fail("fake systemctl: list-units is not emulated", 1)
    verb, names = positional[0], [unit_name(n) for n in positional[1:]]
    if verb == "show":
        return show(state, names, wanted, value_only, style), 0
    if not names:
        raise Fail("Too few arguments.", 1)
    if verb == "is-active":
        active = [properties(n, state["units"].get(n))["ActiveState"] for n in names]
        return "".join(a + "\n" for a in active), 0 if any(a in ("active", "reloading") for a in active) else 3
    if verb in ("start", "stop", "restart"):
        for name in names:
            act(state, verb, name)
        return "", 0
    raise Fail(f"Unknown command verb '{verb}'.", 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
