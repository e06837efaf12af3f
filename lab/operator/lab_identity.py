"""The lab's identity as the operator sees it: its id and block of engine ports, read from the API.

The lab's control plane publishes the ConfigMap ``kube-system/lab-identity`` with
``labId`` and ``portRange`` (``"LOW-HIGH"``, both ends included; see :mod:`lab.ports`).
:class:`IdentityReader` reads it at the first pass and again at most every
:data:`IDENTITY_REFRESH` seconds:

- found: its :class:`LabIdentity` (the last good one is kept when a later read fails or
  finds none, so a passing API error never changes what the engines get);
- absent (404) and never seen: None, logged once: not a lab (a real cluster), the
  operator then uses :data:`lab.operator.reconcile.PORT_RANGE`;
- unreadable (403, malformed) and never seen: ApiError naming the fix; the operator
  then hands out no port and starts no engine (fail closed).

:func:`with_identity` puts ``LAB_ID`` and ``LAB_INSTANCE`` (``<namespace>/<name>``) into
an engine StatefulSet's containers: the engine records them in the tenant database
(``harness_identity``, :func:`lab.engine.identity_sql`), and the harness refuses a server
whose lab id is not its lab's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.kubeclient import ApiError, KubeClient
from lab.operator.objects import SPEC_HASH_ANNOTATION, spec_hash
from lab.ports import format_range, is_lab_id, parse_range

__all__ = [
    "IDENTITY_ENV",
    "IDENTITY_REFRESH",
    "LAB_IDENTITY",
    "IdentityReader",
    "LabIdentity",
    "identity_of",
    "with_identity",
]

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: Where the lab publishes its id and port block: (namespace, name) of a ConfigMap.
LAB_IDENTITY = ("kube-system", "lab-identity")
IDENTITY_REFRESH = 30.0
#: The container variables that carry the lab's identity to the engine.
IDENTITY_ENV = ("LAB_ID", "LAB_INSTANCE")


@dataclass(frozen=True)
class LabIdentity:
    """The lab's id and its block of engine ports ``[low, high)``."""

    lab_id: str
    ports: tuple[int, int]


def identity_of(configmap: Obj) -> LabIdentity:
    """The identity a ``lab-identity`` ConfigMap publishes; ApiError (422) naming the fix when malformed."""
    data = configmap.get("data") or {}
    where = "ConfigMap {}/{}".format(*LAB_IDENTITY)
    lab_id = data.get("labId")
    if not is_lab_id(lab_id):
        raise ApiError(
            422, "Invalid", f"{where}: labId {lab_id!r} is not a lab id: republish it (`python -m lab up`)"
        )
    try:
        ports = parse_range(data.get("portRange"))
    except LabError as exc:
        message = f"{where}: portRange: {exc}: republish it (`python -m lab up`)"
        raise ApiError(422, "Invalid", message) from None
    return LabIdentity(str(lab_id), ports)


def with_identity(statefulset: Obj, lab_id: str, instance: str) -> Obj:
    """``statefulset`` (from :func:`lab.operator.objects.desired_statefulset`) with ``LAB_ID`` and
    ``LAB_INSTANCE`` in its containers' environment and its spec hash recomputed (in place)."""
    spec = statefulset["spec"]
    for container in spec["template"]["spec"]["containers"]:
        env = [e for e in container.get("env") or [] if e.get("name") not in IDENTITY_ENV]
        container["env"] = [
            *env,
            {"name": "LAB_ID", "value": lab_id},
            {"name": "LAB_INSTANCE", "value": instance},
        ]
    mutable = {"replicas": spec["replicas"], "template": spec["template"]}
    statefulset["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(mutable)
    return statefulset


class IdentityReader:
    """The lab's identity, read through ``client`` and cached (see the module)."""

    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self.identity: LabIdentity | None = None
        self._read_at: float | None = None
        self._absence_logged = False

    def read(self) -> LabIdentity | None:
        """The lab's identity, None without one; ApiError when there is none yet and it cannot be read."""
        now = self.clock()
        if self._read_at is not None and now - self._read_at < IDENTITY_REFRESH:
            return self.identity
        ns, name = LAB_IDENTITY
        try:
            obj = self.client.get_or_none("configmaps", name, ns)
            found = None if obj is None else identity_of(obj)
        except ApiError as exc:
            if self.identity is None or exc.code == 0:
                raise self._problem(exc) from None
            kept = self.identity.lab_id
            log.warning("cannot read ConfigMap %s/%s (%s): keeping lab %s", ns, name, exc, kept)
            self._read_at = now
            return self.identity
        self._read_at = now
        if found is None:
            if self.identity is not None:
                log.warning("ConfigMap %s/%s is gone: keeping lab %s", ns, name, self.identity.lab_id)
            elif not self._absence_logged:
                self._absence_logged = True
                log.info("no ConfigMap %s/%s: not a lab, engine ports from the default range", ns, name)
            return self.identity
        if found != self.identity:
            log.info("lab %s: engine ports %s", found.lab_id, format_range(found.ports))
        self.identity = found
        return found

    @staticmethod
    def _problem(exc: ApiError) -> ApiError:
        if exc.code in (0, 422):
            return exc
        ns, name = LAB_IDENTITY
        return ApiError(
            exc.code,
            exc.reason,
            f"cannot read ConfigMap {ns}/{name} (the lab's id and engine ports): {exc}: grant the "
            f"operator get on configmaps named {name} in {ns}",
        )
