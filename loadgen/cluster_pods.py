"""What a load pod is doing, in one line: phase, reason, exit code and its last log line."""

from __future__ import annotations

from typing import Any

from loadgen.errors import LoadgenError
from loadgen.tenants import redact

__all__ = ["pod_exit_code", "pod_state", "pod_story"]


def pod_state(pod: dict[str, Any]) -> str:
    """``name: Phase (reason, exit code N)`` from the pod's status."""
    name = str((pod.get("metadata") or {}).get("name") or "?")
    status = pod.get("status") or {}
    parts = [str(status.get("phase") or "Unknown")]
    detail = []
    if status.get("reason"):
        detail.append(str(status["reason"]))
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        if waiting.get("reason"):
            detail.append(
                str(waiting["reason"]) + (f": {waiting['message']}" if waiting.get("message") else "")
            )
        if terminated:
            detail.append(
                f"{terminated.get('reason') or 'terminated'}, exit code {terminated.get('exitCode')}"
            )
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            detail.append(f"unschedulable: {condition.get('message') or condition.get('reason')}")
    if detail:
        parts.append(f"({'; '.join(detail)})")
    return f"{name}: {' '.join(parts)}"


def pod_exit_code(pods: list[dict[str, Any]]) -> int | None:
    """The first terminated container's exit code among ``pods`` (None: none has ended)."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            code = terminated.get("exitCode")
            if isinstance(code, int):
                return code
    return None


def _last_log_line(transport: Any, namespace: str, name: str) -> str | None:
    path = f"/api/v1/namespaces/{namespace}/pods/{name}/log"
    try:
        status, body = transport.request("GET", path, query=[("tailLines", "1")], timeout=5.0)
    except LoadgenError:
        return None
    if status != 200:
        return None
    lines = body.decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:200] if lines else None


def pod_story(transport: Any, namespace: str, component: str, pods: list[dict[str, Any]]) -> str:
    """One line about the ``component`` pods: each one's state and last log line."""
    if not pods:
        return f"no {component} pod exists (kubectl describe job -n {namespace} says why)"
    told = []
    for pod in pods:
        text = pod_state(pod)
        line = _last_log_line(transport, namespace, str((pod.get("metadata") or {}).get("name")))
        told.append(f"{text}, last log line: {redact(line)!r}" if line else text)
    return f"{component} pod(s): " + "; ".join(told)
