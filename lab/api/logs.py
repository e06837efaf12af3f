"""Pod logs: ``GET .../pods/{name}/log`` served from files the kubelet writes.

The file is ``<logs_dir>/<namespace>_<pod>_<container>.log`` if it exists, else
``<logs_dir>/<namespace>_<pod>.log``; no file yet means an empty log. ``container``
must name one of the pod's containers (and is required when there are several, as on
the real server); ``tailLines`` and ``limitBytes`` trim; ``follow=true`` keeps
streaming what is appended until the pod is gone or the client leaves.
``previous``, ``timestamps`` and ``sinceSeconds`` are accepted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from lab.api.fields import as_list, as_str, dig
from lab.api.reads import bool_param, int_param
from lab.api.routing import Target
from lab.api.state import State
from lab.api.status import bad_request, not_found

__all__ = ["log_path", "pod_log"]

FOLLOW_POLL = 0.2


def log_path(logs_dir: Path, namespace: str, pod: str, container: str = "") -> Path:
    """The file a kubelet should append a pod's (or one container's) output to."""
    if container:
        per_container = logs_dir / f"{namespace}_{pod}_{container}.log"
        if per_container.exists():
            return per_container
    return logs_dir / f"{namespace}_{pod}.log"


def _tail(data: bytes, lines: int) -> bytes:
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


async def pod_log(request: web.Request, state: State, target: Target) -> web.StreamResponse:
    namespace, name = target.namespace or "", target.name or ""
    pod = state.store.peek("pods", namespace, name)
    if pod is None:
        raise not_found("pods", name)
    containers = [as_str(dig(c, "name")) for c in as_list(dig(pod, "spec", "containers"))]
    container = request.query.get("container", "")
    if container and container not in containers:
        raise bad_request(f"container {container} is not valid for pod {name}")
    if not container and len(containers) > 1:
        raise bad_request(
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
        )
    tail = int_param(request.query, "tailLines")
    limit = int_param(request.query, "limitBytes")
    follow = bool_param(request.query, "follow")
    logs_dir = state.settings.resolved_logs_dir()
    path = log_path(logs_dir, namespace, name, container) if logs_dir is not None else None
    data = b""
    if path is not None:
        with contextlib.suppress(OSError):
            data = path.read_bytes()
    offset = len(data)
    if tail is not None:
        data = _tail(data, tail)
    if limit is not None and limit >= 0:
        data = data[:limit]
    if not follow:
        return web.Response(body=data, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        await response.write(data)
        uid = dig(pod, "metadata", "uid")
        while path is not None:
            await asyncio.sleep(FOLLOW_POLL)
            current = state.store.peek("pods", namespace, name)
            if current is None or dig(current, "metadata", "uid") != uid:
                break
            chunk = b""
            with contextlib.suppress(OSError), open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            if chunk:
                offset += len(chunk)
                await response.write(chunk)
    except ConnectionError:
        return response
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response
