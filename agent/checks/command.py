"""`command`: a Nagios plugin (or any program speaking its protocol) run without a shell.

The exit status is the state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), the first output line the
message, and performance data becomes metrics (see agent.checks.perfdata), so the whole
monitoring-plugins collection works as it does under Nagios or Icinga.

The program runs with a minimal environment rather than Vigil's own, which may hold secrets
(`${env:X}` references, credentials given to the service): only PATH, HOME and TZ pass through,
`LANG=C` keeps plugins' numbers in the decimal-point format perfdata needs, and `environment`
adds or overrides variables per check.
"""

from __future__ import annotations

import os
import shutil
import signal
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from agent.checks.base import Check, CheckConfig, CheckResult, Status, register
from agent.checks.perfdata import MAX_SKIPPED_SHOWN, parse_plugin_output
from agent.checks.proc import ProcResult, run_program
from agent.config.section import AbsolutePath

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_MESSAGE_CHARS = 500
# Long output and stderr are kept with every stored result: enough to diagnose, not a log file.
MAX_DETAIL_CHARS = 4096
# The program's own deadline is this much below the check's timeout, so that Vigil kills it and
# reports why (with what it printed) before the runner's cut abandons the run.
TIMEOUT_MARGIN = 0.1
MAX_TIMEOUT_MARGIN = 1.0


def search_path(environment: dict[str, str]) -> str:
    return environment.get("PATH") or os.environ.get("PATH") or DEFAULT_PATH


def resolve_program(program: str, path: str) -> str:
    """The executable a check will run; ValueError saying what is wrong with it otherwise."""
    if not program:
        raise ValueError("command needs at least the program to run")
    if "/" in program and not os.path.isabs(program):
        raise ValueError(f"program {program!r} is a relative path: give an absolute path or a name found on PATH")
    if os.path.isabs(program):
        if not os.path.exists(program):
            raise ValueError(f"program {program} does not exist")
        if os.path.isdir(program):
            raise ValueError(f"program {program} is a directory")
        if not os.access(program, os.X_OK):
            raise ValueError(f"program {program} is not executable")
        return program
    found = shutil.which(program, path=path)
    if found is None:
        raise ValueError(f"program {program!r} was not found on PATH ({path})")
    return found


class CommandConfig(CheckConfig):
    type: Literal["command"]
    environment: dict[str, str] = Field(
        default_factory=dict, description="variables added to the minimal environment (PATH, HOME, TZ, LANG=C)"
    )
    command: list[str] = Field(
        min_length=1, description="program and arguments, no shell; the program an absolute path or found on PATH"
    )
    working_dir: AbsolutePath | None = Field(None, description="absolute path of the directory the program runs in")

    @field_validator("environment")
    @classmethod
    def _environment(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"{name!r} is not an environment variable name")
            if "\0" in value:
                raise ValueError(f"{name}: a value cannot contain a NUL character")
        return env

    @field_validator("command")
    @classmethod
    def _program(cls, argv: list[str], info: ValidationInfo) -> list[str]:
        if any("\0" in arg for arg in argv):
            raise ValueError("an argument cannot contain a NUL character")
        resolve_program(argv[0], search_path(info.data.get("environment") or {}))
        return argv

    @field_validator("working_dir")
    @classmethod
    def _working_dir(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isdir(value):
            raise ValueError(f"working_dir {value} is not a directory")
        return value


def minimal_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "LANG": "C"}
    for name in ("HOME", "TZ"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra)
    return env


def clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "…"


def one_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= MAX_MESSAGE_CHARS else line[:MAX_MESSAGE_CHARS] + "…"


@register
class CommandCheck(Check):
    type = "command"
    Config = CommandConfig
    timeout_status = Status.UNKNOWN  # a plugin that hangs says nothing about its target (Nagios: UNKNOWN)

    def program_timeout(self) -> float:
        timeout = self.config.timeout
        return timeout - min(timeout * TIMEOUT_MARGIN, MAX_TIMEOUT_MARGIN)

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, CommandConfig)
        timeout = self.program_timeout()
        result = await run_program(cfg.command, timeout, self.ctx.max_output_bytes,
                                   env=minimal_environment(cfg.environment), cwd=cfg.working_dir)
        details: dict[str, Any] = {"program": cfg.command[0], "duration": round(result.duration, 6)}
        if result.error is not None:
            return CheckResult(Status.UNKNOWN, result.error, details=details)
        if result.stderr.strip():
            details["stderr"] = clip(result.stderr)
        if result.timed_out:
            partial = one_line(result.stdout) or one_line(result.stderr)
            if partial:
                details["output"] = partial
            return CheckResult(Status.UNKNOWN, f"timed out after {timeout:g}s", details=details)
        return self._interpret(os.path.basename(cfg.command[0]), result, details)

    def _interpret(self, program: str, result: ProcResult, details: dict[str, Any]) -> CheckResult:
        stdout = result.stdout
        if result.truncated:
            details["truncated"] = f"(output truncated at {self.ctx.max_output_bytes} bytes)"
            # The cut may fall inside a perfdata item: only complete lines are read for it.
            complete, newline, _ = stdout.rpartition("\n")
            stdout = complete + newline if newline else stdout.partition("|")[0]
        output = parse_plugin_output(stdout if stdout.strip() else result.stderr)
        if output.long_output:
            details["long_output"] = clip(output.long_output)
        if output.skipped:
            details["perfdata_skipped"] = len(output.skipped)
            details["perfdata_skipped_items"] = [item[:80] for item in output.skipped[:MAX_SKIPPED_SHOWN]]
        message = one_line(output.message)
        code = result.returncode
        assert code is not None
        details["exit_status"] = code
        if code in (0, 1, 2, 3):
            return CheckResult(Status(code), message or f"no output (exit status {code})", output.perfdata, details)
        if code < 0:
            try:
                reason = f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                reason = f"killed by signal {-code}"
        else:
            reason = f"exit status {code} is not a plugin state (0-3)"
        text = f"{program}: {reason}"
        return CheckResult(Status.UNKNOWN, f"{text}: {message}" if message else text, output.perfdata, details)
