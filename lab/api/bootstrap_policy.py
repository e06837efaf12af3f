"""The RBAC objects every lab API server starts with, as kube-apiserver's bootstrap policy.

Written straight to the store, as the server's own post-start step (their ``system:``
names are path-segment names, which RBAC objects may have).

:func:`bootstrap_objects` lists them; :func:`ensure_bootstrap_policy` is kube-apiserver's
``rbac/bootstrap-roles`` post-start hook: it creates what is missing and, on objects
annotated ``rbac.authorization.kubernetes.io/autoupdate: "true"``, adds missing rules
(an aggregated role: missing selectors), labels, annotations and subjects; a binding
whose ``roleRef`` changed is recreated. Objects an administrator set to
``autoupdate: "false"`` are left alone. :func:`aggregate_cluster_roles` is the
clusterrole-aggregation controller's pass (an aggregated role's ``rules`` rewritten from
the roles it selects); the authorizer computes aggregation itself, this only makes
``kubectl get clusterrole view -o yaml`` show what it grants.

The roles and their subjects:

* ``cluster-admin`` (everything) bound to group ``system:masters``; ``admin``, ``edit``
  and ``view`` aggregated from ``system:aggregate-to-*`` by the standard labels (upstream's
  rules; resources the lab does not serve are harmless);
* ``system:discovery``, ``system:basic-user`` (own access and rules reviews) and
  ``system:public-info-viewer`` bound to ``system:authenticated`` (public info also to
  ``system:unauthenticated``); ``system:monitoring`` bound to group ``system:monitoring``;
* ``system:node`` bound to group ``system:nodes``: what the lab's kubelet does (read its
  pods and the secrets, config maps, claims, volumes and services they use; register and
  patch its node and node status; publish pod status, confirm pod deletion; record Events;
  request service-account tokens for its pods) and the Role ``system:node-lease`` in
  ``kube-node-lease`` for its heartbeat Lease. A cluster's Node authorizer and
  NodeRestriction admission narrow these to the node's own objects; the lab has neither;
* ``system:kube-scheduler`` bound to user ``system:kube-scheduler``: read pods and nodes,
  bind pods, mark unschedulable pods (``pods/status``), record Events (when the lab runs
  the scheduler inside the controller manager under the controller-manager identity, that
  identity also needs this role: bind it to ``system:kube-controller-manager`` too);
* ``system:kube-controller-manager`` bound to user ``system:kube-controller-manager``: the
  union of what the lab's controllers (``lab/controllers``) read and write, written out
  resource by resource. A cluster runs each controller under its own service account with a
  ``system:controller:<name>`` role (``--use-service-account-credentials``), so there the
  node lifecycle controller alone may taint nodes, the PV binder alone create volumes, the
  endpoint controllers alone write endpoints, and so on; the lab's controllers share one
  identity, so this role is their union. The kube-state-metrics stand-in reads the store
  in-process and needs no grant; the lab operator's ClusterRole is ``lab/crds/operator.yaml``.
"""

from __future__ import annotations

from typing import Any

from lab.api.fields import as_dict, as_list, as_str, clone, meta
from lab.api.identity import AUTHENTICATED, MASTERS, UNAUTHENTICATED
from lab.api.rbac_rules import (
    CLUSTER_ROLES,
    RBAC_GROUP,
    Rule,
    cluster_role_rules,
    compact_rules,
    covers,
    rules_of,
)
from lab.api.state import State

__all__ = [
    "AUTOUPDATE",
    "CONTROLLER_MANAGER",
    "NODES",
    "SCHEDULER",
    "aggregate_cluster_roles",
    "bootstrap_objects",
    "ensure_bootstrap_policy",
]

AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
NODES = "system:nodes"
SCHEDULER = "system:kube-scheduler"
CONTROLLER_MANAGER = "system:kube-controller-manager"
_API_VERSION = f"{RBAC_GROUP}/v1"
_READ = "get list watch"
_WRITE = "create delete deletecollection patch update"
_EVENTS = ("core events.k8s.io", "events", "create patch update")


def _r(groups: str, resources: str, verb_list: str, names: str = "") -> dict[str, Any]:
    """A rule: space-separated groups (``core`` is ``""``), resources, verbs, resourceNames."""
    rule: dict[str, Any] = {
        "verbs": verb_list.split(),
        "apiGroups": ["" if g == "core" else g for g in groups.split()],
        "resources": resources.split(),
    }
    if names:
        rule["resourceNames"] = names.split()
    return rule


def _urls(urls: str, verb_list: str = "get") -> dict[str, Any]:
    return {"verbs": verb_list.split(), "nonResourceURLs": urls.split()}


def _metadata(name: str, labels: dict[str, str] | None = None, namespace: str = "") -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
        "annotations": {AUTOUPDATE: "true"},
    }
    if namespace:
        md["namespace"] = namespace
    return md


def _role(
    name: str, rules: list[dict[str, Any]], labels: dict[str, str] | None = None, namespace: str = ""
) -> dict[str, Any]:
    kind = "Role" if namespace else "ClusterRole"
    return {
        "apiVersion": _API_VERSION,
        "kind": kind,
        "metadata": _metadata(name, labels, namespace),
        "rules": rules,
    }


def _aggregated(name: str, selects: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    role = _role(name, [], labels)
    role["aggregationRule"] = {
        "clusterRoleSelectors": [
            {"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{selects}": "true"}}
        ]
    }
    return role


def _binding(name: str, role: str, subjects: list[tuple[str, str]], namespace: str = "") -> dict[str, Any]:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    return {
        "apiVersion": _API_VERSION,
        "kind": kind,
        "metadata": _metadata(name, namespace=namespace),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role" if namespace else "ClusterRole", "name": role},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": kind_, "name": who} for kind_, who in subjects],
    }


def _aggregate_to(level: str) -> dict[str, str]:
    return {f"rbac.authorization.k8s.io/aggregate-to-{level}": "true"}


_TO_VIEW = [
    _r("core", "configmaps endpoints persistentvolumeclaims persistentvolumeclaims/status pods", _READ),
    _r("core", "replicationcontrollers replicationcontrollers/scale serviceaccounts services", _READ),
    _r("core", "services/status bindings events limitranges namespaces/status pods/log pods/status", _READ),
    _r("core", "replicationcontrollers/status resourcequotas resourcequotas/status namespaces", _READ),
    _r("discovery.k8s.io", "endpointslices", _READ),
    _r("apps", "controllerrevisions daemonsets daemonsets/status deployments deployments/scale", _READ),
    _r("apps", "deployments/status replicasets replicasets/scale replicasets/status statefulsets", _READ),
    _r("apps", "statefulsets/scale statefulsets/status", _READ),
    _r("autoscaling", "horizontalpodautoscalers horizontalpodautoscalers/status", _READ),
    _r("batch", "cronjobs cronjobs/status jobs jobs/status", _READ),
    _r("policy", "poddisruptionbudgets poddisruptionbudgets/status", _READ),
    _r("networking.k8s.io", "ingresses ingresses/status networkpolicies", _READ),
]
_TO_EDIT = [
    _r("core", "pods/attach pods/exec pods/portforward pods/proxy secrets services/proxy", _READ),
    _r("core", "serviceaccounts", "impersonate"),
    _r("core", "pods pods/attach pods/exec pods/portforward pods/proxy", _WRITE),
    _r("core", "pods/eviction", "create"),
    _r("core", "configmaps events persistentvolumeclaims replicationcontrollers", _WRITE),
    _r("core", "replicationcontrollers/scale secrets serviceaccounts services services/proxy", _WRITE),
    _r("core", "serviceaccounts/token", "create"),
    _r("apps", "daemonsets deployments deployments/rollback deployments/scale replicasets", _WRITE),
    _r("apps", "replicasets/scale statefulsets statefulsets/scale", _WRITE),
    _r("autoscaling", "horizontalpodautoscalers", _WRITE),
    _r("batch", "cronjobs jobs", _WRITE),
    _r("policy", "poddisruptionbudgets", _WRITE),
    _r("networking.k8s.io", "ingresses networkpolicies", _WRITE),
    _r("coordination.k8s.io", "leases", f"{_READ} {_WRITE}"),
]
_TO_ADMIN = [
    _r("authorization.k8s.io", "localsubjectaccessreviews", "create"),
    _r(RBAC_GROUP, "rolebindings roles", f"{_READ} {_WRITE}"),
]
_NODE = [
    # its pods (listed and watched by spec.nodeName), their status, the final delete
    _r("core", "pods", "get list watch delete"),
    _r("core", "pods/status", "patch update"),
    # registration, labels and heartbeats
    _r("core", "nodes", "get list watch create patch update"),
    _r("core", "nodes/status", "patch update"),
    # what pods use: env and volumes from secrets and config maps, claims and their volumes
    _r("core", "secrets configmaps persistentvolumeclaims persistentvolumes services", _READ),
    # projected service-account tokens for its pods
    _r("core", "serviceaccounts", "get"),
    _r("core", "serviceaccounts/token", "create"),
    _r(*_EVENTS),
]
_NODE_LEASE = [_r("coordination.k8s.io", "leases", "get list watch create patch update delete")]
_SCHEDULER = [
    _r("core", "pods nodes", _READ),
    _r("core", "bindings pods/binding", "create"),
    _r("core", "pods/status", "patch update"),  # PodScheduled=False on unschedulable pods
    _r(*_EVENTS),
]
_CONTROLLERS = [
    # what the controllers list each pass and watch between passes
    _r("core", "nodes pods persistentvolumeclaims persistentvolumes services endpoints", _READ),
    _r("apps", "deployments replicasets statefulsets controllerrevisions", _READ),
    _r("batch", "jobs cronjobs", _READ),
    _r("discovery.k8s.io", "endpointslices", _READ),
    _r("storage.k8s.io", "storageclasses", _READ),
    _r("coordination.k8s.io", "leases", _READ),  # node heartbeats in kube-node-lease
    # node lifecycle: condition taints, NotReady conditions
    _r("core", "nodes nodes/status", "patch update"),
    # replicaset, statefulset, job: pods; podgc, taint eviction, node lifecycle: conditions, deletion
    _r("core", "pods", "create delete"),
    _r("core", "pods/status", "patch update"),
    # deployment: replica sets and its revision annotation; statefulset: controller revisions
    _r("apps", "replicasets controllerrevisions", "create delete patch update"),
    _r("apps", "deployments", "patch update"),
    _r("apps", "deployments/status replicasets/status statefulsets/status", "patch update"),
    # cronjob: jobs; job: its selector, ttlSecondsAfterFinished deletion
    _r("batch", "jobs", "create delete patch update"),
    _r("batch", "jobs/status cronjobs/status", "patch update"),
    # statefulset: claims; PV binder: claims, volumes (dynamic provisioning, release, deletion)
    _r("core", "persistentvolumeclaims", "create patch update"),
    _r("core", "persistentvolumes", "create delete patch update"),
    _r("core", "persistentvolumeclaims/status persistentvolumes/status", "patch update"),
    # serviceaccount: the "default" account of every namespace
    _r("core", "namespaces serviceaccounts", _READ),
    _r("core", "serviceaccounts", "create"),
    # endpoints and endpoint slices of services with a selector
    _r("core", "endpoints", "create delete update"),
    _r("discovery.k8s.io", "endpointslices", "create delete update"),
    _r(*_EVENTS),
]


def bootstrap_objects() -> list[dict[str, Any]]:
    """Every bootstrap ClusterRole, Role and binding (fresh copies; roles before bindings)."""
    objects = [
        _role("cluster-admin", [_r("*", "*", "*"), _urls("*", "*")]),
        _aggregated("admin", "admin"),
        _aggregated("edit", "edit", _aggregate_to("admin")),
        _aggregated("view", "view", _aggregate_to("edit")),
        _role("system:aggregate-to-admin", _TO_ADMIN, _aggregate_to("admin")),
        _role("system:aggregate-to-edit", _TO_EDIT, _aggregate_to("edit")),
        _role("system:aggregate-to-view", _TO_VIEW, _aggregate_to("view")),
        _role(
            "system:discovery",
            [
                _urls(
                    "/api /api/* /apis /apis/* /healthz /livez /openapi /openapi/* /readyz /version /version/"
                )
            ],
        ),
        _role(
            "system:basic-user",
            [
                _r("authorization.k8s.io", "selfsubjectaccessreviews selfsubjectrulesreviews", "create"),
                _r("authentication.k8s.io", "selfsubjectreviews", "create"),
            ],
        ),
        _role("system:public-info-viewer", [_urls("/healthz /livez /readyz /version /version/")]),
        _role(
            "system:monitoring",
            [_urls("/healthz /healthz/* /livez /livez/* /metrics /metrics/slis /readyz /readyz/*")],
        ),
        _role("system:node", _NODE),
        _role("system:kube-scheduler", _SCHEDULER),
        _role(CONTROLLER_MANAGER, _CONTROLLERS),
        _role("system:node-lease", _NODE_LEASE, namespace="kube-node-lease"),
        _binding("cluster-admin", "cluster-admin", [("Group", MASTERS)]),
        _binding("system:discovery", "system:discovery", [("Group", AUTHENTICATED)]),
        _binding("system:basic-user", "system:basic-user", [("Group", AUTHENTICATED)]),
        _binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            [("Group", AUTHENTICATED), ("Group", UNAUTHENTICATED)],
        ),
        _binding("system:monitoring", "system:monitoring", [("Group", "system:monitoring")]),
        _binding("system:node", "system:node", [("Group", NODES)]),
        _binding(SCHEDULER, SCHEDULER, [("User", SCHEDULER)]),
        _binding(CONTROLLER_MANAGER, CONTROLLER_MANAGER, [("User", CONTROLLER_MANAGER)]),
        _binding("system:node-lease", "system:node-lease", [("Group", NODES)], namespace="kube-node-lease"),
    ]
    return objects


def _merge_metadata(current: dict[str, Any], expected: dict[str, Any]) -> bool:
    changed = False
    md, want = current.setdefault("metadata", {}), meta(expected)
    for key in ("labels", "annotations"):
        have = md.get(key)
        if not isinstance(have, dict):
            have = md[key] = {}
        for k, v in as_dict(want.get(key)).items():
            if k not in have:
                have[k] = v
                changed = True
    return changed


def _reconcile_role(current: dict[str, Any], expected: dict[str, Any]) -> bool:
    changed = _merge_metadata(current, expected)
    if "aggregationRule" in expected:
        rule = current.setdefault("aggregationRule", {})
        selectors = rule.setdefault("clusterRoleSelectors", [])
        for selector in as_list(expected["aggregationRule"].get("clusterRoleSelectors")):
            if selector not in selectors:
                selectors.append(clone(selector))
                changed = True
        return changed
    missing = covers(rules_of(current), rules_of(expected))
    if missing:
        current["rules"] = as_list(current.get("rules")) + [r.as_dict() for r in compact_rules(missing)]
        changed = True
    return changed


def _reconcile_binding(current: dict[str, Any], expected: dict[str, Any]) -> bool:
    changed = _merge_metadata(current, expected)
    subjects = current.setdefault("subjects", [])
    have = {(as_str(as_dict(s).get("kind")), as_str(as_dict(s).get("name"))) for s in as_list(subjects)}
    for subject in expected["subjects"]:
        if (subject["kind"], subject["name"]) not in have:
            subjects.append(clone(subject))
            changed = True
    return changed


def ensure_bootstrap_policy(state: State) -> int:
    """Create missing bootstrap RBAC objects and bring auto-updated ones up to date (kube-apiserver's
    post-start hook); then aggregate ClusterRoles. Returns how many objects were written."""
    written = 0
    for expected in bootstrap_objects():
        rt = state.registry.by_kind(expected["apiVersion"], expected["kind"])
        if rt is None:  # pragma: no cover - the RBAC kinds are built in
            continue
        md = meta(expected)
        ns, name = as_str(md.get("namespace")), as_str(md["name"])
        if ns and state.store.peek("namespaces", "", ns) is None:
            continue  # its namespace is gone: nothing to put it in
        current = state.store.get(rt.key, ns, name)
        if current is None:
            state.store.create(rt.key, clone(expected))
            written += 1
            continue
        if as_dict(meta(current).get("annotations")).get(AUTOUPDATE) != "true":
            continue
        if "roleRef" in expected and current.get("roleRef") != expected["roleRef"]:
            state.store.delete(rt.key, ns, name)
            state.store.create(rt.key, clone(expected))
            written += 1
            continue
        reconcile = _reconcile_binding if "roleRef" in expected else _reconcile_role
        if reconcile(current, expected):
            state.store.update(rt.key, current)
            written += 1
    return written + aggregate_cluster_roles(state)


def aggregate_cluster_roles(state: State) -> int:
    """Write each aggregated ClusterRole's ``rules`` from the roles it selects (the
    clusterrole-aggregation controller's pass); returns how many changed."""
    changed = 0
    for role in list(state.store.scan(CLUSTER_ROLES)):
        if not as_list(as_dict(role.get("aggregationRule")).get("clusterRoleSelectors")):
            continue
        name = as_str(meta(role).get("name"))
        rules: list[Rule] = cluster_role_rules(state.store, name)[0]
        wanted = [r.as_dict() for r in rules]
        if as_list(role.get("rules")) == wanted:
            continue
        updated = clone(role)
        updated["rules"] = wanted
        state.store.update(CLUSTER_ROLES, updated)
        changed += 1
    return changed
