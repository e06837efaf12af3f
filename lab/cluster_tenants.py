"""The lab's tenants: how many fit here, the objects ``up`` creates for them, their ``tenants.json``.

:func:`check_capacity` refuses, before anything starts, a tenant count this machine
cannot hold (memory for each tenant's server, the lab's block of engine ports,
:mod:`lab.ports`).

:func:`apply_manifest` creates what a multi-document YAML file (the operator's,
``crds/operator.yaml``) holds and is not there yet. A tenant is an MSSQLInstance
``tenant-<i>`` in namespace ``tenants``; ``up`` waits until its status says Ready
(:func:`instance_ready`) and its server answers ``SELECT 1`` with its credentials
(:func:`instance_answers`; in a lab with an id, its database must also hold that id
in ``harness_identity``). Its entry in ``tenants.json`` (:func:`tenant_entry`) names a
password file under ``secrets/`` (mode 0600), never the password, and carries the lab
id (``lab_id``, from ``cluster.json``): the load and the probes then refuse a server
that holds another lab's id or none.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import psutil
import yaml

from common.crd import CrdCoordinates
from lab.cluster_layout import Layout, load_config
from lab.errors import LabError
from lab.kubeclient import ApiError, Kind, KubeClient
from lab.kubelet.probes import sql_ping
from lab.kubelet.runtime import Spawner
from lab.ports import LAB_ID_KEY, RANGE_SIZE

__all__ = [
    "INSTANCES",
    "IDENTITY_QUERY",
    "ODBC_DRIVER",
    "OPERATOR_MANIFEST",
    "TENANT_MEMORY",
    "TENANT_NAMESPACE",
    "apply_manifest",
    "check_capacity",
    "instance_answers",
    "instance_body",
    "instance_ready",
    "tenant_entry",
]

TENANT_NAMESPACE = "tenants"
OPERATOR_MANIFEST = Path(__file__).resolve().parent / "crds" / "operator.yaml"
INSTANCES = Kind(CrdCoordinates.group, CrdCoordinates.version, CrdCoordinates.plural)  # the defaults
ODBC_DRIVER = "PostgreSQL Unicode"
#: What ``up`` asks a tenant's server for its lab id (the table :func:`lab.engine.identity_sql` makes).
IDENTITY_QUERY = "SELECT lab_id FROM harness_identity"
_KINDS: dict[tuple[str, str], Kind] = {
    ("v1", "Namespace"): Kind("", "v1", "namespaces", namespaced=False),
    ("v1", "ServiceAccount"): Kind("", "v1", "serviceaccounts"),
    ("v1", "Secret"): Kind("", "v1", "secrets"),
    ("v1", "ConfigMap"): Kind("", "v1", "configmaps"),
    ("v1", "Service"): Kind("", "v1", "services"),
    ("apps/v1", "Deployment"): Kind("apps", "v1", "deployments"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): Kind(
        "rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False
    ),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): Kind(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False
    ),
    ("rbac.authorization.k8s.io/v1", "Role"): Kind("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): Kind("rbac.authorization.k8s.io", "v1", "rolebindings"),
}


# -- how many tenants this machine holds -----------------------------------------------------------


#: Memory one tenant's PostgreSQL server takes once it has written a little (measured: about 40 MiB).
TENANT_MEMORY = 48 * 2**20


def check_capacity(tenants: int, available: int | None = None, ports: int = RANGE_SIZE) -> None:
    """Refuse a tenant count this machine cannot hold: memory (half of what is free), the lab's ``ports``."""
    free = psutil.virtual_memory().available if available is None else available
    need = tenants * TENANT_MEMORY
    if need > free // 2:
        most = max(1, (free // 2) // TENANT_MEMORY)
        raise LabError(
            f"{tenants} tenants need about {need / 2**30:.1f} GiB (about {TENANT_MEMORY // 2**20} MiB each) "
            f"and {free / 2**30:.1f} GiB is free: use --tenants {most} or fewer"
        )
    if tenants > ports:
        raise LabError(
            f"{tenants} tenants need more engine ports than a lab's {ports} hold: use --tenants {ports}"
        )


# -- manifests and tenants -------------------------------------------------------------------------


def apply_manifest(client: KubeClient, path: Path) -> list[str]:
    """Create every object of a multi-document YAML file that does not exist yet; their names."""
    created = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not isinstance(doc, dict):
            continue
        kind = _KINDS.get((str(doc.get("apiVersion")), str(doc.get("kind"))))
        if kind is None:
            raise LabError(f"{path}: the lab cannot apply {doc.get('apiVersion')} {doc.get('kind')}")
        md = doc.get("metadata") or {}
        namespace = md.get("namespace") if kind.namespaced else None
        try:
            client.create(kind, doc, namespace)
            created.append(f"{doc['kind']}/{md.get('name')}")
        except ApiError as exc:
            if exc.code != 409:
                raise
    return created


def instance_body(name: str) -> dict[str, Any]:
    """The MSSQLInstance ``name`` in the tenants' namespace, as ``up`` creates it."""
    return {
        "apiVersion": f"{INSTANCES.group}/{INSTANCES.version}",
        "kind": "MSSQLInstance",
        "metadata": {"name": name, "namespace": TENANT_NAMESPACE},
        "spec": {"version": "15", "storage": {"size": "1Gi"}, "database": "harness"},
    }


def instance_ready(obj: dict[str, Any] | None) -> bool:
    """The instance's status has an endpoint and says Ready (condition or phase)."""
    status = (obj or {}).get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return bool(status.get("endpoint")) and (ready or status.get("phase") == "Ready")


def instance_answers(layout: Layout, client: KubeClient, inst: dict[str, Any]) -> bool:
    """True when the instance's server answers with its credentials (a status can be stale).

    With a lab id (``tenants.json``'s ``lab_id``) the server must answer
    :data:`IDENTITY_QUERY` with exactly that id, else ``SELECT 1``.
    """
    entry = tenant_entry(layout, client, inst)
    lab_id = entry.get("lab_id")
    ok, answer = sql_ping(
        Spawner(),
        port=int(entry["port"]),
        user=str(entry["user"]),
        password=Path(entry["password_file"]).read_text(),
        database=str(entry["database"]),
        query=IDENTITY_QUERY if lab_id else "SELECT 1",
        timeout=2.0,
    )
    return ok and (not lab_id or answer.strip() == lab_id)


def tenant_entry(layout: Layout, client: KubeClient, inst: dict[str, Any]) -> dict[str, Any]:
    """The instance's ``tenants.json`` entry; its password goes to a 0600 file under ``secrets/``.

    ``lab_id`` is the lab's id from ``cluster.json`` (left out when the lab has none).
    """
    name = inst["metadata"]["name"]
    status = inst.get("status") or {}
    host, _, port = str(status.get("endpoint", "")).rpartition(":")
    secret_name = status.get("credentialsSecret") or f"{name}-credentials"
    secret = client.get("secrets", secret_name, TENANT_NAMESPACE)
    data = secret.get("data") or {}
    user = base64.b64decode(data.get("username", "")).decode() or "harness"
    password = base64.b64decode(data.get("password", "")).decode()
    layout.secrets.mkdir(parents=True, exist_ok=True)
    layout.secrets.chmod(0o700)
    pw_file = layout.secrets / f"{name}.password"
    fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    pw_file.chmod(0o600)
    entry: dict[str, Any] = {
        "name": name,
        "dialect": "postgresql",
        "driver": ODBC_DRIVER,
        "server": host or "127.0.0.1",
        "port": int(status.get("port") or port),
        "database": status.get("database") or (inst.get("spec") or {}).get("database") or "harness",
        "user": user,
        "password_file": str(pw_file),
    }
    lab_id = load_config(layout).get(LAB_ID_KEY)
    if isinstance(lab_id, str) and lab_id:
        entry["lab_id"] = lab_id
    return entry
