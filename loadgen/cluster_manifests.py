"""The distributed load's Kubernetes objects: ``deploy/load/*.yaml`` rendered for one run.

The templates hold ``${NAME}`` placeholders (:class:`string.Template`); every placeholder
of a template must have a value, or :func:`render` refuses it in one line naming the
placeholder and the file. Values are escaped for the double-quoted YAML strings they sit
in, and numbers are checked to be numbers, so no value can change a manifest's shape.

One run's objects share the name ``harness-load-<id>`` (:func:`load_id`, a short DNS label
made from the run id) and the labels ``app.kubernetes.io/name: mssql-harness-load``,
``app.kubernetes.io/instance: <id>``, ``app.kubernetes.io/component: master|worker``:

- the Secret (built here, its keys vary): ``tenants.json`` with each tenant's
  ``password_file`` pointing into the mount, and ``<i>.password`` per tenant;
- the Service (``service.yaml``): ports ``master`` and ``web``, port == targetPort;
- the master Job (``master.yaml``) and one Job per worker (``workers.yaml``, rendered K times).

The master Job is created first and owns the rest (:func:`owned_by`: an ``ownerReferences``
entry naming its uid), both Job kinds finish with ``ttlSecondsAfterFinished``
(:data:`JOB_TTL`), and the master quits once the harness has not polled it for
:data:`ORPHAN_AFTER` s (``--orphan-after``). So a load whose harness was killed ends by
itself: the master quits, its workers exit, the TTL deletes the master Job and the garbage
collector takes the Secret (every tenant's password), the Service and the worker Jobs.

:func:`loadgen.shipping.user_count` is the number of Locust users: a multiple of the workers (Locust spreads
users evenly only then) and at least one per tenant.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from common.names import env_name
from loadgen.errors import LoadgenError
from loadgen.shipping import user_count
from loadgen.tenants import load_tenants

__all__ = [
    "APP_NAME",
    "IMAGE",
    "JOB_TTL",
    "ORPHAN_AFTER",
    "TEMPLATES",
    "TENANTS_MOUNT",
    "LoadObjects",
    "default_image",
    "labels",
    "load_id",
    "object_name",
    "owned_by",
    "owner_reference",
    "render",
    "render_all",
    "selector",
    "service_env",
    "tenants_secret",
]

#: The folder of the templates.
TEMPLATES = Path(__file__).resolve().parent.parent / "deploy" / "load"
#: The harness image, without tag; the tag is the package version.
IMAGE = "mssql-chaos-harness/harness"
#: ``app.kubernetes.io/name`` of every object of the distributed load.
APP_NAME = "mssql-harness-load"
#: Where the workers see the tenants Secret.
TENANTS_MOUNT = "/var/run/harness-tenants"
#: Seconds without a poll of ``/harness/status`` after which the master quits (the harness
#: polls every 0.3 s; it counts the master lost after 5 s of failures anyway).
ORPHAN_AFTER = 60
#: ``ttlSecondsAfterFinished`` of the master's and the workers' Jobs.
JOB_TTL = 300

_NUMERIC = ("MASTER_PORT", "WEB_PORT", "WORKERS", "USERS", "TENANT_COUNT", "ORPHAN_AFTER", "JOB_TTL")
_NUMBER = re.compile(r"^[0-9]+$")


def default_image() -> str:
    """``mssql-chaos-harness/harness:<the installed package's version>``."""
    try:
        version = metadata.version("mssql-chaos-harness")
    except metadata.PackageNotFoundError:
        raise LoadgenError(
            "the harness package is not installed, so the load image's tag is unknown: "
            "run `pip install -e .` or set load_image"
        ) from None
    return f"{IMAGE}:{version}"


def load_id(run_id: str) -> str:
    """A DNS label for ``run_id`` (at most 31 characters): its readable start and a hash of all of it."""
    readable = re.sub(r"[^a-z0-9]+", "-", run_id.lower()).strip("-")[:24].strip("-")
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:6]
    return f"{readable}-{digest}" if readable else f"run-{digest}"


def object_name(ident: str) -> str:
    """The Secret's and the Service's name; the Jobs append ``-master`` / ``-worker-<i>``."""
    return f"harness-load-{ident}"


def service_env(service: str) -> str:
    """The prefix of a Service's link variables: ``harness-load-x`` -> ``HARNESS_LOAD_X``."""
    return env_name(service)


def labels(ident: str, component: str | None = None) -> dict[str, str]:
    """The labels of the run's objects (``component`` master or worker)."""
    found = {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": ident}
    if component:
        found["app.kubernetes.io/component"] = component
    return found


def selector(ident: str, component: str | None = None) -> str:
    """A label selector for the run's pods (of one component)."""
    return ",".join(f"{k}={v}" for k, v in labels(ident, component).items())


def _escape(key: str, value: Any) -> str:
    text = str(value)
    if key in _NUMERIC and not _NUMBER.match(text):
        raise LoadgenError(f"load manifest value {key}={text!r} must be a number: fix the caller")
    return json.dumps(text)[1:-1]  # a JSON string body is a valid YAML double-quoted body


def render(template: str, values: Mapping[str, Any], folder: Path = TEMPLATES) -> list[dict[str, Any]]:
    """The objects of ``<folder>/<template>`` with every ``${NAME}`` replaced from ``values``.

    LoadgenError in one line for a missing file, a placeholder without a value, or a
    malformed placeholder.
    """
    path = folder / template
    try:
        text = path.read_text()
    except OSError as exc:
        raise LoadgenError(f"load manifest {path} cannot be read ({exc.strerror}): restore it") from None
    try:
        rendered = string.Template(text).substitute({k: _escape(k, v) for k, v in values.items()})
    except KeyError as exc:
        raise LoadgenError(
            f"load manifest {path}: placeholder ${{{exc.args[0]}}} has no value: pass it to render()"
        ) from None
    except ValueError as exc:
        raise LoadgenError(f"load manifest {path}: malformed placeholder ({exc}): fix the template") from None
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def tenants_secret(name: str, namespace: str, ident: str, tenants_file: Path) -> dict[str, Any]:
    """The Secret the workers mount: ``tenants.json`` (passwords by file reference) and ``<i>.password``.

    Each password is read now from the tenant's ``password_file`` or ``password_env``; the
    tenants file keeps its order (worker assignment goes by tenant index).
    """
    tenants = load_tenants(tenants_file)
    entries = json.loads(Path(tenants_file).read_text())["tenants"]
    data: dict[str, str] = {}
    rewritten = []
    for i, (tenant, given) in enumerate(zip(tenants, entries, strict=True)):
        entry = {k: v for k, v in given.items() if k not in ("password_file", "password_env")}
        entry["password_file"] = f"{TENANTS_MOUNT}/{i}.password"
        rewritten.append(entry)
        data[f"{i}.password"] = _b64(tenant.password())
    data["tenants.json"] = _b64(json.dumps({"tenants": rewritten}, indent=2))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(ident)},
        "type": "Opaque",
        "data": data,
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass(frozen=True)
class LoadObjects:
    """Everything one distributed load creates; created master first, then the rest in field order.

    The Secret, the Service and the worker Jobs are rendered without owner; the harness adds
    the master Job's reference (:func:`owned_by`) once the master's create returned its uid.
    """

    secret: dict[str, Any]
    service: dict[str, Any]
    master: dict[str, Any]
    #: One Job per worker (``<name>-worker-<i>``): a lost worker must not fail the others' Job.
    workers: list[dict[str, Any]]


def render_all(
    *,
    run_id: str,
    namespace: str,
    image: str,
    tenants_file: Path,
    workers: int,
    master_port: int,
    web_port: int,
    write_rate: float,
    write_timeout: float,
    connect_timeout: float,
    bind_host: str = "0.0.0.0",  # a pod serves its Service on its own address
    orphan_after: int = ORPHAN_AFTER,
    job_ttl: int = JOB_TTL,
) -> LoadObjects:
    """The run's Secret, Service, master Job and one Job per worker (:func:`render` of each).

    ``orphan_after`` (seconds, 0 = off) is the master's ``--orphan-after``; ``job_ttl`` the
    Jobs' ``ttlSecondsAfterFinished``.
    """
    ident = load_id(run_id)
    name = object_name(ident)
    count = len(load_tenants(tenants_file))
    values = {
        "NAME": name,
        "NAMESPACE": namespace,
        "LOAD_ID": ident,
        "IMAGE": image,
        "RUN_ID": run_id,
        "MASTER_PORT": master_port,
        "WEB_PORT": web_port,
        "BIND_HOST": bind_host,
        "MASTER_HOST": f"$({service_env(name)}_SERVICE_HOST)",
        "WORKERS": workers,
        "USERS": user_count(count, workers),
        "TENANT_COUNT": count,
        "WRITE_RATE": f"{write_rate:g}",
        "WRITE_TIMEOUT": f"{write_timeout:g}",
        "CONNECT_TIMEOUT": f"{connect_timeout:g}",
        "ORPHAN_AFTER": orphan_after,
        "JOB_TTL": job_ttl,
    }
    (service,) = render("service.yaml", values)
    (master,) = render("master.yaml", values)
    worker_jobs = [job for i in range(workers) for job in render("workers.yaml", {**values, "WORKER": i})]
    return LoadObjects(tenants_secret(name, namespace, ident, tenants_file), service, master, worker_jobs)


def owner_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ownerReferences`` entry naming ``job`` (as the API returned it: with its uid).

    ``blockOwnerDeletion`` is false: the owner's deletion need not wait for its dependents,
    and setting it true would need the right to update the Job's finalizers.
    """
    md = job.get("metadata") or {}
    uid, name = md.get("uid"), md.get("name")
    if not uid or not name:
        raise LoadgenError(
            f"the API returned the load master Job {name or '(no name)'} without a uid: "
            "its dependents cannot name their owner; is this a Kubernetes API server?"
        )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": str(name),
        "uid": str(uid),
        "blockOwnerDeletion": False,
    }


def owned_by(obj: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` whose metadata names ``reference`` as its (only) owner."""
    metadata = {**obj["metadata"], "ownerReferences": [dict(reference)]}
    return {**obj, "metadata": metadata}
