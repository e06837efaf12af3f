"""Admission of pods that ask for root: allowed only to whom may ``use`` the ``privileged`` policy.

The lab's kubelets run pods as real host processes without user namespaces, so a container
running as uid 0 is root on the machine. A pod that explicitly asks for root is therefore
admitted only when the requesting user, or the pod's service account
(``system:serviceaccount:NS:SA``), is allowed verb ``use`` on ``podsecuritypolicies`` named
``privileged`` in API group ``policy``: PodSecurityPolicy's authorization model, where a
pod is admitted under a policy its creator or its service account may use (so the pods a
Deployment's controller creates are admitted through the pod's service account). PSP
itself is gone from Kubernetes since 1.25, replaced by Pod Security Admission's namespace
labels; the lab keeps PSP's ``use`` check because it gives exactly the per-user and
per-service-account grant the lab needs, in plain RBAC (a ClusterRole with ``use`` on
``podsecuritypolicies/privileged``, bound by a ClusterRoleBinding, or by a RoleBinding in
the pod's namespace: as PSP did, the check is made in the pod's namespace).

Asking for root means, for any container or init container (the container's
``securityContext`` over the pod's) (:func:`asks_for_root`):

- ``runAsUser: 0``, ``runAsGroup: 0``, ``privileged: true``, the pod's ``supplementalGroups``
  holding 0 or ``fsGroup: 0``;
- any other host id: a uid or gid (``runAsUser``, ``runAsGroup``, ``supplementalGroups``,
  ``fsGroup``) below :data:`UNPRIVILEGED_IDS` other than ``nobody`` (65534). Pods share the
  host's users, so uid 101 is ``postgres`` (every tenant's data) and group 42 ``shadow``;
  ids from 100000 up belong to no account here and are free to use, as are the unset ids
  (``nobody``);
- one of the lab's own images without a ``command``: it runs this checkout's program as the
  kubelet's user, which is root (:mod:`lab.kubelet.images`);
- a ``hostPath`` volume (Pod Security Admission's baseline level forbids them too).

A refused pod gets 403 Forbidden, one line naming the pod, the container, the field and the fix.

Workloads are checked when they are written, not only their pods: the handlers call
:func:`admit_template` for a Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or
CronJob whose pod template asks for root, against whoever writes it. The controllers
(``system:kube-controller-manager``) then create pods from admitted templates and are not
checked again; any other writer of a pod is (:func:`admit`). So the lab operator, whose
StatefulSets and Jobs run the lab's images, holds ``use`` on ``podsecuritypolicies/privileged``
in its ClusterRole (``lab/crds/operator.yaml``), and a user who may only create Deployments
cannot get root through one.
"""

from __future__ import annotations

from typing import Any, Protocol

from lab.api.authz import Attributes
from lab.api.fields import dig
from lab.api.identity import UserInfo, service_account_user
from lab.api.spec_checks import TEMPLATES as CHECKED_TEMPLATES
from lab.api.status import forbidden
from lab.kubelet.images import is_host_command

__all__ = [
    "CONTROLLERS",
    "POLICY",
    "TEMPLATES",
    "UNPRIVILEGED_IDS",
    "Decider",
    "admit",
    "admit_template",
    "asks_for_root",
    "root_request",
]

#: The PodSecurityPolicy whose ``use`` admits pods that ask for root.
POLICY = "privileged"
#: Host uids and gids from here up are nobody's account on the machine (and ``nobody``'s own).
UNPRIVILEGED_IDS = 100_000
NOBODY = 65534
#: Who creates pods from templates admitted when they were written.
CONTROLLERS = frozenset({"system:kube-controller-manager"})
#: Where each workload kind keeps its pod template's spec: the paths the spec checks read.
TEMPLATES: dict[str, tuple[str, ...]] = {key: path for key, (path, _policies) in CHECKED_TEMPLATES.items()}

Obj = dict[str, Any]


class Decider(Protocol):
    """What :func:`admit` needs of the authorizer."""

    def decide(self, attrs: Attributes) -> tuple[bool, str]: ...


def _context(obj: Obj | None) -> Obj:
    sc = (obj or {}).get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _is_zero(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == 0


def _host_id(value: Any) -> bool:
    """A host account's id: not ``nobody``, below :data:`UNPRIVILEGED_IDS` (0 is checked first)."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value != NOBODY
        and value < UNPRIVILEGED_IDS
    )


def asks_for_root(pod: Obj, container: Obj) -> str | None:
    """The field by which ``container`` of ``pod`` asks for root or a host account, or None."""
    pod_sc, sc = _context(pod.get("spec")), _context(container)
    user = sc["runAsUser"] if "runAsUser" in sc else pod_sc.get("runAsUser")
    group = sc["runAsGroup"] if "runAsGroup" in sc else pod_sc.get("runAsGroup")
    groups = pod_sc.get("supplementalGroups") or []
    if _is_zero(user):
        return "securityContext.runAsUser: 0"
    if _is_zero(group):
        return "securityContext.runAsGroup: 0"
    if sc.get("privileged") is True:
        return "securityContext.privileged: true"
    if any(_is_zero(g) for g in groups):
        return "spec.securityContext.supplementalGroups: [0]"
    if _is_zero(pod_sc.get("fsGroup")):
        return "spec.securityContext.fsGroup: 0"
    for field, value in (("runAsUser", user), ("runAsGroup", group), ("fsGroup", pod_sc.get("fsGroup"))):
        if _host_id(value):
            return f"securityContext.{field}: {value}, a host account's id (use {UNPRIVILEGED_IDS} or above)"
    for value in groups:
        if _host_id(value):
            return (
                f"spec.securityContext.supplementalGroups: [{value}], a host group "
                f"(use {UNPRIVILEGED_IDS} or above)"
            )
    if not is_host_command(container):
        return f"image {container.get('image')} without a command runs as the kubelet's user, root"
    return None


def _host_path(pod: Obj) -> str | None:
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if isinstance(volume, dict) and "hostPath" in volume:
            return str(volume.get("name", ""))
    return None


def root_request(pod: Obj) -> tuple[str, str] | None:
    """``(container name, field)`` of the first container that asks for root, or None
    (a ``hostPath`` volume is named as container ``""``)."""
    spec = pod.get("spec") or {}
    volume = _host_path(pod)
    if volume is not None:
        return "", f'hostPath volume "{volume}"'
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            if not isinstance(container, dict):
                continue
            field = asks_for_root(pod, container)
            if field is not None:
                return str(container.get("name", "")), field
    return None


def _may_use(authorizer: Decider, user: UserInfo, namespace: str) -> bool:
    attrs = Attributes(
        user=user,
        verb="use",
        group="policy",
        resource="podsecuritypolicies",
        namespace=namespace,
        name=POLICY,
    )
    allowed, _reason = authorizer.decide(attrs)
    return allowed


def admit(pod: Obj, user: UserInfo, authorizer: Decider, what: str = "") -> None:
    """Admit ``pod`` written by ``user``, or raise 403 Forbidden when it asks for root unallowed.

    ``what`` names the object in the message (default: the pod); the controllers are trusted
    (see the module docstring)."""
    if user.name in CONTROLLERS:
        return
    asked = root_request(pod)
    if asked is None:
        return
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = str(md.get("namespace") or "default")
    account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
    pod_user = service_account_user(namespace, account)
    if _may_use(authorizer, user, namespace) or _may_use(authorizer, pod_user, namespace):
        return
    container, field = asked
    name = md.get("name") or f"{md.get('generateName') or ''}(generated)"
    subject = (
        f'container "{container}" asks for root ({field})'
        if container
        else f"the pod asks for root ({field})"
    )
    default = f'pods "{name}"'
    raise forbidden(
        f"{what or default} is forbidden: PodSecurityPolicy: unable to admit pod: {subject}, "
        f'and neither user "{user.name}" nor service account "{pod_user.name}" '
        f'may use podsecuritypolicy "{POLICY}": run the container as a non-root user, or grant verb "use" '
        f'on podsecuritypolicies "{POLICY}" in API group "policy" to one of them'
    )


def admit_template(obj: Obj, key: str, user: UserInfo, authorizer: Decider) -> None:
    """Admit the pod template of workload ``obj`` (stored under ``key``, e.g. ``statefulsets.apps``)
    as :func:`admit` admits a pod, against ``user``, who writes the workload."""
    path = TEMPLATES.get(key)
    spec = dig(obj, *path) if path is not None else None
    if not isinstance(spec, dict):
        return
    md = obj.get("metadata") or {}
    pod = {"metadata": {"name": md.get("name"), "namespace": md.get("namespace")}, "spec": spec}
    plural, _, group = key.partition(".")
    admit(pod, user, authorizer, f'{plural}.{group} "{md.get("name")}"')
