"""Find the tenants to load from the operator's MSSQLInstance custom resources.

Every CRD coordinate and status path is configuration, so a real operator's CRDs map
without code changes: ``mssql_group`` / ``mssql_version`` / ``mssql_plural`` name the
resource; ``endpoint_path`` (``host:port``), ``secret_path`` (a Secret with
``username`` and ``password`` keys) and ``database_path`` say where each value lives.
Passwords are written to private files (mode 0600) in a private folder outside the
run folder, and the tenants file refers to them by path only. On the embedded lab,
which publishes its id in the ConfigMap ``kube-system/lab-identity`` (``labId``), every
entry carries it as ``lab_id``: each connection then checks that the server belongs to
that lab (:mod:`loadgen.identity`). Without that ConfigMap (a real cluster), or when it
may not be read, entries carry none and nothing is checked.

``CrdCoordinates`` and ``name_list`` are defined in :mod:`common` (shared with the lab
and the probes) and stay importable from here.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.config import name_list
from common.crd import ROLE_LABEL, CrdCoordinates, is_restore_target
from loadgen.errors import LoadgenError
from loadgen.secretsdir import make_secrets_dir

__all__ = ["LAB_IDENTITY", "CrdCoordinates", "discover_tenants", "write_tenants_file", "name_list", "lookup"]

#: Where the embedded lab publishes its id: (namespace, name) of a ConfigMap with ``labId``.
LAB_IDENTITY = ("kube-system", "lab-identity")


def lookup(obj: Mapping[str, Any], path: str) -> Any:
    """Follow a dotted path; ``name[key=value]`` picks the list item whose ``key`` equals ``value``."""
    current: Any = obj
    for step in path.split("."):
        key, select = step, None
        if "[" in step and step.endswith("]"):
            key, select = step[:-1].split("[", 1)
        current = current.get(key) if isinstance(current, Mapping) else None
        if select is not None and isinstance(current, list):
            key, _, value = select.partition("=")
            current = next((item for item in current if str(item.get(key)) == value), None)
        if current is None:
            return None
    return current


def _api(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
        else:
            config.load_kube_config()
    except Exception as exc:
        raise LoadgenError(
            f"no usable kubeconfig ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]}): "
            "set KUBECONFIG or the kubeconfig configuration key"
        ) from None
    return client.ApiClient()


def discover_tenants(
    namespace: str,
    coordinates: CrdCoordinates,
    *,
    names: list[str] | None = None,
    label_selector: str = "",
    dialect: str = "postgresql",
    driver: str = "",
    kubeconfig: str | None = None,
    secrets_dir: Path | None = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Tenant entries for every (or every named) instance; returns them and the secrets folder.

    An instance labelled ``mssql.example.com/role: restore-target`` (a PITR or verify
    target) is not a tenant: it is left out unless ``names`` names it or
    ``label_selector`` selects on that label.

    LoadgenError when the API cannot be reached, the CRD is missing, access is denied,
    a named tenant does not exist or an instance has no endpoint yet.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = _api(kubeconfig)
    custom: Any = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    where = f"{coordinates.plural}.{coordinates.group}/{coordinates.version} in namespace {namespace}"
    try:
        listing = custom.list_namespaced_custom_object(
            coordinates.group,
            coordinates.version,
            namespace,
            coordinates.plural,
            label_selector=label_selector,
        )
        items = listing["items"]
    except ApiException as exc:
        raise LoadgenError(_api_problem(exc, where)) from None
    except Exception as exc:  # urllib3 connection errors and the like
        raise LoadgenError(
            f"cannot reach the Kubernetes API ({exc.__class__.__name__}): is the cluster up? "
            "(lab: python -m lab up)"
        ) from None
    found = {item["metadata"]["name"]: item for item in items}
    # Restore and verify targets are the harness's own: never tenants unless asked for by name or label.
    asked = ROLE_LABEL in label_selector
    wanted = names or sorted(n for n, item in found.items() if asked or not is_restore_target(item))
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise LoadgenError(
            f"unknown tenant(s) {unknown}: not among the {len(found)} {where} "
            f"({', '.join(sorted(found)) or 'none'})"
        )
    if not wanted:
        raise LoadgenError(f"no {where}: create MSSQLInstance objects or point namespace at them")
    folder = secrets_dir or make_secrets_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        entries = _entries(wanted, found, folder, coordinates, core, namespace, dialect, driver)
        lab_id = _lab_id(core)
        if lab_id:
            for entry in entries:
                entry["lab_id"] = lab_id
        return entries, folder
    except BaseException:
        if secrets_dir is None:
            shutil.rmtree(folder, ignore_errors=True)  # no caller knows this folder yet
        raise


def _lab_id(core: Any) -> str | None:
    """The lab's id from ConfigMap :data:`LAB_IDENTITY`; None when absent or not readable (no lab)."""
    from kubernetes.client.exceptions import ApiException

    namespace, name = LAB_IDENTITY
    try:
        configmap = core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if getattr(exc, "status", 0) in (403, 404):
            return None
        raise LoadgenError(_api_problem(exc, f"ConfigMap {namespace}/{name}")) from None
    value = (getattr(configmap, "data", None) or {}).get("labId")
    return value if isinstance(value, str) and value.strip() else None


def _entries(
    wanted: list[str],
    found: dict[str, Any],
    folder: Path,
    coordinates: CrdCoordinates,
    core: Any,
    namespace: str,
    dialect: str,
    driver: str,
) -> list[dict[str, Any]]:
    """One tenants-file entry per wanted instance, its password written into ``folder``."""
    from kubernetes.client.exceptions import ApiException

    tenants = []
    for name in wanted:
        item = found[name]
        endpoint = lookup(item, coordinates.endpoint_path)
        secret_name = lookup(item, coordinates.secret_path)
        if not endpoint or ":" not in str(endpoint) or not secret_name:
            raise LoadgenError(
                f"tenant {name} has no {coordinates.endpoint_path} (host:port) "
                f"or {coordinates.secret_path} yet: wait until the operator reports it Ready"
            )
        host, _, port = str(endpoint).rpartition(":")
        try:
            secret = core.read_namespaced_secret(str(secret_name), namespace)
        except ApiException as exc:
            raise LoadgenError(_api_problem(exc, f"secret {secret_name} in namespace {namespace}")) from None
        data = secret.data or {}
        if "username" not in data or "password" not in data:
            raise LoadgenError(
                f"secret {secret_name} lacks the username/password keys: fix the operator's secret"
            )
        pw_file = folder / name
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64decode(data["password"]).decode())
        entry: dict[str, Any] = {
            "name": name,
            "dialect": dialect,
            "server": host,
            "port": int(port),
            "database": str(lookup(item, coordinates.database_path) or "harness"),
            "user": base64.b64decode(data["username"]).decode(),
            "password_file": str(pw_file),
        }
        if driver:
            entry["driver"] = driver
        tenants.append(entry)
    return tenants


def _api_problem(exc: Any, what: str) -> str:
    status = getattr(exc, "status", 0)
    if status == 404:
        return f"{what}: not found (404): is the CRD installed and the namespace right?"
    if status in (401, 403):
        return f"{what}: access denied ({status}): grant list/get on it to this user"
    return f"{what}: the API answered {status} {getattr(exc, 'reason', '')}".strip()


def write_tenants_file(path: Path, tenants: list[dict[str, Any]]) -> Path:
    """Write the tenants file the load reads (no secret inside)."""
    path.write_text(json.dumps({"tenants": tenants}, indent=2))
    return path
