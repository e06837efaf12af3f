"""From a pod spec to what a process needs: environment, mounted folders, ports.

* Environment: ``value`` (with ``$(VAR)`` expansion), ``valueFrom.secretKeyRef``
  (base64-decoded), ``configMapKeyRef``, ``fieldRef`` (metadata.name/namespace/uid,
  labels and annotations, spec.nodeName, spec.serviceAccountName, status.podIP,
  status.hostIP) and ``envFrom``. A missing Secret, ConfigMap or key that is not
  ``optional`` raises :class:`ConfigError` (reason ``CreateContainerConfigError``,
  the container waits and the kubelet retries).
* Volumes are folders: PVC -> ``<volumes>/<namespace>/<claimName>/`` (the claim must
  exist), emptyDir -> ``<state>/emptydir/<pod-uid>/<volume>``, hostPath -> the path,
  secret and configMap -> a folder of files under ``<state>/pods/<pod-uid>/volumes``.
  ``subPath`` is honoured. Every pod gets ``LAB_MOUNTS``: JSON ``{mountPath: folder}``.
* Named ports resolve against the container's ``ports``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.errors import LabError

__all__ = [
    "ConfigError",
    "Lookup",
    "container_ports",
    "expand",
    "host_path_for",
    "mounts_env",
    "pass_through_env",
    "pod_volume_dirs",
    "resolve_env",
    "resolve_mounts",
    "resolve_port",
]

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Obj | None]
"""``lookup(plural, namespace, name)``: the object from the API server, or None if absent."""

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(LabError):
    """The container cannot be started yet; ``reason`` goes into its waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known variables are replaced, ``$$`` is ``$``."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _VAR.sub(sub, text)


def _field_ref(pod: Obj, path: str) -> str:
    md = pod.get("metadata") or {}
    simple = {
        "metadata.name": md.get("name"),
        "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName"),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if match:
        return str((md.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError("CreateContainerConfigError", f"unsupported fieldRef fieldPath {path!r}")


def _decode(data: Obj | None, key: str) -> str | None:
    if not data or key not in data:
        return None
    try:
        return base64.b64decode(str(data[key])).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _key_ref(lookup: Lookup, namespace: str, ref: Obj, secret: bool) -> str | None:
    kind = "secrets" if secret else "configmaps"
    what = "secret" if secret else "configmap"
    name, key, optional = str(ref.get("name", "")), str(ref.get("key", "")), bool(ref.get("optional"))
    obj = lookup(kind, namespace, name)
    if obj is None:
        if optional:
            return None
        raise ConfigError("CreateContainerConfigError", f'{what} "{name}" not found')
    value = _decode(obj.get("data"), key) if secret else (obj.get("data") or {}).get(key)
    if value is None:
        if optional:
            return None
        raise ConfigError(
            "CreateContainerConfigError", f"couldn't find key {key} in {what} {namespace}/{name}"
        )
    return str(value)


def resolve_env(
    pod: Obj, container: Obj, lookup: Lookup, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The container's environment: ``base``, then ``envFrom``, then ``env`` in order."""
    namespace = str((pod.get("metadata") or {}).get("namespace", "default"))
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix", ""))
        for field, secret in (("secretRef", True), ("configMapRef", False)):
            ref = source.get(field)
            if not ref:
                continue
            kind = "secrets" if secret else "configmaps"
            obj = lookup(kind, namespace, str(ref.get("name", "")))
            if obj is None:
                if ref.get("optional"):
                    continue
                what = "secret" if secret else "configmap"
                raise ConfigError("CreateContainerConfigError", f'{what} "{ref.get("name")}" not found')
            for key in obj.get("data") or {}:
                item = _decode(obj.get("data"), key) if secret else str(obj["data"][key])
                if item is not None:
                    env[prefix + key] = item
    for var in container.get("env") or []:
        name = str(var.get("name", ""))
        if not name:
            continue
        source = var.get("valueFrom")
        if not source:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        value: str | None
        if "secretKeyRef" in source:
            value = _key_ref(lookup, namespace, source["secretKeyRef"], secret=True)
        elif "configMapKeyRef" in source:
            value = _key_ref(lookup, namespace, source["configMapKeyRef"], secret=False)
        elif "fieldRef" in source:
            value = _field_ref(pod, str(source["fieldRef"].get("fieldPath", "")))
        else:
            value = "0"  # resourceFieldRef: the lab sets no resource limits
        if value is not None:
            env[name] = value
    return env


def pod_volume_dirs(state_dir: Path, uid: str) -> tuple[Path, Path]:
    """The pod's scratch folder and its emptyDir folder (both removed with the pod)."""
    return state_dir / "pods" / uid, state_dir / "emptydir" / uid


def _write_files(folder: Path, data: dict[str, str], items: list[Obj] | None) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    chosen = {str(i.get("key")): str(i.get("path", i.get("key"))) for i in items} if items else None
    for key, value in data.items():
        if chosen is not None and key not in chosen:
            continue
        target = folder / (chosen[key] if chosen else key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(value)
        target.chmod(0o644)


def _volume_folder(pod: Obj, volume: Obj, state_dir: Path, volumes_dir: Path, lookup: Lookup) -> Path:
    md = pod.get("metadata") or {}
    namespace, uid, name = str(md.get("namespace", "default")), str(md.get("uid", "")), str(volume["name"])
    scratch, emptydir = pod_volume_dirs(state_dir, uid)
    if "persistentVolumeClaim" in volume:
        claim = str(volume["persistentVolumeClaim"].get("claimName", ""))
        pvc = lookup("persistentvolumeclaims", namespace, claim)
        if pvc is None:
            raise ConfigError("ContainerCreating", f'persistentvolumeclaim "{claim}" not found')
        if (pvc.get("metadata") or {}).get("deletionTimestamp"):
            raise ConfigError("ContainerCreating", f'persistentvolumeclaim "{claim}" is being deleted')
        folder = volumes_dir / namespace / claim
    elif "hostPath" in volume:
        folder = Path(str(volume["hostPath"].get("path", "/")))
    elif "secret" in volume or "configMap" in volume:
        secret = "secret" in volume
        source = volume["secret" if secret else "configMap"]
        ref = str(source.get("secretName" if secret else "name", ""))
        obj = lookup("secrets" if secret else "configmaps", namespace, ref)
        if obj is None and not source.get("optional"):
            what = "secret" if secret else "configmap"
            raise ConfigError("ContainerCreating", f'{what} "{ref}" not found')
        raw = (obj or {}).get("data") or {}
        data = {k: (_decode(raw, k) or "") if secret else str(v) for k, v in raw.items()}
        folder = scratch / "volumes" / name
        _write_files(folder, data, source.get("items"))
        return folder
    else:  # emptyDir, and any other kind the lab has no special meaning for
        folder = emptydir / name
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    return folder


def resolve_mounts(
    pod: Obj, container: Obj, state_dir: Path, volumes_dir: Path, lookup: Lookup
) -> dict[str, Path]:
    """``{mountPath: host folder}`` for the container's volumeMounts (folders are created)."""
    volumes = {str(v.get("name")): v for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("name")}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        vol_name = str(mount.get("name", ""))
        volume = volumes.get(vol_name)
        if volume is None:
            raise ConfigError("CreateContainerConfigError", f"volume {vol_name!r} is not defined in the pod")
        folder = _volume_folder(pod, volume, state_dir, volumes_dir, lookup)
        sub = str(mount.get("subPath", "")).strip("/")
        if sub:
            folder = folder / sub
            folder.mkdir(parents=True, exist_ok=True)
        mounts[str(mount.get("mountPath", ""))] = folder
    return mounts


def mounts_env(mounts: dict[str, Path]) -> str:
    """The ``LAB_MOUNTS`` value."""
    return json.dumps({k: str(v) for k, v in mounts.items()}, sort_keys=True)


def container_ports(container: Obj) -> dict[str, int]:
    """Named container ports (``name -> containerPort``); unnamed ones as their number."""
    ports: dict[str, int] = {}
    for port in container.get("ports") or []:
        try:
            number = int(port.get("containerPort"))
        except (TypeError, ValueError):
            continue
        ports[str(port.get("name") or number)] = number
    return ports


def resolve_port(value: Any, container: Obj) -> int | None:
    """A probe's ``port`` (number, numeric string or port name) as a number."""
    if isinstance(value, int):
        return value
    text = str(value or "")
    if text.isdigit():
        return int(text)
    return container_ports(container).get(text)


def host_path_for(path: str, mounts: dict[str, Path]) -> Path | None:
    """The host folder for a container path under one of the mounts (longest match)."""
    best: tuple[int, Path] | None = None
    for mount_path, folder in mounts.items():
        prefix = mount_path.rstrip("/")
        if path == prefix or path.startswith(prefix + "/"):
            rest = path[len(prefix) :].lstrip("/")
            if best is None or len(prefix) > best[0]:
                best = (len(prefix), folder / rest if rest else folder)
    return best[1] if best else None


def pass_through_env() -> dict[str, str]:
    """What every lab container inherits from the kubelet (a host, not an image)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("HARNESS_")}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    return env
