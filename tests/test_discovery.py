"""``chaos discover``: every activity listed once, with the type and module the experiments use.

The expectation below is the list ``chaos discover --no-install mssql-chaos-harness`` gave
when backups, node loss and the alerting drill each had one module mixing actions and
probes (re-typed afterwards); the split into ``*_actions``/``*_probes`` modules must list
the same activities with the same types.
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import probes
from lab.paths import project_root
from orchestration.experiment_tree import experiment_files

CHAOS = str(Path(sys.executable).with_name("chaos"))
EXPERIMENTS = project_root() / "experiments"

#: name -> (type, module) of every activity ``chaos discover`` must list.
EXPECTED: dict[str, tuple[str, str]] = {
    "drain_tenant_node": ("action", "probes.k8s.actions"),
    "evict_tenant_pod": ("action", "probes.k8s.actions"),
    "restart_node": ("action", "probes.k8s.actions"),
    "restart_operator": ("action", "probes.k8s.actions"),
    "set_canary": ("action", "probes.k8s.actions"),
    "uncordon_nodes": ("action", "probes.k8s.actions"),
    "lose_node": ("action", "probes.k8s.node_loss_actions"),
    "restore_node": ("action", "probes.k8s.node_loss_actions"),
    "node_loss_handling": ("probe", "probes.k8s.node_loss_probes"),
    "instances_ready": ("probe", "probes.k8s.probes"),
    "wait_for_canary": ("probe", "probes.k8s.probes"),
    "wait_for_recovery": ("probe", "probes.k8s.probes"),
    "write_success_rate": ("probe", "probes.k8s.probes"),
    "capture_events": ("action", "probes.k8s.evidence"),
    "capture_evidence": ("action", "probes.k8s.evidence"),
    "capture_operator_logs": ("action", "probes.k8s.evidence"),
    "event_last_seen": ("action", "probes.k8s.evidence"),
    "events_in_window": ("action", "probes.k8s.evidence"),
    "events_text": ("action", "probes.k8s.evidence"),
    "snapshot_resources": ("action", "probes.k8s.evidence"),
    "write_snapshots": ("action", "probes.k8s.evidence"),
    "platform_preflight": ("probe", "probes.k8s.preflight"),
    "required_rules": ("probe", "probes.k8s.preflight"),
    "apply_backup_policy": ("action", "probes.k8s.backup_actions"),
    "delete_restore_target": ("action", "probes.k8s.backup_actions"),
    "mark_target_time": ("action", "probes.k8s.backup_actions"),
    "request_backup": ("action", "probes.k8s.backup_actions"),
    "request_restore": ("action", "probes.k8s.backup_actions"),
    "verify_backups": ("action", "probes.k8s.backup_actions"),
    "backup_chain": ("probe", "probes.k8s.backup_probes"),
    "restore_needs_target": ("probe", "probes.k8s.backup_probes"),
    "validate_pitr": ("probe", "probes.k8s.backup_probes"),
    "wait_for_backup": ("probe", "probes.k8s.backup_probes"),
    "clear_failed_backups": ("action", "probes.k8s.alert_drill_actions"),
    "fail_backup_job": ("action", "probes.k8s.alert_drill_actions"),
    "alert_rules_loaded": ("probe", "probes.k8s.alert_drill_probes"),
    "wait_for_alert": ("probe", "probes.k8s.alert_drill_probes"),
    "wait_for_alert_resolved": ("probe", "probes.k8s.alert_drill_probes"),
}


def _listed(activities: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    names = [a["name"] for a in activities]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    return {a["name"]: (a["type"], a["mod"]) for a in activities}


def test_discover_lists_every_activity_once_with_its_type_and_module() -> None:
    assert _listed(probes.discover()["activities"]) == EXPECTED


def test_the_chaos_command_lists_the_same(tmp_path: Path) -> None:
    out = tmp_path / "discovery.json"
    done = subprocess.run(
        [
            CHAOS,
            "--no-version-check",
            "--log-file",
            str(tmp_path / "chaostoolkit.log"),
            "discover",
            "--no-system-info",
            "--no-install",
            "--discovery-path",
            str(out),
            "mssql-chaos-harness",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-1000:]
    discovery = json.loads(out.read_text())
    assert discovery["extension"]["name"] == "mssql-chaos-harness"
    assert _listed(discovery["activities"]) == EXPECTED


#: the facades that only re-export activities (their code lives in the modules they name).
FACADES = (
    "probes.k8s.node_loss_actions",
    "probes.k8s.node_loss_probes",
    "probes.k8s.backup_actions",
    "probes.k8s.backup_probes",
    "probes.k8s.alert_drill_actions",
    "probes.k8s.alert_drill_probes",
)


@pytest.mark.parametrize("module", [*probes.ACTION_MODULES, *probes.PROBE_MODULES])
def test_each_module_exports_its_activities(module: str) -> None:
    """An empty ``__all__`` would make discovery list every function of the module (helpers too)."""
    mod = importlib.import_module(module)
    exported = list(mod.__all__)
    assert len(exported) == len(set(exported)), module
    functions = [name for name in exported if inspect.isfunction(getattr(mod, name, None))]
    assert functions, f"{module} exports no function"
    assert sorted(functions) == sorted(n for n, (_, m) in EXPECTED.items() if m == module)


@pytest.mark.parametrize("module", FACADES)
def test_a_facade_exports_only_activities(module: str) -> None:
    """A name in a facade's ``__all__`` that is not a function would be dropped without a word."""
    mod = importlib.import_module(module)
    assert mod.__doc__ and mod.__all__
    assert all(inspect.isfunction(getattr(mod, name, None)) for name in mod.__all__), module


def test_a_module_holds_actions_or_probes_never_both() -> None:
    assert not set(probes.ACTION_MODULES) & set(probes.PROBE_MODULES)
    assert set(FACADES) <= {*probes.ACTION_MODULES, *probes.PROBE_MODULES}
    for name, (kind, module) in EXPECTED.items():
        modules = probes.ACTION_MODULES if kind == "action" else probes.PROBE_MODULES
        assert module in modules, (name, kind, module)


def _python_activities(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        provider = node.get("provider")
        if isinstance(provider, dict) and provider.get("type") == "python" and "func" in provider:
            found.append(node)
        for value in node.values():
            found.extend(_python_activities(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_python_activities(value))
    return found


def test_every_experiment_names_the_module_and_type_discovery_lists() -> None:
    checked = 0
    for path in experiment_files(EXPERIMENTS):
        for activity in _python_activities(json.loads(path.read_text())):
            provider = activity["provider"]
            if not provider["module"].startswith("probes."):
                continue  # orchestration's own activities are not part of the extension
            where = (path.name, activity.get("name"))
            assert EXPECTED.get(provider["func"]) == (activity["type"], provider["module"]), where
            checked += 1
    assert checked > 30  # the matrix's experiments were read, not skipped


def test_every_experiment_of_the_tree_passes_chaos_validate() -> None:
    for path in experiment_files(EXPERIMENTS):
        done = subprocess.run(
            [str(Path(sys.executable).with_name("chaos")), "--no-version-check", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (path, done.stderr[-1000:])
