"""`file`: a file exists (or must not), is fresh enough, sized within bounds, unchanged, owned right.

The usual use is a job's output: the nightly backup must be younger than 25 h and larger than
an empty archive; a config file must keep mode 0640 and its owner; a file that must never change
(a deployed binary, sudoers) is watched by checksum.

A content change is reported for `fall` consecutive runs, exactly what flap protection needs to
turn the state bad once, and then the new content becomes the baseline, so one change is one
alert that later resolves by itself (as Monit's `if changed checksum`). The checksum lives in
`memo`, which the runner keeps across restarts of Vigil: a change made while Vigil was down is
still seen. Only the first `max_hash_bytes` are hashed, which bounds the time a run takes.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import os
import pwd
import re
import stat
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.checks.base import Check, CheckConfig, CheckResult, Perfdata, Status, grade, register, thresholds_ordered
from agent.checks.perfdata import ByteSize, human_age, human_bytes
from agent.config.durations import Duration
from agent.config.section import AbsolutePath

_MODE = re.compile(r"0?[0-7]{3,4}")
CHUNK = 1 << 20


class FileConfig(CheckConfig):
    type: Literal["file"]
    path: AbsolutePath = Field(min_length=1, description="absolute path; a symlink is followed")
    exists: bool = Field(True, description="false: the file must NOT exist (a lock or flag file left behind)")
    max_age: Duration | None = Field(None, gt=0, description="last modified longer ago is CRITICAL")
    max_age_warning: Duration | None = Field(None, gt=0, description="last modified longer ago is WARNING")
    min_size: ByteSize | None = Field(None, description="smaller is CRITICAL (bytes, or 512KiB, 2GiB...)")
    max_size: ByteSize | None = Field(None, description="larger is CRITICAL")
    content_changed: Literal["critical", "warning"] | None = Field(
        None, description="status when the content's sha256 differs from the previous run's"
    )
    max_hash_bytes: ByteSize = Field(64 * 1024 * 1024, ge=1, description="only this much of the file is hashed")
    mode: str | None = Field(None, description='permission bits as a quoted octal string, e.g. "0640"')
    owner: str | None = Field(None, min_length=1, description="user name (or numeric uid)")
    group: str | None = Field(None, min_length=1, description="group name (or numeric gid)")

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f'write the mode as a quoted octal string such as "0640" (YAML read a number, {value!r})')
        if isinstance(value, str) and not _MODE.fullmatch(value):
            raise ValueError(f"mode {value!r} is not an octal mode such as 0640")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FileConfig:
        if not self.exists:
            extra = [k for k in ("max_age", "max_age_warning", "min_size", "max_size", "content_changed", "mode",
                                 "owner", "group") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"exists: false cannot be combined with {', '.join(extra)}")
        thresholds_ordered(self.max_age_warning, self.max_age, "max_age")
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            raise ValueError(f"min_size ({self.min_size}) must not exceed max_size ({self.max_size})")
        return self


@dataclass
class Probe:
    st: os.stat_result | None = None
    missing: bool = False
    error: str | None = None  # stat failed for another reason than absence
    digest: str | None = None
    hashed: int = 0
    hash_error: str | None = None


def _name(lookup: Any, ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


@register
class FileCheck(Check):
    type = "file"
    Config = FileConfig

    def _probe(self) -> Probe:
        cfg = self.config
        assert isinstance(cfg, FileConfig)
        probe = Probe()
        try:
            probe.st = os.stat(cfg.path)
        except (FileNotFoundError, NotADirectoryError):
            probe.missing = True
            return probe
        except OSError as exc:
            probe.error = f"cannot stat {cfg.path}: {exc.strerror or exc}"
            return probe
        if cfg.content_changed is None:
            return probe
        if not stat.S_ISREG(probe.st.st_mode):
            probe.hash_error = "is not a regular file, its content cannot be compared"
            return probe
        digest = hashlib.sha256()
        try:
            with open(cfg.path, "rb") as fh:
                while probe.hashed < cfg.max_hash_bytes:
                    chunk = fh.read(min(CHUNK, cfg.max_hash_bytes - probe.hashed))
                    if not chunk:
                        break
                    digest.update(chunk)
                    probe.hashed += len(chunk)
        except OSError as exc:
            probe.hash_error = f"cannot be read for its checksum: {exc.strerror or exc}"
            return probe
        probe.digest = digest.hexdigest()
        return probe

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, FileConfig)
        probe = await asyncio.to_thread(self._probe)
        if probe.error is not None:
            return CheckResult(Status.UNKNOWN, probe.error)
        if not cfg.exists:
            if probe.missing:
                return CheckResult(Status.OK, f"{cfg.path} does not exist, as required")
            return CheckResult(Status.CRITICAL, f"{cfg.path} exists (it must not)")
        if probe.missing or probe.st is None:
            return CheckResult(Status.CRITICAL, f"{cfg.path} does not exist")
        st = probe.st
        now = self.ctx.now() if self.ctx.now is not None else time.time()
        age = max(now - st.st_mtime, 0.0)
        details: dict[str, Any] = {"size": st.st_size, "mtime": st.st_mtime, "age": round(age, 3),
                                   "mode": f"{stat.S_IMODE(st.st_mode):04o}", "owner": _name(pwd.getpwuid, st.st_uid),
                                   "group": _name(grp.getgrgid, st.st_gid)}
        perf = [Perfdata("age", age, "s", min=0.0), Perfdata("size", float(st.st_size), "B", min=0.0)]
        problems: list[tuple[Status, str]] = []
        age_status = grade(age, cfg.max_age_warning, cfg.max_age)
        if age_status is Status.CRITICAL:
            problems.append((age_status, f"is {human_age(age)} old (max {human_age(cfg.max_age or 0)})"))
        elif age_status is Status.WARNING:
            problems.append((age_status, f"is {human_age(age)} old (warning at {human_age(cfg.max_age_warning or 0)})"))
        if cfg.min_size is not None and st.st_size < cfg.min_size:
            problems.append((Status.CRITICAL, f"is {human_bytes(st.st_size)} (min {human_bytes(cfg.min_size)})"))
        if cfg.max_size is not None and st.st_size > cfg.max_size:
            problems.append((Status.CRITICAL, f"is {human_bytes(st.st_size)} (max {human_bytes(cfg.max_size)})"))
        if cfg.mode is not None and stat.S_IMODE(st.st_mode) != int(cfg.mode, 8):
            problems.append((Status.CRITICAL, f"has mode {details['mode']} (expected {int(cfg.mode, 8):04o})"))
        if cfg.owner is not None and cfg.owner not in (details["owner"], str(st.st_uid)):
            problems.append((Status.CRITICAL, f"is owned by {details['owner']} (expected {cfg.owner})"))
        if cfg.group is not None and cfg.group not in (details["group"], str(st.st_gid)):
            problems.append((Status.CRITICAL, f"has group {details['group']} (expected {cfg.group})"))
        note = ""
        if cfg.content_changed is not None:
            change, note = self._content(cfg, probe, details)
            if change is not None:
                problems.append(change)
        if not problems:
            summary = f"{cfg.path}: {human_bytes(st.st_size)}, modified {human_age(age)} ago"
            return CheckResult(Status.OK, summary + (f", {note}" if note else ""), perf, details)
        order = {Status.CRITICAL: 0, Status.WARNING: 1, Status.UNKNOWN: 2}
        problems.sort(key=lambda p: order[p[0]])
        message = f"{cfg.path} " + ", ".join(text for _, text in problems)
        return CheckResult(problems[0][0], message, perf, details)

    def _content(self, cfg: FileConfig, probe: Probe, details: dict[str, Any]) -> tuple[tuple[Status, str] | None, str]:
        """The content-change finding (or None) and a note for the OK message; updates the memo."""
        if probe.hash_error is not None or probe.digest is None:
            return (Status.UNKNOWN, probe.hash_error or "was not hashed"), ""
        assert probe.st is not None
        details["sha256"] = probe.digest
        partial = probe.st.st_size > probe.hashed
        if partial:
            details["hashed_bytes"] = probe.hashed
        scope = f"first {human_bytes(probe.hashed)} hashed" if partial else ""
        memo = self.memo
        if memo.get("path") != cfg.path or memo.get("hash_limit") != cfg.max_hash_bytes or "sha256" not in memo:
            memo.clear()
            memo.update({"path": cfg.path, "hash_limit": cfg.max_hash_bytes, "sha256": probe.digest})
            return None, "checksum recorded" + (f" ({scope})" if scope else "")
        if probe.digest == memo["sha256"]:
            memo.pop("changed_to", None)
            memo.pop("changed_runs", None)
            return None, scope
        if memo.get("changed_to") != probe.digest:
            memo["changed_to"] = probe.digest
            memo["changed_runs"] = 0
        memo["changed_runs"] += 1
        text = f"content changed (sha256 {memo['sha256'][:12]}… → {probe.digest[:12]}…)"
        if scope:
            text += f" ({scope})"
        if memo["changed_runs"] >= cfg.fall:
            memo["sha256"] = probe.digest  # reported long enough to trip the state: the new content is the baseline
            memo.pop("changed_to")
            memo.pop("changed_runs")
        return (Status.parse(cfg.content_changed or "critical"), text), ""
