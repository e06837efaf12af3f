"""The names and paths of a pod spec that become host paths in the lab, checked as Kubernetes does.

The lab's kubelet runs as root and turns some pod-spec strings into paths on the host: a
container's name (its log file), a volume's name (its folder), a Secret or ConfigMap
volume's ``items[].path`` and a ``volumeMounts[].subPath`` (folders under the volume), and
a Secret's or ConfigMap's keys (file names). Kubernetes' validation refuses the strings
that would leave their folder, and so does the lab, with the same messages (422, first
error only):

- container and volume names are RFC 1123 labels (``ValidateDNS1123Label``);
- ``items[].path`` and ``subPath`` are relative paths without a ``..`` element
  (``validateLocalDescendingPath``);
- ConfigMap and Secret keys consist of alphanumerics, ``-``, ``_`` or ``.`` and are not
  ``.`` or ``..`` (``IsConfigMapKey``).

The kubelet also refuses a path that resolves outside its volume (:mod:`lab.kubelet.podspec`).
"""

from __future__ import annotations

import re
from typing import Any

from lab.api.resources import ResourceType
from lab.api.status import invalid

__all__ = ["check_data_keys", "check_pod_paths"]

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _descending(rt: ResourceType, name: str, field: str, value: Any) -> None:
    if not isinstance(value, str):
        return
    if value.startswith("/"):
        raise invalid(rt.kind, name, field, f'Invalid value: "{value}": must be a relative path', rt.group)
    if ".." in value.replace("\\", "/").split("/"):
        raise invalid(rt.kind, name, field, f"Invalid value: \"{value}\": must not contain '..'", rt.group)


def _label(rt: ResourceType, name: str, field: str, value: Any) -> None:
    if not isinstance(value, str) or not _LABEL.match(value) or len(value) > 63:
        raise invalid(
            rt.kind,
            name,
            field,
            f'Invalid value: "{value}": a lowercase RFC 1123 label must consist of lower case '
            "alphanumeric characters or '-', and must start and end with an alphanumeric character",
            rt.group,
        )


def check_pod_paths(rt: ResourceType, name: str, spec: dict[str, Any], at: str) -> None:
    """422 for a container name, volume item path or subPath that could leave its folder."""
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(_list(spec.get(kind))):
            if not isinstance(container, dict):
                continue
            _label(rt, name, f"{at}.{kind}[{index}].name", container.get("name"))
            for number, mount in enumerate(_list(container.get("volumeMounts"))):
                if isinstance(mount, dict):
                    field = f"{at}.{kind}[{index}].volumeMounts[{number}].subPath"
                    _descending(rt, name, field, mount.get("subPath"))
    for index, volume in enumerate(_list(spec.get("volumes"))):
        if not isinstance(volume, dict):
            continue
        _label(rt, name, f"{at}.volumes[{index}].name", volume.get("name"))
        for source in ("secret", "configMap"):
            items = (volume.get(source) or {}).get("items") if isinstance(volume.get(source), dict) else None
            for number, item in enumerate(_list(items)):
                if isinstance(item, dict):
                    field = f"{at}.volumes[{index}].{source}.items[{number}].path"
                    _descending(rt, name, field, item.get("path"))


def check_data_keys(rt: ResourceType, name: str, obj: dict[str, Any]) -> None:
    """422 for a ConfigMap or Secret key that is not a valid file name."""
    for field in ("data", "binaryData", "stringData"):
        data = obj.get(field)
        if not isinstance(data, dict):
            continue
        for key in data:
            if not isinstance(key, str) or not _KEY.match(key) or key in (".", ".."):
                raise invalid(
                    rt.kind,
                    name,
                    f"{field}[{key}]",
                    f'Invalid value: "{key}": a valid config key must consist of alphanumeric characters, '
                    "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                    "validation is '[-._a-zA-Z0-9]+')",
                    rt.group,
                )
