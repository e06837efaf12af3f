"""Chaos Toolkit control: N-tenant load around an experiment, and the run folder.

Declared in an experiment as::

    "controls": [{"name": "tenant-load", "provider": {"type": "python", "module": "loadgen.control"}}]

- before the experiment (so before the first steady-state hypothesis): create
  ``runs/<run-id>/``, find the tenants (MSSQLInstance CRs, or ``tenants_file``),
  check each one, start the Locust load in its own process and wait until every
  tenant is acknowledging writes. ``HARNESS_RUN_DIR`` tells the experiment's own
  activities where the run folder is.
- after the rollbacks: stop the load.
- after the experiment: save the Chaos Toolkit journal, then hand the folder to
  ``python -m probes finalize`` (evidence, read-back, report) in a separate process:
  the load layer never imports the layers that read its journal.

A problem found before any fault is injected (unreachable API, missing CRD, unknown
tenant, namespace outside ``allowed_namespaces``, unreachable database) aborts the
run with one line and nothing injected. Chaos Toolkit swallows exceptions from
controls, so those are raised as ``InterruptExecution``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadgen.discovery import CrdCoordinates, discover_tenants, name_list, write_tenants_file
from loadgen.errors import LoadgenError
from loadgen.runner import LoadRun, default_run_id, preflight
from loadgen.tenants import load_tenants, redact

__all__ = [
    "before_experiment_control",
    "after_rollback_control",
    "after_experiment_control",
    "cleanup_control",
    "RUN_DIR_ENV",
]

RUN_DIR_ENV = "HARNESS_RUN_DIR"
logger = logging.getLogger("chaostoolkit")

_state: dict[str, Any] = {}


def _interrupt(message: str) -> Exception:
    from chaoslib.exceptions import InterruptExecution

    return InterruptExecution(redact(message))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "experiment"


def check_namespace(configuration: Mapping[str, Any]) -> str:
    """The tenants' namespace, refused when outside a configured ``allowed_namespaces``."""
    namespace = str(configuration.get("namespace") or "default")
    allowed = name_list(configuration.get("allowed_namespaces"))
    if allowed and namespace not in allowed:
        raise LoadgenError(
            f"namespace {namespace!r} is not in allowed_namespaces {allowed}: "
            "add it there if this cluster may really be disrupted"
        )
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
        check_namespace(configuration),
        CrdCoordinates.from_configuration(configuration),
        names=name_list(configuration.get("tenants")) or None,
        label_selector=str(configuration.get("tenant_selector") or ""),
        dialect=str(configuration.get("dialect") or "postgresql"),
        driver=str(configuration.get("odbc_driver") or ""),
        kubeconfig=configuration.get("kubeconfig") or None,
    )
    return write_tenants_file(target, entries), secrets_dir


def _cli_values(flag: str, argv: list[str]) -> list[str]:
    values = []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
    return values


def check_var_files(argv: list[str], known: set[str] | None = None) -> None:
    """Refuse malformed ``--var-file`` arguments of this ``chaos run``.

    Chaos Toolkit reads var files as YAML and quietly ignores what it cannot use (a
    truncated JSON file still parses as YAML), so a typo would run the experiment with
    defaults: on a real cluster, against the wrong target. Each file must be a mapping
    whose only keys are ``configuration`` and ``secrets``, each a mapping.
    """
    import yaml

    for path in _cli_values("--var-file", argv):
        if path.endswith(".env"):
            continue
        try:
            text = Path(path).read_text()
            doc = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        except OSError as exc:
            raise LoadgenError(f"var file {path} cannot be read ({exc.strerror}): fix the path") from None
        except json.JSONDecodeError as exc:
            raise LoadgenError(f"var file {path} is not valid JSON (line {exc.lineno}): fix it") from None
        except yaml.YAMLError:
            raise LoadgenError(f"var file {path} is not valid YAML: fix it") from None
        if not isinstance(doc, dict) or set(doc) - {"configuration", "secrets"}:
            raise LoadgenError(
                f"var file {path} must hold only 'configuration' and 'secrets' mappings: fix it"
            )
        if not all(isinstance(v, dict) for v in doc.values()):
            raise LoadgenError(f"var file {path}: 'configuration' and 'secrets' must be mappings: fix it")
        unknown = sorted(set(doc.get("configuration") or {}) - known) if known is not None else []
        if unknown:
            raise LoadgenError(
                f"var file {path} sets {unknown}, which the experiment does not declare "
                "(Chaos Toolkit would ignore them): fix the key names"
            )


def _declared_keys(experiment: Mapping[str, Any], argv: list[str]) -> set[str]:
    """Configuration keys declared by this experiment or any experiment beside it.

    One var file usually serves every experiment of a folder, so a key declared by a
    sibling is legitimate here; a key no experiment declares is a typo.
    """
    keys = set(experiment.get("configuration") or {})
    for arg in argv[1:]:
        path = Path(arg)
        if path.suffix == ".json" and path.is_file() and arg not in _cli_values("--var-file", argv):
            for sibling in path.resolve().parent.glob("*.json"):
                try:
                    doc = json.loads(sibling.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                if isinstance(doc, dict) and isinstance(doc.get("configuration"), dict) and "method" in doc:
                    keys |= set(doc["configuration"])
    return keys


def before_experiment_control(
    context: dict[str, Any], configuration: dict[str, Any] | None = None, **_kwargs: Any
) -> None:
    """Create the run folder and start the load; abort the run on any problem."""
    configuration = configuration or {}
    title = str(context.get("title", "experiment"))
    run_id = f"{default_run_id()}-{_slug(str(configuration.get('experiment_name') or title))}"
    run_dir = Path(str(configuration.get("runs_dir") or "runs")).resolve() / run_id
    try:
        check_var_files(sys.argv, _declared_keys(context, sys.argv))
        check_namespace(configuration)
        run_dir.mkdir(parents=True)
        tenants_file, secrets_dir = _tenants_file(run_dir, configuration)
        _state["secrets_dir"] = secrets_dir
        tenants = load_tenants(tenants_file)
        target = str(configuration.get("target_tenant") or "")
        if target and target not in {t.name for t in tenants}:
            raise LoadgenError(
                f"unknown target tenant {target!r}: not among {sorted(t.name for t in tenants)}; "
                "set HARNESS_TARGET_TENANT (or target_tenant in the var file) to one of them"
            )
        preflight(tenants)
        rate = float(configuration.get("write_rate", 20))
        if rate <= 0:
            raise LoadgenError(f"write_rate must be positive, got {rate:g}")
        load = LoadRun(tenants_file, run_dir, run_id, users=len(tenants), rate=rate)
        os.environ[RUN_DIR_ENV] = str(run_dir)
        _state.update(
            run_dir=run_dir,
            load=load,
            started_at=time.time(),
            tenants=[t.name for t in tenants],
            configuration=dict(configuration),
            title=title,
        )
        _write_run_json(run_dir, status="running")
        load.start()
        load.wait_acks([t.name for t in tenants])
    except LoadgenError as exc:
        _stop_load()
        if run_dir.exists() and not (run_dir / "journal").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was measured: leave no empty run behind
        _state.clear()
        raise _interrupt(f"harness: {exc}") from None
    logger.info(f"Load running on {len(tenants)} tenant(s); run folder {run_dir}")


def _stop_load() -> None:
    load: LoadRun | None = _state.get("load")
    if load is not None and load.running():
        load.stop()
        _state["ended_at"] = time.time()


def after_rollback_control(context: Any = None, state: Any = None, **_kwargs: Any) -> None:
    """Stop the load once the rollbacks have run."""
    _stop_load()


def _write_run_json(run_dir: Path, status: str, journal: Mapping[str, Any] | None = None) -> None:
    configuration: Mapping[str, Any] = _state.get("configuration", {})
    experiment = {"title": _state.get("title"), "fault": configuration.get("fault") or None}
    doc = {
        "run_id": run_dir.name,
        "target": "kubernetes",
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
        "experiment": experiment,
        "chaos_status": status,
        "interrupted": status == "interrupted",
    }
    if journal is not None:
        doc["deviated"] = bool(journal.get("deviated"))
    (run_dir / "run.json").write_text(json.dumps(doc, indent=2))


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
    (run_dir / "chaos-journal.json").write_text(redact(json.dumps(journal, indent=2, default=str)))
    _write_run_json(run_dir, status=status, journal=journal)
    kubeconfig = (configuration or {}).get("kubeconfig")
    argv = [sys.executable, "-m", "probes", "finalize", str(run_dir)]
    if kubeconfig:
        argv += ["--kubeconfig", str(kubeconfig)]
    done = subprocess.run(argv, check=False, stdout=subprocess.DEVNULL)
    if done.returncode == 0:
        logger.info(f"Report: {run_dir / 'report.md'}")
    else:
        logger.error(f"Building the report failed (exit {done.returncode}); the run data is in {run_dir}")


def cleanup_control() -> None:
    """Last resort: never leave the load running or a secret on disk."""
    _stop_load()
    secrets_dir = _state.pop("secrets_dir", None)
    if secrets_dir is not None:
        shutil.rmtree(secrets_dir, ignore_errors=True)
    os.environ.pop(RUN_DIR_ENV, None)
    _state.clear()
