"""The registry of served resources: one :class:`ResourceType` per group/version/plural.

Built-in kinds are declared once in :data:`BUILTINS`; custom resources are added and
removed at run time as CustomResourceDefinitions come and go (:mod:`lab.api.crds`).
Objects are stored per *group-resource* (``ResourceType.key``, e.g. ``deployments.apps``),
so every served version of a custom resource shares one set of objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALL_VERBS", "BUILTINS", "Registry", "ResourceType", "SubresourceInfo"]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class SubresourceInfo:
    """A subresource as discovery shows it (``pods/eviction`` answers with kind Eviction of policy/v1)."""

    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[SubresourceInfo, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False)
    crd: str = ""

    @property
    def key(self) -> str:
        """Storage key: the group-resource, ``pods`` or ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def has(self, subresource: str) -> bool:
        return any(s.name == subresource for s in self.subresources)

    @property
    def custom(self) -> bool:
        return bool(self.crd)


def _status(kind: str) -> SubresourceInfo:
    return SubresourceInfo("status", kind, STATUS_VERBS)


def _scale() -> SubresourceInfo:
    return SubresourceInfo("scale", "Scale", STATUS_VERBS, "autoscaling", "v1")


def _rt(
    group: str,
    plural: str,
    kind: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    subs: tuple[SubresourceInfo, ...] = (),
    verbs: tuple[str, ...] = ALL_VERBS,
) -> ResourceType:
    version = "v1"
    return ResourceType(group, version, plural, kind, namespaced, short, cats, subs, verbs)


_POD_SUBS = (
    _status("Pod"),
    SubresourceInfo("log", "Pod", ("get",)),
    SubresourceInfo("eviction", "Eviction", ("create",), "policy", "v1"),
    SubresourceInfo("binding", "Binding", ("create",)),
)

#: ``serviceaccounts/token``: the TokenRequest API (:mod:`lab.api.token_request`).
_TOKEN_REQUEST = SubresourceInfo("token", "TokenRequest", ("create",), "authentication.k8s.io", "v1")

BUILTINS: tuple[ResourceType, ...] = (
    _rt("", "namespaces", "Namespace", False, ("ns",), subs=(_status("Namespace"),)),
    _rt("", "nodes", "Node", False, ("no",), subs=(_status("Node"),)),
    _rt("", "pods", "Pod", True, ("po",), ("all",), _POD_SUBS),
    _rt("", "bindings", "Binding", True, verbs=("create",)),
    _rt("", "services", "Service", True, ("svc",), ("all",), (_status("Service"),)),
    _rt("", "secrets", "Secret"),
    _rt("", "configmaps", "ConfigMap", True, ("cm",)),
    _rt(
        "",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        True,
        ("pvc",),
        subs=(_status("PersistentVolumeClaim"),),
    ),
    _rt("", "events", "Event", True, ("ev",)),
    _rt("", "persistentvolumes", "PersistentVolume", False, ("pv",), subs=(_status("PersistentVolume"),)),
    _rt("", "endpoints", "Endpoints", True, ("ep",)),
    _rt("discovery.k8s.io", "endpointslices", "EndpointSlice", True),
    _rt("apps", "controllerrevisions", "ControllerRevision", True),
    _rt("events.k8s.io", "events", "Event", True, ("ev",)),
    _rt("", "serviceaccounts", "ServiceAccount", True, ("sa",), subs=(_TOKEN_REQUEST,)),
    _rt("apps", "deployments", "Deployment", True, ("deploy",), ("all",), (_status("Deployment"), _scale())),
    _rt("apps", "statefulsets", "StatefulSet", True, ("sts",), ("all",), (_status("StatefulSet"), _scale())),
    _rt("apps", "replicasets", "ReplicaSet", True, ("rs",), ("all",), (_status("ReplicaSet"), _scale())),
    _rt("apps", "daemonsets", "DaemonSet", True, ("ds",), ("all",), (_status("DaemonSet"),)),
    _rt("batch", "jobs", "Job", True, (), ("all",), (_status("Job"),)),
    _rt("batch", "cronjobs", "CronJob", True, ("cj",), ("all",), (_status("CronJob"),)),
    _rt(
        "policy",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        subs=(_status("PodDisruptionBudget"),),
    ),
    _rt("storage.k8s.io", "storageclasses", "StorageClass", False, ("sc",)),
    _rt(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        subs=(_status("CustomResourceDefinition"),),
    ),
    _rt("rbac.authorization.k8s.io", "roles", "Role"),
    _rt("rbac.authorization.k8s.io", "rolebindings", "RoleBinding"),
    _rt("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", False),
    _rt("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", False),
    _rt("coordination.k8s.io", "leases", "Lease"),
    _rt(
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        verbs=("create",),
    ),
    _rt(
        "authorization.k8s.io", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False, verbs=("create",)
    ),
    _rt("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview", False, verbs=("create",)),
    _rt(
        "authorization.k8s.io",
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        True,
        verbs=("create",),
    ),
    _rt("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview", False, verbs=("create",)),
)

CRD_KEY = "customresourcedefinitions.apiextensions.k8s.io"


class Registry:
    """Which group/version/plural is served, and as what."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._custom: dict[str, tuple[ResourceType, ...]] = {}
        for rt in BUILTINS:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def builtin(self, key: str) -> ResourceType:
        """The built-in type stored under ``key`` (``pods``, ``deployments.apps``)."""
        for rt in BUILTINS:
            if rt.key == key:
                return rt
        raise KeyError(key)

    def by_key(self, key: str) -> ResourceType | None:
        """Any served version of the group-resource ``key`` (the first registered)."""
        for rt in self._types.values():
            if rt.key == key:
                return rt
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for rt in self._types.values():
            if rt.api_version == api_version and rt.kind == kind:
                return rt
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred (first registered) first; core is ``""``."""
        groups: dict[str, list[str]] = {}
        for group, version, _plural in self._types:
            versions = groups.setdefault(group, [])
            if version not in versions:
                versions.append(version)
        return groups

    def resources(self, group: str, version: str) -> list[ResourceType]:
        return [rt for (g, v, _p), rt in self._types.items() if g == group and v == version]

    def set_custom(self, crd_name: str, types: tuple[ResourceType, ...]) -> None:
        """Serve ``types`` for the CRD ``crd_name`` (replacing what it served before)."""
        self.remove_custom(crd_name)
        for rt in types:
            if (rt.group, rt.version, rt.plural) in self._types:
                continue
            self._types[(rt.group, rt.version, rt.plural)] = rt
        self._custom[crd_name] = types

    def remove_custom(self, crd_name: str) -> None:
        for rt in self._custom.pop(crd_name, ()):
            current = self._types.get((rt.group, rt.version, rt.plural))
            if current is not None and current.crd == crd_name:
                del self._types[(rt.group, rt.version, rt.plural)]

    def custom_keys(self, crd_name: str) -> set[str]:
        return {rt.key for rt in self._custom.get(crd_name, ())}
