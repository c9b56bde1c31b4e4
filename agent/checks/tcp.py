"""`tcp`: a port accepts connections; optionally, what it answers to what is sent (check_tcp)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Literal

from pydantic import Field, model_validator

from agent.checks.base import (
    Check,
    CheckConfig,
    CheckResult,
    Perfdata,
    Status,
    grade,
    os_reason,
    register,
    thresholds_ordered,
)
from agent.config.durations import Duration


class TcpConfig(CheckConfig):
    type: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    send: str | None = Field(None, description="text sent after connecting (escape sequences as in YAML)")
    expect: str | None = Field(None, description="the answer must contain this text")
    max_read_bytes: int = Field(4096, ge=1, le=1_048_576, description="how much of the answer is read for expect")
    response_time_warning: Duration | None = None
    response_time_critical: Duration | None = None

    @model_validator(mode="after")
    def _thresholds(self) -> TcpConfig:
        thresholds_ordered(self.response_time_warning, self.response_time_critical, "response_time")
        return self


@register
class TcpCheck(Check):
    type = "tcp"
    Config = TcpConfig

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, TcpConfig)
        where = f"{cfg.host}:{cfg.port}"
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
        except OSError as exc:
            return CheckResult(Status.CRITICAL, f"cannot connect to {where}: {os_reason(exc)}")
        answer = b""
        try:
            connect_time = time.perf_counter() - started
            if cfg.send is not None:
                writer.write(cfg.send.encode())
                await writer.drain()
            if cfg.expect is not None:
                want = cfg.expect.encode()
                while want not in answer and len(answer) < cfg.max_read_bytes:
                    chunk = await reader.read(cfg.max_read_bytes - len(answer))
                    if not chunk:
                        break
                    answer += chunk
        except OSError as exc:
            return CheckResult(Status.CRITICAL, f"{where}: connection failed: {os_reason(exc)}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        elapsed = time.perf_counter() - started
        perf = [Perfdata("time", elapsed, "s", min=0.0), Perfdata("connect_time", connect_time, "s", min=0.0)]
        if cfg.expect is not None and cfg.expect.encode() not in answer:
            shown = answer[:80].decode("utf-8", "replace")
            return CheckResult(Status.CRITICAL, f"{where} answered {shown!r}, expected {cfg.expect!r}", perf)
        status = grade(elapsed, cfg.response_time_warning, cfg.response_time_critical)
        message = f"{where} accepted in {elapsed * 1000:.1f} ms"
        if status is not Status.OK:
            message += " (slow)"
        return CheckResult(status, message, perf)
