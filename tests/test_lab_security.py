"""The lab on a shared machine: another local user can neither use its API nor read its secrets.

One lab (``lab up --tenants 1 --nodes 1``), then, as the ``nobody`` user in real processes:
the reproduction of an anonymous pod creation over HTTPS and plain HTTP (401 or no answer,
and nothing runs), a list of the tenants' Secrets (401), and an attempt to read every file of
the lab that holds a key, a token or a password (all refused). As the admin: the same
requests succeed, a host-command pod runs as ``nobody``, and the operator talks to the API as
its own service account.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from lab.kubeclient import ApiError, KubeClient
from tests.test_api_support import wait_for
from tests.test_experiments import Lab, running_lab

pytestmark = [pytest.mark.integration]

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # reachable by any user, unlike the project's venv under /root
PROOF = Path("/tmp/lab-security-whoami-proof")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("test-lab-security-", "--tenants", "1", "--nodes", "1", "--no-monitoring") as the_lab:
        yield the_lab


def _port(lab: Lab) -> int:
    return int(json.loads((lab.home / "cluster" / "cluster.json").read_text())["port"])


def _as_nobody(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with the system Python as ``nobody`` (a real other uid)."""
    return subprocess.run(
        [SYSTEM_PYTHON, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin", "HOME": "/"},
        cwd="/",
        check=False,
    )


_REQUEST = r"""
import json, ssl, sys, urllib.error, urllib.request
method, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
req = urllib.request.Request(url, data=body.encode() or None, method=method,
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        print(resp.status, resp.read().decode()[:300])
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode()[:300])
except Exception as exc:
    print("error", type(exc).__name__)
"""

_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "whoami"},
    "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", f"id > {PROOF}"]}],
    },
}


def test_another_user_gets_401_and_nothing_runs(lab: Lab) -> None:
    PROOF.unlink(missing_ok=True)
    port = _port(lab)
    base = f"127.0.0.1:{port}"
    body = json.dumps(_POD)
    created = _as_nobody(_REQUEST, "POST", f"https://{base}/api/v1/namespaces/default/pods", body)
    code, _, text = created.stdout.partition(" ")
    assert code == "401", created.stdout + created.stderr
    assert json.loads(text)["reason"] == "Unauthorized"
    plain = _as_nobody(_REQUEST, "POST", f"http://{base}/api/v1/namespaces/default/pods", body)
    assert not plain.stdout.startswith(("2", '401 {"kind":"Pod')), plain.stdout  # no plain-HTTP API
    secrets = _as_nobody(_REQUEST, "GET", f"https://{base}/api/v1/namespaces/tenants/secrets", "")
    assert secrets.stdout.startswith("401 "), secrets.stdout
    assert "password" not in secrets.stdout.lower()
    healthy = _as_nobody(_REQUEST, "GET", f"https://{base}/healthz", "")
    assert healthy.stdout.startswith("200 "), healthy.stdout  # only the health paths are anonymous
    admin = lab.client()
    time.sleep(2)
    assert admin.get_or_none("pods", "whoami", "default") is None
    assert not PROOF.exists()
    assert admin.list("secrets", namespace="tenants"), "the admin kubeconfig reads what nobody may not"


def _sensitive(lab: Lab) -> list[str]:
    """Strings no other user may read: every bearer token, tenant password (also as base64,
    as the API's state files hold Secrets) and the marker of a private key."""
    found = ["PRIVATE KEY"]
    for line in (lab.home / "cluster" / "pki" / "tokens.csv").read_text().splitlines():
        if line.strip():
            found.append(line.split(",", 1)[0])
    for path in (lab.home / "cluster" / "secrets").glob("*.password"):
        password = path.read_text().strip()
        found += [password, base64.b64encode(password.encode()).decode()]
    assert len(found) >= 4, found  # the admin, the node, the control plane's and a password
    return found


def test_no_file_holding_a_key_token_or_password_is_readable_by_another_user(lab: Lab) -> None:
    needles = [n.encode() for n in _sensitive(lab)]
    holding = []
    for root, _dirs, files in os.walk(lab.home):
        for name in files:
            path = Path(root) / name
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                holding.append(str(path))
    kinds = {Path(p).name for p in holding}
    assert {"kubeconfig", "tokens.csv", "ca.key", "apiserver.key", "sa.key"} <= kinds, sorted(kinds)
    assert any("/api/" in p for p in holding), "the API's state files hold the Secrets"
    readable = _as_nobody(
        "import sys\nfor p in sys.argv[1:]:\n"
        "    try:\n        open(p, 'rb').read(1); print(p)\n    except OSError:\n        pass\n",
        *holding,
    )
    assert readable.returncode == 0, readable.stderr
    assert readable.stdout.split() == [], f"readable by nobody: {readable.stdout}"
    listing = _as_nobody("import os, sys; print(os.listdir(sys.argv[1]))", str(lab.home))
    assert listing.returncode != 0 and "PermissionError" in listing.stderr


def _process_of(pod: str) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            if (proc.info["environ"] or {}).get("HOSTNAME") == pod and "sleep" in " ".join(
                proc.info["cmdline"] or []
            ):
                return proc
        except psutil.Error:
            continue
    return None


def test_a_host_command_pod_runs_as_nobody_and_the_operator_as_its_service_account(lab: Lab) -> None:
    admin = lab.client()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleeper"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "sleep 120"]}]},
    }
    admin.create("pods", pod, "default")
    try:
        proc = wait_for(lambda: _process_of("sleeper"), 30)
        assert proc.uids().real == NOBODY and proc.gids().real == NOBODY
    finally:
        admin.delete("pods", "sleeper", "default")
    operator = next(
        p
        for p in psutil.process_iter(["cmdline", "environ"])
        if "lab.operator" in (p.info["cmdline"] or [])
        and str(lab.home) in json.dumps(p.info["environ"] or {})
    )
    folder = Path(operator.environ()["LAB_SERVICEACCOUNT_DIR"])
    assert (folder / "token").stat().st_mode & 0o077 == 0
    token = (folder / "token").read_text().strip()
    answer = requests.post(
        f"https://127.0.0.1:{_port(lab)}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers={"Authorization": f"Bearer {token}"},
        verify=str(folder / "ca.crt"),
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    user = answer.json()["status"]["userInfo"]
    assert user["username"] == "system:serviceaccount:mssql-operator:mssql-operator"
    as_operator = KubeClient(
        f"https://127.0.0.1:{_port(lab)}", token, ca_pem=(folder / "ca.crt").read_bytes()
    )
    with pytest.raises(ApiError) as refused:
        as_operator.list("configmaps", namespace="kube-system")  # it may only get lab-identity
    assert refused.value.code == 403
