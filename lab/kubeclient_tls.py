"""TLS and credentials for :class:`lab.kubeclient.KubeClient`, as client-go takes them.

* :func:`tls_adapter`: a requests adapter whose ``ssl.SSLContext`` trusts only the given
  CA (PEM data, loaded with ``cadata``: no temporary files), verifies the host name, and
  may present a client certificate; requests' own CA bundle and ``REQUESTS_CA_BUNDLE``
  are not consulted for it.
* :class:`TokenSource`: the bearer token, from a string or a file re-read whenever the
  file changes (a rotated service-account token is picked up at the next request).
* :func:`kubeconfig_credentials`: what a kubeconfig's cluster and user entries say.
* :func:`service_account_dir`: a pod's service-account folder (token, ca.crt, namespace).
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from requests.adapters import HTTPAdapter

from lab.errors import LabError

__all__ = [
    "DEFAULT_SERVICEACCOUNT_DIR",
    "Credentials",
    "ServiceAccountDir",
    "TokenSource",
    "client_ssl_context",
    "kubeconfig_credentials",
    "service_account_dir",
    "tls_adapter",
]

DEFAULT_SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _load_client_cert(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load a PEM certificate and key from memory (an anonymous memory file, never on disk)."""
    fd = os.memfd_create("lab-client-cert", os.MFD_CLOEXEC)
    try:
        os.write(fd, cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def client_ssl_context(
    ca_pem: bytes | None, client_cert: tuple[bytes, bytes] | None = None, insecure: bool = False
) -> ssl.SSLContext:
    """A client context trusting only ``ca_pem`` (the system's CAs when None), TLS 1.2 or newer;
    ``insecure`` skips verification (kubeconfig's ``insecure-skip-tls-verify``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif ca_pem is not None:
            context.load_verify_locations(cadata=ca_pem.decode("ascii"))
        else:
            context.load_default_certs()
        if client_cert is not None:
            _load_client_cert(context, *client_cert)
    except (ssl.SSLError, ValueError, UnicodeDecodeError, OSError) as exc:
        raise LabError(
            f"cannot use the TLS certificates given ({exc}): give PEM certificates and keys"
        ) from None
    return context


class _ContextAdapter(HTTPAdapter):
    """An HTTPS adapter that uses one SSL context, whatever ``verify`` a request carries."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def build_connection_pool_key_attributes(
        self, request: Any, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, _ignored = super().build_connection_pool_key_attributes(request, True, None)
        return host_params, {"ssl_context": self._context}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """The context already says what is trusted; a CA bundle from the environment is not added."""


def tls_adapter(
    ca_pem: bytes | None,
    ca_file: Path | None,
    client_cert: tuple[bytes, bytes] | None,
    insecure: bool,
) -> HTTPAdapter | None:
    """The adapter for ``https://`` (None when requests' defaults do: no CA, certificate or insecurity)."""
    if ca_file is not None:
        if ca_pem is not None:
            raise LabError("give the CA as data or as a file, not both")
        try:
            ca_pem = Path(ca_file).read_bytes()
        except OSError as exc:
            raise LabError(f"cannot read the CA file {ca_file} ({exc.strerror}): fix the path") from None
    if ca_pem is None and client_cert is None and not insecure:
        return None
    return _ContextAdapter(client_ssl_context(ca_pem, client_cert, insecure))


class TokenSource:
    """The bearer token: ``token``, or ``token_file``'s content re-read when the file changes.

    A token file that cannot be read later keeps the last token read (the server will
    refuse it once it expires); it must be readable at first (LabError otherwise).
    """

    def __init__(self, token: str = "", token_file: Path | None = None) -> None:
        self._token = token
        self._file = Path(token_file) if token_file is not None else None
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        if self._file is not None and not self._reload():
            raise LabError(f"cannot read the token file {self._file}: fix the path or its permissions")

    def _reload(self) -> bool:
        assert self._file is not None
        try:
            st = os.stat(self._file)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp != self._stamp:
                self._token = self._file.read_text(encoding="utf-8").strip()
                self._stamp = stamp
        except (OSError, UnicodeDecodeError):
            return False
        return True

    def current(self) -> str:
        if self._file is None:
            return self._token
        with self._lock:
            self._reload()
            return self._token


@dataclass(frozen=True)
class Credentials:
    """What a kubeconfig says about reaching and authenticating to its cluster."""

    token: str = ""
    token_file: Path | None = None
    ca_pem: bytes | None = None
    client_cert: tuple[bytes, bytes] | None = None
    insecure: bool = False


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    data, name = entry.get(f"{key}-data"), entry.get(key)
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise LabError(f"kubeconfig {key}-data is not base64: fix the kubeconfig") from None
    if name:
        path = Path(str(name)).expanduser()
        path = path if path.is_absolute() else base / path
        try:
            return path.read_bytes()
        except OSError as exc:
            raise LabError(f"cannot read {key} {path} named in the kubeconfig ({exc.strerror})") from None
    return None


def kubeconfig_credentials(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Credentials:
    """The CA, token and client certificate a kubeconfig's ``cluster`` and ``user`` name.

    Relative file names are resolved against the kubeconfig's folder, as kubectl does.
    """
    base = Path(path).resolve().parent
    ca_pem = _data_or_file(cluster, "certificate-authority", base)
    cert = _data_or_file(user, "client-certificate", base)
    key = _data_or_file(user, "client-key", base)
    if (cert is None) != (key is None):
        raise LabError("the kubeconfig user has a client certificate without its key (or the reverse)")
    token_file = None
    if user.get("tokenFile") and not user.get("token"):
        named = Path(str(user["tokenFile"])).expanduser()
        token_file = named if named.is_absolute() else base / named
    return Credentials(
        token=str(user.get("token") or ""),
        token_file=token_file,
        ca_pem=ca_pem,
        client_cert=(cert, key) if cert is not None and key is not None else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


@dataclass(frozen=True)
class ServiceAccountDir:
    """A pod's service-account folder: its files and the namespace it names."""

    folder: Path
    token_file: Path
    ca_file: Path
    namespace: str | None


def service_account_dir(value: str | None) -> ServiceAccountDir:
    """The folder ``value`` names (else Kubernetes' own path); LabError when it has no token."""
    folder = Path(value) if value else DEFAULT_SERVICEACCOUNT_DIR
    token, ca = folder / "token", folder / "ca.crt"
    if not token.is_file() or not ca.is_file():
        raise LabError(
            f"unable to load in-cluster configuration: {folder} has no token and ca.crt "
            "(is a service account token mounted in this pod?)"
        )
    try:
        namespace: str | None = (folder / "namespace").read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        namespace = None
    return ServiceAccountDir(folder, token, ca, namespace)
