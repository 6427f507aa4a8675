"""Certificates made by the test: a CA, server and client certificates it signs, as PEM files.

    ca = TestCA("pyreg test CA")
    cert, key = ca.issue(tmp_path / "server", dns=["localhost"], ips=["127.0.0.1"])
    ca.write(tmp_path / "ca.crt")
    client_cert, client_key = ca.issue(tmp_path / "client", client=True)

`loopback_name()` is a host name other than `localhost` that resolves to 127.0.0.1
(the machine's own name often does), for clients that talk plain HTTP to `localhost` and
loopback IPs and HTTPS to anything else (pyreg's client), or None.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class TestCA:
    __test__ = False  # not a pytest test class

    def __init__(self, common_name: str = "pyreg test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.pem())
        return path

    def issue(
        self,
        stem: Path,
        common_name: str = "pyreg",
        dns: list[str] | None = None,
        ips: list[str] | None = None,
        client: bool = False,
    ) -> tuple[Path, Path]:
        """Write `<stem>.crt` (leaf, then this CA) and `<stem>.key`; returns their paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        stem.parent.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.pem())
        key_path.write_bytes(_pem_key(key))
        return cert_path, key_path


def loopback_name() -> str | None:
    """The machine's host name when it resolves to 127.0.0.1 (where test servers listen)."""
    name = socket.gethostname()
    if not name or name == "localhost":
        return None
    try:
        address = socket.gethostbyname(name)
    except OSError:
        return None
    return name if address == "127.0.0.1" else None
