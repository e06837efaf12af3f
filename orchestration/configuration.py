"""The experiments' configuration, checked once, up front, with one clear line per mistake.

Chaos Toolkit hands a control whatever the var file and the environment hold: a number
where a list of namespaces belongs, ``"many"`` as a write rate. Used as they are, such
values crash somewhere deep in the run (and Chaos Toolkit swallows a control's crash
and carries on with no load). :func:`check_configuration` reads every known key as
the type it must be and returns the typed values; the first wrong one is an
OrchestrationError naming the key, the type it wants, what it got, and where to fix it.
Keys it does not know are left alone (var-file typos are refused separately).
:func:`load_settings` then reads the load's settings together (``load_mode``,
``load_workers`` and its maximum, ``load_namespace``, ``load_image``): a combination that
cannot mean what was written (workers beyond the maximum, several workers for a local
load) is refused in one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from common.config import ConfigurationError, boolean, name_list
from loadgen.dialects import DIALECTS
from loadgen.errors import LoadgenError
from orchestration.errors import OrchestrationError

__all__ = ["LOAD_MODES", "RUN_KEYS", "SCHEMA", "LoadSettings", "check_configuration", "load_settings"]

#: Where the load runs: ``local`` (one Locust process beside the harness) or ``cluster``
#: (a Locust master and ``load_workers`` workers as pods, :mod:`loadgen.cluster_load`).
LOAD_MODES = ("local", "cluster")
DEFAULT_WORKERS_MAX = 32


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a string")
    return value


def _names(value: Any) -> list[str]:
    if isinstance(value, str) or (isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)):
        return name_list(value)
    raise TypeError("a comma-separated string or a list of names")


def _number(minimum: float, strict: bool) -> Callable[[Any], float]:
    want = f"a number {'above' if strict else 'at least'} {minimum:g}"

    def read(value: Any) -> float:
        if isinstance(value, bool):
            raise TypeError(want)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(want) from None
        if not math.isfinite(number) or number < minimum or (strict and number == minimum):
            raise TypeError(want)
        return number

    return read


def _switch(value: Any) -> bool:
    try:
        return boolean(value, default=False)
    except ConfigurationError:
        raise TypeError("a boolean (true/false, yes/no, 1/0)") from None


def _dialect(value: Any) -> str:
    if value not in DIALECTS:
        raise TypeError(f"one of {', '.join(sorted(DIALECTS))}")
    return str(value)


def _load_mode(value: Any) -> str:
    if value not in LOAD_MODES:
        raise TypeError(f"one of {', '.join(LOAD_MODES)}")
    return str(value)


def _whole(value: Any, low: int, high: float, want: str) -> int:
    """A whole number in ``[low, high]`` (``4``, ``"4"`` or ``4.0``; never a boolean); TypeError(want)."""
    if isinstance(value, bool):
        raise TypeError(want)
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise TypeError(want) from None
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise TypeError(want)
    return int(number)


def _count(value: Any) -> int:
    """A whole number of at least 1."""
    return _whole(value, 1, math.inf, "a whole number at least 1")


def _port(value: Any) -> int:
    """A TCP port to serve on: 0 = any free port, -1 = off."""
    return _whole(value, -1, 65535, "a port number (0 = any free port, -1 = off)")


_POSITIVE = _number(0.0, strict=True)
_NON_NEGATIVE = _number(0.0, strict=False)

#: Every configuration key the harness reads, and how it must be read.
SCHEMA: dict[str, Callable[[Any], Any]] = {
    "namespace": _text,
    "allowed_namespaces": _names,
    "tenants": _names,
    "tenants_file": _text,
    "target_tenant": _text,
    "dialect": _dialect,
    "odbc_driver": _text,
    "tenant_selector": _text,
    "runs_dir": _text,
    "experiment_name": _text,
    "fault": _text,
    "mssql_group": _text,
    "mssql_version": _text,
    "mssql_plural": _text,
    "endpoint_path": _text,
    "secret_path": _text,
    "database_path": _text,
    "ready_path": _text,
    "tenant_pod_selector": _text,
    "operator_namespace": _text,
    "operator_deployment": _text,
    "operator_selector": _text,
    "operator_service_account": _text,
    "operator_cluster_role": _text,
    "operator_rbac_file": _text,
    "helm_release": _text,
    "helm_namespace": _text,
    "helm_instance": _text,
    "write_rate": _POSITIVE,
    "rto_objective_seconds": _POSITIVE,
    "rpo_objective_seconds": _NON_NEGATIVE,
    "stability_seconds": _NON_NEGATIVE,
    "recovery_timeout": _POSITIVE,
    "observe_seconds": _NON_NEGATIVE,
    "steady_window_seconds": _POSITIVE,
    "pdb_retry_interval": _POSITIVE,
    "fault_timeout": _POSITIVE,
    "down_seconds": _NON_NEGATIVE,
    "allow_node_restart": _switch,
    "allow_node_loss": _switch,
    "node_loss_strategy": _text,
    "node_stop_command": _text,
    "node_start_command": _text,
    "allow_foreign_pods_on_node": _switch,
    "restore_create_target": _switch,
    "log_interval_seconds": _POSITIVE,
    "load_mode": _load_mode,
    "load_workers": _count,
    "load_workers_max": _count,
    "load_namespace": _text,
    "load_image": _text,
    "journal_segment_seconds": _NON_NEGATIVE,
    "soak_seconds": _POSITIVE,
    "soak_check_seconds": _POSITIVE,
    "soak_log_interval_seconds": _POSITIVE,
    "backup_rpo_budget_seconds": _POSITIVE,
    "soak_drill_seconds": _NON_NEGATIVE,
    "soak_fault": _text,
    "soak_fault_every_seconds": _NON_NEGATIVE,
    "soak_leak_per_hour": _POSITIVE,
    "soak_metrics_port": _port,
    "soak_seed": _count,
    "full_schedule": _text,
    "backup_timeout": _POSITIVE,
    "restore_timeout": _POSITIVE,
}

#: Keys every run reads, whatever its fault: the control (tenants, load, objectives, run
#: folder), its preflight (RBAC, with what the operator needs from ``operator_rbac_file``;
#: Helm), the target's identity and the evidence (the custom resources' snapshot, operator
#: logs). Chaos Toolkit gives an experiment only the keys it declares and silently drops a
#: var file's value for any other, so every experiment must declare all of these (and every
#: key of :data:`SCHEMA` is declared by some experiment).
RUN_KEYS = frozenset(
    {
        "namespace", "allowed_namespaces", "tenants", "tenants_file", "tenant_selector", "target_tenant",
        "dialect", "odbc_driver", "runs_dir", "experiment_name", "fault",
        "mssql_group", "mssql_version", "mssql_plural", "backup_plural", "backup_policy_plural",
        "restore_plural", "endpoint_path", "secret_path", "database_path",
        "ready_path", "tenant_pod_selector",
        "operator_namespace", "operator_deployment", "operator_selector", "operator_service_account",
        "operator_cluster_role", "operator_rbac_file", "helm_release", "helm_namespace", "helm_instance",
        "write_rate", "rto_objective_seconds", "rpo_objective_seconds", "stability_seconds",
        "observe_seconds", "recovery_timeout", "steady_window_seconds",
        "load_mode", "load_workers", "load_workers_max", "load_namespace", "load_image",
    }
)  # fmt: skip


def check_configuration(configuration: Mapping[str, Any] | None) -> dict[str, Any]:
    """The known keys of ``configuration`` read as their types; OrchestrationError on the first bad one."""
    typed: dict[str, Any] = {}
    for key, value in (configuration or {}).items():
        read = SCHEMA.get(key)
        if read is None or value is None:
            continue
        try:
            typed[key] = read(value)
        except TypeError as exc:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise OrchestrationError(
                f"configuration key {key!r} must be {exc}, got {shown} ({type(value).__name__}): "
                "fix it in the var file or its HARNESS_* environment variable"
            ) from None
    return typed


@dataclass(frozen=True)
class LoadSettings:
    """Where and how the load runs (from :func:`load_settings`)."""

    mode: str
    workers: int
    workers_max: int
    namespace: str
    image: str


def load_settings(typed: Mapping[str, Any]) -> LoadSettings:
    """The load's settings from :func:`check_configuration`'s values; OrchestrationError on a bad combination.

    ``load_namespace`` defaults to the tenants' namespace, ``load_image`` (cluster mode) to
    ``mssql-chaos-harness/harness:<version>``. The namespace still has to pass the
    blast-radius guard, which the control checks.
    """
    mode = str(typed.get("load_mode") or "local")
    workers = int(typed.get("load_workers", 1))
    most = int(typed.get("load_workers_max", DEFAULT_WORKERS_MAX))
    if mode == "local" and workers != 1:
        raise OrchestrationError(
            f"load_workers is {workers} but load_mode is local (one Locust process, no workers): "
            "set load_mode to cluster (HARNESS_LOAD_MODE=cluster), or load_workers to 1"
        )
    if workers > most:
        raise OrchestrationError(
            f"load_workers {workers} is over load_workers_max {most}: lower load_workers, "
            "or raise load_workers_max if the cluster has room for that many load pods"
        )
    namespace = str(typed.get("load_namespace") or typed.get("namespace") or "default")
    image = str(typed.get("load_image") or "")
    if mode == "cluster" and not image:
        from loadgen.cluster_manifests import default_image

        try:
            image = default_image()
        except LoadgenError as exc:
            raise OrchestrationError(str(exc)) from None
    return LoadSettings(mode=mode, workers=workers, workers_max=most, namespace=namespace, image=image)
