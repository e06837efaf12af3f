"""The gates about the cluster's setup: CRDs, Helm, RBAC, StorageClass, images, limits, snapshots.

They read what the preflight and the evidence capture wrote into the run folder:
``rbac.json`` (``kubectl auth can-i`` for the operator's service account),
``preflight.json`` (StorageClass, pinned images, requests and limits), ``helm.json``
(the Helm release of the source instance; NOT RUN with what is missing when there is no
helm, no release name, or the target is the lab) and ``evidence/{before,after}/*.txt``
(``kubectl get`` snapshots). A run without the file says nothing about its gate; one
denied check or unhealthy entry FAILs it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.crd import CrdCoordinates
from probes.k8s.helm import HELM_NAME
from reports.errors import ReportError
from reports.gate_base import FAIL, NOT_RUN, PASS, Decide, GateContext, Verdict, combine, registrar
from reports.gonogo_runs import EVIDENCE_DIR, PREFLIGHT_NAME, RBAC_NAME, dicts
from reports.jsonfile import optional_object

__all__ = ["GATES", "MSSQL_CRDS", "SNAPSHOT_FILES"]

SNAPSHOT_FILES = ("pods.txt", "crds.txt", "crs.txt", "jobs.txt", "pvc.txt")
_CRD = CrdCoordinates()
MSSQL_CRDS = (_CRD.plural, _CRD.backup_policy_plural, _CRD.backup_plural, _CRD.restore_plural)

GATES: dict[str, Decide] = {}
_gate = registrar(GATES)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}; check its permissions") from None


@_gate("crds-installed")
def _crds(ctx: GateContext) -> Verdict:
    partial = []
    for run in ctx.runs:
        for when in ("before", "after"):
            path = run.evidence(when, "crds.txt")
            if not path.is_file():
                continue
            names = {line.split()[0].split(".")[0].lower() for line in _lines(path) if line.split()}
            missing = [c for c in MSSQL_CRDS if c not in names]
            link = ctx.link(run, f"{EVIDENCE_DIR}/{when}/crds.txt", f"{run.run_id} {when}/crds.txt")
            if not missing:
                return PASS, [f"{link} lists {', '.join(MSSQL_CRDS)} (the version lock is not read from it)"]
            partial.append(f"{link} lacks {', '.join(missing)}")
    return NOT_RUN, partial or ["no run has an evidence/{before,after}/crds.txt snapshot"]


@_gate("helm-deploy")
def _helm(ctx: GateContext) -> Verdict:
    """``helm.json`` (``probes.k8s.helm``): the release deployed the source instance, Helm-owned and Ready."""
    parts: list[Verdict] = []
    unchecked: dict[str, list[str]] = {}  # reason -> links of the runs that could not check
    for run in ctx.runs:
        doc = optional_object(run.path / HELM_NAME, "fix or remove helm.json")
        if doc is None:
            continue
        link = ctx.link(run, HELM_NAME, f"{run.run_id}/helm.json")
        if doc.get("ok") is None:
            missing = [str(m) for m in doc["missing"]] if isinstance(doc.get("missing"), list) else []
            unchecked.setdefault("; ".join(missing) or "no reason recorded", []).append(link)
            continue
        problems = [str(p) for p in doc["problems"]] if isinstance(doc.get("problems"), list) else []
        if doc.get("ok") is True and not problems:
            status: dict[str, Any] = doc["status"] if isinstance(doc.get("status"), dict) else {}
            parts.append(
                (
                    PASS,
                    [
                        f"{link}: release {doc.get('release')} ({status.get('chart') or 'chart ?'}, revision "
                        f"{status.get('revision', '?')}) {status.get('status') or '?'}; it deploys "
                        f"MSSQLInstance {doc.get('instance')}, which carries Helm's marks and is Ready"
                    ],
                )
            )
        else:
            parts.append((FAIL, [f"{link}: {p}" for p in problems] or [f"{link}: Helm check failed"]))
    notes = [f"cannot check the Helm release: {why} ({', '.join(links)})" for why, links in unchecked.items()]
    if not parts:
        return NOT_RUN, notes or ["no run has a helm.json (the platform preflight writes it)"]
    return combine(parts, (NOT_RUN, []))


def _rbac(ctx: GateContext) -> Verdict:
    parts: list[Verdict] = []
    for run in ctx.runs:
        if run.rbac is None:
            continue
        checks = run.rbac.get("checks")
        if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
            raise ReportError(
                f"{run.path / RBAC_NAME}: 'checks' must be a list of {{verb, resource, namespace, allowed}}; "
                "fix or remove rbac.json"
            )
        account = run.rbac.get("service_account") or "the operator service account"
        link = ctx.link(run, RBAC_NAME, f"{run.run_id}/rbac.json")
        denied = [c for c in checks if c.get("allowed") is not True]
        if denied:
            parts.append(
                (
                    FAIL,
                    [
                        f"{link}: {account} cannot {c.get('verb', '?')} {c.get('resource', '?')}"
                        f" in {c.get('namespace') or 'the cluster'}"
                        for c in denied
                    ],
                )
            )
        elif checks:
            source = str(run.rbac.get("required_from") or "")
            if source and not source.startswith("ClusterRole "):
                parts.append(
                    (
                        PASS,
                        [
                            f"{link}: {len(checks)} `kubectl auth can-i` checks allowed for {account}, "
                            f"every rule of {source}"
                        ],
                    )
                )
            else:
                parts.append(
                    (
                        NOT_RUN,
                        [
                            f"{link}: {len(checks)} checks allowed, but they were read from the deployed "
                            "ClusterRole, which cannot show a verb it lacks: set operator_rbac_file to the "
                            "operator's RBAC manifest (or `helm template` output)"
                        ],
                    )
                )
    return combine(parts, (NOT_RUN, ["no run has an rbac.json (`kubectl auth can-i` preflight)"]))


# The same evidence answers both lines: the operator can do what it needs with the RBAC it is given.
_gate("rbac-preflight")(_rbac)
_gate("core-managed-rbac")(_rbac)


@_gate("storageclass")
def _storageclass(ctx: GateContext) -> Verdict:
    parts: list[Verdict] = []
    for run in ctx.runs:
        block = (run.preflight or {}).get("storageclass")
        if not isinstance(block, dict) or not isinstance(block.get("ok"), bool):
            continue
        name = block.get("name") or "?"
        default = " (default)" if block.get("default") else ""
        link = ctx.link(run, PREFLIGHT_NAME, f"{run.run_id}/preflight.json")
        parts.append(
            (PASS, [f"{link}: StorageClass {name}{default} available"])
            if block["ok"]
            else (FAIL, [f"{link}: StorageClass {name}{default} not available or unhealthy"])
        )
    return combine(parts, (NOT_RUN, ["no run has a preflight.json with a storageclass check"]))


def _list_gate(
    key: str, good: str, judge: Callable[[dict[str, Any]], bool], describe: Callable[[dict[str, Any]], str]
) -> Decide:
    """Every entry of ``preflight[key]`` must satisfy ``judge``."""

    def decide(ctx: GateContext) -> Verdict:
        parts: list[Verdict] = []
        for run in ctx.runs:
            entries = dicts((run.preflight or {}).get(key))
            if not entries:
                continue
            link = ctx.link(run, PREFLIGHT_NAME, f"{run.run_id}/preflight.json")
            bad = [e for e in entries if not judge(e)]
            if bad:
                parts.append((FAIL, [f"{link}: {describe(e)}" for e in bad]))
            else:
                parts.append((PASS, [f"{link}: {len(entries)} {good}"]))
        return combine(parts, (NOT_RUN, [f"no run has a preflight.json with `{key}`"]))

    return decide


_gate("images-pinned")(
    _list_gate(
        "images",
        "images pinned",
        lambda e: e.get("pinned") is True,
        lambda e: f"{e.get('name', '?')} uses floating image {e.get('image', '?')}",
    )
)
_gate("resource-limits")(
    _list_gate(
        "resources",
        "workloads with requests and limits",
        lambda e: e.get("ok") is True,
        lambda e: f"{e.get('name', '?')}: requests {e.get('requests')}, limits {e.get('limits')}",
    )
)


@_gate("kubectl-snapshots")
def _snapshots(ctx: GateContext) -> Verdict:
    if not ctx.k8s:
        return NOT_RUN, ["no Kubernetes experiment run"]
    gaps = []
    for run in ctx.k8s:
        problems = {
            f"{w}/{n}": problem
            for w in ("before", "after")
            for n in SNAPSHOT_FILES
            if (problem := run.snapshot_problem(w, n)) is not None
        }
        missing = [where for where, problem in problems.items() if problem == "missing"]
        if missing:
            gaps.append(f"{ctx.link(run)} lacks evidence/{', evidence/'.join(missing)}")
        gaps += [
            f"{ctx.link(run)} evidence/{where} is no snapshot: {problem}"
            for where, problem in problems.items()
            if problem != "missing"
        ]
    if gaps:
        return FAIL, gaps
    return PASS, [
        f"{ctx.link(r, EVIDENCE_DIR, f'{r.run_id}/evidence')}: before/ and after/ {', '.join(SNAPSHOT_FILES)}"
        for r in ctx.k8s
    ]
