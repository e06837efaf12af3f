"""A pod's service-account token, projected as the kubelet projects ``kube-api-access-*``.

Before a pod's first container starts, the kubelet decides whether the pod gets a token:
the pod's ``automountServiceAccountToken``, else its ServiceAccount's (``spec.serviceAccountName``,
else ``default``), else yes. A pod that gets one but whose ServiceAccount does not exist does
not start (``CreateContainerConfigError``, ``serviceaccount "x" not found``); the kubelet
retries, so the pod starts once the account exists.

The token comes from the TokenRequest API (``POST
/api/v1/namespaces/NS/serviceaccounts/SA/token``, ``authentication.k8s.io/v1``, bound to
the pod by ``spec.boundObjectRef`` {kind Pod, name, uid}, ``expirationSeconds`` 3607, the
kubelet's own value), so it stops working when the pod or the account is deleted. It is
written with ``ca.crt`` (the CA the kubelet trusts, from its kubeconfig; no file when the
kubelet itself uses plain HTTP) and ``namespace`` into
``<pod folder>/serviceaccount/<uid>/`` for each uid the pod's containers run as: the folder
0700 and the files 0600, owned by that uid and its group, as the kubelet makes a projected
token 0600 for the pod's ``runAsUser``. Containers find it through ``LAB_SERVICEACCOUNT_DIR``
(the lab's ``/var/run/secrets/kubernetes.io/serviceaccount``, which it cannot bind-mount).

As the kubelet's token manager does, the token is requested again once 80% of its lifetime
has passed (or 24 hours, whichever is first), measured from the expiry the server returned;
a failed refresh keeps the old token and is retried every :data:`RETRY_AFTER` seconds. Each
file is replaced atomically (written aside, then renamed), so a reader never sees half a
token. The folder goes with the pod's folder when the pod is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.times import parse_time
from lab.kubeclient import ApiError, KubeClient
from lab.kubelet.podspec import TRAVERSE_ONLY, ConfigError, make_dir
from lab.kubelet.run_as import RunAs

__all__ = [
    "ENV",
    "EXPIRATION_SECONDS",
    "PodToken",
    "RETRY_AFTER",
    "service_account_name",
    "token_request",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

#: The container environment variable naming the token folder.
ENV = "LAB_SERVICEACCOUNT_DIR"
#: What the kubelet asks for (an hour and 7 s: kube-apiserver tells its own tokens by it).
EXPIRATION_SECONDS = 3607
#: The share of a token's lifetime after which it is requested again.
REFRESH_FRACTION = 0.8
#: The kubelet's maxTTL: a token is refreshed at least this often (seconds).
MAX_AGE = 24 * 3600.0
#: Seconds between attempts after a failed refresh.
RETRY_AFTER = 10.0


def service_account_name(pod: Obj) -> str:
    """The pod's ServiceAccount: ``serviceAccountName``, else ``serviceAccount``, else ``default``."""
    spec = pod.get("spec") or {}
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def token_request(pod: Obj, expiration_seconds: int = EXPIRATION_SECONDS) -> Obj:
    """The ``authentication.k8s.io/v1`` TokenRequest body the kubelet sends for ``pod``."""
    md = pod.get("metadata") or {}
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [],
            "expirationSeconds": expiration_seconds,
            "boundObjectRef": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": str(md.get("name", "")),
                "uid": str(md.get("uid", "")),
            },
        },
    }


def _write(folder: Path, name: str, data: bytes, owner: tuple[int, int] | None) -> None:
    """``folder/name`` replaced atomically, mode 0600, owned by ``owner`` (uid, gid) when given."""
    tmp = folder / f".{name}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, folder / name)


class PodToken:
    """One pod's token (see the module doc): :meth:`folder_for` before a container starts,
    :meth:`refresh_if_due` every tick."""

    def __init__(
        self,
        client: KubeClient,
        pod: Obj,
        pod_dir: Path,
        ca_pem: bytes,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        expiration_seconds: int = EXPIRATION_SECONDS,
    ) -> None:
        md = pod.get("metadata") or {}
        self.client = client
        self.pod = pod
        self.namespace = str(md.get("namespace", "default"))
        self.account = service_account_name(pod)
        self.root = pod_dir / "serviceaccount"
        self.ca_pem = ca_pem
        self.clock = clock
        self.monotonic = monotonic
        self.expiration_seconds = expiration_seconds
        self.enabled: bool | None = None
        self.token: str | None = None
        self.refresh_at = 0.0
        self.requests = 0
        self._owners: dict[int, tuple[int, int]] = {}

    # -- deciding --------------------------------------------------------------------------------

    def _not_found(self) -> ConfigError:
        return ConfigError("CreateContainerConfigError", f'serviceaccount "{self.account}" not found')

    def _decide(self) -> bool:
        pod_says = (self.pod.get("spec") or {}).get("automountServiceAccountToken")
        if isinstance(pod_says, bool):
            return pod_says
        account = self.client.get_or_none("serviceaccounts", self.account, self.namespace)
        if account is None:
            raise self._not_found()
        return account.get("automountServiceAccountToken") is not False

    # -- the token ---------------------------------------------------------------------------------

    def _request(self) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{self.account}/token"
        try:
            answer = self.client.request("POST", path, token_request(self.pod, self.expiration_seconds))
        except ApiError as exc:
            message = str(exc).split(": ", 1)[-1]
            if exc.code == 404 and ("serviceaccount" in message.lower() or not message.strip()):
                raise self._not_found() from None
            if exc.code in (400, 403, 404, 422):
                raise ConfigError(
                    "CreateContainerConfigError",
                    f'failed to fetch token for serviceaccount "{self.account}": {message}',
                ) from None
            raise
        status = (answer or {}).get("status") if isinstance(answer, dict) else None
        token = (status or {}).get("token")
        if not isinstance(token, str) or not token:
            raise ConfigError(
                "CreateContainerConfigError",
                f'the TokenRequest for serviceaccount "{self.account}" returned no token',
            )
        now, mono = self.clock(), self.monotonic()
        seconds = (answer.get("spec") or {}).get("expirationSeconds") or self.expiration_seconds
        expires = parse_time((status or {}).get("expirationTimestamp")) or now + float(seconds)
        due = min(expires - (1.0 - REFRESH_FRACTION) * float(seconds) - now, MAX_AGE)
        self.token, self.refresh_at = token, mono + max(0.0, due)
        self.requests += 1

    def _write_folder(self, uid: int, owner: tuple[int, int]) -> Path:
        assert self.token is not None
        make_dir(self.root, TRAVERSE_ONLY)
        folder = self.root / str(uid)
        folder.mkdir(mode=0o700, exist_ok=True)
        me = (os.geteuid(), os.getegid())
        chown = owner if owner != me else None
        if chown is not None:
            os.chown(folder, *chown)
        folder.chmod(0o700)
        _write(folder, "token", self.token.encode(), chown)
        _write(folder, "namespace", self.namespace.encode(), chown)
        if self.ca_pem:
            _write(folder, "ca.crt", self.ca_pem, chown)
        return folder

    def folder_for(self, run_as: RunAs) -> Path | None:
        """The token folder for a container running as ``run_as`` (written when new); None when the
        pod gets no token. ConfigError when it cannot start yet; ApiError when the server failed."""
        if self.enabled is None:
            self.enabled = self._decide()
        if not self.enabled:
            return None
        if self.token is None:
            self._request()
        if run_as.uid not in self._owners:
            owner = (run_as.uid, run_as.gid)
            folder = self._write_folder(run_as.uid, owner)
            self._owners[run_as.uid] = owner
            return folder
        return self.root / str(run_as.uid)

    def refresh_if_due(self) -> bool:
        """Request a new token when 80% of the current one's lifetime has passed; True when renewed."""
        if self.token is None or self.monotonic() < self.refresh_at:
            return False
        try:
            self._request()
            for uid, owner in self._owners.items():
                self._write_folder(uid, owner)
        except (ApiError, ConfigError, OSError) as exc:
            self.refresh_at = self.monotonic() + RETRY_AFTER
            log.warning(
                "%s/%s: could not refresh the token of serviceaccount %s (keeping the old one): %s",
                self.namespace,
                (self.pod.get("metadata") or {}).get("name"),
                self.account,
                exc,
            )
            return False
        return True
