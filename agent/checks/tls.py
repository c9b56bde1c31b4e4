"""X.509 and TLS helpers shared by the `http` and `certificate` check types.

Python's `ssl` only hands out a parsed certificate once it has verified it; a monitoring check
must also describe certificates it does not trust (self-signed, expired, for another name), so
certificates are parsed from their DER/PEM bytes with `cryptography` and names are matched here
rather than by OpenSSL, which lets a mismatch say which names the certificate does carry.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography import x509

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class CertFacts:
    """What a check reports about one certificate; times are Unix seconds."""

    subject: str
    issuer: str
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    has_san: bool
    not_before: float
    not_after: float
    serial: str
    sha256: str

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / DAY

    @property
    def names(self) -> list[str]:
        """The identities a client would accept: the SANs (the subject's CN only as a label when none)."""
        if self.has_san:
            return [*self.dns_names, *self.ip_addresses]
        return [f"CN={self.common_name}"] if self.common_name else []

    def as_details(self, now: float) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": [*self.dns_names, *self.ip_addresses],
            "not_before": iso(self.not_before),
            "not_after": iso(self.not_after),
            "not_after_timestamp": self.not_after,
            "days_left": round(self.days_left(now), 3),
            "serial": self.serial,
            "sha256": self.sha256,
        }


def iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(cert: x509.Certificate, attr: str) -> dt.datetime:
    """`not_valid_after_utc` where cryptography has it (42+), the naive UTC field before."""
    aware = getattr(cert, f"{attr}_utc", None)
    if aware is not None:
        return aware
    naive: dt.datetime = getattr(cert, attr)
    return naive.replace(tzinfo=dt.UTC)


def load_der(data: bytes) -> x509.Certificate:
    """Raises ValueError for bytes that are not a certificate."""
    from cryptography import x509  # imported when first needed: 8 MiB a host without TLS checks does not pay

    return x509.load_der_x509_certificate(data)


def load_pem(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in file order; ValueError when there is none or one is broken."""
    from cryptography import x509

    return x509.load_pem_x509_certificates(data)


def facts(cert: x509.Certificate) -> CertFacts:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    cn_attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(cn_attrs[0].value) if cn_attrs else None
    return CertFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=common_name,
        dns_names=tuple(san.get_values_for_type(x509.DNSName)) if san is not None else (),
        ip_addresses=tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)) if san is not None else (),
        has_san=san is not None,
        not_before=_utc(cert, "not_valid_before").timestamp(),
        not_after=_utc(cert, "not_valid_after").timestamp(),
        serial=format(cert.serial_number, "x"),
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def expiry_phrase(cert: CertFacts, now: float) -> str:
    """"expires in 4.2 days (2026-11-27)", "expired 3.0 days ago (...)" or "not valid before ..."."""
    if now < cert.not_before:
        return f"not valid before {iso(cert.not_before)} ({(cert.not_before - now) / DAY:.1f} days from now)"
    days = cert.days_left(now)
    date = iso(cert.not_after)[:10]
    if days < 0:
        return f"expired {-days:.1f} days ago ({date})"
    return f"expires in {days:.1f} days ({date})"


def _normalise_host(host: str) -> str | None:
    name = host.strip().rstrip(".").lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _dns_matches(pattern: str, host: str) -> bool:
    """RFC 6125 6.4.3 as browsers and RFC 9525 apply it: a `*` may only be the whole left-most
    label, matches exactly one label, and needs at least two labels after it (no `*.com`)."""
    pattern = pattern.rstrip(".").lower()
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    rest = pattern[2:]
    if "*" in rest or "." not in rest:
        return False
    first, dot, host_rest = host.partition(".")
    return bool(first) and bool(dot) and host_rest == rest


def hostname_matches(cert: CertFacts, host: str) -> bool:
    """Whether a client connecting to `host` accepts `cert`'s names.

    IP addresses only match IP SANs. DNS names match the DNS SANs with wildcards; the subject's
    CN is not consulted (RFC 9525; browsers and Python's ssl stopped doing so), so a certificate
    without subjectAltName matches nothing, which is what those clients will say about it too."""
    name = _normalise_host(host)
    if not name:
        return False
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:
        return any(ipaddress.ip_address(a) == ip for a in cert.ip_addresses)
    return any(_dns_matches(pattern, name) for pattern in cert.dns_names)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """None when `issuer` signed `cert`, else why not (names differ, bad signature, unsupported key)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except ValueError:
        return f"issuer {cert.issuer.rfc4514_string()} is not {issuer.subject.rfc4514_string()}"
    except TypeError as exc:
        return f"cannot verify signature: {exc}"
    except Exception as exc:  # cryptography.exceptions.InvalidSignature and friends
        return f"signature by {issuer.subject.rfc4514_string()} does not verify ({type(exc).__name__})"
    return None


def readable_file(value: str | None, what: str) -> str | None:
    """For config validators: a CA file that cannot be opened is a config error with file:line,
    not a check failing later for a typo."""
    if value is None:
        return None
    try:
        with open(value, "rb"):
            return value
    except OSError as exc:
        raise ValueError(f"{what} {value}: {exc.strerror or exc}") from None


def ssl_context(verify: bool, ca_file: str | None = None, check_hostname: bool = True) -> ssl.SSLContext:
    """A client context, shared by every check with the same settings.

    Loading the system trust store costs milliseconds and hundreds of kilobytes per context, so
    500 checks must not each hold one. The CA file's mtime and size are part of the key, so an
    edited file is loaded again. Raises OSError/ssl.SSLError when the CA file cannot be used."""
    stamp = None
    if verify and ca_file is not None:
        st = os.stat(ca_file)
        stamp = (st.st_mtime_ns, st.st_size)
    return _cached_context(verify, ca_file if verify else None, check_hostname and verify, stamp)


@functools.lru_cache(maxsize=64)
def _cached_context(
    verify: bool, ca_file: str | None, check_hostname: bool, stamp: tuple[int, int] | None
) -> ssl.SSLContext:
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = check_hostname
    return ctx


def verify_reason(exc: BaseException) -> str:
    """OpenSSL's words for a failed verification ("certificate has expired"), else the error text."""
    message = getattr(exc, "verify_message", None)
    if message:
        return str(message)
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).replace("_", " ").lower()
    return str(exc) or type(exc).__name__
