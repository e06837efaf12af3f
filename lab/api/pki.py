"""The lab API server's certificates and keys, made the way kubeadm lays them out.

:func:`ensure_pki` creates, or reuses when present and still good, in one folder (0700):

* ``ca.crt`` / ``ca.key``: a self-signed certificate authority (EC P-256, 10 years);
* ``apiserver.crt`` / ``apiserver.key``: the serving certificate, signed by that CA for
  the given hosts (IP and DNS subject alternative names, 1 year, ``serverAuth``);
* ``sa.key``: the EC P-256 key that signs service-account tokens (ES256).

Keys are written 0600, atomically. A serving certificate that does not chain to the CA,
misses a host, or expires within 30 days is made again; a CA that is unreadable or
expires within a year is made again with everything it signed. :func:`issue_client_cert`
signs a client certificate (CN the user, O its groups) for ``--client-ca-file``
authentication. :func:`server_ssl_context` is the server's TLS context (TLS 1.2 or newer).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.errors import LabError

__all__ = [
    "DEFAULT_HOSTS",
    "Pki",
    "ensure_pki",
    "issue_client_cert",
    "load_ec_private_key",
    "server_ssl_context",
    "write_private",
]

DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1")
CA_DAYS = 3650
SERVING_DAYS = 365
CLIENT_DAYS = 365
_RENEW_SERVING = dt.timedelta(days=30)
_RENEW_CA = dt.timedelta(days=365)
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Pki:
    """Where the lab's certificates and keys are (see the module docstring)."""

    folder: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path

    @classmethod
    def at(cls, folder: Path) -> Pki:
        """The file layout under ``folder`` (nothing is read or written)."""
        return cls(
            folder,
            folder / "ca.crt",
            folder / "ca.key",
            folder / "apiserver.crt",
            folder / "apiserver.key",
            folder / "sa.key",
        )

    def ca_pem(self) -> bytes:
        """The CA certificate (PEM), what clients trust (``certificate-authority-data``)."""
        return self.ca_cert.read_bytes()


def write_private(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` atomically with ``mode`` (a temporary file beside it, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_ec_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """An EC P-256 private key from a PEM file; LabError naming the file when it is not one."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise LabError(f"cannot read the EC private key {path} ({exc}): give a PEM P-256 key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise LabError(f"{path} is not an EC P-256 private key: give a PEM P-256 key (ES256)")
    return key


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return cert.public_key().public_bytes(enc, pub) == key.public_key().public_bytes(enc, pub)


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = load_ec_private_key(key_path)
    except (OSError, ValueError, LabError):
        return None
    return (cert, key) if _same_key(cert, key) else None


def _sans(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _leaf_usage(builder: x509.CertificateBuilder, ca: x509.Certificate) -> x509.CertificateBuilder:
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )


def _make_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab-kubernetes-ca")])
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    write_private(pki.ca_key, _key_pem(key))
    write_private(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _ca_ok(ca: x509.Certificate) -> bool:
    return _signed_by(ca, ca) and ca.not_valid_after_utc - _RENEW_CA > _now()


def _serving_ok(pki: Pki, ca: x509.Certificate, hosts: Sequence[str]) -> bool:
    pair = _load_pair(pki.serving_cert, pki.serving_key)
    if pair is None:
        return False
    cert, _key = pair
    if not _signed_by(cert, ca) or cert.not_valid_after_utc - _RENEW_SERVING < _now():
        return False
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return all(name in sans for name in _sans(hosts))


def _make_serving(
    pki: Pki, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: Sequence[str]
) -> None:
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    cert = (
        _leaf_usage(_builder(subject, ca.subject, key.public_key(), SERVING_DAYS), ca)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_private(pki.serving_key, _key_pem(key))
    write_private(pki.serving_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def ensure_pki(folder: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> Pki:
    """Create (or reuse when present and valid) the CA, serving certificate and SA key in ``folder``.

    LabError (one line) when the folder cannot be written.
    """
    if not hosts:
        raise LabError("ensure_pki needs at least one host for the serving certificate: pass hosts")
    pki = Pki.at(Path(folder))
    try:
        pki.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(pki.folder, 0o700)
        pair = _load_pair(pki.ca_cert, pki.ca_key)
        if pair is None or not _ca_ok(pair[0]):
            ca, ca_key = _make_ca(pki)
        else:
            ca, ca_key = pair
        if not _serving_ok(pki, ca, hosts):
            _make_serving(pki, ca, ca_key, hosts)
        try:
            load_ec_private_key(pki.sa_key)
        except LabError:
            write_private(pki.sa_key, _key_pem(_new_key()))
        for path in (pki.ca_key, pki.serving_key, pki.sa_key):
            os.chmod(path, 0o600)
    except OSError as exc:
        raise LabError(
            f"cannot write the lab's certificates in {pki.folder} ({exc.strerror}): fix its permissions"
        ) from None
    return pki


def issue_client_cert(
    pki: Pki, cert_path: Path, key_path: Path, user: str, groups: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Sign a client certificate for ``user`` (CN) in ``groups`` (O, one each) with the lab CA.

    What kube-apiserver's ``--client-ca-file`` authentication reads; both files 0600.
    """
    pair = _load_pair(pki.ca_cert, pki.ca_key)
    if pair is None:
        raise LabError(f"no usable CA in {pki.folder}: run ensure_pki first")
    ca, ca_key = pair
    key = _new_key()
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    subject = x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, user)])
    cert = (
        _leaf_usage(_builder(subject, ca.subject, key.public_key(), CLIENT_DAYS), ca)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_private(key_path, _key_pem(key))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_ssl_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The serving TLS context (TLS 1.2 or newer, HTTP/1.1); with ``client_ca``, client
    certificates signed by it are verified when given (kube-apiserver's ``--client-ca-file``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            context.load_verify_locations(cafile=str(client_ca))
            context.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise LabError(
            f"cannot load the TLS certificate {cert} / key {key} ({exc}): give a PEM certificate and its key"
        ) from None
    context.set_alpn_protocols(["http/1.1"])
    return context
