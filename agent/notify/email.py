"""`email`: a plain-text e-mail per notification through an SMTP smarthost, as Alertmanager's email_config.

`tls: starttls` (the default, port 587 or 25) upgrades the connection and refuses to go on without TLS
when the server does not offer it (Alertmanager's `require_tls: true`); `tls: tls` speaks TLS from the
first byte (SMTPS, port 465); `tls: none` sends in clear and is accepted with a username/password only
towards a loopback smarthost (as Go's net/smtp PlainAuth, which Alertmanager uses). The subject is
Alertmanager's default title, `[FIRING:2] HighLoad (web1 critical)`, unless `subject` fixes one; the
body lists each alert with its summary, start (and end), value, labels and annotations.

smtplib is blocking, so each attempt runs in a thread, bounded by the receiver's `timeout` (the socket
timeout is cut to what is left of it before every step). A 5xx reply refuses the message for good
(it is dropped with a counter; the reply is in the log); 4xx replies, a server that is down, drops the
connection, lacks STARTTLS or AUTH, or presents a certificate that does not verify are retried. Some
recipients refused while others accepted is a success with a warning: sending again would repeat the
mail to those who got it.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from typing import Literal

import structlog
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from agent.notify.base import AlertItem, DeliveryError, Message, Notification, Receiver, ReceiverConfig, register
from agent.notify.common import (
    CaFile,
    Scrubber,
    alert_target,
    client_ssl_context,
    connect_reason,
    is_loopback,
    rfc3339,
    split_host_port,
    subject_line,
)

log = structlog.get_logger("vigil.notify")


def _check_address(value: str, what: str) -> str:
    value = value.strip()
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError(f"{what} {value!r} contains a line break")
    _, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() for ch in address):
        raise ValueError(f"{what} {value!r} is not an e-mail address (user@example.com or Name <user@example.com>)")
    return value


class EmailConfig(ReceiverConfig):
    model_config = ConfigDict(populate_by_name=True)

    type: Literal["email"]
    smarthost: str = Field(description="SMTP server as host:port, e.g. mail.example.com:587")
    from_: str = Field(alias="from", description="sender address, e.g. 'Vigil <vigil@example.com>'")
    to: list[str] = Field(min_length=1, description="recipient addresses")
    tls: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls: upgrade and require TLS; tls: implicit TLS (port 465); none: clear text"
    )
    tls_verify: bool = Field(True, description="verify the server's certificate chain and name")
    ca_file: CaFile | None = Field(None, description="PEM file of CAs to trust instead of the system's")
    username: str | None = Field(None, min_length=1, description="SMTP AUTH user")
    password: SecretStr | None = Field(None, description="SMTP AUTH password")
    hello: str | None = Field(None, min_length=1, description="name sent in EHLO; default: this host's name")
    subject: str | None = Field(
        None, min_length=1, description="a fixed subject; default: [FIRING:2] HighLoad (web1 critical)"
    )

    @field_validator("smarthost")
    @classmethod
    def _smarthost(cls, value: str) -> str:
        split_host_port(value)
        return value.strip()

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str) -> str:
        return _check_address(value, "from")

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, value: object) -> object:
        """A comma-separated string, as Alertmanager's `to`, is read as the list it names."""
        if isinstance(value, str):
            return [addr for _, addr in getaddresses([value])] if value.strip() else []
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        return [_check_address(v, "to") for v in value]

    @field_validator("hello", "subject")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and any(ch in value for ch in "\r\n\0"):
            raise ValueError("must be a single line")
        return value

    @model_validator(mode="after")
    def _auth(self) -> EmailConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: give both or neither")
        host, _ = split_host_port(self.smarthost)
        if self.username is not None and self.tls == "none" and not is_loopback(host):
            raise ValueError("username/password would cross the network in clear text with tls: none;"
                             " use tls: starttls or tls (clear text is allowed only to a loopback smarthost)")
        return self


class SmtpRefused(Exception):
    """Raised in the SMTP thread: what the receiver turns into a DeliveryError (the connection test, into
    its error text)."""

    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@register
class EmailReceiver(Receiver):
    type = "email"
    Config = EmailConfig

    def __init__(self, config: EmailConfig, hostname: str):
        super().__init__(config, hostname)
        self.config: EmailConfig = config
        self.host, self.port = split_host_port(config.smarthost)
        self._scrub = Scrubber([config.password])
        self._ssl: ssl.SSLContext | None = None

    async def deliver(self, message: Message) -> None:
        if message.kind == "event":
            raise DeliveryError("email receivers take notifications, not events", retryable=False)
        mail = self.compose(message.notification(), test=message.kind == "test")
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.timeout):
                refused = await asyncio.to_thread(self._send, mail, time.monotonic() + cfg.timeout)
        except TimeoutError:
            raise DeliveryError(f"{cfg.smarthost}: no answer within {cfg.timeout:g}s") from None
        except SmtpRefused as exc:
            raise DeliveryError(self._scrub(f"{cfg.smarthost}: {exc}"), retryable=exc.retryable) from None
        if refused:
            log.warning("email_recipients_refused", receiver=self.name, message_id=message.id,
                        refused={addr: f"{code} {_text(reply)}" for addr, (code, reply) in refused.items()})

    def compose(self, n: Notification, test: bool = False) -> EmailMessage:
        cfg = self.config
        hostname = n.hostname or self.hostname
        mail = EmailMessage()
        mail["Subject"] = cfg.subject or (("[TEST] " if test or n.test else "") + subject_line(n))
        mail["From"] = cfg.from_
        mail["To"] = ", ".join(cfg.to)
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = make_msgid(domain=hostname or "vigil.invalid")
        mail["X-Vigil-Host"] = hostname
        mail.set_content(_body(n, hostname, test or n.test))
        return mail

    def _send(self, mail: EmailMessage, deadline: float) -> dict[str, tuple[int, bytes]]:
        """Runs in a thread: one SMTP session. Returns the recipients refused while others accepted."""
        cfg = self.config
        try:
            if cfg.tls != "none" and self._ssl is None:
                self._ssl = client_ssl_context(cfg.tls_verify, cfg.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise _classify(exc) from None
        with smtp_session(cfg, self.host, self.port, self.hostname, self._ssl, deadline) as smtp:
            smtp.sock.settimeout(_left(deadline))
            recipients = [parseaddr(t)[1] for t in cfg.to]
            return smtp.send_message(mail, from_addr=parseaddr(cfg.from_)[1], to_addrs=recipients)

    async def close(self) -> None:
        return None


def _left(deadline: float) -> float:
    """What is left of the attempt's time, for the next step's socket timeout; TimeoutError when nothing is."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining


@contextlib.contextmanager
def smtp_session(cfg: EmailConfig, host: str, port: int, hostname: str, context: ssl.SSLContext | None,
                 deadline: float) -> Iterator[smtplib.SMTP]:
    """Blocking (run it in a thread): connect, EHLO, STARTTLS or TLS, AUTH, each step within what is left
    until `deadline`; QUIT on the way out. The receiver sends within it, the connection test
    (agent.notify.probe) only logs in. Any failure, the body's too, is raised as SmtpRefused."""
    hello = cfg.hello or hostname or "localhost"
    try:
        smtp: smtplib.SMTP
        if cfg.tls == "tls":
            smtp = smtplib.SMTP_SSL(host, port, local_hostname=hello, timeout=_left(deadline), context=context)
        else:
            smtp = smtplib.SMTP(host, port, local_hostname=hello, timeout=_left(deadline))
    except (OSError, ssl.SSLError) as exc:
        raise _classify(exc) from None
    try:
        smtp.ehlo()
        if cfg.tls == "starttls":
            if not smtp.has_extn("starttls"):
                raise SmtpRefused("the server does not offer STARTTLS (tls: starttls requires it)", retryable=True)
            smtp.sock.settimeout(_left(deadline))
            smtp.starttls(context=context)
            smtp.ehlo()
        if cfg.username is not None and cfg.password is not None:
            if not smtp.has_extn("auth"):
                raise SmtpRefused("the server does not offer AUTH (a username is configured)", retryable=True)
            smtp.sock.settimeout(_left(deadline))
            smtp.login(cfg.username, cfg.password.get_secret_value())
        yield smtp
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        raise _classify(exc) from None
    finally:
        try:
            if smtp.sock is not None:
                smtp.sock.settimeout(max(0.1, min(1.0, deadline - time.monotonic())))
                smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def _classify(exc: BaseException) -> SmtpRefused:
    """SMTP's reply classes: 5xx refuses the message for good, 4xx and the rest may pass later."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        details = "; ".join(f"{addr}: {code} {_text(reply)}" for addr, (code, reply) in exc.recipients.items())
        return SmtpRefused(f"all recipients refused: {details}", retryable=not all(500 <= c < 600 for c in codes))
    if isinstance(exc, smtplib.SMTPConnectError):
        return SmtpRefused(f"the server refused the connection: {exc.smtp_code} {_text(exc.smtp_error)}", True)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        # Held until the credentials are fixed in the config (see common.status_retryable).
        return SmtpRefused(f"authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}", retryable=True)
    if isinstance(exc, smtplib.SMTPResponseException):
        step = {smtplib.SMTPSenderRefused: "sender refused", smtplib.SMTPDataError: "message refused",
                smtplib.SMTPHeloError: "EHLO refused"}.get(type(exc), "refused")
        return SmtpRefused(f"{step}: {exc.smtp_code} {_text(exc.smtp_error)}", retryable=not 500 <= exc.smtp_code < 600)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return SmtpRefused(f"the server closed the connection ({exc or 'unexpectedly'})", True)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SmtpRefused(f"not supported by the server: {exc}", True)
    if isinstance(exc, TimeoutError | socket.timeout):
        return SmtpRefused("timed out", True)
    if isinstance(exc, OSError):
        return SmtpRefused(connect_reason(exc), True)
    return SmtpRefused(f"{type(exc).__name__}: {exc}", True)


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:300]


def _body(n: Notification, hostname: str, test: bool) -> str:
    firing = [a for a in n.alerts if a.status == "firing"]
    resolved = [a for a in n.alerts if a.status == "resolved"]
    lines: list[str] = []
    if test:
        lines += ["This is a test notification from Vigil: the receiver works.", ""]
    counts = []
    if firing:
        counts.append(f"{len(firing)} firing")
    if resolved:
        counts.append(f"{len(resolved)} resolved")
    lines.append(f"{' and '.join(counts) or 'No'} alert{'s' if len(n.alerts) != 1 else ''} on {hostname}.")
    if n.group_labels:
        lines.append("Group: " + ", ".join(f"{k}={v}" for k, v in sorted(n.group_labels.items())))
    for title, alerts in (("Firing", firing), ("Resolved", resolved)):
        if alerts:
            lines += ["", f"== {title} =="]
            for alert in alerts:
                lines += ["", *_alert_lines(alert, hostname, n.external_url)]
    if n.external_url:
        lines += ["", f"Alerts: {n.external_url.rstrip('/')}/api/v1/alerts"]
    return "\n".join(lines) + "\n"


def _alert_lines(a: AlertItem, hostname: str, external_url: str) -> list[str]:
    lines = [f"{a.status.upper()}: {a.labels.get('alertname', '(no alertname)')} on {alert_target(a, hostname)}"]
    for key in ("summary", "description"):
        if a.annotations.get(key):
            lines.append(f"  {key.title()}: {a.annotations[key]}")
    times = f"  Started: {rfc3339(a.starts_at)}"
    if a.status == "resolved" and a.ends_at is not None:
        times += f"  Ended: {rfc3339(a.ends_at)}"
    lines.append(times)
    if a.value is not None:
        lines.append(f"  Value: {a.value:g}")
    lines.append("  Labels:")
    lines += [f"    {k} = {v}" for k, v in sorted(a.labels.items())]
    others = {k: v for k, v in a.annotations.items() if k not in ("summary", "description")}
    if others:
        lines.append("  Annotations:")
        lines += [f"    {k} = {v}" for k, v in sorted(others.items())]
    if a.generator_url:
        lines.append(f"  Source: {a.generator_url}")
    if a.alert_id is not None and external_url:
        lines.append(f"  Details: {external_url.rstrip('/')}/api/v1/alerts/{a.alert_id}")
    return lines

