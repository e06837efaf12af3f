"""Series as plain values, and their Prometheus text exposition.

The kube-state-metrics stand-in (:mod:`lab.monitoring.ksm`) maps API objects to
:class:`Series` (name, labels, value) with pure functions, so the mapping is tested
without any server; :func:`render` groups them into families with the HELP and TYPE
of :data:`FAMILIES` and writes the text format through ``prometheus_client`` (which
escapes label values). The helpers here are kube-state-metrics' own conventions:
boolean values as 0/1, a condition as three series ``true``/``false``/``unknown`` with
1 on the matching one, Kubernetes label keys sanitised to ``label_<name>`` (every
character outside ``[a-zA-Z0-9_]`` becomes ``_``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from common.times import parse_time

__all__ = [
    "FAMILIES",
    "Series",
    "as_dict",
    "as_list",
    "bool_value",
    "condition_series",
    "label_name",
    "number",
    "render",
    "timestamp",
]


class Series(NamedTuple):
    """One sample: metric name, labels, value."""

    name: str
    labels: dict[str, str]
    value: float


#: name -> (type, help) for every family the stand-in exports (help texts as kube-state-metrics').
FAMILIES: dict[str, tuple[str, str]] = {
    "kube_job_info": ("gauge", "Information about job."),
    "kube_job_owner": ("gauge", "Information about the Job's owner."),
    "kube_job_created": ("gauge", "Unix creation timestamp"),
    "kube_job_spec_completions": (
        "gauge",
        "The desired number of successfully finished pods the job should be run with.",
    ),
    "kube_job_status_active": ("gauge", "The number of actively running pods."),
    "kube_job_status_succeeded": ("gauge", "The number of pods which reached Phase Succeeded."),
    "kube_job_status_failed": (
        "gauge",
        "The number of pods which reached Phase Failed and the reason for failure.",
    ),
    "kube_job_status_start_time": (
        "gauge",
        "StartTime represents time when the job was acknowledged by the Job Manager.",
    ),
    "kube_job_status_completion_time": (
        "gauge",
        "CompletionTime represents time when the job was completed.",
    ),
    "kube_job_complete": ("gauge", "The job has completed its execution."),
    "kube_job_failed": ("gauge", "The job has failed its execution."),
    "kube_cronjob_info": ("gauge", "Info about cronjob."),
    "kube_cronjob_labels": ("gauge", "Kubernetes labels converted to Prometheus labels."),
    "kube_cronjob_created": ("gauge", "Unix creation timestamp"),
    "kube_cronjob_next_schedule_time": (
        "gauge",
        "Next time the cronjob should be scheduled. The time after lastScheduleTime, or after the "
        "cron job's creation time if it's never been scheduled. Use this to determine if the job is delayed.",
    ),
    "kube_cronjob_status_last_schedule_time": (
        "gauge",
        "LastScheduleTime keeps information of when was the last time the job was successfully scheduled.",
    ),
    "kube_cronjob_status_last_successful_time": (
        "gauge",
        "LastSuccessfulTime keeps information of when was the last time the job was completed successfully.",
    ),
    "kube_cronjob_status_active": ("gauge", "Active holds pointers to currently running jobs."),
    "kube_cronjob_spec_suspend": (
        "gauge",
        "Suspend flag tells the controller to suspend subsequent executions.",
    ),
    "kube_pod_info": ("gauge", "Information about pod."),
    "kube_pod_status_phase": ("gauge", "The pods current phase."),
    "kube_pod_status_ready": ("gauge", "Describes whether the pod is ready to serve requests."),
    "kube_pod_container_status_restarts_total": (
        "counter",
        "The number of container restarts per container.",
    ),
    "kube_pod_container_status_ready": (
        "gauge",
        "Describes whether the containers readiness check succeeded.",
    ),
    "kube_deployment_spec_replicas": ("gauge", "Number of desired pods for a deployment."),
    "kube_deployment_status_replicas_available": (
        "gauge",
        "The number of available replicas per deployment.",
    ),
    "kube_statefulset_replicas": ("gauge", "Number of desired pods for a StatefulSet."),
    "kube_statefulset_status_replicas_ready": ("gauge", "The number of ready replicas per StatefulSet."),
    "kube_node_spec_unschedulable": ("gauge", "Whether a node can schedule new pods."),
    "kube_node_status_condition": ("gauge", "The condition of a cluster node."),
}

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def label_name(prefix: str, key: str) -> str:
    """``label_app_kubernetes_io_name`` for ``app.kubernetes.io/name`` (kube-state-metrics' sanitising)."""
    return f"{prefix}_{_INVALID_LABEL_CHARS.sub('_', key)}"


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else an empty one (objects are JSON any client wrote)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def number(value: Any) -> float:
    """A JSON number as float; 0 for anything else (a missing count is 0 in kube-state-metrics too)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def bool_value(flag: Any) -> float:
    return 1.0 if flag is True else 0.0


def timestamp(value: Any) -> float | None:
    """Whole epoch seconds of an RFC 3339 time (kube-state-metrics exports ``Time.Unix()``), else None."""
    parsed = parse_time(value) if isinstance(value, str) and value else None
    return float(int(parsed)) if parsed is not None else None


def condition_series(name: str, labels: dict[str, str], status: Any, key: str = "condition") -> list[Series]:
    """Three series ``<key>=true|false|unknown``, 1 on the one ``status`` (``True``/``False``/``Unknown``) is.

    As kube-state-metrics: any other status gives three zeros.
    """
    return [
        Series(name, {**labels, key: value.lower()}, 1.0 if status == value else 0.0)
        for value in ("True", "False", "Unknown")
    ]


class _Families(Collector):
    def __init__(self, series: Iterable[Series]) -> None:
        self.series = list(series)

    def collect(self) -> Iterator[Metric]:
        grouped: dict[str, Metric] = {}
        for item in self.series:
            family = grouped.get(item.name)
            if family is None:
                kind, doc = FAMILIES.get(item.name, ("gauge", item.name))
                base = item.name.removesuffix("_total") if kind == "counter" else item.name
                family = grouped[item.name] = Metric(base, doc, kind)
            family.add_sample(item.name, item.labels, item.value)
        yield from grouped.values()


def render(series: Iterable[Series]) -> bytes:
    """The text exposition (format 0.0.4) of ``series``, one family per metric name."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(series))
    return generate_latest(registry)
