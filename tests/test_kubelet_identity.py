"""Who a pod's processes are, and how a pod proves who it is.

The pure rules (the user a container runs as, an unprivileged container's environment, the
``python`` rule, where pods' folders go, the kubelet's kubeconfig and flags, the token's
refresh schedule, the ServiceAccount controller's namespace filter) are tested directly.
The rest runs a real kubelet process (``python -m lab.kubelet --kubeconfig``) against a real
HTTPS API server that authenticates (static tokens, service-account tokens signed with its
key) and checks the real processes with psutil: uid 65534 by default, ``runAsUser`` honoured,
the token folder 0700/0600 owned by the pod's uid, and the token authenticating as the
pod's service account.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab.api import start_api_server, write_kubeconfig
from lab.api.identity import AUTHENTICATED, MASTERS
from lab.api.pki import ensure_pki
from lab.api.tokens import ensure_token
from lab.controllers.serviceaccounts import ServiceAccountsController, is_active_namespace
from lab.errors import LabError
from lab.kubeclient import ApiError, KubeClient
from lab.kubelet import images
from lab.kubelet.__main__ import parse_args
from lab.kubelet.config import STATE_MARKER, prune_fallbacks, runtime_dir_for, traversable_by_all
from lab.kubelet.credentials import api_access
from lab.kubelet.podspec import ConfigError
from lab.kubelet.run_as import CONTAINER_PATH, NOBODY, NOGROUP, RunAs, run_as_for, unprivileged_env
from lab.kubelet.sa_token import ENV, EXPIRATION_SECONDS, RETRY_AFTER, PodToken
from lab.paths import lab_dir, project_root
from tests.lab_fixtures import kubelet_node
from tests.test_api_support import wait_for

Obj = dict[str, Any]
NS = "default"
NODE = "identity-node"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="switching users needs root (the lab's kubelet is root)")


#: A process in a pod asking who it is with the operator's in-cluster client (then sleeping).
IN_CLUSTER = (
    "import os, time; from lab.kubeclient import KubeClient; "
    "client = KubeClient.in_cluster(os.environ); "
    "body = {'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'}; "
    "review = client.request('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', body); "
    "print('user', review['status']['userInfo']['username'], flush=True); time.sleep(600)"
)


def _pod(container: Obj | None = None, **spec: Any) -> Obj:
    main: Obj = {"name": "main", "image": "busybox", "command": ["sleep", "600"], **(container or {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": NS, "uid": "u-1"},
        "spec": {"containers": [main], **spec},
    }


# -- who a container runs as ------------------------------------------------------------------


def test_host_commands_run_as_nobody_unless_the_security_context_says_otherwise() -> None:
    pod = _pod()
    main = pod["spec"]["containers"][0]
    assert run_as_for(pod, main, True, True) == RunAs(NOBODY, NOGROUP, ())
    assert run_as_for(_pod(securityContext={"runAsUser": 1234}), main, True, True).uid == 1234
    explicit = _pod(securityContext={"runAsUser": 1234, "runAsGroup": 2345, "supplementalGroups": [7, 7]})
    assert run_as_for(explicit, main, True, True) == RunAs(1234, 2345, (7,))
    with_fs = _pod(securityContext={"runAsUser": 1234, "fsGroup": 9, "supplementalGroups": [7]})
    assert run_as_for(with_fs, main, True, True).groups == (7, 9)
    mine = {**main, "securityContext": {"runAsUser": 42, "runAsGroup": 43}}
    assert run_as_for(explicit, mine, True, True) == RunAs(42, 43, (7,)), "the container's over the pod's"
    assert run_as_for(_pod(securityContext={"runAsGroup": 5}), main, True, True) == RunAs(NOBODY, 5, ())
    assert run_as_for(_pod(securityContext={"runAsUser": 65534}), main, True, True).gid == NOGROUP
    assert not run_as_for(pod, main, True, True).as_kubelet
    assert run_as_for(pod, main, True, True).popen_kwargs() == {
        "user": NOBODY,
        "group": NOGROUP,
        "extra_groups": [],
    }


def test_a_kubelet_that_cannot_switch_runs_everything_as_itself() -> None:
    pod = _pod(securityContext={"runAsUser": 1234})
    me = run_as_for(pod, pod["spec"]["containers"][0], True, switch=False)
    assert (me.uid, me.switch, me.as_kubelet, me.popen_kwargs()) == (os.geteuid(), False, True, {})


def test_lab_images_run_as_the_kubelet_and_refuse_another_user() -> None:
    engine = {"name": "db", "image": "mssql-lab/engine:15"}
    assert not images.is_host_command(engine)
    assert images.is_host_command({**engine, "command": ["sh"]}), "a command replaces the entry point"
    assert images.is_host_command({"image": "busybox"})
    assert run_as_for(_pod(), engine, False, True).as_kubelet
    with pytest.raises(ConfigError) as info:
        run_as_for(_pod(securityContext={"runAsUser": 10001}), engine, False, True)
    assert info.value.reason == "CreateContainerConfigError"
    assert "runs as the kubelet's user" in info.value.message and "remove them" in info.value.message


@needs_root
def test_run_as_non_root_refuses_root_with_the_kubelets_words() -> None:
    pod = _pod(securityContext={"runAsNonRoot": True})
    main = pod["spec"]["containers"][0]
    assert run_as_for(pod, main, True, True).uid == NOBODY
    for container, host in (({**main, "securityContext": {"runAsUser": 0}}, True), ({"image": "x"}, False)):
        with pytest.raises(ConfigError, match="container has runAsNonRoot and image will run as root"):
            run_as_for(pod, {"name": "c", **container}, host, True)


def test_ids_that_are_not_whole_numbers_are_one_line_errors() -> None:
    for bad in ("1000", -1, True, 1.5):
        with pytest.raises(ConfigError, match="is not a user or group id: give a whole number") as info:
            run_as_for(_pod(securityContext={"runAsUser": bad}), {"name": "c"}, True, True)
        assert "\n" not in info.value.message


def test_an_unprivileged_container_gets_an_images_environment() -> None:
    env = {"PATH": "/root/.venv/bin:/usr/bin", "VIRTUAL_ENV": "/root/.venv", "PYTHONPATH": "/root/x"}
    env.update({"TMPDIR": "/root/tmp", "HOME": "/root", "LANG": "C.UTF-8", "HARNESS_X": "1"})
    assert unprivileged_env(env, "/pods/u/home/65534") == {
        "PATH": CONTAINER_PATH,
        "HOME": "/pods/u/home/65534",
        "LANG": "C.UTF-8",
        "HARNESS_X": "1",
    }


def test_python_is_this_interpreter_only_for_the_kubelets_uid() -> None:
    argv = ["/any/where/python", "-c", "pass"]
    assert images.host_argv(argv, own_interpreter=True) == [sys.executable, "-c", "pass"]
    host = images.host_argv(["python3", "-c", "pass"], own_interpreter=False)
    assert host[0] != sys.executable and Path(host[0]).name.startswith("python3")
    assert str(Path(host[0]).parent) in CONTAINER_PATH.split(":")
    assert images.host_argv(["sh", "-c", "x"], own_interpreter=False) == ["sh", "-c", "x"]
    launch = images.launch_for({"image": "busybox", "command": ["python"], "args": ["-V"]}, {}, False)
    assert launch.argv == [host[0], "-V"]


# -- where pods' folders go, and how the kubelet reaches the API server --------------------------


def test_pods_folders_leave_a_state_folder_others_cannot_traverse(tmp_path: Path) -> None:
    assert not traversable_by_all(tmp_path), "pytest's folders are private to root"
    fallback = runtime_dir_for(tmp_path / "state")
    assert fallback.parent == Path("/var/tmp") and fallback.name.startswith("lab-kubelet-")
    assert runtime_dir_for(tmp_path / "state") == fallback, "the same folder after a restart"
    assert runtime_dir_for(tmp_path / "other") != fallback
    with tempfile.TemporaryDirectory(dir=lab_dir()) as name:
        shared = Path(name)
        shared.chmod(0o711)
        (shared / "state").mkdir()
        assert traversable_by_all(shared / "state")
        assert runtime_dir_for(shared / "state") == shared / "state"
        shared.chmod(0o700)
        assert not traversable_by_all(shared / "state")


def test_fallback_folders_of_vanished_state_folders_are_pruned(tmp_path: Path) -> None:
    gone = Path(tempfile.mkdtemp(prefix="lab-kubelet-test-", dir="/var/tmp"))
    kept = Path(tempfile.mkdtemp(prefix="lab-kubelet-test-", dir="/var/tmp"))
    mine = Path(tempfile.mkdtemp(prefix="lab-kubelet-test-", dir="/var/tmp"))
    try:
        (gone / "pods" / "u").mkdir(parents=True)
        (gone / STATE_MARKER).write_text(f"{tmp_path / 'removed-state'}\n")
        (kept / STATE_MARKER).write_text(f"{tmp_path}\n")
        (mine / STATE_MARKER).write_text(f"{tmp_path / 'removed-too'}\n")
        removed = prune_fallbacks(keep=mine)
        assert gone in removed and not gone.exists()
        assert kept.exists() and mine.exists(), "a live state folder's, and the kubelet's own, stay"
    finally:
        for folder in (gone, kept, mine):
            shutil.rmtree(folder, ignore_errors=True)


def test_the_kubeconfig_gives_server_token_and_ca(tmp_path: Path) -> None:
    ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    path = write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:6443", token="t0k", ca_pem=ca, user="node")
    access = api_access(path)
    assert (access.server, access.token, access.ca_pem, access.has_credentials) == (
        "https://127.0.0.1:6443",
        "t0k",
        ca,
        True,
    )
    bare = api_access(write_kubeconfig(tmp_path / "bare", "http://127.0.0.1:1"))
    assert not bare.has_credentials and bare.ca_pem == b""
    with pytest.raises(LabError, match="an https server without certificate-authority") as info:
        api_access(write_kubeconfig(tmp_path / "noca", "https://127.0.0.1:1", token="t"))
    assert "\n" not in str(info.value)
    (tmp_path / "junk").write_text("current-context: x\n")
    with pytest.raises(LabError, match="no context named 'x'"):
        api_access(tmp_path / "junk")


def test_kubelet_flags_take_a_kubeconfig_or_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:7", token="node-token")
    cfg, _ = parse_args(["--node", "n", "--kubeconfig", str(kubeconfig), "--state", str(tmp_path / "s")])
    assert (cfg.server, cfg.token, cfg.service_account_tokens) == ("http://127.0.0.1:7", "node-token", True)
    bare, _ = parse_args(["--node", "n", "--server", "http://127.0.0.1:7/", "--state", str(tmp_path / "s")])
    assert (bare.server, bare.service_account_tokens) == ("http://127.0.0.1:7", False)
    on, _ = parse_args(["--node", "n", "--server", "http://h:1", "--state", "s", "--service-account-tokens"])
    assert on.service_account_tokens is True
    for argv, problem in (
        (["--node", "n", "--state", "s"], "one of the arguments --kubeconfig --server is required"),
        (["--node", "n", "--state", "s", "--server", "h:1"], "is not an http(s) URL"),
        (["--node", "n", "--state", "s", "--kubeconfig", str(tmp_path / "none")], "cannot read it"),
    ):
        with pytest.raises(SystemExit) as info:
            parse_args(argv)
        assert info.value.code == 2
        assert problem in capsys.readouterr().err


# -- the token's schedule (a stand-in API client: the real server is used further down) ----------


class _Api:
    """Answers a TokenRequest like kube-apiserver (expiry = now + seconds), counting calls."""

    def __init__(self, now: list[float], account: Obj | None) -> None:
        self.now = now
        self.account = account
        self.fail: ApiError | None = None
        self.issued = 0

    def get_or_none(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        return self.account

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> Obj:
        if self.fail is not None:
            raise self.fail
        self.issued += 1
        seconds = body["spec"]["expirationSeconds"]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now[0] + seconds))
        return {
            "spec": body["spec"],
            "status": {"token": f"token-{self.issued}", "expirationTimestamp": stamp},
        }


def test_the_token_is_requested_once_and_refreshed_at_80_percent(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    api = _Api(now, {"metadata": {"name": "default"}})
    me = RunAs(os.geteuid(), os.getegid(), (), switch=False)
    token = PodToken(
        api,  # type: ignore[arg-type]
        _pod(),
        tmp_path / "pod",
        b"CA",
        clock=lambda: now[0],
        monotonic=lambda: now[0],
    )
    folder = token.folder_for(me)
    assert folder == tmp_path / "pod" / "serviceaccount" / str(me.uid)
    assert (folder / "token").read_text() == "token-1" and (folder / "ca.crt").read_bytes() == b"CA"
    assert (folder / "namespace").read_text() == NS
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((folder / f).stat().st_mode) == 0o600 for f in ("token", "ca.crt", "namespace"))
    assert token.folder_for(me) == folder and api.issued == 1, "one token per pod, not per container"
    now[0] += 0.8 * EXPIRATION_SECONDS - 2
    assert not token.refresh_if_due()
    now[0] += 3
    assert token.refresh_if_due() and (folder / "token").read_text() == "token-2"
    now[0] += 0.8 * EXPIRATION_SECONDS + 1
    api.fail = ApiError(0, "Unreachable", "down")
    assert not token.refresh_if_due() and (folder / "token").read_text() == "token-2", "the old one kept"
    now[0] += RETRY_AFTER / 2
    api.fail = None
    assert not token.refresh_if_due(), "a failed refresh waits before it tries again"
    now[0] += RETRY_AFTER
    assert token.refresh_if_due() and (folder / "token").read_text() == "token-3"


def test_no_token_when_automount_is_off_and_none_without_the_account(tmp_path: Path) -> None:
    me = RunAs(os.geteuid(), os.getegid(), (), switch=False)
    off = _Api([0.0], {"metadata": {"name": "default"}, "automountServiceAccountToken": False})
    assert PodToken(off, _pod(), tmp_path, b"").folder_for(me) is None  # type: ignore[arg-type]
    on_by_pod = PodToken(off, _pod(automountServiceAccountToken=True), tmp_path, b"")  # type: ignore[arg-type]
    assert on_by_pod.folder_for(me) is not None, "the pod's own setting wins over its account's"
    assert not (tmp_path / "serviceaccount" / str(me.uid) / "ca.crt").exists(), "no CA, no ca.crt"
    missing = PodToken(_Api([0.0], None), _pod(serviceAccountName="ghost"), tmp_path, b"")  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        missing.folder_for(me)
    assert (info.value.reason, info.value.message) == (
        "CreateContainerConfigError",
        'serviceaccount "ghost" not found',
    )
    off_by_pod = _Api([0.0], None)
    assert (
        PodToken(off_by_pod, _pod(automountServiceAccountToken=False), tmp_path, b"").folder_for(me) is None
    )  # type: ignore[arg-type]


def test_only_active_namespaces_get_an_account() -> None:
    assert is_active_namespace({"metadata": {"name": "a"}, "status": {"phase": "Active"}})
    assert not is_active_namespace({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}})
    assert not is_active_namespace({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}})


# -- a real kubelet against a real API server that authenticates --------------------------------


class SecureNode:
    """An HTTPS API server with static tokens and a service-account key, and one kubelet on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = ensure_pki(root / "pki")
        tokens = root / "pki" / "tokens.csv"
        admin = ensure_token(tokens, "lab-admin", "lab-admin", (MASTERS, AUTHENTICATED))
        # The node is also a master so that this test depends on authentication only (the
        # node's own RBAC is the bootstrap policy's, tested with it).
        node_user = f"system:node:{NODE}"
        node_token = ensure_token(tokens, node_user, node_user, ("system:nodes", MASTERS, AUTHENTICATED))
        self.cluster = root / "cluster"
        self.logs = self.cluster / "logs"
        self.state = self.cluster / "nodes" / NODE
        self.api = start_api_server(
            self.cluster / "api", logs_dir=self.logs, pki=self.pki, token_auth_file=tokens
        )
        assert self.api.url.startswith("https://")
        self.ca = self.pki.ca_pem()
        self.client = KubeClient(self.api.url, admin, ca_pem=self.ca)
        self.kubeconfig = write_kubeconfig(
            self.state / "kubeconfig", self.api.url, token=node_token, ca_pem=self.ca, user=node_user
        )
        argv = [sys.executable, "-m", "lab.kubelet", "--node", NODE, "--kubeconfig", str(self.kubeconfig)]
        argv += ["--state", str(self.state), "--backoff-base", "0.2", "--backoff-max", "1", "--verbose"]
        env = {**os.environ, "PYTHONPATH": str(project_root())}
        with open(root / "kubelet.log", "ab") as log:
            self.kubelet = subprocess.Popen(argv, stderr=log, env=env)

    def close(self) -> None:
        if self.kubelet.poll() is None:
            self.kubelet.send_signal(signal.SIGTERM)
            try:
                self.kubelet.wait(30)
            except subprocess.TimeoutExpired:
                self.kubelet.kill()
                self.kubelet.wait(5)
        self.api.stop()


@pytest.fixture(scope="module")
def node() -> Iterator[SecureNode]:
    with kubelet_node("test-identity-", SecureNode) as lab_node:
        ServiceAccountsController(lab_node.client).reconcile_once()
        _let_service_accounts_ask_who_they_are(lab_node.client)
        yield lab_node
        log = (lab_node.root / "kubelet.log").read_text()
        assert lab_node.kubelet.poll() is None, log[-2000:]
        lab_node.kubelet.send_signal(signal.SIGTERM)
        assert lab_node.kubelet.wait(30) == 0, log[-2000:]
        assert "Traceback" not in log and "could not refresh" not in log, log[-2000:]


def _let_service_accounts_ask_who_they_are(api: KubeClient) -> None:
    """RBAC for SelfSubjectReview, whether or not the server's bootstrap policy grants it."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "test-whoami"},
        "rules": [
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "test-whoami"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "test-whoami"},
        "subjects": [
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:serviceaccounts"}
        ],
    }
    api.request("POST", f"{rbac}/clusterroles", role)
    api.request("POST", f"{rbac}/clusterrolebindings", binding)


def _running(node: SecureNode, name: str, timeout: float = 15.0) -> Obj:
    def check() -> Obj | None:
        pod = node.client.get_or_none("pods", name, NS) or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return pod if statuses and "running" in (statuses[0].get("state") or {}) else None

    return dict(wait_for(check, timeout))


def _process(pod: Obj) -> psutil.Process:
    return psutil.Process(int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("lab://")))


def _delete(node: SecureNode, *names: str) -> None:
    for name in names:
        node.client.delete("pods", name, NS, grace=1)
    for name in names:
        wait_for(lambda n=name: node.client.get_or_none("pods", n, NS) is None, 15)  # type: ignore[misc]


def _whoami(node: SecureNode, token: str) -> str:
    client = KubeClient(node.api.url, token, ca_pem=node.ca)
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    review = client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body)
    return str(review["status"]["userInfo"]["username"])


def _owned(path: Path, uid: int, mode: int) -> bool:
    info = path.stat()
    return info.st_uid == uid and stat.S_IMODE(info.st_mode) == mode


@pytest.mark.integration
@needs_root
def test_host_command_pods_run_unprivileged_with_their_own_token(node: SecureNode) -> None:
    write = "import json, os; open(json.loads(os.environ['LAB_MOUNTS'])['/data'] + '/x', 'w').write('hi')"
    script = f'python3 -c "{write}" && touch in-home && sleep 600'
    default = _pod(
        {"command": ["sh", "-c", script], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    )
    default["spec"].update(nodeName=NODE, volumes=[{"name": "data", "emptyDir": {}}])
    default["metadata"] = {"name": "as-nobody"}
    chosen = _pod(securityContext={"runAsUser": 1234, "runAsGroup": 2345, "supplementalGroups": [3456]})
    chosen["spec"]["nodeName"], chosen["metadata"] = NODE, {"name": "as-1234"}
    root = _pod({"command": ["python3", "-c", IN_CLUSTER]})
    root["spec"].update(nodeName=NODE, securityContext={"runAsUser": 0})
    root["metadata"] = {"name": "as-root"}
    for pod in (default, chosen, root):
        node.client.create("pods", pod, NS)
    nobody, other, admin = (_running(node, n) for n in ("as-nobody", "as-1234", "as-root"))

    proc = _process(nobody)
    assert (proc.uids().real, proc.uids().effective, proc.gids().real) == (NOBODY, NOBODY, NOGROUP)
    env = proc.environ()
    home = Path(env["HOME"])
    assert env["PATH"] == CONTAINER_PATH and "VIRTUAL_ENV" not in env and env["LAB_SCRATCH"] == str(home)
    assert _owned(home, NOBODY, 0o700) and Path(proc.cwd()) == home
    wait_for((home / "in-home").exists, 5)
    data = Path(json.loads(env["LAB_MOUNTS"])["/data"])
    wait_for((data / "x").exists, 5)
    assert stat.S_IMODE(data.stat().st_mode) == 0o777, "emptyDir is 0777, as Kubernetes makes it"
    assert (data / "x").read_text() == "hi" and (data / "x").stat().st_uid == NOBODY
    folder = Path(env[ENV])
    assert _owned(folder, NOBODY, 0o700)
    for name in ("token", "ca.crt", "namespace"):
        assert _owned(folder / name, NOBODY, 0o600), name
    assert (folder / "ca.crt").read_bytes() == node.ca and (folder / "namespace").read_text() == NS
    assert _whoami(node, (folder / "token").read_text()) == f"system:serviceaccount:{NS}:default"

    proc = _process(other)
    assert (proc.uids().real, proc.gids().real) == (1234, 2345)
    assert _groups(proc) == {3456}, "supplementalGroups, and no group of the kubelet's"
    assert _owned(Path(proc.environ()[ENV]) / "token", 1234, 0o600)

    proc = _process(admin)
    assert proc.uids().real == 0 and proc.cmdline()[0] == sys.executable, "root gets this interpreter"
    log = f"/api/v1/namespaces/{NS}/pods/as-root/log"
    said = wait_for(lambda: "user " in (t := node.client.request("GET", log) or "") and t, 10)
    assert said.strip() == f"user system:serviceaccount:{NS}:default", (
        "the operator's in-cluster client works"
    )

    pod_folder = folder.parent.parent
    assert pod_folder.name == nobody["metadata"]["uid"]
    _delete(node, "as-nobody", "as-1234", "as-root")
    assert not pod_folder.exists() and not data.exists(), "the pod's folders go with the pod"


def _groups(proc: psutil.Process) -> set[int]:
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("Groups:"):
            return {int(g) for g in line.split()[1:]}
    return set()


@pytest.mark.integration
@needs_root
def test_a_pod_without_its_service_account_waits_until_it_exists(node: SecureNode) -> None:
    pod = _pod(serviceAccountName="ghost", nodeName=NODE)
    pod["metadata"] = {"name": "haunted"}
    node.client.create("pods", pod, NS)

    def waiting() -> Obj | None:
        statuses = (node.client.get("pods", "haunted", NS).get("status") or {}).get("containerStatuses") or []
        return (statuses[0]["state"].get("waiting") or None) if statuses else None

    state = wait_for(waiting, 10)
    assert (state["reason"], state["message"]) == (
        "CreateContainerConfigError",
        'serviceaccount "ghost" not found',
    )
    wait_for(
        lambda: any(
            e.get("reason") == "Failed" and e.get("message") == 'Error: serviceaccount "ghost" not found'
            for e in node.client.list("events", NS)
        ),
        5,
    )
    node.client.create(
        "serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ghost"}}, NS
    )
    proc = _process(_running(node, "haunted"))
    assert (
        _whoami(node, (Path(proc.environ()[ENV]) / "token").read_text())
        == f"system:serviceaccount:{NS}:ghost"
    )
    _delete(node, "haunted")


@pytest.mark.integration
@needs_root
def test_automount_off_means_no_token(node: SecureNode) -> None:
    node.client.create(
        "serviceaccounts",
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "quiet"},
            "automountServiceAccountToken": False,
        },
        NS,
    )
    by_account = _pod(serviceAccountName="quiet", nodeName=NODE)
    by_account["metadata"] = {"name": "quiet-account"}
    by_pod = _pod(automountServiceAccountToken=False, nodeName=NODE)
    by_pod["metadata"] = {"name": "quiet-pod"}
    for pod in (by_account, by_pod):
        node.client.create("pods", pod, NS)
    for name in ("quiet-account", "quiet-pod"):
        assert ENV not in _process(_running(node, name)).environ(), name
    _delete(node, "quiet-account", "quiet-pod")


@pytest.mark.integration
def test_every_active_namespace_gets_its_default_account_back(node: SecureNode) -> None:
    api = node.client
    api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sa-test"}})
    controller = ServiceAccountsController(api)
    controller.reconcile_once()
    first = api.get("serviceaccounts", "default", "sa-test")
    names = {n["metadata"]["name"] for n in api.list("namespaces")}
    assert all(api.get_or_none("serviceaccounts", "default", n) for n in names)
    api.delete("serviceaccounts", "default", "sa-test")
    controller.reconcile_once()
    again = api.get("serviceaccounts", "default", "sa-test")
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
