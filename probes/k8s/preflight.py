"""Pre-Go-Live checks of the platform, recorded in the run folder for the go/no-go document.

- RBAC: ``kubectl auth can-i VERB RESOURCE --as system:serviceaccount:NS:SA`` for every
  verb and resource the operator NEEDS → ``rbac.json``. What it needs comes from
  ``operator_rbac_file``, a source independent of the cluster: the operator's own RBAC
  manifest or its Helm-rendered RBAC (``helm template``), every ClusterRole and Role rule
  of it (:func:`required_rules`). Without that file the checks come from the ClusterRole
  as deployed, which proves only that the binding works: a verb someone removed from the
  deployed role is never asked for. ``rbac.json`` says which (``required_from``).
- Platform: a default StorageClass exists; every image of the tenants' and the operator's
  pods has a pinned tag (not ``latest``, not missing) or a digest; every container sets CPU
  and memory requests and limits → ``preflight.json``.
- Helm: the release that deployed the source instance, when helm and a release name are
  there (:mod:`probes.k8s.helm`) → ``helm.json``.

A denial or a gap is recorded, not raised: the go/no-go document fails the gate with it.
An unreadable, malformed or empty ``operator_rbac_file`` is a ProbeError (nothing checked).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from lab.paths import project_root
from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.helm import helm_release_check

__all__ = ["Rule", "platform_preflight", "required_rules"]

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None
#: One RBAC rule: the namespace a Role grants it in (None: a ClusterRole's, asked in the
#: tenants' namespace) and its camelCase fields, each a list of strings.
Rule = tuple[str | None, dict[str, list[str]]]

_RULE_FIELDS = ("apiGroups", "resources", "resourceNames", "verbs", "nonResourceURLs")
_ROLE_KINDS = ("ClusterRole", "Role")
_FIX = (
    "point operator_rbac_file at the operator's RBAC manifest (its ClusterRole/Role YAML or the "
    "`helm template` output of its chart), or empty it to check the deployed ClusterRole"
)
_KUBECTL_TIMEOUT = 30
_WORKERS = 4  # kubectl processes at once: the checks are independent


def _can_i(
    binary: str, verb: str, resource: str, namespace: str | None, user: str, kubeconfig: str | None
) -> tuple[bool, str | None]:
    """``kubectl auth can-i``: (allowed, why it could not tell); ``resource`` is
    ``plural[.group][:name][/subresource]`` or a non-resource URL (``/healthz``, no namespace)."""
    env = dict(os.environ)
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    target, _, sub = ("", "", "") if resource.startswith("/") else resource.partition("/")
    target, _, name = target.partition(":")
    extra = [f"--subresource={sub}"] if sub else []
    target = resource if resource.startswith("/") else (f"{target}/{name}" if name else target)
    scope = [] if namespace is None else ["-A"] if namespace == "" else ["-n", namespace]
    try:
        done = subprocess.run(
            [binary, "auth", "can-i", verb, target, *extra, *scope, "--as", user],
            capture_output=True,
            text=True,
            timeout=_KUBECTL_TIMEOUT,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False, f"kubectl auth can-i did not answer within {_KUBECTL_TIMEOUT} s"
    if "doesn't have a resource type" in done.stderr and not resource.startswith("/"):
        # kubectl then asks for "plural.group" in the core group: ask the server directly
        plural, _, group = target.partition("/")[0].partition(".")
        return _review(binary, env, verb, group, plural, sub, name, namespace, user)
    answer = done.stdout.strip()
    if answer == "yes":
        return True, None
    if answer.startswith("no"):
        return False, None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return False, (lines[-1].strip() if lines else f"kubectl auth can-i exited {done.returncode}")


def _review(
    binary: str,
    env: dict[str, str],
    verb: str,
    group: str,
    plural: str,
    sub: str,
    name: str,
    namespace: str | None,
    user: str,
) -> tuple[bool, str | None]:
    """A SubjectAccessReview for a resource type the server does not serve (such as
    ``podsecuritypolicies``, whose ``use`` the lab's pod security checks), which
    ``kubectl auth can-i`` cannot name; the service account's groups as Kubernetes gives them."""
    _, _, rest = user.partition("system:serviceaccount:")
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{rest.split(':')[0]}"] if rest else []
    attributes = {"verb": verb, "group": group, "resource": plural, "subresource": sub, "name": name}
    if namespace:
        attributes["namespace"] = namespace
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": [*groups, "system:authenticated"], "resourceAttributes": attributes},
    }
    try:
        done = subprocess.run(
            [binary, "create", "-f", "-", "-o", "jsonpath={.status.allowed}"],
            input=json.dumps(body),
            capture_output=True,
            text=True,
            timeout=_KUBECTL_TIMEOUT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"kubectl create subjectaccessreview did not answer within {_KUBECTL_TIMEOUT} s"
    if done.returncode == 0:
        return done.stdout.strip() == "true", None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return False, (
        lines[-1].strip() if lines else f"kubectl create subjectaccessreview exited {done.returncode}"
    )


def _field(raw: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProbeError(f"{where}: {key} must be a list of names, got {value!r:.40}: fix it, or {_FIX}")
    if key != "apiGroups" and "" in value:  # "" is the core API group, and only there a name
        raise ProbeError(f"{where}: {key} holds an empty name: fix it, or {_FIX}")
    return list(value)


def _rule(raw: Any, where: str) -> dict[str, list[str]]:
    """A rule's fields as lists; ProbeError when it cannot be a Kubernetes PolicyRule."""
    if not isinstance(raw, Mapping):
        raise ProbeError(f"{where} is not a mapping (apiGroups, resources, verbs): fix it, or {_FIX}")
    rule = {key: _field(raw, key, where) for key in _RULE_FIELDS}
    if not rule["verbs"]:
        raise ProbeError(f"{where} has no verbs: fix it, or {_FIX}")
    if not rule["resources"] and not rule["nonResourceURLs"]:
        raise ProbeError(f"{where} names no resources and no nonResourceURLs: fix it, or {_FIX}")
    if rule["resources"] and not rule["apiGroups"]:
        raise ProbeError(
            f"{where} names resources but no apiGroups ('' is the core group): fix it, or {_FIX}"
        )
    return rule


def _documents(docs: Iterable[Any]) -> Iterable[Any]:
    """Every document, the items of a ``kind: List`` (``kubectl get -o yaml``) in its place."""
    for doc in docs:
        if isinstance(doc, Mapping) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from doc["items"]
        elif doc is not None:
            yield doc


def _rbac_path(text: str) -> Path:
    """``text`` as a path: relative to the current folder, else to the project (where the
    lab's var file points, ``lab/crds/operator.yaml``, wherever the run was started)."""
    path = Path(text).expanduser()
    if path.is_absolute() or path.exists():
        return Path(os.path.abspath(path))
    in_project = project_root() / path
    return in_project if in_project.exists() else Path(os.path.abspath(path))


def required_rules(rbac_file: str, role_namespace: str) -> tuple[Path, list[Rule]]:
    """The file read and every rule of its ClusterRoles and Roles (one or more YAML documents).

    A Role's rules hold in its ``metadata.namespace``, else ``role_namespace`` (the
    operator's: where a chart's Role lands). ProbeError (one line naming the file and the
    fix) when the file is missing, unreadable, not YAML, malformed, or holds no rule.
    """
    path = _rbac_path(rbac_file)
    what = f"operator_rbac_file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        tried = (
            ""
            if Path(rbac_file).expanduser().is_absolute()
            else " (looked in the current folder and the project)"
        )
        raise ProbeError(f"{what} cannot be read ({exc.strerror or exc}){tried}: {_FIX}") from None
    except UnicodeDecodeError:
        raise ProbeError(f"{what} is not UTF-8 text: {_FIX}") from None
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ProbeError(f"{what} is not valid YAML{at}: fix it, or {_FIX}") from None
    rules: list[Rule] = []
    for number, doc in enumerate(_documents(docs), start=1):
        if not isinstance(doc, Mapping):
            raise ProbeError(f"{what}: document {number} is not a Kubernetes object: fix it, or {_FIX}")
        kind = doc.get("kind")
        if kind not in _ROLE_KINDS:
            continue
        found = doc.get("metadata")
        metadata: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        where = f"{what}: {kind} {metadata.get('name') or '(unnamed)'}"
        raw_rules = doc.get("rules")
        if raw_rules is not None and not isinstance(raw_rules, list):
            raise ProbeError(f"{where}: rules must be a list: fix it, or {_FIX}")
        scope = str(metadata.get("namespace") or role_namespace) if kind == "Role" else None
        for index, raw in enumerate(raw_rules or [], start=1):
            rules.append((scope, _rule(raw, f"{where} rule {index}")))
    if not rules:
        raise ProbeError(f"{what} holds no ClusterRole or Role with rules: {_FIX}")
    return path, rules


def _deployed_rules(role: str, secrets: Secrets) -> list[Rule]:
    from kubernetes import client

    api = kube.api_client(secrets)
    try:
        found = client.RbacAuthorizationV1Api(api).read_cluster_role(role)
    except Exception as exc:
        raise kube.api_problem(exc, f"ClusterRole {role}") from None
    body = api.sanitize_for_serialization(found)
    where = f"ClusterRole {role} (deployed)"
    return [(None, _rule(raw, f"{where} rule {i}")) for i, raw in enumerate(body.get("rules") or [], 1)]


def _wanted(rules: list[Rule], namespace: str) -> list[tuple[str, str, str | None]]:
    """(verb, resource, namespace) for every apiGroup x resource x resourceName x verb, once each."""
    wanted: dict[tuple[str, str, str | None], None] = {}
    for scope, rule in rules:
        for url in rule["nonResourceURLs"]:
            for verb in rule["verbs"]:
                wanted[(verb, url, None)] = None
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                plural, slash, sub = resource.partition("/")
                for name in rule["resourceNames"] or [""]:
                    qualified = (
                        (f"{plural}.{group}" if group else plural)
                        + (f":{name}" if name else "")
                        + (f"/{sub}" if slash else "")
                    )
                    for verb in rule["verbs"]:  # a ClusterRole's rules: in every namespace ("")
                        wanted[(verb, qualified, scope if scope is not None else "")] = None
    return list(wanted)


def _rbac_checks(
    rules: list[Rule], namespace: str, user: str, kubeconfig: str | None
) -> list[dict[str, Any]]:
    binary = shutil.which("kubectl")
    if binary is None:
        raise ProbeError("kubectl not found on PATH: install it for the RBAC preflight")
    wanted = _wanted(rules, namespace)

    def ask(item: tuple[str, str, str | None]) -> dict[str, Any]:
        verb, resource, scope = item
        allowed, error = _can_i(binary, verb, resource, scope, user, kubeconfig)
        check: dict[str, Any] = {"verb": verb, "resource": resource, "namespace": scope, "allowed": allowed}
        if error is not None:
            check["error"] = error  # could not tell: counted as denied (fail closed)
        return check

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        return list(pool.map(ask, wanted))


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and not name.endswith(":latest")


def _resources(container: Any) -> tuple[dict[str, Any], dict[str, Any], bool]:
    res = container.resources
    requests = dict(res.requests or {}) if res else {}
    limits = dict(res.limits or {}) if res else {}
    ok = all(k in requests and k in limits for k in ("cpu", "memory"))
    return requests, limits, ok


def platform_preflight(
    namespace: str = "tenants",
    operator_namespace: str = "mssql-operator",
    operator_service_account: str = "mssql-operator",
    operator_cluster_role: str = "mssql-operator",
    operator_rbac_file: str = "",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Run the RBAC, platform and Helm checks; write ``rbac.json``, ``preflight.json``, ``helm.json``.

    ``operator_rbac_file`` (relative: to the current folder, else the project) names what
    the operator needs (:func:`required_rules`); empty: the rules of the deployed
    ``operator_cluster_role``. The Helm check is :func:`probes.k8s.helm.helm_release_check`
    (release from ``helm_release``).
    """
    kubeconfig = (configuration or {}).get("kubeconfig") or None
    user = f"system:serviceaccount:{operator_namespace}:{operator_service_account}"
    if operator_rbac_file.strip():
        path, rules = required_rules(operator_rbac_file.strip(), operator_namespace)
        required_from = str(path)
    else:
        rules = _deployed_rules(operator_cluster_role, secrets)
        required_from = f"ClusterRole {operator_cluster_role} (as deployed: a removed verb cannot be seen)"
    checks = _rbac_checks(rules, namespace, user, kubeconfig)
    core = kube.core(secrets)
    storage = _storage_class(secrets)
    images, resources = [], []
    for ns in (namespace, operator_namespace):
        try:
            pods = core.list_namespaced_pod(ns).items
        except Exception as exc:
            raise kube.api_problem(exc, f"pods in {ns}") from None
        for pod in pods:
            for container in pod.spec.containers:
                name = f"{ns}/{pod.metadata.name}/{container.name}"
                images.append({"name": name, "image": container.image, "pinned": _pinned(container.image)})
                requests, limits, ok = _resources(container)
                resources.append({"name": name, "requests": requests, "limits": limits, "ok": ok})
    rbac = {"service_account": user, "required_from": required_from, "checks": checks}
    preflight = {"storageclass": storage, "images": images, "resources": resources}
    folder = kube.run_dir()
    if folder is not None:
        (folder / "rbac.json").write_text(json.dumps(rbac, indent=2))
        (folder / "preflight.json").write_text(json.dumps(preflight, indent=2))
    helm = helm_release_check(namespace, configuration, secrets)
    return {
        "helm": "cannot tell: " + "; ".join(helm["missing"]) if helm["ok"] is None else helm["ok"],
        "rbac_required_from": required_from,
        "rbac_denied": [f"{c['verb']} {c['resource']}" for c in checks if not c["allowed"]],
        "storageclass": storage,
        "unpinned_images": [i["name"] for i in images if not i["pinned"]],
        "containers_without_limits": [r["name"] for r in resources if not r["ok"]],
    }


def _storage_class(secrets: Secrets) -> dict[str, Any]:
    from kubernetes import client

    try:
        classes: list[Any] = client.StorageV1Api(kube.api_client(secrets)).list_storage_class().items
    except Exception as exc:
        raise kube.api_problem(exc, "storage classes") from None
    marker = "storageclass.kubernetes.io/is-default-class"
    default = next((c for c in classes if (c.metadata.annotations or {}).get(marker) == "true"), None)
    chosen = default or (classes[0] if classes else None)
    return {
        "name": chosen.metadata.name if chosen else None,
        "default": default is not None,
        "ok": default is not None,
    }
