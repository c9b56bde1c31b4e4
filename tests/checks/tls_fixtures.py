"""Certificates made on the spot for TLS tests: a throw-away CA and leaves with chosen names and
validity, plus the files and server contexts built from them. EC P-256 keys, so making one
takes about a millisecond rather than the tens an RSA key would."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(common_name: str = "Vigil Test CA", days: float = 365.0, issuer: Issued | None = None) -> Issued:
    """A CA certificate: self-signed, or an intermediate when `issuer` is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def make_leaf(
    ca: Issued,
    names: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    days: float = 90.0,
    valid_from_days: float = -1.0,
    common_name: str | None = None,
    san: bool = True,
) -> Issued:
    """A server certificate signed by `ca`, valid from now + `valid_from_days` until now + `days`
    (negative `days` makes it already expired). `names` that parse as IP addresses become IP SANs."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cn = common_name if common_name is not None else (names[0] if names else "leaf")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=valid_from_days))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if san:
        entries: list[x509.GeneralName] = []
        for name in names:
            try:
                entries.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                entries.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def write_pem(path: Path, *certs: Issued) -> Path:
    path.write_bytes(b"".join(c.pem for c in certs))
    return path


def server_context(leaf: Issued, directory: Path, chain: Sequence[Issued] = ()) -> ssl.SSLContext:
    """A server-side context presenting `leaf` (and `chain` after it); files go to `directory`."""
    cert_file = write_pem(directory / f"server-{leaf.cert.serial_number:x}.pem", leaf, *chain)
    key_file = directory / f"server-{leaf.cert.serial_number:x}.key"
    key_file.write_bytes(leaf.key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
