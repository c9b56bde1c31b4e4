"""The email receiver against a real SMTP server (aiosmtpd) on a loopback port: plain, STARTTLS with
AUTH, implicit TLS, refusals and a server that is down or silent."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError

from agent.notify.base import DeliveryError
from agent.notify.email import EmailConfig, EmailReceiver
from tests.checks.tls_fixtures import Issued, make_ca, make_leaf, server_context, write_pem
from tests.conftest import free_port
from tests.notify.helpers import HOST, alert, event, message, notification, probe_message

PASSWORD = "smtp-pa55word"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    mail: EmailMessage
    tls: bool
    authenticated: bool


@dataclass
class Inbox:
    """An aiosmtpd handler: keeps what it accepts, refuses recipients as told."""

    received: list[Received] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)
    """recipient -> the reply to RCPT TO (e.g. "550 5.1.1 no such user")."""

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.replies:
            return self.replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        mail = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(mail, EmailMessage)
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), mail,
                                      _encrypted(server, session), bool(session.authenticated)))
        return "250 Message accepted"


def _encrypted(server: SMTP, session: Session) -> bool:
    """STARTTLS leaves its mark on the session, implicit TLS on the transport."""
    return session.ssl is not None or (server.transport is not None
                                       and server.transport.get_extra_info("ssl_object") is not None)


def _authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"vigil", PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 235/535 reply


@dataclass
class Server:
    inbox: Inbox
    port: int
    ca: Issued | None = None
    ca_file: str | None = None

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.port}"


Start = Callable[..., Server]


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[Start]:
    """Starts aiosmtpd on a free loopback port: `start()` plain, `start("starttls")` with STARTTLS and
    AUTH (required), `start("tls")` with implicit TLS; the certificate is from a throw-away CA."""
    controllers: list[Controller] = []

    def start(mode: str = "none", auth: bool = False) -> Server:
        inbox, port = Inbox(), free_port()
        kwargs: dict[str, Any] = {}
        server = Server(inbox, port)
        if mode != "none":
            server.ca = make_ca()
            ctx = server_context(make_leaf(server.ca), tmp_path)
            server.ca_file = str(write_pem(tmp_path / f"ca-{port}.pem", server.ca))
            kwargs = {"tls_context": ctx, "require_starttls": True} if mode == "starttls" else {"ssl_context": ctx}
        if auth:
            kwargs.update(authenticator=_authenticator, auth_require_tls=mode != "none")
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return server

    yield start
    for controller in controllers:
        controller.stop()


def receiver(smarthost: str, **settings: Any) -> EmailReceiver:
    doc = {"name": "mail", "type": "email", "smarthost": smarthost, "from": "Vigil <vigil@web1.example>",
           "to": ["ops@example.com"], **settings}
    return EmailReceiver(EmailConfig.model_validate(doc), HOST)


async def test_plain_delivery(smtp_server: Start) -> None:
    server = smtp_server()
    r = receiver(server.smarthost, tls="none", to=["ops@example.com", "Oncall <oncall@example.com>"])
    firing = alert(instance="web1:9100", starts_at=1700000000)
    resolved = alert("HighLoad", "resolved", "0000aaaa0000bbbb", starts_at=1700000000, ends_at=1700000600,
                     instance="web2:9100")
    await r.deliver(message(notification(firing, resolved)))
    [got] = server.inbox.received
    assert got.mail_from == "vigil@web1.example"
    assert got.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    assert not got.tls and not got.authenticated
    mail = got.mail
    assert mail["Subject"] == "[FIRING:1] HighLoad (critical)"
    assert mail["From"] == "Vigil <vigil@web1.example>"
    assert mail["To"] == "ops@example.com, Oncall <oncall@example.com>"
    assert mail["X-Vigil-Host"] == HOST
    assert mail["Date"] and re.fullmatch(r"<.+@web1>", mail["Message-ID"])
    body = mail.get_content().replace("\r\n", "\n")
    assert body.startswith("1 firing and 1 resolved alerts on web1.\nGroup: alertname=HighLoad\n")
    assert "== Firing ==\n\nFIRING: HighLoad on web1:9100\n  Summary: HighLoad on web1\n" in body
    assert "  Description: load is 7.25 for 5m\n  Started: 2023-11-14T22:13:20Z\n  Value: 7.25\n" in body
    assert "  Labels:\n    alertname = HighLoad\n    instance = web1:9100\n    severity = critical\n" in body
    assert "  Annotations:\n    runbook_url = http://rb\n" in body
    assert "== Resolved ==\n\nRESOLVED: HighLoad on web2:9100\n" in body
    assert "  Started: 2023-11-14T22:13:20Z  Ended: 2023-11-14T22:23:20Z\n" in body
    assert "  Details: http://web1:9108/api/v1/alerts/41\n" in body


async def test_resolved_test_and_fixed_subjects(smtp_server: Start) -> None:
    server = smtp_server()
    r = receiver(server.smarthost, tls="none")
    await r.deliver(message(notification(alert(status="resolved", ends_at=time.time()))))
    await r.deliver(probe_message())
    fixed = receiver(server.smarthost, tls="none", subject="Alert from web1")
    await fixed.deliver(message(notification(alert())))
    first, test, third = (g.mail for g in server.inbox.received)
    assert first["Subject"] == "[RESOLVED] HighLoad (critical)"
    assert test["Subject"] == "[TEST] [FIRING:1] VigilTestNotification (web1 info)"
    assert test.get_content().replace("\r\n", "\n").startswith("This is a test notification from Vigil")
    assert third["Subject"] == "Alert from web1"


async def test_starttls_with_auth(smtp_server: Start) -> None:
    server = smtp_server("starttls", auth=True)
    r = receiver(server.smarthost, ca_file=server.ca_file, username="vigil", password=PASSWORD)
    await r.deliver(message(notification(alert())))
    [got] = server.inbox.received
    assert got.tls and got.authenticated

    wrong = receiver(server.smarthost, ca_file=server.ca_file, username="vigil", password="not-the-password")
    with pytest.raises(DeliveryError) as err:
        await wrong.deliver(message(notification(alert())))
    assert err.value.retryable is True  # held until the credentials are fixed
    assert "authentication failed: 535" in str(err.value) and "not-the-password" not in str(err.value)

    # The server requires STARTTLS before anything: without a trusted certificate nothing is sent.
    untrusting = receiver(server.smarthost, username="vigil", password=PASSWORD)
    with pytest.raises(DeliveryError) as err:
        await untrusting.deliver(message(notification(alert())))
    assert err.value.retryable is True and "certificate not accepted" in str(err.value)
    unverified = receiver(server.smarthost, tls_verify=False, username="vigil", password=PASSWORD)
    await unverified.deliver(message(notification(alert())))
    assert len(server.inbox.received) == 2


async def test_implicit_tls(smtp_server: Start) -> None:
    server = smtp_server("tls")
    r = receiver(server.smarthost, tls="tls", ca_file=server.ca_file)
    await r.deliver(message(notification(alert())))
    [got] = server.inbox.received
    assert got.tls


async def test_starttls_required_but_not_offered(smtp_server: Start) -> None:
    server = smtp_server()
    r = receiver(server.smarthost)
    with pytest.raises(DeliveryError) as err:
        await r.deliver(message(notification(alert())))
    assert err.value.retryable is True and "does not offer STARTTLS" in str(err.value)
    assert server.inbox.received == []


async def test_refused_recipients(smtp_server: Start) -> None:
    server = smtp_server()
    server.inbox.replies = {"gone@example.com": "550 5.1.1 no such user", "full@example.com": "452 4.2.2 mailbox full"}
    for to, retryable in ((["gone@example.com"], False), (["full@example.com"], True),
                          (["gone@example.com", "full@example.com"], True)):
        r = receiver(server.smarthost, tls="none", to=to)
        with pytest.raises(DeliveryError) as err:
            await r.deliver(message(notification(alert())))
        assert err.value.retryable is retryable, (to, str(err.value))
        assert "all recipients refused" in str(err.value)
    assert "gone@example.com: 550 5.1.1 no such user" in str(err.value)
    # Some refused, one accepted: delivered (sending again would repeat it to the one who got it).
    r = receiver(server.smarthost, tls="none", to=["gone@example.com", "ops@example.com"])
    await r.deliver(message(notification(alert())))
    assert [g.rcpt_tos for g in server.inbox.received] == [["ops@example.com"]]


async def test_server_down_is_retryable() -> None:
    r = receiver(f"127.0.0.1:{free_port()}", tls="none")
    with pytest.raises(DeliveryError) as err:
        await r.deliver(message(notification(alert())))
    assert err.value.retryable is True and "cannot connect" in str(err.value)


async def test_silent_server_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepted by the kernel, never answered: no banner
        r = receiver(f"127.0.0.1:{listener.getsockname()[1]}", tls="none", timeout="0.5s")
        started = time.monotonic()
        with pytest.raises(DeliveryError) as err:
            await r.deliver(message(notification(alert())))
        elapsed = time.monotonic() - started
    assert err.value.retryable is True
    assert 0.4 < elapsed < 1.5, elapsed


async def test_events_are_refused() -> None:
    r = receiver("127.0.0.1:25")
    assert r.accepts_events is False
    with pytest.raises(DeliveryError) as err:
        await r.deliver(event())
    assert err.value.retryable is False


def test_to_as_a_string() -> None:
    config = EmailConfig.model_validate({"name": "m", "type": "email", "smarthost": "mail.example.com:587",
                                         "from": "vigil@example.com", "to": "a@example.com, B <b@example.com>"})
    assert config.to == ["a@example.com", "b@example.com"]
    assert config.from_ == "vigil@example.com" and config.tls == "starttls"


@pytest.mark.parametrize(("settings", "error"), [
    ({"smarthost": "mail.example.com"}, "is not host:port"),
    ({"smarthost": "mail.example.com:0"}, "port 0 is out of range"),
    ({"smarthost": "mail.example.com:smtp"}, "is not host:port"),
    ({"smarthost": "[zz::1]:25"}, "not an IPv6 address"),
    ({"tls": "ssl"}, "'starttls', 'tls' or 'none'"),
    ({"from": "not-an-address"}, "is not an e-mail address"),
    ({"from": "a@b.example\r\nBcc: x@y"}, "line break"),
    ({"to": []}, "at least 1 item"),
    ({"to": ["ok@example.com", "nope"]}, "'nope' is not an e-mail address"),
    ({"username": "vigil"}, "give both or neither"),
    ({"password": "pw-secret"}, "give both or neither"),
    ({"username": "vigil", "password": "pw-secret", "tls": "none"}, "in clear text"),
    ({"subject": "two\nlines"}, "single line"),
    ({"hello": ""}, "at least 1 character"),
])
def test_bad_config(settings: dict[str, Any], error: str) -> None:
    doc = {"name": "m", "type": "email", "smarthost": "mail.example.com:587", "from": "vigil@example.com",
           "to": ["ops@example.com"], **settings}
    with pytest.raises(ValidationError) as err:
        EmailConfig.model_validate(doc)
    messages = "; ".join(e["msg"] for e in err.value.errors())
    assert error in messages, messages
    assert "pw-secret" not in messages


def test_clear_text_auth_allowed_to_loopback() -> None:
    config = EmailConfig.model_validate({"name": "m", "type": "email", "smarthost": "localhost:25", "tls": "none",
                                         "from": "vigil@example.com", "to": ["ops@example.com"],
                                         "username": "u", "password": "p"})
    assert config.username == "u"


async def test_connection_test_logs_in_and_sends_nothing(smtp_server: Start) -> None:
    """POST /api/v1/config/test's probe of an e-mail receiver: the session up to AUTH, checked with a NOOP."""
    from agent.notify.probe import probe

    server = smtp_server("starttls", auth=True)
    good = receiver(server.smarthost, ca_file=server.ca_file, username="vigil", password=PASSWORD).config
    result = await probe(good, HOST, 5)
    assert (result.status, result.error) == ("ok", None)
    wrong = receiver(server.smarthost, ca_file=server.ca_file, username="vigil", password="not-the-password").config
    result = await probe(wrong, HOST, 5)
    assert result.status == "error" and "authentication failed: 535" in (result.error or "")
    assert "not-the-password" not in (result.error or "")
    assert server.inbox.received == []
