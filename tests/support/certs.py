"""Certificates made for a test: a CA, a server certificate for 127.0.0.1 and localhost, and
client certificates (one from the CA, one from a stranger CA), as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path            # trusted by gq (target.ca_bundle) and by the target for client certificates
    server_cert: Path
    server_key: Path
    client_cert: Path   # CN "gq-client", from `ca`
    client_key: Path
    stranger_cert: Path  # CN "stranger", from a CA nobody trusts
    stranger_key: Path


def make_pki(directory: Path) -> Pki:
    ca, ca_key = _ca("gq test CA")
    stranger_ca, stranger_ca_key = _ca("stranger CA")
    names = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.IPAddress(ipaddress.ip_address("::1")), x509.DNSName("localhost")])
    paths = {"ca": _write(directory / "ca.pem", ca)}
    for name, issuer, issuer_key, usage, extension in (
            ("server", ca, ca_key, ExtendedKeyUsageOID.SERVER_AUTH, names),
            ("client", ca, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH, None),
            ("stranger", stranger_ca, stranger_ca_key, ExtendedKeyUsageOID.CLIENT_AUTH, None)):
        cert, key = _issued(name if name != "client" else "gq-client", issuer, issuer_key, usage, extension)
        paths[f"{name}_cert"] = _write(directory / f"{name}.pem", cert)
        paths[f"{name}_key"] = _write(directory / f"{name}.key", key)
    return Pki(**paths)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2)))


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(common_name, _name(common_name), key).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True).add_extension(
        x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                      key_encipherment=False, data_encipherment=False, key_agreement=False,
                      encipher_only=False, decipher_only=False), critical=True).add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return builder.sign(key, hashes.SHA256()), key


def _issued(common_name: str, issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, usage,
            names: x509.SubjectAlternativeName | None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(common_name, issuer.subject, key).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True).add_extension(
        x509.ExtendedKeyUsage([usage]), critical=False).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if names is not None:
        builder = builder.add_extension(names, critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(path: Path, item: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    if isinstance(item, x509.Certificate):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        path.chmod(0o600)
    return path
