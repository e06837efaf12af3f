"""Pod defaulting and admission, the way kube-apiserver fills in a pod and its templates.

* :func:`default_pod_spec` (pods and every workload's pod template, on create and update):
  ``SetDefaults_PodSpec`` (``dnsPolicy``, ``schedulerName``, ``securityContext: {}``,
  ``terminationGracePeriodSeconds``, ``restartPolicy: Always`` where the caller says so),
  ``SetDefaults_Container`` for containers and init containers
  (``terminationMessagePath``/``terminationMessagePolicy``, ``imagePullPolicy`` from
  the image tag, ``resources: {}``, port ``protocol: TCP``, ``fieldRef.apiVersion``),
  ``SetDefaults_Probe`` for liveness, readiness and startup probes (``timeoutSeconds``
  1, ``periodSeconds`` 10, ``successThreshold`` 1, ``failureThreshold`` 3; an
  ``httpGet`` gets ``path: /`` and ``scheme: HTTP``), and secret/configMap volumes'
  ``defaultMode: 420``.
* :func:`default_template_meta`: a template's ``metadata.creationTimestamp: null``
  (what Go clients send, e.g. ``kubectl rollout undo``) is dropped, as the real
  server's serialization of an empty timestamp does.
* :func:`default_requests`: a pod container with limits but no request for a
  resource gets the limit as its request (``SetDefaults_Pod``; pods only, never templates).
* :func:`pod_qos`: ``status.qosClass`` as ``GetPodQOS`` computes it (cpu and memory of
  containers and init containers; positive quantities only).
* :func:`default_tolerations`: the DefaultTolerationSeconds admission plugin (create only).

Everything reads defensively: a malformed spec is left for the spec checks to refuse.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from lab.api.fields import as_dict, as_list

__all__ = [
    "NOT_READY_TAINT",
    "UNREACHABLE_TAINT",
    "default_pod_spec",
    "default_requests",
    "default_template_meta",
    "default_tolerations",
    "parse_quantity",
    "pod_qos",
]

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"

_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
_QOS_RESOURCES = ("cpu", "memory")
_QUANTITY = re.compile(
    r"^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?)$"
)
_SUFFIX = {
    "m": Decimal("0.001"),
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
}


def _unset(target: dict[str, Any], key: str) -> bool:
    return target.get(key) in (None, "")


def _set(target: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if _unset(target, key):
            target[key] = value


def _pull_policy(image: Any) -> str:
    """``Always`` for ``:latest`` or an untagged image, else ``IfNotPresent`` (a digest counts as tagged)."""
    text = str(image or "")
    if "@" in text:
        return "IfNotPresent"
    last = text.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in _PROBE_DEFAULTS.items():
        if probe.get(key) in (None, 0):
            probe[key] = value
    http_get = probe.get("httpGet")
    if isinstance(http_get, dict):
        _set(http_get, {"path": "/", "scheme": "HTTP"})


def _container(container: Any) -> None:
    if not isinstance(container, dict):
        return
    _set(
        container,
        {
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": _pull_policy(container.get("image")),
        },
    )
    if container.get("resources") is None:
        container["resources"] = {}
    for name in _PROBES:
        _probe(container.get(name))
    for port in as_list(container.get("ports")):
        if isinstance(port, dict):
            _set(port, {"protocol": "TCP"})
    for var in as_list(container.get("env")):
        field_ref = as_dict(as_dict(as_dict(var).get("valueFrom")).get("fieldRef"))
        if field_ref:
            _set(field_ref, {"apiVersion": "v1"})


def default_pod_spec(spec: Any, restart_policy: bool = True) -> None:
    """Fill in a pod spec (a pod's or a template's); ``restart_policy`` False leaves it unset (Jobs)."""
    if not isinstance(spec, dict):
        return
    _set(
        spec,
        {
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": 30,
        },
    )
    if restart_policy:
        _set(spec, {"restartPolicy": "Always"})
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    for kind in ("initContainers", "containers"):
        for container in as_list(spec.get(kind)):
            _container(container)
    for volume in as_list(spec.get("volumes")):
        for source in ("secret", "configMap"):
            found = as_dict(volume).get(source)
            if isinstance(found, dict) and found.get("defaultMode") is None:
                found["defaultMode"] = 420


def default_template_meta(template: Any) -> None:
    """Drop ``metadata.creationTimestamp: null`` from a pod template (the server never stores it)."""
    md = as_dict(template).get("metadata")
    if isinstance(md, dict) and "creationTimestamp" in md and md["creationTimestamp"] is None:
        del md["creationTimestamp"]


def default_requests(spec: Any) -> None:
    """A container's limits become its requests where it has none (``SetDefaults_Pod``)."""
    for kind in ("initContainers", "containers"):
        for container in as_list(as_dict(spec).get(kind)):
            resources = as_dict(as_dict(container).get("resources"))
            limits = resources.get("limits")
            if not isinstance(limits, dict) or not limits:
                continue
            requests = resources.get("requests")
            if not isinstance(requests, dict):
                requests = resources["requests"] = {}
            for name, value in limits.items():
                requests.setdefault(name, value)


def parse_quantity(text: Any) -> Decimal | None:
    """A Kubernetes quantity (``500m``, ``1.5Gi``, ``2e3``, ``1``) as a number; None when malformed."""
    match = _QUANTITY.match(str(text).strip()) if isinstance(text, (str, int, float)) else None
    if match is None or isinstance(text, bool):
        return None
    number, exponent, suffix = match.groups()
    try:
        value = Decimal(number)
        if exponent:
            return value * Decimal(10) ** int(exponent[1:])
        return value * _SUFFIX.get(suffix or "", Decimal(1))
    except (InvalidOperation, ValueError):
        return None


def _positive(resources: Any) -> dict[str, Decimal]:
    found: dict[str, Decimal] = {}
    for name, text in as_dict(resources).items():
        if name not in _QOS_RESOURCES:
            continue
        value = parse_quantity(text)
        if value is not None and value > 0:
            found[name] = value
    return found


def pod_qos(pod: dict[str, Any]) -> str:
    """``Guaranteed``, ``Burstable`` or ``BestEffort``, as Kubernetes' GetPodQOS decides.

    A container's missing requests count as its limits (the pod default), so a pod
    with equal limits and no requests is Guaranteed.
    """
    spec = as_dict(pod.get("spec"))
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    for container in [*as_list(spec.get("containers")), *as_list(spec.get("initContainers"))]:
        resources = as_dict(as_dict(container).get("resources"))
        own_limits = _positive(resources.get("limits"))
        # a missing request is the limit (the pod default); an explicit zero stays zero
        own_requests = _positive({**as_dict(resources.get("limits")), **as_dict(resources.get("requests"))})
        for name, value in own_requests.items():
            requests[name] = requests.get(name, Decimal(0)) + value
        for name, value in own_limits.items():
            limits[name] = limits.get(name, Decimal(0)) + value
        if not set(_QOS_RESOURCES) <= set(own_limits):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    matching = all(limits.get(name) == value for name, value in requests.items())
    if guaranteed and matching and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


def _tolerated(tolerations: list[Any], key: str) -> bool:
    """True when a toleration for ``key`` (or every key) with effect NoExecute (or every effect) exists."""
    for tol in tolerations:
        if not isinstance(tol, dict):
            continue
        if tol.get("effect") not in (None, "", "NoExecute"):
            continue
        if tol.get("key") in (key, None, ""):
            return True
    return False


def default_tolerations(pod: dict[str, Any], seconds: int) -> None:
    """DefaultTolerationSeconds: not-ready and unreachable NoExecute tolerations for ``seconds``."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = []
    if not isinstance(tolerations, list):
        return
    added = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key in (NOT_READY_TAINT, UNREACHABLE_TAINT)
        if not _tolerated(tolerations, key)
    ]
    if added:
        spec["tolerations"] = [*tolerations, *added]
