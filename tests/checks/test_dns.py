"""`dns` checks against the system resolver and a small DNS server run by the test on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import pydantic
import pytest

import agent.config  # noqa: F401  (first: importing agent.checks before agent.config is a circular import)

# isort: split
from agent.checks.base import CheckResult, Status
from agent.checks.dns import DnsCheck, DnsConfig
from tests.checks.common import config_error, run_check

PTR_QNAME = b"\xc0\x0c"  # compression pointer to the question's name, right after the 12-byte header


@dataclass
class Zone:
    """What the test server answers: addresses per (name, type), CNAMEs, and misbehaviour on demand."""

    records: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    cnames: dict[str, str] = field(default_factory=dict)
    rcode: dict[str, int] = field(default_factory=dict)
    truncate: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    stray_first: set[str] = field(default_factory=set)  # send a reply with a wrong id before the real one
    loop: set[str] = field(default_factory=set)  # answer with a name that points at itself
    delay: float = 0.0
    queries: list[tuple[int, str, int]] = field(default_factory=list)


def encode_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def decode_qname(data: bytes) -> tuple[str, int]:
    labels, offset = [], 12
    while data[offset]:
        length = data[offset]
        labels.append(data[offset + 1:offset + 1 + length].decode())
        offset += 1 + length
    return ".".join(labels), offset + 1


def rr(owner: bytes, rtype: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, 60, len(rdata)) + rdata


def respond(zone: Zone, data: bytes) -> list[bytes]:
    ident, flags = struct.unpack_from("!HH", data)
    name, end = decode_qname(data)
    qtype = struct.unpack_from("!H", data, end)[0]
    zone.queries.append((flags, name, qtype))
    if name in zone.silent:
        return []
    question = data[12:end + 4]
    answers: list[bytes] = []
    owner = PTR_QNAME
    if name in zone.cnames:
        # CNAME whose target shares the question's suffix ("www" + pointer), A records owned by that target.
        target = zone.cnames[name]
        first, _, rest = target.partition(".")
        suffix_at = 12 + data[12:end].index(encode_name(rest)[:-1]) if rest else None
        rdata = bytes([len(first)]) + first.encode() + (struct.pack("!H", 0xC000 | suffix_at) if suffix_at else b"\0")
        cname_rdata_at = 12 + len(question) + len(PTR_QNAME) + 10
        answers.append(rr(PTR_QNAME, 5, rdata))
        owner = struct.pack("!H", 0xC000 | cname_rdata_at)
        name = target
    if name in zone.loop:
        answers = [rr(b"\xc0" + bytes([12 + len(question)]), 1, b"\x7f\0\0\1")]  # points at itself
    for addr in zone.records.get((name, qtype), []):
        answers.append(rr(owner, qtype, ipaddress.ip_address(addr).packed))
    rcode = zone.rcode.get(name, 0 if answers or any(n == name for n, _ in zone.records) else 3)
    tc = 0x0200 if name in zone.truncate else 0
    if tc:
        answers = [answers[0], answers[1][:5]] if len(answers) > 1 else answers
    header = struct.pack("!HHHHHH", ident, 0x8000 | 0x0100 | 0x0080 | tc | rcode, 1, len(answers), 0, 0)
    reply = header + question + b"".join(answers)
    if name in zone.stray_first:
        stray = struct.pack("!H", (ident + 1) % 65536) + reply[2:]
        return [stray, reply]
    return [reply]


class Server(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self.transport is not None
        for reply in respond(self.zone, data):
            asyncio.get_running_loop().call_later(self.zone.delay, self.transport.sendto, reply, addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[tuple[str, Zone]]:
    zone = Zone(
        records={
            ("db.test", 1): ["10.0.0.1", "10.0.0.2"],
            ("v6.test", 28): ["2001:db8::1"],
            ("edge.cdn.test", 1): ["192.0.2.7"],
            ("empty.test", 1): [],
        },
        cnames={"www.cdn.test": "edge.cdn.test"},
    )
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Server(zone), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    yield f"127.0.0.1:{port}", zone
    transport.close()


async def run(**keys: object) -> CheckResult:
    return await run_check(DnsCheck, keys)


async def test_system_resolver_localhost() -> None:
    result = await run(query="localhost", expect=["127.0.0.1"])
    assert result.status is Status.OK, result.message
    assert "127.0.0.1" in result.message
    perf = {p.label: p for p in result.perfdata}
    assert perf["time"].uom == "s" and perf["answers"].value >= 1
    assert result.details["server"] == "system resolver"


async def test_system_resolver_missing_address_names_what_came_back() -> None:
    result = await run(query="localhost", expect=["127.0.0.2"])
    assert result.status is Status.CRITICAL
    assert "expected 127.0.0.2, got 127.0.0.1" in result.message


async def test_server_answers_with_compressed_names(dns_server: tuple[str, Zone]) -> None:
    server, zone = dns_server
    result = await run(query="db.test", server=server, expect=["10.0.0.2"])
    assert result.status is Status.OK, result.message
    assert "10.0.0.1, 10.0.0.2" in result.message
    assert {p.label: p.value for p in result.perfdata}["answers"] == 2
    flags, name, qtype = zone.queries[-1]
    assert flags & 0x0100 and name == "db.test" and qtype == 1  # RD set, an A question


async def test_server_exact_set(dns_server: tuple[str, Zone]) -> None:
    server, _ = dns_server
    ok = await run(query="db.test", server=server, expect=["10.0.0.2", "10.0.0.1"], expect_exact=True)
    assert ok.status is Status.OK, ok.message
    bad = await run(query="db.test", server=server, expect=["10.0.0.1"], expect_exact=True)
    assert bad.status is Status.CRITICAL
    assert "expected exactly 10.0.0.1, got 10.0.0.1, 10.0.0.2" in bad.message


async def test_server_missing_expected_address(dns_server: tuple[str, Zone]) -> None:
    server, _ = dns_server
    result = await run(query="db.test", server=server, expect=["10.0.0.9", "10.0.0.1"])
    assert result.status is Status.CRITICAL
    assert "expected 10.0.0.9, got 10.0.0.1, 10.0.0.2" in result.message


async def test_server_aaaa(dns_server: tuple[str, Zone]) -> None:
    server, zone = dns_server
    result = await run(query="v6.test", server=server, record_type="AAAA", expect=["2001:db8:0::1"])
    assert result.status is Status.OK, result.message
    assert zone.queries[-1][2] == 28


async def test_server_cname_chain(dns_server: tuple[str, Zone]) -> None:
    server, _ = dns_server
    result = await run(query="www.cdn.test", server=server, expect=["192.0.2.7"])
    assert result.status is Status.OK, result.message
    assert result.details["cnames"] == ["edge.cdn.test"]


async def test_server_nxdomain_servfail_nodata(dns_server: tuple[str, Zone]) -> None:
    server, zone = dns_server
    nx = await run(query="nope.test", server=server)
    assert nx.status is Status.CRITICAL and "name not found" in nx.message
    zone.rcode["broken.test"] = 2
    sf = await run(query="broken.test", server=server)
    assert sf.status is Status.CRITICAL and "SERVFAIL" in sf.message
    nodata = await run(query="empty.test", server=server)
    assert nodata.status is Status.CRITICAL and "no A records" in nodata.message


async def test_server_truncated(dns_server: tuple[str, Zone]) -> None:
    server, zone = dns_server
    zone.truncate.add("db.test")
    result = await run(query="db.test", server=server, expect=["10.0.0.2"])
    assert result.status is Status.CRITICAL
    assert "expected 10.0.0.2, got 10.0.0.1" in result.message and "truncated" in result.message
    assert result.details["truncated"] is True


async def test_server_reply_with_wrong_id_is_ignored(dns_server: tuple[str, Zone]) -> None:
    server, zone = dns_server
    zone.stray_first.add("db.test")
    result = await run(query="db.test", server=server, expect=["10.0.0.1"])
    assert result.status is Status.OK, result.message


async def test_server_compression_loop_is_malformed(dns_server: tuple[str, Zone]) -> None:
    server, zone = dns_server
    zone.loop.add("db.test")
    result = await run(query="db.test", server=server)
    assert result.status is Status.CRITICAL and "malformed answer" in result.message


async def test_server_silent_and_refused(dns_server: tuple[str, Zone]) -> None:
    server, zone = dns_server
    zone.silent.add("db.test")
    silent = await run(query="db.test", server=server, timeout=1.5, interval=10)
    assert silent.status is Status.CRITICAL
    assert "no answer after" in silent.message and "after 1 try" not in silent.message
    assert len([q for q in zone.queries if q[1] == "db.test"]) >= 2  # sent again
    closed = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    port = closed[0].get_extra_info("sockname")[1]
    closed[0].close()
    refused = await run(query="db.test", server=f"127.0.0.1:{port}", timeout=2, interval=10)
    assert refused.status is Status.CRITICAL
    assert "refused" in refused.message.lower() or "no answer" in refused.message


async def test_slow_answer_grades(dns_server: tuple[str, Zone]) -> None:
    server, zone = dns_server
    zone.delay = 0.2
    result = await run(query="db.test", server=server, response_time_warning=0.1, response_time_critical=5)
    assert result.status is Status.WARNING
    assert result.message.endswith("(slow)")


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ({"query": "x.test", "server": "dns.example:53"}, "server must be an IP address"),
        ({"query": "x.test", "server": "127.0.0.1:0"}, "port must be 1-65535"),
        ({"query": "x.test", "server": "[::1"}, "is not ip"),
        ({"query": "x.test", "expect": ["not-an-ip"]}, "is not an IP address"),
        ({"query": "x.test", "expect": ["::1"]}, "is not an IPv4 address"),
        ({"query": "x.test", "record_type": "AAAA", "expect": ["10.0.0.1"]}, "is not an IPv6 address"),
        ({"query": "x.test", "expect_exact": True}, "expect_exact needs"),
        ({"query": "a..test"}, "is not a domain name"),
        ({"query": "x" * 64 + ".test"}, "is not a domain name"),
        ({"query": "x.test", "record_type": "MX"}, "'A' or 'AAAA'"),
        ({"query": "x.test", "response_time_warning": "2s", "response_time_critical": "1s"}, "must not exceed"),
    ],
)
def test_bad_config(keys: dict[str, object], match: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=match):
        DnsConfig.model_validate({"name": "t", "type": "dns", **keys})


def test_server_forms_accepted() -> None:
    for server in ("9.9.9.9", "9.9.9.9:5353", "::1", "[::1]", "[::1]:5353"):
        DnsConfig.model_validate({"name": "t", "type": "dns", "query": "x.test", "server": server})


def test_config_error_has_file_and_line() -> None:
    text = "checks:\n  - name: resolver\n    type: dns\n    query: example.test\n    server: ns1.example\n"
    message = config_error(text)
    assert "/etc/vigil/vigil.yaml:5: checks[0].server:" in message
    assert "must be an IP address" in message
