"""The checklist's constraint "Target instance must exist before PITR restore request", tested.

:func:`restore_needs_target` asks the operator for a restore into an instance that does
not exist, with ``createTarget: false``. The operator must refuse: the MSSQLRestore ends
``Failed`` with a reason (or carries a ``Failed``/``Ready=False`` condition that says
why), and nothing is created on its behalf, neither the target MSSQLInstance nor a
restore Job. The outcome is recorded as ``pitr.json[precondition]``:

``{"ok", "source", "target", "restore", "phase", "reason", "conditions",
"target_created", "jobs_created", "seconds", "checked_at", "problems"}``

``ok`` is true only when the restore was refused with a reason about the missing target
(naming it, or saying a target does not exist) and nothing was created. The request asks
for this run's marked PITR target time when there is one, a moment the source can be
restored to, so that the target is the only thing wrong with it.
The restore request is deleted afterwards, and so is anything the operator created for it
(a target that did not exist before belongs to this check alone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.backup_crs import (
    Configuration,
    Secrets,
    marked_target_time,
    poll,
    request_metadata,
    stamp,
    status_of,
)
from probes.k8s.crs import CustomResources, custom_resources
from probes.pitr import format_time, update_pitr

__all__ = ["about_missing_target", "restore_needs_target"]

logger = logging.getLogger("chaostoolkit")

#: how long after the refusal the check keeps watching for a target or Job to appear.
SETTLE_SECONDS = 2.0
#: words by which a refusal says the target is what is missing (besides naming the target).
_MISSING = ("not exist", "not found", "missing", "no such", "notfound", "absent")


def about_missing_target(reason: str, target: str) -> bool:
    """Whether a refusal's reason is about the missing target (not, say, an unrestorable time)."""
    text = reason.lower()
    return target.lower() in text or ("target" in text and any(word in text for word in _MISSING))


def _refusal(obj: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(phase, reason) when the restore is refused; (phase, None) while it is not (yet)."""
    status = status_of(obj)
    phase = status.get("phase")
    conditions = status.get("conditions") or []
    for cond in conditions if isinstance(conditions, list) else []:
        if not isinstance(cond, Mapping):
            continue
        failed = cond.get("type") == "Failed" and str(cond.get("status")) == "True"
        not_ready = cond.get("type") == "Ready" and str(cond.get("status")) == "False"
        message = cond.get("message") or cond.get("reason")
        if (failed or (not_ready and phase not in (None, "", "Pending", "Running"))) and message:
            return phase, str(message)
    if phase == "Failed":
        return phase, str(status.get("reason") or "") or None
    return phase, None


def _cleanup(crs: Mapping[str, CustomResources], namespace: str, restore: str, target: str) -> None:
    try:
        crs["restore"].delete(namespace, restore)
    except ProbeError as exc:
        logger.warning("could not delete MSSQLRestore %s/%s: %s", namespace, restore, exc)
    try:
        crs["instance"].delete(namespace, target)  # False (nothing done) when it does not exist
    except ProbeError as exc:
        logger.warning("could not delete MSSQLInstance %s/%s: %s", namespace, target, exc)


def restore_needs_target(
    source: str,
    namespace: str = "tenants",
    timeout: float = 60.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Ask for a restore of ``source`` into a missing instance without ``createTarget``; expect a refusal.

    Returns the ``pitr.precondition`` record (see the module). Raises ProbeError when the
    operator did not refuse or created something (after recording it), and when the check
    itself cannot run (the source is missing, the API fails).
    """
    kube.check_namespace(namespace, configuration)
    crs = custom_resources(configuration, secrets)
    if crs["instance"].get(namespace, source) is None:
        raise ProbeError(f"source instance {namespace}/{source} does not exist: pass an existing tenant")
    target = f"{source}-absent-{stamp()}"[:63].rstrip("-")
    if crs["instance"].get(namespace, target) is not None:
        raise ProbeError(f"instance {namespace}/{target} exists already: the check needs a missing target")
    restores = crs["restore"]
    name = f"precondition-{stamp()}"
    # A restorable moment (this run's marked PITR target time when there is one), so that the
    # only thing wrong with the request is the missing target.
    when = marked_target_time() or format_time(time.time())
    spec = {"source": source, "target": target, "targetTime": when, "createTarget": False}
    body = restores.body(request_metadata(name, namespace), spec)
    started = time.monotonic()
    restores.create(namespace, body)
    try:
        obj, _ = poll(lambda: restores.get(namespace, name), lambda o: _refusal(o)[1] is not None, timeout)
        seconds = round(time.monotonic() - started, 3)
        time.sleep(SETTLE_SECONDS)  # a target or Job created just after the refusal is still caught
        created_target = crs["instance"].get(namespace, target) is not None
        jobs = [str(j.metadata.name) for j in kube.owned_jobs(namespace, "MSSQLRestore", name, secrets)]
        obj = restores.get(namespace, name) or obj
    finally:
        # The target's name was checked absent and is unique: whatever holds it now was made for
        # this check, so it goes too, whatever happened above.
        _cleanup(crs, namespace, name, target)
    phase, reason = _refusal(obj)
    conditions = status_of(obj).get("conditions") or []
    problems = []
    if obj is None:
        problems.append("the MSSQLRestore disappeared before the operator answered")
    elif reason is None:
        problems.append(
            f"the operator did not refuse within {timeout:g} s (phase {phase or 'none'}): "
            "a restore into a missing target without createTarget must fail with a reason"
        )
    elif not about_missing_target(reason, target):
        problems.append(
            f"the operator refused for another reason ({reason}), so this run cannot tell whether it "
            "checks that the target exists"
        )
    if created_target:
        problems.append(f"the operator created the target instance {target} although createTarget was false")
    if jobs:
        problems.append(f"the operator started restore Jobs for a refused request: {', '.join(jobs)}")
    record = {
        "ok": not problems,
        "source": source,
        "target": target,
        "restore": name,
        "phase": phase,
        "reason": reason,
        "conditions": conditions if isinstance(conditions, list) else [],
        "target_created": created_target,
        "jobs_created": jobs,
        "seconds": seconds,
        "checked_at": format_time(time.time()),
        "problems": problems,
    }
    update_pitr(kube.run_dir(), "precondition", record)
    if problems:
        raise ProbeError(f"restore precondition: {'; '.join(problems)}")
    return record
