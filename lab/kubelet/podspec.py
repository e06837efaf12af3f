"""From a pod spec to what a process needs: environment, mounted folders, ports.

* Environment: ``value`` (with ``$(VAR)`` expansion), ``valueFrom.secretKeyRef``
  (base64-decoded), ``configMapKeyRef``, ``fieldRef`` (metadata.name/namespace/uid,
  labels and annotations, spec.nodeName, spec.serviceAccountName, status.podIP,
  status.hostIP) and ``envFrom``. A missing Secret, ConfigMap or key that is not
  ``optional`` raises :class:`ConfigError` (reason ``CreateContainerConfigError``,
  the container waits and the kubelet retries).
* Volumes are folders: PVC -> ``<volumes>/<namespace>/<claimName>/`` (the claim must
  exist; made 0777 when new, as the local-path provisioner makes its volumes),
  emptyDir -> ``<runtime>/emptydir/<pod-uid>/<volume>`` (0777, as Kubernetes makes it, so
  a pod's unprivileged user can write there), hostPath -> the path, secret and configMap
  -> a folder of files under ``<runtime>/pods/<pod-uid>/volumes``. ``<runtime>`` is the
  kubelet's :attr:`~lab.kubelet.config.KubeletConfig.runtime_dir`. ``subPath`` is honoured
  (a new sub-folder gets the volume's mode, as the kubelet's SafeMakeDir does). Every pod
  gets ``LAB_MOUNTS``: JSON ``{mountPath: folder}`` (read back with :mod:`common.mounts`).
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

from common.mounts import mapped
from lab.errors import LabError

__all__ = [
    "ConfigError",
    "Lookup",
    "container_ports",
    "expand",
    "host_path_for",
    "mounts_env",
    "make_dir",
    "pass_through_env",
    "pod_volume_dirs",
    "resolve_env",
    "resolve_mounts",
    "resolve_port",
]

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Obj | None]
"""``lookup(plural, namespace, name)``: the object from the API server, or None if absent;
with an empty ``name``, the namespace's list object (``{"items": [...]}``), as a GET of the
collection answers."""

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


#: Folders above pods' own folders: others may traverse them, not list them.
TRAVERSE_ONLY = 0o711
#: emptyDir volumes and new PVC folders: writable by whichever user the pod runs as.
SHARED = 0o777


def pod_volume_dirs(runtime_dir: Path, uid: str) -> tuple[Path, Path]:
    """The pod's own folder and its emptyDir folder under ``runtime_dir`` (both removed with the pod)."""
    return runtime_dir / "pods" / uid, runtime_dir / "emptydir" / uid


def make_dir(folder: Path, mode: int) -> Path:
    """``folder`` (and missing parents, made ``TRAVERSE_ONLY``) with ``mode`` when it is new."""
    if not folder.exists():
        make_dir(folder.parent, TRAVERSE_ONLY)
        try:
            folder.mkdir()
        except FileExistsError:
            return folder
        folder.chmod(mode)
    return folder


def _write_files(
    folder: Path, data: dict[str, str], items: list[Obj] | None, owner: tuple[int, int] | None = None
) -> None:
    """The volume's files; with ``owner`` (a Secret's) the folder is 0700 and that uid's, so
    only the pod's user reaches them, as a runtime's private mount would keep them."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    folder.chmod(0o755 if owner is None else 0o700)
    if owner is not None and os.geteuid() == 0:
        os.chown(folder, *owner)
    chosen = {str(i.get("key")): str(i.get("path", i.get("key"))) for i in items} if items else None
    for key, value in data.items():
        if chosen is not None and key not in chosen:
            continue
        relative = chosen[key] if chosen else key
        target = folder / relative
        if relative.startswith("/") or ".." in Path(relative).parts or not relative:
            raise ConfigError(
                "CreateContainerConfigError", f"volume file {relative!r} would leave its volume"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(value)
        target.chmod(0o644)


def _volume_folder(
    pod: Obj,
    volume: Obj,
    runtime_dir: Path,
    volumes_dir: Path,
    lookup: Lookup,
    owner: tuple[int, int] | None = None,
) -> Path:
    md = pod.get("metadata") or {}
    namespace, uid, name = str(md.get("namespace", "default")), str(md.get("uid", "")), str(volume["name"])
    if not name or "/" in name or name in (".", ".."):  # the API refuses such names: never leave the folder
        raise ConfigError("CreateContainerConfigError", f"volume name {name!r} is not a folder name")
    scratch, emptydir = pod_volume_dirs(runtime_dir, uid)
    if "persistentVolumeClaim" in volume:
        claim = str(volume["persistentVolumeClaim"].get("claimName", ""))
        pvc = lookup("persistentvolumeclaims", namespace, claim)
        if pvc is None:
            raise ConfigError("ContainerCreating", f'persistentvolumeclaim "{claim}" not found')
        if (pvc.get("metadata") or {}).get("deletionTimestamp"):
            raise ConfigError("ContainerCreating", f'persistentvolumeclaim "{claim}" is being deleted')
        folder = volumes_dir / namespace / claim
        if not folder.exists():
            make_dir(folder, SHARED)  # the namespace's folder above it: traverse only
        return folder
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
        # a Secret's copy belongs to one user: containers of other users get their own
        folder = scratch / "volumes" / (f"{name}.uid-{owner[0]}" if secret and owner else name)
        _write_files(folder, data, source.get("items"), owner if secret else None)
        return folder
    else:  # emptyDir, and any other kind the lab has no special meaning for
        return make_dir(emptydir / name, SHARED)
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    return folder


def resolve_mounts(
    pod: Obj,
    container: Obj,
    runtime_dir: Path,
    volumes_dir: Path,
    lookup: Lookup,
    owner: tuple[int, int] | None = None,
) -> dict[str, Path]:
    """``{mountPath: host folder}`` for the container's volumeMounts (folders are created);
    Secret volumes belong to ``owner`` (uid, gid: the container's user), mode 0700."""
    volumes = {str(v.get("name")): v for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("name")}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        vol_name = str(mount.get("name", ""))
        volume = volumes.get(vol_name)
        if volume is None:
            raise ConfigError("CreateContainerConfigError", f"volume {vol_name!r} is not defined in the pod")
        folder = _volume_folder(pod, volume, runtime_dir, volumes_dir, lookup, owner)
        sub = str(mount.get("subPath", "")).strip("/")
        if sub:
            if ".." in Path(sub).parts:
                raise ConfigError("CreateContainerConfigError", f"subPath {sub!r} would leave its volume")
            mode = folder.stat().st_mode & 0o7777
            for part in Path(sub).parts:
                folder = folder / part
                if folder.is_symlink():
                    raise ConfigError("CreateContainerConfigError", f"subPath {sub!r} goes through a symlink")
                if not folder.exists():
                    folder.mkdir(exist_ok=True)
                    folder.chmod(mode)
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
    """The host folder for a container path under one of the mounts (longest match): the rule
    of :func:`common.mounts.mapped`, which programs in pods use through ``LAB_MOUNTS``."""
    found = mapped(path, {k: str(v) for k, v in mounts.items()})
    return None if found is None else Path(found)


def pass_through_env() -> dict[str, str]:
    """What every lab container inherits from the kubelet (a host, not an image)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("HARNESS_")}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    return env
