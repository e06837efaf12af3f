"""The API server's settings: where it listens, keeps state, reads policy and logs.

``data_dir`` None keeps everything in memory (tests of pure semantics); a folder
makes state durable (write-ahead log + snapshot, see :mod:`lab.api.wal`).
``pod_removal_grace`` is for a lab without a kubelet: None (the default, like a real
cluster) leaves a terminating pod in place until its kubelet confirms with a DELETE
using ``gracePeriodSeconds=0``; a number makes the server remove a terminating pod
itself after ``min(its grace period, pod_removal_grace)`` seconds; 0 removes at once.

Security (kube-apiserver's flags of the same names): ``tls_cert_file``/``tls_key_file``
serve HTTPS; ``client_ca_file`` verifies client certificates (CN the user, O the groups);
``token_auth_file`` is the static token CSV (:mod:`lab.api.tokens`);
``service_account_key_file`` signs and verifies service-account tokens
(:mod:`lab.api.sa_tokens`) for ``service_account_issuer`` and ``api_audiences``.
``insecure_allow_all`` is the old test server: no credentials asked, every request is
``lab-admin`` in ``system:masters``; it cannot be combined with a token file or a client
CA (a service-account key then only issues tokens).
With nothing of this set, :func:`lab.api.server.build_app` serves insecurely only when its
caller allows it (unit tests); the lab's control plane never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.api.sa_tokens import DEFAULT_ISSUER

__all__ = ["Settings"]


@dataclass
class Settings:
    """Everything :func:`lab.api.server.build_app` needs; the CLI flags map one to one."""

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | None = None
    policy_file: Path | None = None
    logs_dir: Path | None = None
    pod_removal_grace: float | None = None
    watch_history: int = 10_000
    #: Seconds watch events are kept for resumption (etcd compaction: kube-apiserver compacts
    #: every 5 minutes); older resourceVersions get 410 ``too old resource version``.
    #: ``watch_history`` still caps the count. 0 or less: bounded by the count only.
    watch_window: float = 300.0
    compact_bytes: int = 8 * 1024 * 1024
    gc_interval: float = 2.0
    max_body_bytes: int = 3 * 1024 * 1024
    #: DefaultTolerationSeconds admission: the ``tolerationSeconds`` of the not-ready and
    #: unreachable NoExecute tolerations a pod without its own gets at creation
    #: (kube-apiserver's ``--default-not-ready-toleration-seconds``, 300 s by default).
    default_toleration_seconds: int = 300
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    client_ca_file: Path | None = None
    token_auth_file: Path | None = None
    service_account_key_file: Path | None = None
    service_account_issuer: str = DEFAULT_ISSUER
    #: The audiences tokens must name (``--api-audiences``); empty: the issuer.
    api_audiences: tuple[str, ...] = ()
    insecure_allow_all: bool = False

    @property
    def tls(self) -> bool:
        """Whether the server serves HTTPS."""
        return self.tls_cert_file is not None and self.tls_key_file is not None

    def credential_sources(self) -> list[str]:
        """The flags of the credential sources that are set (empty: nothing authenticates)."""
        named = (
            ("--token-auth-file", self.token_auth_file),
            ("--service-account-key-file", self.service_account_key_file),
            ("--client-ca-file", self.client_ca_file),
        )
        return [flag for flag, value in named if value is not None]

    def resolved_logs_dir(self) -> Path | None:
        """Where pod logs are read: ``logs_dir``, else ``<data_dir>/logs``, else none."""
        if self.logs_dir is not None:
            return self.logs_dir
        if self.data_dir is not None:
            return self.data_dir / "logs"
        return None
