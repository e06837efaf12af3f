"""The harness image in the lab: its name under any registry, its entry point, its user, its paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from common.config import ConfigurationError
from common.mounts import host_path, mapped
from lab.api.pod_security import asks_for_root
from lab.kubelet import podspec
from lab.kubelet.images import HARNESS, LOCUSTFILE, image_name, is_host_command, launch_for
from lab.kubelet.podspec import ConfigError
from lab.kubelet.run_as import kubelet_user, run_as_for
from loadgen.errors import LoadgenError
from loadgen.runner import LOCUSTFILE as LOADGEN_LOCUSTFILE
from loadgen.tenants import Tenant

Obj = dict[str, Any]


@pytest.mark.parametrize(
    "image",
    [
        "mssql-chaos-harness/harness",
        "mssql-chaos-harness/harness:0.1.0",
        "docker.io/mssql-chaos-harness/harness:0.1.0",
        "ghcr.io/example/mssql-chaos-harness/harness:0.1.0",
        "localhost:5000/team/mssql-chaos-harness/harness",
        "registry.example.org/mssql-chaos-harness/harness@sha256:" + "ab" * 32,
    ],
)
def test_the_harness_image_under_any_registry_and_tag(image: str) -> None:
    name, _tag = image_name(image)
    assert name == HARNESS
    container: Obj = {"name": "master", "image": image, "args": ["--master", "--web-port", "$(WEB)"]}
    launch = launch_for(container, {"WEB": "18089"})
    assert launch.argv == [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--master",
        "--web-port",
        "18089",
    ]
    assert launch.image == HARNESS and not launch.is_engine
    assert not is_host_command(container)


def test_names_that_only_look_like_it_are_host_images() -> None:
    for image in ("evil-mssql-chaos-harness/harness:1", "mssql-chaos-harness/harness-extra", "harness"):
        assert image_name(image)[0] != HARNESS
        assert is_host_command({"name": "c", "image": image})


def test_the_entry_point_is_this_checkouts_locustfile() -> None:
    assert LOADGEN_LOCUSTFILE.resolve() == LOCUSTFILE
    assert LOCUSTFILE.is_file()


def test_it_runs_as_the_kubelets_user_and_counts_as_asking_for_root() -> None:
    container: Obj = {
        "name": "worker",
        "image": "ghcr.io/x/mssql-chaos-harness/harness:0.1.0",
        "args": ["--worker"],
    }
    pod: Obj = {
        "metadata": {"name": "w", "namespace": "load", "uid": "u"},
        "spec": {"containers": [container]},
    }
    assert run_as_for(pod, container, is_host_command(container), switch=True) == kubelet_user()
    asked = asks_for_root(pod, container)
    assert asked is not None and "mssql-chaos-harness/harness" in asked and "root" in asked
    with pytest.raises(podspec.ConfigError, match="runs as the kubelet's user"):
        other = {**container, "securityContext": {"runAsUser": 100000}}
        run_as_for(pod, other, is_host_command(other), switch=True)
    with_command = {**container, "command": ["python", "-m", "locust"]}
    assert is_host_command(with_command) and asks_for_root(pod, with_command) is None


def test_container_paths_map_through_lab_mounts() -> None:
    env = {"LAB_MOUNTS": '{"/var/run/harness": "/srv/pod/emptydir/work", "/var/run/harness/run": "/srv/run"}'}
    assert host_path("/var/run/harness/run/journal", env) == "/srv/run/journal", "the longest mount wins"
    assert host_path("/var/run/harness/run", env) == "/srv/run"
    assert host_path("/var/run/harness/other/x", env) == "/srv/pod/emptydir/work/other/x"
    assert host_path("/var/run/harness", env) == "/srv/pod/emptydir/work"
    assert host_path("/var/run/harnessx/y", env) == "/var/run/harnessx/y", "a prefix is a whole folder"
    assert host_path("/var/run/harness-tenants/tenants.json", env) == "/var/run/harness-tenants/tenants.json"
    assert host_path("/data/x", {}) == "/data/x", "no LAB_MOUNTS: a real cluster's paths as they are"
    assert host_path("/data/x", {"LAB_MOUNTS": '{"/": "/srv/root"}'}) == "/srv/root/data/x"
    with pytest.raises(ConfigurationError, match="LAB_MOUNTS is not a JSON object"):
        host_path("/x", {"LAB_MOUNTS": "[1, 2]"})


def test_the_kubelet_maps_working_folders_by_the_same_rule(tmp_path: Path) -> None:
    mounts = {"/var/run/harness": tmp_path / "work", "/var/run/harness/run": tmp_path / "run", "/": tmp_path}
    for path in ("/var/run/harness/run/journal", "/var/run/harness/x", "/etc/app", "/var/run/harnessx"):
        expected = mapped(path, {k: str(v) for k, v in mounts.items()})
        assert str(podspec.host_path_for(path, mounts)) == expected
    assert podspec.host_path_for("/elsewhere", {"/data": tmp_path}) is None


@pytest.mark.integration
def test_the_image_entry_point_loads_the_harness_locustfile(tmp_path: Path) -> None:
    launch = launch_for({"name": "m", "image": "mssql-chaos-harness/harness:0.1.0", "args": ["--master"]}, {})
    # The pod may not ask for --list (see below); the entry point itself is what is checked.
    result = subprocess.run(
        [*launch.argv[:-1], "--list"], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TenantUser" in result.stdout, "locust imported the harness's users from the checkout"


@pytest.mark.parametrize(
    "args",
    [
        ["--worker", "-f", "/tmp/other.py"],  # Locust takes the last -f: any file, run as root
        ["--worker", "--locustfile=https://example.org/x.py"],
        ["--master", "--html", "/etc/report.html"],
        ["--master", "--logfile", "/etc/cron.d/x"],
        ["--worker", "--run-dir", "/etc"],  # a folder the pod does not mount
        ["--worker", "--run-dir", "/var/run/harness/../../../etc"],
        ["--worker", "--tenants-file=/etc/shadow"],
        ["--worker", "--run-id"],  # no value
    ],
)
def test_the_harness_image_refuses_options_that_would_reach_the_host_as_root(args: list[str]) -> None:
    container: Obj = {
        "name": "worker",
        "image": "mssql-chaos-harness/harness:0.1.0",
        "args": args,
        "volumeMounts": [{"name": "harness", "mountPath": "/var/run/harness"}],
    }
    with pytest.raises(ConfigError) as caught:
        launch_for(container, {})
    assert caught.value.reason == "CreateContainerConfigError"


def test_the_options_of_the_load_manifests_are_accepted() -> None:
    container: Obj = {
        "name": "worker",
        "image": "mssql-chaos-harness/harness:0.1.0",
        "args": ["--worker", "--master-host", "127.0.0.1", "--run-dir", "/var/run/harness/run",
                 "--tenants-file=/var/run/harness-tenants/tenants.json", "--loglevel", "WARNING"],
        "volumeMounts": [{"name": "harness", "mountPath": "/var/run/harness"},
                         {"name": "tenants", "mountPath": "/var/run/harness-tenants"}],
    }  # fmt: skip
    assert launch_for(container, {}).argv[-1] == "WARNING"


@pytest.mark.parametrize(
    "extra",
    [
        {"env": [{"name": "LAB_MOUNTS", "value": '{"/var/run/harness": "/etc"}'}]},  # remaps --run-dir
        {"env": [{"name": "HARNESS_RUN_DIR", "value": "/etc"}]},  # an option through its variable
        {"env": [{"name": "LOCUST_HTML", "value": "/etc/x.html"}]},
        {"env": [{"name": "PYTHONPATH", "value": "/var/run/harness"}]},  # sitecustomize as root
        {"env": [{"name": "HOME", "value": "/var/run/harness"}]},  # ~/.locust.conf
        {"envFrom": [{"configMapRef": {"name": "anything"}}]},
        {"workingDir": "/var/run/harness"},  # ./locust.conf
    ],
)
def test_the_harness_image_refuses_settings_that_steer_it_around_the_checks(extra: Obj) -> None:
    container: Obj = {
        "name": "worker",
        "image": "mssql-chaos-harness/harness:0.1.0",
        "args": ["--worker", "--run-dir", "/var/run/harness/run"],
        "volumeMounts": [{"name": "harness", "mountPath": "/var/run/harness"}],
        **extra,
    }
    with pytest.raises(ConfigError) as caught:
        launch_for(container, {})
    assert caught.value.reason == "CreateContainerConfigError"
    ok = {**container, "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}]}
    ok.pop("envFrom", None)
    ok.pop("workingDir", None)
    assert launch_for(ok, {}).image == HARNESS  # what the manifests set is accepted


def test_a_path_that_climbs_is_under_no_mount() -> None:
    mounts = {"/var/run/harness-tenants": "/srv/lab/volumes/x"}
    assert mapped("/var/run/harness-tenants/0.password", mounts) == "/srv/lab/volumes/x/0.password"
    assert mapped("/var/run/harness-tenants/../../etc/shadow", mounts) is None


def _tenant(password_file: str) -> Tenant:
    return Tenant("t", "postgresql", "127.0.0.1", 5432, "db", "u", password_file=password_file)


def test_in_a_pod_a_password_file_outside_its_mounts_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "0.password").write_text("s3cret\n")
    (tmp_path / "elsewhere").write_text("not yours\n")
    monkeypatch.setenv("LAB_MOUNTS", json.dumps({"/var/run/harness-tenants": str(secret)}))
    inside = _tenant("/var/run/harness-tenants/0.password")
    assert inside.password() == "s3cret"
    for path in (str(tmp_path / "elsewhere"), "/var/run/harness-tenants/../elsewhere"):
        with pytest.raises(LoadgenError, match="not under one of the pod's volume mounts"):
            _tenant(path).password()
    monkeypatch.delenv("LAB_MOUNTS")
    assert _tenant(str(tmp_path / "elsewhere")).password() == "not yours"
