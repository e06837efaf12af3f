"""The checklist's "Helm chart deploys source MSSQL instance successfully", checked.

:func:`helm_release_check` (run by the platform preflight) writes ``helm.json`` in the run
folder. With ``helm`` on the PATH and a release configured (``helm_release``, env
``HARNESS_HELM_RELEASE``; its namespace ``helm_namespace`` / ``HARNESS_HELM_NAMESPACE``,
default the tenants' namespace) it keeps ``helm status -o json`` and ``helm get manifest``
as evidence (``helm-manifest.yaml``), and checks:

- the release is ``deployed``;
- its manifest holds the source MSSQLInstance (``helm_instance`` / ``HARNESS_HELM_INSTANCE``,
  default the experiment's ``target_tenant``);
- that instance carries Helm's ownership marks (label ``app.kubernetes.io/managed-by: Helm``,
  annotations ``meta.helm.sh/release-name`` and ``meta.helm.sh/release-namespace`` naming
  this release) and is Ready.

Without helm, without a release name, or on the embedded lab (which has no Helm), nothing
can be checked: ``ok`` is null and ``missing`` says exactly which of these is missing, so
the gate stays NOT RUN instead of guessing. Document::

    {"ok": bool | null, "helm": path | null, "release": str | null, "namespace": str,
     "instance": str, "status": {"status", "revision", "chart", "app_version",
     "last_deployed"} | null, "manifest_has_instance": bool | null,
     "instance_marks": {"managed_by", "release_name", "release_namespace", "ready"},
     "missing": [str], "problems": [str], "checked_at": str}
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from loadgen.discovery import lookup
from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.crs import coordinates, custom_resources
from probes.pitr import format_time

__all__ = ["HELM_NAME", "MANIFEST_NAME", "helm_release_check", "redact_manifest"]

HELM_NAME = "helm.json"
MANIFEST_NAME = "helm-manifest.yaml"
MANAGED_BY = "app.kubernetes.io/managed-by"
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
HELM_TIMEOUT = 60.0

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None


def _helm(helm: str, args: list[str], kubeconfig: str | None) -> str:
    argv = [helm, *args] + (["--kubeconfig", kubeconfig] if kubeconfig else [])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=HELM_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeError(f"`helm {' '.join(args)}` could not run ({exc}): check the helm binary") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ProbeError(
            f"`helm {' '.join(args)}` failed: {detail[-1] if detail else f'exit {done.returncode}'}"
        )
    return done.stdout


def _status(doc: Mapping[str, Any]) -> dict[str, Any]:
    info: Mapping[str, Any] = doc["info"] if isinstance(doc.get("info"), Mapping) else {}
    chart_doc: Mapping[str, Any] = doc["chart"] if isinstance(doc.get("chart"), Mapping) else {}
    chart: Mapping[str, Any] = chart_doc.get("metadata") or {}
    return {
        "status": info.get("status"),
        "revision": doc.get("version"),
        "chart": f"{chart.get('name')}-{chart.get('version')}" if chart.get("name") else None,
        "app_version": chart.get("appVersion"),
        "last_deployed": info.get("last_deployed"),
    }


def redact_manifest(manifest: str) -> str:
    """The manifest with every Secret's ``data`` and ``stringData`` values replaced, for the run folder."""
    try:
        docs = list(yaml.safe_load_all(manifest))
    except yaml.YAMLError:
        return "# helm get manifest returned text that is not YAML; not kept (it may hold secrets)\n"
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            for key in ("data", "stringData"):
                if isinstance(doc.get(key), dict):
                    doc[key] = {k: "<redacted>" for k in doc[key]}
    return yaml.safe_dump_all([d for d in docs if d is not None], sort_keys=False)


def _manifest_has(manifest: str, kind: str, name: str) -> bool:
    try:
        docs = list(yaml.safe_load_all(manifest))
    except yaml.YAMLError:
        return False
    return any(
        isinstance(d, Mapping) and d.get("kind") == kind and (d.get("metadata") or {}).get("name") == name
        for d in docs
    )


def _marks(obj: Mapping[str, Any] | None, ready_path: str) -> dict[str, Any]:
    meta = (obj or {}).get("metadata") or {}
    labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
    return {
        "exists": obj is not None,
        "managed_by": labels.get(MANAGED_BY),
        "release_name": notes.get(RELEASE_NAME),
        "release_namespace": notes.get(RELEASE_NAMESPACE),
        "ready": str(lookup(obj, ready_path)) == "True" if obj is not None else None,
    }


def _mark_problems(
    marks: Mapping[str, Any], instance: str, release: str | None, release_ns: str
) -> list[str]:
    if not marks["exists"]:
        return [f"MSSQLInstance {instance} does not exist"]
    out = []
    if marks["managed_by"] != "Helm":
        out.append(f"{instance} has no label {MANAGED_BY}: Helm (has {marks['managed_by'] or 'none'})")
    if release and marks["release_name"] != release:
        out.append(
            f"{instance} annotation {RELEASE_NAME} is {marks['release_name'] or 'missing'}, not {release}"
        )
    if release and marks["release_namespace"] != release_ns:
        out.append(
            f"{instance} annotation {RELEASE_NAMESPACE} is {marks['release_namespace'] or 'missing'}, "
            f"not {release_ns}"
        )
    if marks["ready"] is not True:
        out.append(f"{instance} is not Ready")
    return out


def helm_release_check(
    namespace: str = "tenants", configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """Check the Helm release of the source instance; write ``helm.json`` (and the manifest); return it."""
    release = kube.setting(configuration, "helm_release", "HARNESS_HELM_RELEASE") or None
    release_ns = kube.setting(configuration, "helm_namespace", "HARNESS_HELM_NAMESPACE") or namespace
    instance = (
        kube.setting(configuration, "helm_instance", "HARNESS_HELM_INSTANCE")
        or kube.setting(configuration, "target_tenant", "HARNESS_TARGET_TENANT")
        or "tenant-0"
    )
    helm = shutil.which("helm")
    kubeconfig = (configuration or {}).get("kubeconfig") or None
    folder = kube.run_dir()
    missing: list[str] = []
    problems: list[str] = []
    if kube.is_embedded_lab(secrets):
        missing.append("the target is the embedded lab, which has no Helm: run against a cluster")
    if helm is None:
        missing.append("no `helm` on the PATH: install Helm 3 where the harness runs")
    if release is None:
        missing.append("no release configured: set helm_release (HARNESS_HELM_RELEASE) to the release name")
    status: dict[str, Any] | None = None
    has_instance: bool | None = None
    if helm is not None and release is not None:
        try:
            answer = json.loads(_helm(helm, ["status", release, "-n", release_ns, "-o", "json"], kubeconfig))
            if not isinstance(answer, dict):
                raise ProbeError(f"`helm status {release}` did not answer a JSON object")
            status = _status(answer)
            manifest = _helm(helm, ["get", "manifest", release, "-n", release_ns], kubeconfig)
            has_instance = _manifest_has(manifest, "MSSQLInstance", instance)
            if folder is not None:
                (folder / MANIFEST_NAME).write_text(redact_manifest(manifest), encoding="utf-8")
        except (ProbeError, json.JSONDecodeError) as exc:
            problems.append(str(exc))
        if status is not None and status.get("status") != "deployed":
            problems.append(
                f"release {release} is {status.get('status') or 'in no known state'}, not deployed"
            )
        if has_instance is False:
            problems.append(f"release {release}'s manifest has no MSSQLInstance {instance}")
    try:
        obj = custom_resources(configuration, secrets)["instance"].get(namespace, instance)
        read_problem = None
    except ProbeError as exc:  # recorded, not raised: the preflight goes on
        obj, read_problem = None, f"cannot read MSSQLInstance {namespace}/{instance}: {exc}"
    marks = _marks(obj, coordinates(configuration).ready_path)
    mark_problems = [read_problem] if read_problem else _mark_problems(marks, instance, release, release_ns)
    if missing:
        # Nothing can be proved; what the instance lacks is still shown, as a hint.
        missing += [f"(also) {p}" for p in mark_problems if not any(p in m for m in missing)]
    else:
        problems += mark_problems
    doc = {
        "ok": None if missing else not problems,
        "helm": helm,
        "release": release,
        "namespace": release_ns,
        "instance": instance,
        "status": status,
        "manifest_has_instance": has_instance,
        "instance_marks": marks,
        "missing": missing,
        "problems": problems,
        "checked_at": format_time(time.time()),
    }
    if folder is not None:
        (Path(folder) / HELM_NAME).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc
