"""The release command's preflight: refuse to start when no experiment could run correctly.

Before any fault, with the configuration every experiment will see (the experiment's
own ``configuration`` block with the var files applied, exactly as ``chaos run`` builds
it, through chaoslib), :func:`release_preflight` checks, and stops at the first failure
with one line naming the problem and the fix:

1. the var files: readable, only ``configuration`` and ``secrets``, no key that no
   experiment declares (:func:`orchestration.control.check_var_files`);
2. every known key's type (:func:`orchestration.configuration.check_configuration`);
3. the API server answers (:func:`probes.k8s.target.target_identity`);
4. the blast radius: the tenants' namespace is in ``allowed_namespaces``;
5. the MSSQLInstance CRD is served and its instances can be listed there;
6. the operator's RBAC: every verb it needs (the rules of ``operator_rbac_file``, else of
   its deployed ClusterRole) is allowed to its service account (``kubectl auth can-i``,
   :func:`probes.k8s.preflight.platform_preflight`, whose files ``rbac.json``,
   ``preflight.json`` and ``helm.json`` land in ``<out>/preflight/``).

It returns what it found (``preflight.json`` in the release folder), the target first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common.config import ConfigurationError
from loadgen.errors import LoadgenError
from orchestration.configuration import check_configuration, load_settings
from orchestration.control import RUN_DIR_ENV, check_namespace, check_var_files
from orchestration.errors import OrchestrationError
from orchestration.experiment_tree import declared_keys as tree_keys
from orchestration.experiment_tree import experiment_files, tree_home
from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.crs import custom_resources
from probes.k8s.preflight import platform_preflight
from probes.k8s.target import target_identity

__all__ = ["declared_keys", "experiment_configuration", "measured_experiment", "release_preflight"]


def _experiment(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise OrchestrationError(f"experiment {path} cannot be read ({exc.strerror}): fix the path") from None
    except json.JSONDecodeError as exc:
        raise OrchestrationError(f"experiment {path} is not valid JSON (line {exc.lineno}): fix it") from None
    if not isinstance(doc, dict) or "method" not in doc:
        raise OrchestrationError(f"{path} is not a Chaos Toolkit experiment (no 'method'): pass one")
    return doc


def declared_keys(experiments: Sequence[Path]) -> set[str]:
    """Every configuration key declared by ``experiments`` or an experiment of their trees,
    as the control judges a var file (:func:`orchestration.experiment_tree.declared_keys`)."""
    keys: set[str] = set()
    for path in experiments:
        keys |= set(_experiment(path).get("configuration") or {}) | tree_keys(path)
    return keys


def experiment_configuration(
    experiment: Path, var_files: Sequence[Path]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(configuration, secrets)`` as ``chaos run --var-file ...`` would give this experiment."""
    from chaoslib import merge_vars
    from chaoslib.configuration import load_configuration
    from chaoslib.secret import load_secrets

    doc = _experiment(experiment)
    try:
        config_vars, secret_vars = merge_vars({}, [str(p) for p in var_files])
        configuration = load_configuration(doc.get("configuration") or {}, config_vars)
        secrets = load_secrets(doc.get("secrets") or {}, configuration, secret_vars)
    except Exception as exc:  # chaoslib raises its own types, or yaml's, for a bad var file
        raise OrchestrationError(f"cannot load the configuration of {experiment.name}: {exc}") from None
    return dict(configuration), dict(secrets or {})


def measured_experiment(experiments: Sequence[Path]) -> Path:
    """The experiment whose configuration the preflight judges: the first of the matrix asked for,
    else the first of its tree's matrix. An opt-in experiment (the capacity sweep) does not declare
    the target's keys (:data:`orchestration.configuration.RUN_KEYS`): its steps run matrix ones."""
    for path in experiments:
        if Path(os.path.abspath(path)).parent == tree_home(path):
            return path
    home = tree_home(experiments[0])
    matrix = [path for path in experiment_files(home) if path.parent == home]
    return matrix[0] if matrix else experiments[0]


def release_preflight(experiments: Sequence[Path], var_files: Sequence[Path], out: Path) -> dict[str, Any]:
    """Check everything the experiments need, in order; OrchestrationError at the first failure."""
    if not experiments:
        raise OrchestrationError("no experiment to run: pass --experiments NAME[,NAME...]")
    argv = [arg for path in var_files for arg in ("--var-file", str(path))]
    try:
        check_var_files(argv, declared_keys(experiments))
    except LoadgenError as exc:
        raise OrchestrationError(str(exc)) from None
    configuration, secrets = experiment_configuration(measured_experiment(experiments), var_files)
    try:
        load_settings(check_configuration(configuration))  # the load's mode, workers and image too
    except ConfigurationError as exc:
        raise OrchestrationError(str(exc)) from None
    runs_dir = configuration.get("runs_dir")
    if runs_dir and Path(str(runs_dir)).resolve() != out.resolve():
        raise OrchestrationError(
            f"runs_dir is set to {runs_dir}, but a release keeps every run under {out}: "
            "remove runs_dir from the var file (or pass --out)"
        )
    try:
        target = target_identity(configuration, secrets)
    except ProbeError as exc:
        raise OrchestrationError(f"cannot reach the target: {exc}") from None
    if target.get("kubernetes_version") is None:
        raise OrchestrationError(
            f"the API server at {target.get('api_server')} does not answer: check KUBECONFIG or --kubeconfig"
        )
    try:
        namespace = check_namespace(configuration, secrets)
    except LoadgenError as exc:
        raise OrchestrationError(f"blast radius: {exc}") from None
    instances = _instances(configuration, secrets, namespace)
    rbac = _rbac(configuration, secrets, namespace, out / "preflight")
    return {"target": target, "namespace": namespace, "instances": instances, "rbac": rbac}


def _instances(configuration: Mapping[str, Any], secrets: Mapping[str, Any], namespace: str) -> int:
    try:
        found = custom_resources(configuration, secrets)["instance"].list(namespace)
    except ProbeError as exc:
        raise OrchestrationError(f"MSSQL custom resources: {exc}") from None
    if not found:
        raise OrchestrationError(
            f"no MSSQLInstance in namespace {namespace!r}: deploy the tenants or set the namespace"
        )
    return len(found)


def _rbac(
    configuration: Mapping[str, Any], secrets: Mapping[str, Any], namespace: str, folder: Path
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    before = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(folder)  # where platform_preflight writes its files
    try:
        found = platform_preflight(
            namespace=namespace,
            operator_namespace=str(
                configuration.get("operator_namespace") or kube.DEFAULT_OPERATOR_NAMESPACE
            ),
            operator_service_account=str(configuration.get("operator_service_account") or "mssql-operator"),
            operator_cluster_role=str(configuration.get("operator_cluster_role") or "mssql-operator"),
            operator_rbac_file=str(configuration.get("operator_rbac_file") or ""),
            configuration=configuration,
            secrets=secrets,
        )
    except ProbeError as exc:
        raise OrchestrationError(f"RBAC preflight: {exc}") from None
    finally:
        if before is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = before
    denied = found.get("rbac_denied") or []
    if denied:
        shown = ", ".join(denied[:5]) + (f" and {len(denied) - 5} more" if len(denied) > 5 else "")
        raise OrchestrationError(
            f"RBAC: the operator's service account may not {shown} (see {folder / 'rbac.json'}), "
            f"which it needs ({found.get('rbac_required_from')}): grant them in its ClusterRole and binding"
        )
    return found
