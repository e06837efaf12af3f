"""Pod memory and MSSQL sessions on a real cluster: metrics.k8s.io and SQL (:mod:`probes.pod_sources`).

Memory is metrics-server's working set per pod,
``GET /apis/metrics.k8s.io/v1beta1/namespaces/<ns>/pods``, summed over the pod's
containers; not served (404) or refused (401/403) is one line with the fix and no
number, and a pod metrics-server has no sample of yet (a new pod) one line of its own.
The harness sees no process on a cluster, so the connections of an MSSQL pod are its
server's sessions counted through SQL, over the tenant's own connection
(:func:`loadgen.identity.connect_tenant`, with the lab identity check; the harness's
own session is left out): ``sys.dm_exec_connections`` on SQL Server (the login needs
``VIEW SERVER STATE``) and the ``client backend`` rows of ``pg_stat_activity`` on
PostgreSQL (:data:`SESSION_SQL`). A tenant with several pods is counted once, on its
first (likeliest) pod. The operator's connections cannot be counted: None, and the
reason once per source (it is a limit of the target, not a failure of the round).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from probes.errors import ProbeError
from probes.k8s.target import CLUSTER
from probes.node_sources import METRICS_SERVER_FIX
from probes.pod_sources import MSSQL, OPERATOR, PodReadings, PodRef, PodUsage

__all__ = ["SESSION_SQL", "ClusterPods", "TenantsLoader", "count_sessions"]

#: Sessions on the server, the asking one left out (per dialect: :attr:`loadgen.tenants.Tenant.dialect`).
SESSION_SQL = {
    "postgresql": (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    ),
    "mssql": "SELECT COUNT(*) FROM sys.dm_exec_connections WHERE session_id <> @@SPID",
}
_SQL_WORKERS = 8
_POD_METRICS = ("metrics.k8s.io", "v1beta1")


def _quantity(value: Any) -> float | None:
    from kubernetes.utils import parse_quantity

    try:
        return float(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        return None


def count_sessions(tenant: Any, timeout: int = 5) -> int:
    """Sessions open on ``tenant``'s server besides the asking one (:data:`SESSION_SQL`).

    ProbeError (one line, password redacted) when it cannot be counted.
    """
    import pyodbc

    from loadgen.errors import LoadgenError
    from loadgen.identity import connect_tenant
    from loadgen.tenants import redact

    sql = SESSION_SQL.get(str(tenant.dialect))
    if sql is None:
        raise ProbeError(f"no session count for dialect {tenant.dialect!r}: use one of {sorted(SESSION_SQL)}")
    try:
        conn = connect_tenant(tenant, timeout)
        try:
            row = conn.execute(sql).fetchone()
        finally:
            with contextlib.suppress(pyodbc.Error):
                conn.close()
    except LoadgenError as exc:
        raise ProbeError(str(exc)) from None
    except pyodbc.Error as exc:
        lines = redact(str(exc.args[-1] if exc.args else exc)).splitlines()
        text = lines[0].strip() if lines else exc.__class__.__name__
        fix = (
            ": grant VIEW SERVER STATE to the tenant's login"
            if "VIEW SERVER STATE" in text.upper()
            else ": is the server up and the tenant's login allowed in?"
        )
        raise ProbeError(f"counting sessions on {tenant.describe()}: {text}{fix}") from None
    return int(row[0]) if row is not None and row[0] is not None else 0


TenantsLoader = Callable[[], Mapping[str, Any]]


def _run_tenants() -> dict[str, Any]:
    """The tenants of the current run (``$HARNESS_RUN_DIR/tenants.json``), by name; empty without one."""
    from loadgen.errors import LoadgenError
    from loadgen.tenants import load_tenants
    from probes.k8s import kube

    folder = kube.run_dir()
    path = Path(folder) / "tenants.json" if folder is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        return {t.name: t for t in load_tenants(path)}
    except LoadgenError as exc:
        raise ProbeError(f"the run's tenants file: {exc}") from None


class ClusterPods:
    """Pod memory from metrics-server and MSSQL sessions through SQL (see the module doc).

    ``tenants`` gives the connection of each tenant (:class:`loadgen.tenants.Tenant` by
    name); the default reads the run's ``tenants.json``. ``count`` is
    :func:`count_sessions` (replaceable in tests).
    """

    kind = CLUSTER

    def __init__(
        self,
        api_client: Any | None = None,
        secrets: Mapping[str, Any] | None = None,
        tenants: TenantsLoader | None = None,
        count: Callable[[Any], int] = count_sessions,
    ) -> None:
        self._client = api_client
        self._secrets = secrets
        self._tenants: TenantsLoader = tenants or _run_tenants
        self._count = count

    def _api(self) -> Any:
        from kubernetes import client

        from probes.k8s import kube

        if self._client is None:
            self._client = kube.api_client(self._secrets)
        return client.CustomObjectsApi(self._client)

    def read(self, pods: Sequence[PodRef]) -> PodReadings:
        out = PodReadings(usage={p.key: PodUsage() for p in pods})
        memory = self._memory(pods, out.errors)
        connections = self._connections(pods, out.errors, out.limits)
        for pod in pods:
            used = memory.get(pod.key)
            out.usage[pod.key] = PodUsage(
                memory_bytes=used,
                connections=connections.get(pod.key),
                memory="working_set" if used is not None else None,
            )
        return out

    def _memory(self, pods: Sequence[PodRef], errors: list[str]) -> dict[str, int]:
        from kubernetes.client.exceptions import ApiException

        found: dict[str, int] = {}
        for namespace in sorted({p.namespace for p in pods}):
            try:
                doc = self._api().list_namespaced_custom_object(*_POD_METRICS, namespace, "pods")
            except ApiException as exc:
                errors.append(_metrics_problem(exc.status, exc.reason, namespace))
                continue
            except ProbeError as exc:
                errors.append(f"pod memory in {namespace}: {exc}")
                continue
            except Exception as exc:
                errors.append(
                    f"pod memory in {namespace}: cannot reach the Kubernetes API ({exc.__class__.__name__}); "
                    "is the cluster up?"
                )
                continue
            for item in (doc or {}).get("items") or []:
                name = ((item or {}).get("metadata") or {}).get("name")
                total = [
                    _quantity((c.get("usage") or {}).get("memory")) for c in item.get("containers") or []
                ]
                if name and total and None not in total:
                    found[f"{namespace}/{name}"] = int(sum(v for v in total if v is not None))
            served = {p.key for p in pods if p.namespace == namespace} - set(found)
            errors.extend(
                f"memory of pod {key}: metrics-server has no sample of it yet (a new pod); next round"
                for key in sorted(served)
            )
        return found

    def _connections(self, pods: Sequence[PodRef], errors: list[str], limits: list[str]) -> dict[str, int]:
        operators = [p.key for p in pods if p.role == OPERATOR]
        if operators:
            limits.append(
                f"connections of the operator pods ({', '.join(operators)}): not measurable on a cluster "
                "(the harness sees no process there); only their memory is sampled"
            )
        by_tenant: dict[str, PodRef] = {}
        for pod in pods:
            if pod.role == MSSQL and pod.tenant is not None:
                by_tenant.setdefault(pod.tenant, pod)  # the first (likeliest) pod serves the endpoint
        if not by_tenant:
            return {}
        try:
            tenants = self._tenants()
        except ProbeError as exc:
            errors.append(f"MSSQL sessions: {exc}")
            return {}
        jobs: dict[str, Any] = {}
        for name, pod in sorted(by_tenant.items()):
            if name in tenants:
                jobs[name] = tenants[name]
            else:
                errors.append(
                    f"connections of pod {pod.key}: no connection details for tenant {name} "
                    "(the run's tenants.json): start the soak through the load control"
                )
        found: dict[str, int] = {}
        if not jobs:
            return found
        with ThreadPoolExecutor(max_workers=min(_SQL_WORKERS, len(jobs))) as pool:
            results = {name: pool.submit(self._count, tenant) for name, tenant in jobs.items()}
            for name, future in results.items():
                key = by_tenant[name].key
                try:
                    found[key] = int(future.result())
                except ProbeError as exc:
                    errors.append(f"connections of pod {key}: {exc}")
                except Exception as exc:  # a driver crash must not end the round
                    errors.append(f"connections of pod {key}: {exc.__class__.__name__}: {exc}")
        return found


def _metrics_problem(status: Any, reason: Any, namespace: str) -> str:
    if status == 404:
        return (
            f"pod memory in {namespace}: the cluster does not serve metrics.k8s.io/v1beta1 "
            f"(404: no metrics-server); {METRICS_SERVER_FIX}"
        )
    if status in (401, 403):
        return (
            f"pod memory in {namespace}: reading metrics.k8s.io pods was refused ({status}); grant the "
            "harness's user get and list on pods in the metrics.k8s.io API group and run again"
        )
    return f"pod memory in {namespace}: the API answered {status} {reason or ''}".rstrip()
