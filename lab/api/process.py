"""Run the API server as a child process (what the lab control plane and tests do).

:func:`start_api_server` starts ``python -m lab.api`` and returns once it printed its
``listening on`` line; the server's stderr goes to ``<data>/apiserver.log`` (or a temp
file without a data folder). :meth:`ApiServerProcess.stop` sends SIGTERM (clean stop),
:meth:`ApiServerProcess.kill` SIGKILL (what a crash looks like to the state on disk).
A temp log is removed after a clean stop and kept (its path in ``log_path``) otherwise.

Security: given ``token_auth_file`` or ``client_ca_file`` the server authenticates (and
also accepts service-account tokens when it has a signing key); otherwise it is started
with ``--insecure-allow-all`` (the test server: every request is the admin; a signing key
still lets it issue tokens). ``pki`` (from :func:`lab.api.pki.ensure_pki`) serves HTTPS
with its certificate and signs service-account tokens with its key; ``url`` is then
``https://``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from lab.api.pki import Pki
from lab.errors import LabError
from lab.paths import project_root

__all__ = ["ApiServerProcess", "start_api_server", "spawn_listening"]


class ApiServerProcess:
    """A running ``python -m lab.api``; ``ca_pem`` is the CA its clients trust (HTTPS from a ``pki``)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        url: str,
        log_path: Path,
        temp_log: bool = False,
        ca_pem: bytes | None = None,
    ) -> None:
        self.proc = proc
        self.url = url
        self.ca_pem = ca_pem
        self.port = int(url.rsplit(":", 1)[1])
        self.log_path = log_path
        self.temp_log = temp_log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` s (then SIGKILL); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.temp_log and self.proc.returncode == 0:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ApiServerProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_api_server(
    data_dir: Path | None,
    *,
    port: int = 0,
    policy: Path | None = None,
    logs_dir: Path | None = None,
    pod_removal_grace: float | None = None,
    watch_history: int | None = None,
    timeout: float = 15.0,
    verbose: bool = False,
    pki: Pki | None = None,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    client_ca_file: Path | None = None,
    token_auth_file: Path | None = None,
    service_account_key_file: Path | None = None,
) -> ApiServerProcess:
    """Start ``python -m lab.api`` with these settings; LabError if it does not come up.

    ``pki`` fills in ``tls_cert_file``, ``tls_key_file`` and ``service_account_key_file``
    when they are not given. Without ``token_auth_file`` or ``client_ca_file`` the server
    runs with ``--insecure-allow-all``.
    """
    args = [sys.executable, "-m", "lab.api", "--port", str(port)]
    if pki is not None:
        tls_cert_file = tls_cert_file or pki.serving_cert
        tls_key_file = tls_key_file or pki.serving_key
        service_account_key_file = service_account_key_file or pki.sa_key
    flags = (
        ("--tls-cert-file", tls_cert_file),
        ("--tls-private-key-file", tls_key_file),
        ("--client-ca-file", client_ca_file),
        ("--token-auth-file", token_auth_file),
        ("--service-account-key-file", service_account_key_file),
    )
    for flag, value in flags:
        if value is not None:
            args += [flag, str(value)]
    if token_auth_file is None and client_ca_file is None:
        args.append("--insecure-allow-all")
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--data", str(data_dir)]
        log_path = data_dir / "apiserver.log"
    else:
        handle, name = tempfile.mkstemp(prefix="lab-apiserver-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    if policy is not None:
        args += ["--policy", str(policy)]
    if logs_dir is not None:
        args += ["--logs", str(logs_dir)]
    if pod_removal_grace is not None:
        args += ["--pod-removal-grace", str(pod_removal_grace)]
    if watch_history is not None:
        args += ["--watch-history", str(watch_history)]
    if verbose:
        args.append("--verbose")
    proc, url = spawn_listening(args, log_path, timeout, "the lab API server")
    ca_pem = pki.ca_pem() if pki is not None else None
    return ApiServerProcess(proc, url, log_path, temp_log=data_dir is None, ca_pem=ca_pem)


def spawn_listening(
    args: list[str], log_path: Path, timeout: float, what: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``args`` (stderr to ``log_path``) and wait for its ``listening on <url>`` line.

    Returns the child and the URL; LabError with the log's last line if it does not come up.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project_root()), env.get("PYTHONPATH", "")) if p)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log_file, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            break
        line += chunk
    text = line.decode(errors="replace").strip()
    if not text.startswith("listening on "):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
        raise LabError(f"{what} did not start ({' '.join(tail) or 'no output'}); see {log_path}")
    return proc, text.removeprefix("listening on ")
