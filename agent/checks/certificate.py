"""`certificate`: a TLS endpoint's or a PEM file's certificate is valid, trusted, for the right
name and not about to expire (check_ssl_cert, blackbox_exporter's probe_ssl_earliest_cert_expiry).

Endpoint: one TLS handshake (SNI `server_name`, default `host`), verified against the system CAs
or `ca_file` when `verify_chain`. When verification fails, the certificate is fetched again
without verification so the result still says what the server presents and when it expires.
The name is matched by `agent.checks.tls.hostname_matches`, not by OpenSSL, so a mismatch can
list the names the certificate carries. Only the leaf's expiry is graded for endpoints (Python
3.11's ssl does not hand out the peer's chain).

File: every certificate in the PEM is graded and the one expiring first counts (an expiring
intermediate breaks the service as well). With `verify_chain`, each certificate must be signed by
the next one in the file and, when `ca_file` is given, the last one by (or be) a certificate of
`ca_file`; no trust store is consulted otherwise, and revocation is never checked. `server_name`,
when given, is the name the file's first certificate must match.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.checks import tls
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
    worst,
)

MAX_PEM_BYTES = 1024 * 1024
# OpenSSL verify codes about validity dates, which the expiry grading reports in its own words.
_DATE_CODES = {9, 10}  # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED


class CertificateConfig(CheckConfig):
    type: Literal["certificate"]
    host: str | None = Field(None, min_length=1, description="TLS endpoint to connect to (or give file)")
    port: int | None = Field(None, ge=1, le=65535, description="TLS port of host; default 443")
    server_name: str | None = Field(
        None, min_length=1, description="SNI and the name the certificate must match; default host"
    )
    file: str | None = Field(None, min_length=1, description="PEM file (leaf first, then its chain) instead of host")
    warning_days: float | None = Field(21.0, ge=0, description="days to expiry that warn")
    critical_days: float | None = Field(7.0, ge=0, description="days to expiry that are critical")
    verify_chain: bool = Field(True, description="endpoint: trusted by the system CAs or ca_file; file: see docs")
    check_hostname: bool = Field(True, description="the certificate must match server_name (or host)")
    ca_file: str | None = Field(None, description="PEM file of CAs to trust instead of the system's")

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        return tls.readable_file(value, "ca_file")

    @model_validator(mode="after")
    def _target(self) -> CertificateConfig:
        if self.host is not None and self.file is not None:
            raise ValueError("give either host (a TLS endpoint) or file (a PEM file), not both")
        if self.host is None and self.file is None:
            raise ValueError("give host (a TLS endpoint, with port) or file (a PEM file)")
        if self.file is not None and self.port is not None:
            raise ValueError("port is for host endpoints, not for file")
        thresholds_ordered(self.warning_days, self.critical_days, "days", below=True)
        return self


def _label(cert: tls.CertFacts) -> str:
    return f"CN={cert.common_name}" if cert.common_name else (cert.subject or "(empty subject)")


@register
class CertificateCheck(Check):
    type = "certificate"
    Config = CertificateConfig

    def _now(self) -> float:
        return self.ctx.now() if self.ctx.now is not None else time.time()

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, CertificateConfig)
        if cfg.file is not None:
            return await self._run_file(cfg, cfg.file)
        assert cfg.host is not None
        return await self._run_endpoint(cfg, cfg.host)

    def _expiry(self, cert: tls.CertFacts, now: float, label: str) -> tuple[Status, str]:
        cfg = self.config
        assert isinstance(cfg, CertificateConfig)
        if now < cert.not_before or cert.days_left(now) < 0:
            status = Status.CRITICAL
        else:
            status = grade(cert.days_left(now), cfg.warning_days, cfg.critical_days, below=True)
        return status, f"{label} {tls.expiry_phrase(cert, now)}"

    def _hostname(self, cert: tls.CertFacts, name: str) -> tuple[Status, str] | None:
        if tls.hostname_matches(cert, name):
            return None
        names = ", ".join(cert.names) or "none"
        if not cert.has_san:
            return Status.CRITICAL, f"certificate does not match {name}: it has no subjectAltName (subject {names})"
        return Status.CRITICAL, f"certificate does not match {name}: it is for {names}"

    async def _run_endpoint(self, cfg: CertificateConfig, host: str) -> CheckResult:
        port = cfg.port or 443
        where = f"{host}:{port}"
        name = cfg.server_name or host
        try:
            verified_ctx = tls.ssl_context(cfg.verify_chain, cfg.ca_file, check_hostname=False)
        except (OSError, ssl.SSLError) as exc:
            return CheckResult(Status.UNKNOWN, f"cannot load ca_file {cfg.ca_file}: {tls.verify_reason(exc)}")
        chain_problem: str | None = None
        chain_code: int | None = None
        started = time.perf_counter()
        try:
            der, session = await self._handshake(host, port, name, verified_ctx, cfg.timeout)
        except ssl.SSLCertVerificationError as exc:
            chain_problem, chain_code = tls.verify_reason(exc), exc.verify_code
            try:
                der, session = await self._handshake(host, port, name, tls.ssl_context(False), cfg.timeout)
            except (OSError, TimeoutError):
                return CheckResult(Status.CRITICAL, f"{where}: certificate verify failed: {chain_problem}")
        except ssl.SSLError as exc:
            return CheckResult(Status.CRITICAL, f"TLS handshake with {where} failed: {tls.verify_reason(exc)}")
        except socket.gaierror as exc:
            return CheckResult(Status.CRITICAL, f"cannot resolve {host}: {exc.strerror or exc}")
        except OSError as exc:
            return CheckResult(Status.CRITICAL, f"cannot connect to {where}: {os_reason(exc)}")
        except TimeoutError:
            return CheckResult(Status.CRITICAL, f"no TLS handshake with {where} within {cfg.timeout:g}s")
        elapsed = time.perf_counter() - started
        if not der:
            return CheckResult(Status.CRITICAL, f"{where} presented no certificate")
        try:
            cert = tls.facts(tls.load_der(der))
        except ValueError as exc:
            return CheckResult(Status.CRITICAL, f"cannot parse the certificate of {where}: {exc}")
        now = self._now()
        parts = [self._expiry(cert, now, f"certificate {_label(cert)}")]
        date_problem = parts[0][0] is Status.CRITICAL and (now < cert.not_before or cert.days_left(now) < 0)
        if chain_problem is not None and not (date_problem and chain_code in _DATE_CODES):
            parts.append((Status.CRITICAL, f"chain not trusted: {chain_problem}"))
        if cfg.check_hostname:
            mismatch = self._hostname(cert, name)
            if mismatch is not None:
                parts.append(mismatch)
        verified = cfg.verify_chain and chain_problem is None
        details: dict[str, Any] = {"certificate": cert.as_details(now), "server_name": name, "verified": verified}
        details.update(session)
        if chain_problem is not None:
            details["verify_error"] = chain_problem
        perf = [Perfdata("days_left", round(cert.days_left(now), 3)), Perfdata("time", elapsed, "s", min=0.0)]
        return _result(parts, perf, details)

    @staticmethod
    async def _handshake(
        host: str, port: int, name: str, ctx: ssl.SSLContext, handshake_timeout: float
    ) -> tuple[bytes | None, dict[str, Any]]:
        """The DER leaf and the session's protocol/cipher; the connection is closed again at once."""
        _, writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=name, ssl_handshake_timeout=handshake_timeout
        )
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            cipher = ssl_object.cipher() if ssl_object is not None else None
            session = {"tls_version": ssl_object.version() if ssl_object is not None else None,
                       "cipher": cipher[0] if cipher else None}
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
        return der, session

    async def _run_file(self, cfg: CertificateConfig, path: str) -> CheckResult:
        try:
            data = await asyncio.to_thread(_read_limited, path)
            ca_data = await asyncio.to_thread(_read_limited, cfg.ca_file) if cfg.ca_file else None
        except OSError as exc:
            return CheckResult(Status.CRITICAL, f"cannot read {exc.filename or path}: {exc.strerror or exc}")
        try:
            certs = tls.load_pem(data)
        except ValueError as exc:
            return CheckResult(Status.CRITICAL, f"{path}: no readable PEM certificate ({exc})")
        try:
            anchors = tls.load_pem(ca_data) if ca_data is not None else []
        except ValueError as exc:
            return CheckResult(Status.UNKNOWN, f"ca_file {cfg.ca_file}: no readable PEM certificate ({exc})")
        try:
            infos = [tls.facts(c) for c in certs]
        except ValueError as exc:
            return CheckResult(Status.CRITICAL, f"{path}: cannot parse a certificate: {exc}")
        now = self._now()
        first = next((i for i, c in enumerate(infos) if now < c.not_before), None)
        soonest = first if first is not None else min(range(len(infos)), key=lambda i: infos[i].not_after)
        label = f"certificate {_label(infos[soonest])}"
        if soonest:
            label = f"certificate {soonest + 1} of {len(infos)} in the file ({_label(infos[soonest])})"
        parts = [self._expiry(infos[soonest], now, label)]
        if cfg.verify_chain:
            parts.extend(_chain_problems(certs, anchors))
        if cfg.check_hostname and cfg.server_name:
            mismatch = self._hostname(infos[0], cfg.server_name)
            if mismatch is not None:
                parts.append(mismatch)
        details: dict[str, Any] = {
            "certificate": infos[0].as_details(now), "chain": [c.as_details(now) for c in infos], "file": path,
        }
        perf = [Perfdata("days_left", round(infos[soonest].days_left(now), 3))]
        return _result(parts, perf, details)


def _chain_problems(certs: list[Any], anchors: list[Any]) -> list[tuple[Status, str]]:
    """Each certificate signed by the next; the last by one of `anchors` (when there are any)."""
    problems: list[tuple[Status, str]] = []
    for i in range(len(certs) - 1):
        why = tls.issued_by(certs[i], certs[i + 1])
        if why is not None:
            problems.append((Status.CRITICAL, f"chain broken: certificate {i + 1} is not signed by certificate {i + 2}"
                                              f" ({why})"))
    if anchors:
        last = certs[-1]
        if not any(last == a or tls.issued_by(last, a) is None for a in anchors):
            problems.append((Status.CRITICAL, f"chain not trusted: issuer {last.issuer.rfc4514_string()} of the"
                                              " file's last certificate is not in ca_file"))
    return problems


def _read_limited(path: str) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(MAX_PEM_BYTES + 1)
    if len(data) > MAX_PEM_BYTES:
        raise OSError(0, f"larger than {MAX_PEM_BYTES} bytes, not a certificate file", path)
    return data


def _result(parts: list[tuple[Status, str]], perf: list[Perfdata], details: dict[str, Any]) -> CheckResult:
    """Worst finding first; the expiry sentence always stays in the message."""
    order = {Status.CRITICAL: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.OK: 3}
    shown = [text for _, text in sorted(parts, key=lambda p: order[p[0]])]
    return CheckResult(worst(*(s for s, _ in parts)), "; ".join(shown), perf, details)
