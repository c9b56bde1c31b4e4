"""`dns`: a name resolves, to the addresses expected (check_dns / check_dig).

Without `server` the question goes to the system resolver (`getaddrinfo`: /etc/hosts, nsswitch,
systemd-resolved), which is what the applications on the host see. With `server` it is asked of
that DNS server directly over UDP by the small client below, so a check can tell "the
authoritative server answers wrongly" from "this host's resolver is broken" without dig.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.checks.base import Check, CheckConfig, CheckResult, Perfdata, Status, grade, register, thresholds_ordered
from agent.config.durations import Duration

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
QTYPES = {"A": 1, "AAAA": 28}
RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TYPE_CNAME = 5


def split_server(value: str) -> tuple[str, int]:
    """("ip", port) from "ip", "ip:port", "[v6]" or "[v6]:port"; raises ValueError."""
    host, port = value, 53
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r} is not ip[:port] (IPv6 as [addr]:port)")
        if rest:
            port = _port(rest[1:], value)
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        port = _port(text, value)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r}: server must be an IP address, not {host!r}") from None
    return host, port


def _port(text: str, value: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{value!r}: port must be 1-65535")
    return int(text)


class DnsConfig(CheckConfig):
    type: Literal["dns"]
    query: str = Field(min_length=1, description="the name to resolve")
    record_type: Literal["A", "AAAA"] = "A"
    expect: list[str] = Field(default_factory=list, description="addresses the answer must contain")
    expect_exact: bool = Field(False, description="the answer must be exactly the `expect` addresses, no others")
    server: str | None = Field(None, description="ip[:port] of a DNS server asked over UDP; default: system resolver")
    response_time_warning: Duration | None = None
    response_time_critical: Duration | None = None

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        try:
            labels = value.removesuffix(".").encode("idna").split(b".")
        except UnicodeError as exc:
            raise ValueError(f"{value!r} is not a domain name: {exc}") from None
        if len(b".".join(labels)) > 253 or any(not 0 < len(label) <= 63 for label in labels):
            raise ValueError(f"{value!r} is not a domain name (labels of 1-63 characters, 253 in all)")
        return value

    @field_validator("server")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is not None:
            split_server(value)
        return value

    @model_validator(mode="after")
    def _expectations(self) -> DnsConfig:
        version = 4 if self.record_type == "A" else 6
        for i, text in enumerate(self.expect):
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                raise ValueError(f"expect[{i}]: {text!r} is not an IP address") from None
            if addr.version != version:
                raise ValueError(f"expect[{i}]: {text!r} is not an IPv{version} address ({self.record_type} records)")
        if self.expect_exact and not self.expect:
            raise ValueError("expect_exact needs the addresses in expect")
        thresholds_ordered(self.response_time_warning, self.response_time_critical, "response_time")
        return self


class DnsError(Exception):
    """The lookup failed in a way the check reports as its message."""


@dataclass
class Answer:
    addresses: list[IPAddress] = field(default_factory=list)
    cnames: list[str] = field(default_factory=list)
    truncated: bool = False


def build_query(name: str, qtype: int, ident: int) -> bytes:
    """A standard query with recursion desired, as dig sends it (no EDNS)."""
    qname = b"".join(bytes([len(label)]) + label for label in name.removesuffix(".").encode("idna").split(b"."))
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + b"\0" + struct.pack("!HH", qtype, 1)


def read_name(buf: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` (following compression pointers) and the offset after it in place."""
    labels: list[str] = []
    after: int | None = None
    for _ in range(128):  # a pointer loop in a hostile answer must not spin
        length = buf[offset]
        if length & 0xC0 == 0xC0:
            if after is None:
                after = offset + 2
            offset = ((length & 0x3F) << 8) | buf[offset + 1]
        elif length == 0:
            return ".".join(labels) or ".", offset + 1 if after is None else after
        else:
            labels.append(buf[offset + 1:offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
    raise ValueError("name compression loop")


def parse_answer(buf: bytes, qtype: int) -> Answer:
    """Records of `qtype` (and CNAMEs) from the answer section; raises DnsError for a failure RCODE."""
    _ident, flags, qdcount, ancount = struct.unpack_from("!HHHH", buf)
    rcode = flags & 0x000F
    if rcode == 3:
        raise DnsError("name not found (NXDOMAIN)")
    if rcode:
        raise DnsError(f"server answered {RCODES.get(rcode, f'RCODE {rcode}')}")
    answer = Answer(truncated=bool(flags & 0x0200))
    offset = 12
    for _ in range(qdcount):
        offset = read_name(buf, offset)[1] + 4
    try:
        for _ in range(ancount):
            offset = read_name(buf, offset)[1]
            rtype, _rclass, _ttl, rdlength = struct.unpack_from("!HHIH", buf, offset)
            offset += 10
            rdata = buf[offset:offset + rdlength]
            if len(rdata) != rdlength:
                raise ValueError("record runs past the end of the message")
            if rtype == qtype == 1 and rdlength == 4:
                answer.addresses.append(ipaddress.IPv4Address(rdata))
            elif rtype == qtype == 28 and rdlength == 16:
                answer.addresses.append(ipaddress.IPv6Address(rdata))
            elif rtype == TYPE_CNAME:
                answer.cnames.append(read_name(buf, offset)[0])
            offset += rdlength
    except (IndexError, struct.error, ValueError):
        if not answer.truncated:  # a truncated message may end in the middle of a record
            raise
    return answer


class _Client(asyncio.DatagramProtocol):
    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # A stray or spoofed datagram (other id, not a response) is ignored, as resolvers do.
        if len(data) >= 12 and not self.reply.done():
            ident, flags = struct.unpack_from("!HH", data)
            if ident == self.ident and flags & 0x8000:
                self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def ask_server(host: str, port: int, name: str, qtype: int, deadline: float) -> Answer:
    """One question over UDP, sent again after 1 s, 2 s, 4 s... until `deadline` (monotonic)."""
    loop = asyncio.get_running_loop()
    ident = secrets.randbelow(65536)
    query = build_query(name, qtype, ident)
    try:
        transport, client = await loop.create_datagram_endpoint(lambda: _Client(ident), remote_addr=(host, port))
    except OSError as exc:
        raise DnsError(f"server unreachable: {exc.strerror or exc}") from None
    try:
        wait, tries = 1.0, 0
        while (left := deadline - time.monotonic()) > 0:
            transport.sendto(query)
            tries += 1
            try:
                data = await asyncio.wait_for(asyncio.shield(client.reply), min(wait, left))
                break
            except TimeoutError:
                wait *= 2
            except OSError as exc:
                raise DnsError(f"server unreachable: {exc.strerror or exc}") from None
        else:
            raise DnsError(f"no answer after {tries} {'try' if tries == 1 else 'tries'}")
    finally:
        transport.close()
        if client.reply.done() and not client.reply.cancelled():
            client.reply.exception()  # an ICMP error that came too late: retrieved, so asyncio does not log it
    try:
        return parse_answer(data, qtype)
    except (IndexError, struct.error, ValueError) as exc:
        raise DnsError(f"malformed answer: {exc}") from None


async def ask_system(name: str, record_type: str) -> Answer:
    family = socket.AF_INET if record_type == "A" else socket.AF_INET6
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, family=family, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_NONAME:
            raise DnsError("name not found") from None
        raise DnsError(f"cannot resolve: {exc.strerror or exc}") from None
    found: list[IPAddress] = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
        if addr not in found:
            found.append(addr)
    return Answer(found)


@register
class DnsCheck(Check):
    type = "dns"
    Config = DnsConfig

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, DnsConfig)
        what = f"{cfg.query} {cfg.record_type}"
        started = time.perf_counter()
        try:
            if cfg.server is None:
                answer = await ask_system(cfg.query, cfg.record_type)
            else:
                host, port = split_server(cfg.server)
                what += f" @{cfg.server}"
                # A little under the runner's cut, so the message says how many tries went unanswered.
                deadline = time.monotonic() + cfg.timeout * 0.9
                answer = await ask_server(host, port, cfg.query, QTYPES[cfg.record_type], deadline)
        except DnsError as exc:
            elapsed = time.perf_counter() - started
            return CheckResult(Status.CRITICAL, f"{what}: {exc}", [Perfdata("time", elapsed, "s", min=0.0)])
        elapsed = time.perf_counter() - started
        got = ", ".join(map(str, answer.addresses)) or "no addresses"
        perf = [Perfdata("time", elapsed, "s", min=0.0), Perfdata("answers", len(answer.addresses), min=0.0)]
        details = {"addresses": [str(a) for a in answer.addresses], "cnames": answer.cnames,
                   "truncated": answer.truncated, "server": cfg.server or "system resolver"}
        trunc = " (answer truncated: TC set, not retried over TCP)" if answer.truncated else ""
        expected = [ipaddress.ip_address(a) for a in cfg.expect]
        missing = [a for a in expected if a not in answer.addresses]
        if not answer.addresses:
            return CheckResult(Status.CRITICAL, f"{what}: no {cfg.record_type} records{trunc}", perf, details)
        if missing:
            message = f"{what}: expected {', '.join(map(str, missing))}, got {got}{trunc}"
            return CheckResult(Status.CRITICAL, message, perf, details)
        extra = [a for a in answer.addresses if a not in expected]
        if cfg.expect_exact and extra:
            message = f"{what}: expected exactly {', '.join(cfg.expect)}, got {got}{trunc}"
            return CheckResult(Status.CRITICAL, message, perf, details)
        status = grade(elapsed, cfg.response_time_warning, cfg.response_time_critical)
        message = f"{what}: {got} in {elapsed * 1000:.1f} ms{trunc}"
        if status is not Status.OK:
            message += " (slow)"
        return CheckResult(status, message, perf, details)
