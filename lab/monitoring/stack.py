"""Prometheus and Alertmanager as lab processes: check, start (or reload), wait, stop.

``python -m lab up`` calls :func:`preflight` before anything starts (the binaries and
the rules file must exist: one line naming the fix otherwise), :func:`start` once the
control plane is ready and :func:`wait_ready` before it returns; ``lab down`` calls
:func:`stop`. Both programs are Debian's (``/usr/bin/prometheus``,
``/usr/bin/prometheus-alertmanager``; ``$HARNESS_PROMETHEUS_BIN`` and
``$HARNESS_ALERTMANAGER_BIN`` override them), started detached like every lab process
(pidfiles ``prometheus.pid`` and ``alertmanager.pid``), on loopback ports kept in
``cluster.json`` (a new free one when the old is taken), with everything under
``<lab>/monitoring/``: ``prometheus.yml`` and ``alertmanager.yml`` (rewritten at every
``up``; a running process reloads them), ``prometheus-data/``, ``alertmanager-data/``,
``prometheus.log``, ``alertmanager.log``, ``targets/`` (file_sd; ``up`` removes the
files of load processes that are gone) and ``endpoints.json``.

Alertmanager runs with ``--cluster.listen-address=`` (empty: no gossip port; it would
otherwise bind 0.0.0.0:9094). Prometheus runs with ``--web.enable-lifecycle`` so a
running one reloads its configuration on ``POST /-/reload``. "Ready" means ``/-/ready``
answers 200 on both and every rule group of the rules file is listed by Prometheus's
``/api/v1/rules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import requests
import yaml

from lab import processes
from lab.cluster_layout import Layout, port_free, running, spawn
from lab.engine import free_port
from lab.errors import LabError
from lab.monitoring import ENDPOINTS_FILE, MonitoringEndpoints
from lab.monitoring.alertmanager_config import write_alertmanager_config
from lab.monitoring.prometheus_config import (
    EVALUATION_INTERVAL_SECONDS,
    SCRAPE_INTERVAL_SECONDS,
    write_prometheus_config,
)
from lab.paths import project_root

__all__ = [
    "MISSING_HINT",
    "NAMES",
    "MonitoringPlan",
    "as_record",
    "default_rules_file",
    "preflight",
    "start",
    "stop",
    "wait_ready",
]

NAMES = ("prometheus", "alertmanager")
MISSING_HINT = (
    "install Debian's prometheus and prometheus-alertmanager (make setup does), or pass --no-monitoring"
)
_BINARIES = {
    "prometheus": ("HARNESS_PROMETHEUS_BIN", "/usr/bin/prometheus"),
    "alertmanager": ("HARNESS_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager"),
}


def default_rules_file() -> Path:
    """``$HARNESS_ALERT_RULES``, else the repository's alert rules (next to the ``lab`` package)."""
    override = os.environ.get("HARNESS_ALERT_RULES")
    return Path(override) if override else project_root() / "deploy" / "alerts" / "mssql-harness.rules.yaml"


@dataclass(frozen=True)
class MonitoringPlan:
    """What :func:`preflight` checked: the programs, the rules file and its rule groups."""

    prometheus: Path
    alertmanager: Path
    rules_file: Path
    groups: tuple[str, ...]


def _binary(name: str) -> Path:
    env, default = _BINARIES[name]
    path = Path(os.environ.get(env) or default)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise LabError(f"{path} not found or not executable: {MISSING_HINT}")
    return path


def preflight(rules_file: Path | None = None) -> MonitoringPlan:
    """Check the programs and the rules file (default :func:`default_rules_file`); LabError in one line."""
    prometheus, alertmanager = _binary("prometheus"), _binary("alertmanager")
    rules = (rules_file or default_rules_file()).resolve()
    if not rules.is_file():
        raise LabError(
            f"alert rules file {rules} is missing: add it (the repository's "
            "deploy/alerts/mssql-harness.rules.yaml), pass --alert-rules FILE, or pass --no-monitoring"
        )
    try:
        doc = yaml.safe_load(rules.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        reason = str(exc).replace("\n", " ")
        raise LabError(f"alert rules file {rules} is not readable YAML ({reason}): fix it") from None
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not isinstance(groups, list):
        raise LabError(f"alert rules file {rules} has no `groups:` list: write Prometheus rule groups in it")
    names = tuple(str(g.get("name")) for g in groups if isinstance(g, dict))
    _check_rules(prometheus.parent / "promtool", rules)
    return MonitoringPlan(prometheus, alertmanager, rules, names)


def _check_rules(promtool: Path, rules: Path) -> None:
    """``promtool check rules`` (shipped with Prometheus), when there: bad PromQL fails before any start."""
    if not (promtool.is_file() and os.access(promtool, os.X_OK)):
        return
    done = subprocess.run(
        [str(promtool), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
        detail = next((ln for ln in reversed(lines) if ln.startswith(str(rules))), lines[-1] if lines else "")
        raise LabError(f"alert rules file {rules} fails `promtool check rules`: {detail}: fix it")


def _port(ports: dict[str, Any], key: str, layout: Layout, name: str, avoid: set[Any]) -> int:
    """The kept port of ``name`` when its process runs or the port is free, else a new free one."""
    stored = ports.get(key)
    if isinstance(stored, int) and stored not in avoid:  # noqa: SIM102 - mypy narrows only here
        if running(layout, name) is not None or port_free(stored):
            return stored
    chosen = free_port()
    while chosen in avoid:
        chosen = free_port()
    ports[key] = chosen
    return chosen


def _post(url: str, timeout: float = 30.0) -> None:
    try:
        resp = requests.post(url, timeout=timeout)
    except requests.RequestException as exc:
        raise LabError(
            f"cannot reach {url} to reload it ({type(exc).__name__}): `python -m lab down`, then up again"
        ) from None
    if resp.status_code != 200:
        detail = resp.text.strip().splitlines()
        raise LabError(
            f"reloading {url} failed: {detail[-1] if detail else resp.status_code}: fix the configuration"
        )


def _get_json(url: str) -> Any:
    resp = requests.get(url, timeout=2)
    resp.raise_for_status()
    return resp.json()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _drop_stale_load_targets(folder: Path) -> list[Path]:
    """Remove ``load-<pid>.json`` files of load processes that are gone (killed ones leave theirs)."""
    dropped = []
    for path in folder.glob("load-*.json"):
        pid = path.stem.removeprefix("load-")
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            path.unlink(missing_ok=True)
            dropped.append(path)
    return dropped


def start(layout: Layout, config: dict[str, Any], plan: MonitoringPlan, ksm_port: int) -> dict[str, int]:
    """Write both configs and start Prometheus and Alertmanager, or reload the running ones.

    Ports are taken from (and kept in) ``config["monitoring"]``; returns them. Does not wait.
    """
    mon = layout.monitoring
    for folder in (mon, mon / "targets", mon / "prometheus-data", mon / "alertmanager-data"):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    _drop_stale_load_targets(mon / "targets")
    ports = config.setdefault("monitoring", {})
    taken = {config.get("port"), ksm_port}
    prom_port = _port(ports, "prometheus_port", layout, "prometheus", taken)
    am_port = _port(ports, "alertmanager_port", layout, "alertmanager", {*taken, prom_port})
    write_alertmanager_config(mon / "alertmanager.yml")
    write_prometheus_config(
        mon / "prometheus.yml",
        prometheus_port=prom_port,
        alertmanager_port=am_port,
        ksm_port=ksm_port,
        targets_dir=mon / "targets",
        rules_file=plan.rules_file,
    )
    if running(layout, "alertmanager") is None:
        argv = [
            str(plan.alertmanager),
            f"--config.file={mon / 'alertmanager.yml'}",
            f"--storage.path={mon / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ]
        _spawn(layout, "alertmanager", argv)
    else:
        _post(f"http://127.0.0.1:{am_port}/-/reload")
    if running(layout, "prometheus") is None:
        argv = [
            str(plan.prometheus),
            f"--config.file={mon / 'prometheus.yml'}",
            f"--storage.tsdb.path={mon / 'prometheus-data'}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--web.enable-lifecycle",
        ]
        _spawn(layout, "prometheus", argv)
    else:
        _post(f"http://127.0.0.1:{prom_port}/-/reload")
    return {"prometheus_port": prom_port, "alertmanager_port": am_port}


def _failure(lines: list[str]) -> str:
    """The most telling line of a failed start: a rule that did not load, else the first error."""
    errors = [ln for ln in lines if "level=error" in ln and "file watch" not in ln]
    for line in errors:
        if "loading groups failed" in line:
            return line
    return errors[0] if errors else (lines[-1] if lines else "no output")


def _alive_or_raise(layout: Layout, name: str) -> None:
    if running(layout, name) is None:
        log = layout.monitoring / f"{name}.log"
        try:
            lines = log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        raise LabError(f"{name} exited: {_failure(lines)} (see {log})")


def _spawn(layout: Layout, name: str, argv: list[str]) -> None:
    """Start ``name`` with a fresh log (the previous run's kept as ``<name>.log.1``)."""
    log = layout.monitoring / f"{name}.log"
    if log.exists():
        log.replace(log.with_name(f"{name}.log.1"))
    spawn(layout, name, argv, log)


def _rules_loaded(prom: str, plan: MonitoringPlan) -> bool:
    try:
        body = _get_json(f"{prom}/api/v1/rules")
    except (requests.RequestException, ValueError):
        return False
    listed = {
        (str(g.get("file")), str(g.get("name")))
        for g in ((body.get("data") or {}).get("groups") or [])
        if isinstance(g, dict)
    }
    return body.get("status") == "success" and all((str(plan.rules_file), n) in listed for n in plan.groups)


def wait_ready(
    layout: Layout, ports: dict[str, int], plan: MonitoringPlan, ksm_port: int, timeout: float = 60.0
) -> MonitoringEndpoints:
    """Wait for both ``/-/ready`` and the rule groups; write ``endpoints.json``; LabError naming the log."""
    prom = f"http://127.0.0.1:{ports['prometheus_port']}"
    am = f"http://127.0.0.1:{ports['alertmanager_port']}"
    deadline = time.monotonic() + timeout
    checks = (
        ("alertmanager", "Alertmanager ready", lambda: _answers(f"{am}/-/ready")),
        ("prometheus", "Prometheus ready", lambda: _answers(f"{prom}/-/ready")),
        ("prometheus", f"Prometheus loading {plan.rules_file}", lambda: _rules_loaded(prom, plan)),
    )
    for name, what, check in checks:
        while not check():
            _alive_or_raise(layout, name)
            if time.monotonic() >= deadline:
                raise LabError(f"{what} not after {timeout:.0f}s: see {layout.monitoring / (name + '.log')}")
            time.sleep(0.1)
    endpoints = MonitoringEndpoints(
        prometheus=prom,
        alertmanager=am,
        scrape_interval_seconds=SCRAPE_INTERVAL_SECONDS,
        evaluation_interval_seconds=EVALUATION_INTERVAL_SECONDS,
        targets_dir=layout.monitoring / "targets",
        rules_file=plan.rules_file,
        kube_state_metrics=f"http://127.0.0.1:{ksm_port}/metrics",
    )
    path = layout.monitoring / ENDPOINTS_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(as_record(endpoints), indent=2) + "\n")
    tmp.replace(path)
    return endpoints


def as_record(endpoints: MonitoringEndpoints | None) -> dict[str, Any] | None:
    """``endpoints`` as JSON-ready values (paths as strings), as ``endpoints.json`` holds them."""
    if endpoints is None:
        return None
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(endpoints).items()}


def stop(layout: Layout, timeout: float = 15.0) -> list[str]:
    """Stop Prometheus and Alertmanager (SIGTERM, then SIGKILL of the tree); remove ``endpoints.json``.

    Returns the names stopped; LabError if one survives SIGKILL.
    """
    (layout.monitoring / ENDPOINTS_FILE).unlink(missing_ok=True)
    found = [(name, proc) for name in NAMES if (proc := running(layout, name)) is not None]
    for _, proc in found:
        try:
            proc.terminate()
        except psutil.Error:
            continue
    stopped = []
    for name, proc in found:
        if processes.wait_gone([proc], timeout):
            survivors = processes.kill_trees([proc])
            if survivors:
                raise LabError(f"{name} (pid {proc.pid}) survived SIGKILL: stop it by hand")
        stopped.append(name)
    for name in NAMES:
        (layout.pids / f"{name}.pid").unlink(missing_ok=True)
    return stopped
