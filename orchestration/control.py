"""Chaos Toolkit control: N-tenant load around an experiment, and the run folder.

Declared in an experiment as::

    "controls": [{"name": "tenant-load", "provider": {"type": "python", "module": "orchestration.control"}}]

- before the experiment (so before the first steady-state hypothesis): check the
  configuration's types, create ``runs/<run-id>/``, record the target's identity
  (embedded lab or cluster), find the tenants (MSSQLInstance CRs, or ``tenants_file``),
  check each one, start the Locust load (``load_mode: local``: its own process;
  ``cluster``: a master and ``load_workers`` worker pods, mirrored into the run folder)
  and wait until every tenant has been acknowledging writes for the stability period. ``HARNESS_RUN_DIR``
  tells the experiment's own activities where the run folder is.
- after the rollbacks: stop the load, recording when it was asked to stop and how it
  ended (a load that died before is a violation in the report).
- after the experiment: save the Chaos Toolkit journal and ``run.json``, then take
  the evidence, read every row back and build the report.

Fail closed: Chaos Toolkit swallows exceptions from controls and carries on (with no
load, no run folder). So any exception in the before-control, expected or not,
becomes ``InterruptExecution`` with one line, and nothing is injected. A failure in a
later control cannot stop the experiment any more; it is logged and recorded in
``run.json`` (``harness_errors``), and the report's verdict is NO-GO.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from common.config import ConfigurationError, name_list
from loadgen.cluster_load import ClusterLoadRun
from loadgen.discovery import CrdCoordinates, discover_tenants, write_tenants_file
from loadgen.errors import LoadgenError
from loadgen.metrics import SD_DIR_ENV
from loadgen.runner import LoadRun, default_run_id, preflight
from loadgen.secretsdir import sweep_stale_secrets
from loadgen.tenants import load_tenants, redact
from orchestration.configuration import LoadSettings, check_configuration, load_settings
from orchestration.errors import OrchestrationError
from orchestration.soak_settings import is_soak, soak_settings
from orchestration.var_files import EXPERIMENT_IDENTITY, check_var_files, cli_values, declared_keys
from probes.errors import ProbeError
from probes.finalize import finalize
from probes.k8s import kube
from probes.k8s.evidence import snapshot_resources
from probes.k8s.target import target_identity
from reports.build import build
from reports.errors import ReportError

__all__ = [
    "before_experiment_control",
    "after_rollback_control",
    "after_experiment_control",
    "cleanup_control",
    "RUN_DIR_ENV",
    "slug",
    # Re-exported from orchestration.var_files, where they live now.
    "EXPERIMENT_IDENTITY",
    "check_var_files",
    "cli_values",
]

F = TypeVar("F", bound=Callable[..., Any])

RUN_DIR_ENV = "HARNESS_RUN_DIR"
logger = logging.getLogger("chaostoolkit")

_state: dict[str, Any] = {}


def _interrupt(message: str) -> Exception:
    from chaoslib.exceptions import InterruptExecution

    return InterruptExecution(redact(message))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


def _interrupting(func: F) -> F:
    """Any exception from ``func`` becomes InterruptExecution: the run stops before any fault."""

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        from chaoslib.exceptions import InterruptExecution

        try:
            return func(*args, **kwargs)
        except InterruptExecution:
            raise
        except Exception as exc:
            _abandon_run()
            raise _interrupt(
                f"harness: unexpected error before any fault ({_one_line(exc)}); nothing was injected"
            ) from None

    return guarded  # type: ignore[return-value]


def _recording(func: F) -> F:
    """Any exception from ``func`` is logged and recorded in run.json; the verdict will be NO-GO."""

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            message = redact(f"{func.__name__}: {_one_line(exc)}")
            logger.error(f"harness: {message}")
            _state.setdefault("errors", []).append(message)
            run_dir: Path | None = _state.get("run_dir")
            if run_dir is not None:
                _write_run_json(run_dir, status=str(_state.get("status") or "unknown"))
            return None

    return guarded  # type: ignore[return-value]


def slug(text: str) -> str:
    """The run id's name part: lower case, runs of other characters as one ``-``, 40 at most."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "experiment"


def check_namespace(configuration: Mapping[str, Any], secrets: Mapping[str, Any] | None = None) -> str:
    """The tenants' namespace, through the same blast-radius guard as every fault."""
    namespace = str(configuration.get("namespace") or "default")
    try:
        kube.check_namespace(namespace, configuration, secrets)
    except ProbeError as exc:
        raise LoadgenError(str(exc)) from None
    return namespace


def _tenants_file(run_dir: Path, configuration: Mapping[str, Any]) -> tuple[Path, Path | None]:
    given = configuration.get("tenants_file")
    target = run_dir / "tenants.json"
    if given:
        tenants = load_tenants(Path(str(given)))
        wanted = name_list(configuration.get("tenants"))
        unknown = [n for n in wanted if n not in {t.name for t in tenants}]
        if unknown:
            raise LoadgenError(f"unknown tenant(s) {unknown} in tenants file {given}")
        doc = json.loads(Path(str(given)).read_text())
        entries = [e for e in doc["tenants"] if not wanted or e["name"] in wanted]
        return write_tenants_file(target, entries), None
    entries, secrets_dir = discover_tenants(
        str(configuration.get("namespace") or "default"),
        CrdCoordinates.from_configuration(configuration),
        names=name_list(configuration.get("tenants")) or None,
        label_selector=str(configuration.get("tenant_selector") or ""),
        dialect=str(configuration.get("dialect") or "postgresql"),
        driver=str(configuration.get("odbc_driver") or ""),
        kubeconfig=configuration.get("kubeconfig") or None,
    )
    return write_tenants_file(target, entries), secrets_dir


def _abandon_run() -> None:
    """Stop what a failed start began, and leave no secret or empty run folder behind."""
    _stop_load()
    secrets_dir = _state.get("secrets_dir")
    if secrets_dir is not None:
        shutil.rmtree(secrets_dir, ignore_errors=True)
    run_dir: Path | None = _state.get("run_dir")
    if run_dir is not None and run_dir.exists() and not (run_dir / "journal").exists():
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing was measured: leave no empty run behind
    os.environ.pop(RUN_DIR_ENV, None)
    _state.clear()


def _identity(configuration: Mapping[str, Any], secrets: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return target_identity(configuration, secrets)
    except ProbeError as exc:
        raise LoadgenError(f"cannot identify the target: {exc}") from None


def _announce_load_to_lab_prometheus() -> None:
    """On a lab with monitoring, let its Prometheus find the load (file_sd in the lab's targets folder).

    A user's own ``HARNESS_PROMETHEUS_SD_DIR`` wins; on a real cluster nothing is set.
    """
    if os.environ.get(SD_DIR_ENV):
        return
    try:
        monitoring = kube.lab_monitoring()
    except ProbeError as exc:
        logger.warning(f"harness: the lab's monitoring is unreadable ({exc}); the load is not scraped")
        return
    if monitoring is not None:
        os.environ[SD_DIR_ENV] = str(monitoring.targets_dir)


@_interrupting
def before_experiment_control(
    context: dict[str, Any],
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **_kwargs: Any,
) -> None:
    """Check the configuration, create the run folder and start the load; abort the run on any problem."""
    configuration = configuration or {}
    title = str(context.get("title", "experiment"))
    for stale in sweep_stale_secrets():
        logger.info(f"Removed {stale}, left behind by a run that was killed")
    try:
        typed = check_configuration(configuration)
        check_var_files(sys.argv, declared_keys(context, sys.argv))
        settings = load_settings(typed)
        soak = soak_settings(typed) if is_soak(configuration) else None
        if soak is not None and settings.mode == "cluster":
            raise OrchestrationError(
                "a soak journals in one-minute segments compacted to Parquet, which a cluster load does not "
                "write (its master keeps one growing file per worker): run the soak with load_mode local"
            )
        CrdCoordinates.from_configuration(configuration)
        run_id = f"{default_run_id()}-{slug(str(typed.get('experiment_name') or title))}"
        run_dir = Path(str(typed.get("runs_dir") or "runs")).resolve() / run_id
        check_namespace(configuration, secrets)
        if settings.mode == "cluster":
            check_namespace({**configuration, "namespace": settings.namespace}, secrets)
        target = _identity(configuration, secrets)
        _announce_load_to_lab_prometheus()
        run_dir.mkdir(parents=True)
        _state.update(run_dir=run_dir, configuration=dict(configuration), title=title, target=target)
        tenants_file, secrets_dir = _tenants_file(run_dir, configuration)
        _state["secrets_dir"] = secrets_dir
        tenants = load_tenants(tenants_file)
        aimed = str(typed.get("target_tenant") or "")
        if aimed and aimed not in {t.name for t in tenants}:
            raise LoadgenError(
                f"unknown target tenant {aimed!r}: not among {sorted(t.name for t in tenants)}; "
                "set HARNESS_TARGET_TENANT (or target_tenant in the var file) to one of them"
            )
        preflight(tenants)
        rate = float(typed.get("write_rate", 20.0))
        segments = (
            soak.segment_seconds if soak is not None else float(typed.get("journal_segment_seconds", 0))
        )
        load = _make_load(
            settings, configuration, tenants_file, run_dir, run_id, len(tenants), rate, segments
        )
        os.environ[RUN_DIR_ENV] = str(run_dir)
        _state.update(load=load, started_at=time.time(), tenants=[t.name for t in tenants], status="running")
        _write_run_json(run_dir, status="running")
        load.start()
        _write_run_json(run_dir, status="running")
        load.wait_acks([t.name for t in tenants], stability=float(typed.get("stability_seconds", 5.0)))
    except (LoadgenError, ConfigurationError, OrchestrationError) as exc:
        _abandon_run()
        raise _interrupt(f"harness: {exc}") from None
    logger.info(f"Load running on {len(tenants)} tenant(s); run folder {run_dir}")


def _make_load(
    settings: LoadSettings,
    configuration: Mapping[str, Any],
    tenants_file: Path,
    run_dir: Path,
    run_id: str,
    tenants: int,
    rate: float,
    segment_seconds: float = 0.0,
) -> LoadRun | ClusterLoadRun:
    """The local Locust process, or (``load_mode: cluster``) its master and workers as pods.

    Journal segments (``journal_segment_seconds``) are for the local load: a cluster load's
    master keeps one file per worker, which its mirror follows by offset.
    """
    if settings.mode != "cluster":
        return LoadRun(
            tenants_file, run_dir, run_id, users=tenants, rate=rate, segment_seconds=segment_seconds
        )
    kubeconfig = configuration.get("kubeconfig")
    return ClusterLoadRun(
        tenants_file,
        run_dir,
        run_id,
        workers=settings.workers,
        namespace=settings.namespace,
        image=settings.image,
        rate=rate,
        kubeconfig=str(kubeconfig) if kubeconfig else None,
    )


def _stop_load() -> None:
    load: LoadRun | ClusterLoadRun | None = _state.get("load")
    if load is not None and load.stop_requested_at is None:
        load.stop()
        _state["ended_at"] = time.time()
        problem = load.problem()
        if problem:
            logger.error(f"harness: {problem}")


@_recording
def after_rollback_control(context: Any = None, state: Any = None, **_kwargs: Any) -> None:
    """Stop the load once the rollbacks have run."""
    _stop_load()


def _write_run_json(run_dir: Path, status: str, journal: Mapping[str, Any] | None = None) -> None:
    configuration: Mapping[str, Any] = _state.get("configuration", {})
    experiment = {"title": _state.get("title"), "fault": configuration.get("fault") or None}
    load: LoadRun | ClusterLoadRun | None = _state.get("load")
    doc = {
        "run_id": run_dir.name,
        "target": _state.get("target"),
        "tenants": _state.get("tenants", []),
        "objective": {
            "rto_seconds": float(configuration.get("rto_objective_seconds", 60)),
            "rpo_seconds": float(configuration.get("rpo_objective_seconds", 0)),
        },
        "stability_seconds": float(configuration.get("stability_seconds", 5)),
        "started_at": _state.get("started_at"),
        "ended_at": _state.get("ended_at"),
        "write_rate": float(configuration.get("write_rate", 20)),
        "namespace": configuration.get("namespace"),
        # Where the operator runs: the evidence takes its logs from these pods (probes.finalize).
        "operator": {
            "namespace": kube.setting(configuration, "operator_namespace", "HARNESS_OPERATOR_NAMESPACE")
            or kube.DEFAULT_OPERATOR_NAMESPACE,
            "selector": kube.setting(configuration, "operator_selector", "HARNESS_OPERATOR_SELECTOR")
            or kube.DEFAULT_OPERATOR_SELECTOR,
        },
        # The MSSQL custom resources the evidence lists (the configured CRD coordinates).
        "custom_resources": snapshot_resources(configuration),
        "experiment": experiment,
        "chaos_status": status,
        "interrupted": status == "interrupted",
        "load": load.life() if load is not None else None,
        "harness_errors": list(_state.get("errors", [])),
    }
    if journal is not None:
        doc["deviated"] = bool(journal.get("deviated"))
    tmp = run_dir / ".run.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(run_dir / "run.json")


@_recording
def after_experiment_control(
    context: Any = None,
    state: dict[str, Any] | None = None,
    configuration: dict[str, Any] | None = None,
    **_kwargs: Any,
) -> None:
    """Stop the load, save the journal, and build the run's evidence and report."""
    _stop_load()
    run_dir: Path | None = _state.get("run_dir")
    if run_dir is None:
        return
    journal = state or {}
    status = str(journal.get("status") or "unknown")
    _state["status"] = status
    (run_dir / "chaos-journal.json").write_text(redact(json.dumps(journal, indent=2, default=str)))
    _write_run_json(run_dir, status=status, journal=journal)
    kubeconfig = (configuration or {}).get("kubeconfig")
    try:
        finalize(run_dir, str(kubeconfig) if kubeconfig else None, report=False)
        logger.info(f"Report: {build(run_dir)}")
    except (ProbeError, ReportError, LoadgenError) as exc:
        logger.error(f"Building the report failed ({redact(str(exc))}); the run data is in {run_dir}")


def cleanup_control() -> None:
    """Last resort: never leave the load running or a secret on disk."""
    try:
        _stop_load()
    finally:
        secrets_dir = _state.pop("secrets_dir", None)
        if secrets_dir is not None:
            shutil.rmtree(secrets_dir, ignore_errors=True)
        os.environ.pop(RUN_DIR_ENV, None)
        _state.clear()
