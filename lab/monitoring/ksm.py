"""A stand-in for kube-state-metrics, served by the lab's control plane from its own API state.

It exports the same metric names, labels and value semantics as kube-state-metrics v2
for the subset the harness's alert rules and drills use (nothing else): Jobs and
CronJobs (:mod:`lab.monitoring.ksm_jobs`), Pods, Deployments, StatefulSets and Nodes
(:mod:`lab.monitoring.ksm_workloads`). On a real cluster the real kube-state-metrics
serves these series and the same rules apply to them unchanged.

Why inside the control-plane process: the objects are read straight from the API
server's store (:class:`lab.api.store.Store`) in its own event loop, so a scrape is a
consistent snapshot at no cost of listing, serialising or watching over HTTP, and no
extra process runs on the lab's two cores. It listens on its own loopback port
(``python -m lab.controlplane --metrics-port``; ``lab up`` keeps the port in
``cluster.json`` and records the URL in ``<api data>/kube-state-metrics.url``), at
``/metrics``. When the API server is down, so is this endpoint: Prometheus sees the
target down rather than stale values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from lab.monitoring.exposition import Series, render
from lab.monitoring.ksm_jobs import cronjob_series, job_series
from lab.monitoring.ksm_workloads import deployment_series, node_series, pod_series, statefulset_series

__all__ = ["MAPPERS", "ObjectSource", "exposition", "series_of", "start_listener"]

Obj = dict[str, Any]

#: API storage key (group-resource) -> the function mapping one object to its series.
MAPPERS: dict[str, Callable[[Obj], list[Series]]] = {
    "jobs.batch": job_series,
    "cronjobs.batch": cronjob_series,
    "pods": pod_series,
    "deployments.apps": deployment_series,
    "statefulsets.apps": statefulset_series,
    "nodes": node_series,
}


class ObjectSource(Protocol):
    """What the stand-in reads: the API store's ``scan`` (stored objects of one key, read-only)."""

    def scan(self, key: str, namespace: str | None = None) -> Iterable[Obj]: ...


def series_of(objects: Mapping[str, Iterable[Obj]] | ObjectSource) -> list[Series]:
    """Every series for the objects of every exported kind (a store, or lists keyed like one)."""
    out: list[Series] = []
    for key, mapper in MAPPERS.items():
        items = objects.get(key, ()) if isinstance(objects, Mapping) else objects.scan(key)
        for obj in items:
            if isinstance(obj, dict):
                out.extend(mapper(obj))
    return out


def exposition(source: Mapping[str, Iterable[Obj]] | ObjectSource) -> bytes:
    """The ``/metrics`` body for ``source``."""
    return render(series_of(source))


async def start_listener(source: ObjectSource, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``/metrics`` for ``source`` on ``host:port`` (0: any free port); the runner and its port.

    OSError when the port is taken (the runner is cleaned up first).
    """

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=exposition(source), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthy(_request: web.Request) -> web.Response:
        return web.Response(text="ok", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthy)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = next(int(a[1]) for a in runner.addresses if isinstance(a, tuple) and len(a) >= 2)
    return runner, bound
