"""The pods a soak watches: the operator's and each tenant's MSSQL pods, with their usage.

:func:`pod_states` finds the operator's pods (``operator_namespace`` /
``operator_selector``) and each tenant's MSSQL pods (``tenant_pod_selector``; one listing
for all tenants when the selector is ``<label>={tenant}``; Job pods, finished pods and
pods being deleted left out, as :func:`probes.k8s.kube.database_pods` does), and gives
each its uid, its restarts (Σ of its containers' ``restartCount``) and its memory and
open connections from a :class:`probes.pod_sources.PodSource`. It never raises for a
measurement that failed: the value is None and one line goes into ``errors``. The
helpers the soak's other checks share (:func:`report`, :func:`raw_list`) are here too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from probes.errors import ProbeError
from probes.k8s import kube
from probes.pod_sources import MSSQL, OPERATOR, PodRef, PodSource, PodUsage, pod_source

__all__ = ["Configuration", "Secrets", "api_line", "pod_states", "raw_list", "report", "status_of"]

log = logging.getLogger("chaostoolkit")

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None

_SIMPLE_SELECTOR = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*=\s*\{tenant\}\s*$")
_SOURCES: dict[str, PodSource] = {}


def report(errors: list[str] | None, line: str) -> None:
    """Add ``line`` to the round's ``errors``; without a list, log it as a warning."""
    if errors is not None:
        errors.append(line)
    else:
        log.warning(f"soak check: {line}")


def raw_list(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A list call of the Kubernetes client as the API's own JSON (no model objects)."""
    response = call(*args, _preload_content=False, **kwargs)
    doc = json.loads(response.data)
    return doc if isinstance(doc, dict) else {}


def status_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """An object's ``status`` (empty when it has none or it is not a mapping)."""
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


def api_line(exc: Exception, what: str) -> str:
    """One line for an API failure (:func:`probes.k8s.kube.api_problem`)."""
    return str(kube.api_problem(exc, what))


def _live(pods: Iterable[Mapping[str, Any]], database: bool) -> list[Mapping[str, Any]]:
    """Pods not finished (and, for ``database``, not being deleted nor a Job's), StatefulSet first."""

    def owners(pod: Mapping[str, Any]) -> set[str]:
        return {str(r.get("kind")) for r in (pod.get("metadata") or {}).get("ownerReferences") or []}

    kept = [
        p
        for p in pods
        if status_of(p).get("phase") not in ("Succeeded", "Failed")
        and not (database and ((p.get("metadata") or {}).get("deletionTimestamp") or "Job" in owners(p)))
    ]
    return sorted(
        kept,
        key=lambda p: (
            "StatefulSet" not in owners(p),
            status_of(p).get("phase") != "Running",
            str(p["metadata"]["name"]),
        ),
    )


def _ref(pod: Mapping[str, Any], role: str, tenant: str | None) -> PodRef:
    md = pod.get("metadata") or {}
    return PodRef(str(md.get("namespace")), str(md.get("name")), str(md.get("uid")), role, tenant)


def _restarts(pod: Mapping[str, Any]) -> int:
    return sum(int(s.get("restartCount") or 0) for s in status_of(pod).get("containerStatuses") or [])


def _tenant_pods(
    core: Any, tenants: Sequence[str], namespace: str, template: str, errors: list[str] | None
) -> dict[str, list[Mapping[str, Any]]]:
    """Each tenant's pods; one listing for all when the selector is ``<label>={tenant}``."""
    simple = _SIMPLE_SELECTOR.match(template)
    found: dict[str, list[Mapping[str, Any]]] = {t: [] for t in tenants}
    if simple:
        label = simple.group(1)
        try:
            items = raw_list(core.list_namespaced_pod, namespace, label_selector=label).get("items") or []
        except Exception as exc:
            report(errors, f"MSSQL pods: {api_line(exc, f'pods ({label}) in {namespace}')}")
            return {}
        for pod in items:
            value = ((pod.get("metadata") or {}).get("labels") or {}).get(label)
            if value in found:
                found[value].append(pod)
        return found
    for tenant in tenants:
        selector = template.format(tenant=tenant)
        try:
            listed = raw_list(core.list_namespaced_pod, namespace, label_selector=selector)
            found[tenant] = listed.get("items") or []
        except Exception as exc:
            report(errors, f"MSSQL pods of {tenant}: {api_line(exc, f'pods ({selector}) in {namespace}')}")
            del found[tenant]
    return found


def _default_source(secrets: Secrets) -> PodSource:
    kind = "lab" if kube.is_embedded_lab(secrets) else "cluster"
    if kind not in _SOURCES:  # one per process: a cluster source says its permanent limits once
        _SOURCES[kind] = pod_source(kind)
    return _SOURCES[kind]


def pod_states(
    tenants: Sequence[str],
    configuration: Configuration,
    secrets: Secrets,
    errors: list[str] | None = None,
    *,
    limits: list[str] | None = None,
    namespace: str | None = None,
    source: PodSource | None = None,
) -> dict[str, dict[str, Any]]:
    """``{"<ns>/<pod>": {"role", "tenant", "uid", "restarts", "memory_bytes", "connections"}}``.

    The operator's pods (role ``operator``, tenant None) and the MSSQL pods of ``tenants``
    in ``namespace`` (default: the configuration's ``namespace``, else ``tenants``).
    ``source`` measures memory and connections (default: the lab's process trees on the
    embedded lab, metrics-server and SQL on a cluster, :mod:`probes.pod_sources`).
    """
    from kubernetes import client

    config = configuration or {}
    namespace = namespace or str(config.get("namespace") or "tenants")
    operator_ns = str(config.get("operator_namespace") or kube.DEFAULT_OPERATOR_NAMESPACE)
    operator_selector = str(config.get("operator_selector") or kube.DEFAULT_OPERATOR_SELECTOR)
    template = str(config.get("tenant_pod_selector") or kube.DEFAULT_POD_SELECTOR)
    try:
        core = client.CoreV1Api(kube.api_client(secrets))
    except ProbeError as exc:
        report(errors, f"pods: {exc}")
        return {}
    pods: list[tuple[PodRef, Mapping[str, Any]]] = []
    try:
        listed = raw_list(core.list_namespaced_pod, operator_ns, label_selector=operator_selector)
        items = listed.get("items") or []
        pods += [(_ref(p, OPERATOR, None), p) for p in _live(items, database=False)]
        if not items:
            report(errors, f"operator pods: none match {operator_selector} in {operator_ns}")
    except Exception as exc:
        report(errors, f"operator pods: {api_line(exc, f'pods ({operator_selector}) in {operator_ns}')}")
    for tenant, items in _tenant_pods(core, tenants, namespace, template, errors).items():
        live = _live(items, database=True)
        if not live:
            report(errors, f"tenant {tenant}: no MSSQL pod in {namespace} ({template.format(tenant=tenant)})")
        pods += [(_ref(p, MSSQL, tenant), p) for p in live]
    usage: Mapping[str, PodUsage] = {}
    problems: list[str] = []
    try:
        if pods:
            readings = (source or _default_source(secrets)).read([ref for ref, _ in pods])
            usage, problems = readings.usage, readings.errors
            if limits is not None:
                limits.extend(readings.limits)
    except Exception as exc:  # a source that breaks must not end the round
        problems = [f"pod memory and connections: {exc.__class__.__name__}: {exc}"]
    for line in problems:
        report(errors, line)
    out: dict[str, dict[str, Any]] = {}
    for ref, pod in pods:
        measured = usage.get(ref.key)
        out[ref.key] = {
            "role": ref.role,
            "tenant": ref.tenant,
            "uid": ref.uid,
            "restarts": _restarts(pod),
            "memory_bytes": None if measured is None else measured.memory_bytes,
            "connections": None if measured is None else measured.connections,
        }
    return out
