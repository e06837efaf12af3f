"""The MSSQL custom resources through the Kubernetes API, with one-line errors.

Every activity that reads or writes MSSQLInstances, backups, policies or restores goes
through :class:`CustomResources`, so a missing CRD, a denied verb or an unreachable API
server reads the same everywhere. Where the resources live (group, version, plurals) is
configuration (:class:`common.crd.CrdCoordinates`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.crd import CrdCoordinates
from probes.errors import ProbeError
from probes.k8s import kube

__all__ = ["CustomResources", "coordinates", "custom_resources"]

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None


def coordinates(configuration: Configuration) -> CrdCoordinates:
    try:
        return CrdCoordinates.from_configuration(configuration)
    except ValueError as exc:
        raise ProbeError(str(exc)) from None


class CustomResources:
    """Get/create/patch/delete/list one kind of custom resource, with one-line errors."""

    def __init__(self, coords: CrdCoordinates, plural: str, kind: str, secrets: Secrets) -> None:
        self.coords, self.plural, self.kind, self.secrets = coords, plural, kind, secrets
        self._client: Any = None

    def _api(self) -> Any:
        if self._client is None:
            self._client = kube.custom(self.secrets)
        return self._client

    def _args(self, namespace: str) -> tuple[str, str, str, str]:
        return (self.coords.group, self.coords.version, namespace, self.plural)

    def body(self, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """A new object of this kind: ``apiVersion``, ``kind``, ``metadata``, ``spec``."""
        return {"apiVersion": self.coords.api_version, "kind": self.kind, "metadata": metadata, "spec": spec}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self._api().get_namespaced_custom_object(*self._args(namespace), name))
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise kube.api_problem(exc, f"{self.kind} {namespace}/{name}") from None

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return dict(self._api().create_namespaced_custom_object(*self._args(namespace), body))
        except Exception as exc:
            what = f"creating {self.kind} {namespace}/{body['metadata']['name']}"
            if getattr(exc, "status", None) == 404:
                raise ProbeError(
                    f"{what}: not found (404): is the {self.plural}.{self.coords.group} CRD installed?"
                ) from None
            raise kube.api_problem(exc, what) from None

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return dict(self._api().patch_namespaced_custom_object(*self._args(namespace), name, body))
        except Exception as exc:
            raise kube.api_problem(exc, f"updating {self.kind} {namespace}/{name}") from None

    def delete(self, namespace: str, name: str) -> bool:
        try:
            self._api().delete_namespaced_custom_object(*self._args(namespace), name)
            return True
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return False
            raise kube.api_problem(exc, f"deleting {self.kind} {namespace}/{name}") from None

    def list(self, namespace: str) -> list[dict[str, Any]]:
        try:
            return list(self._api().list_namespaced_custom_object(*self._args(namespace))["items"])
        except Exception as exc:
            raise kube.api_problem(exc, f"{self.plural}.{self.coords.group} in {namespace}") from None


def custom_resources(configuration: Configuration, secrets: Secrets) -> dict[str, CustomResources]:
    c = coordinates(configuration)
    return {
        "instance": CustomResources(c, c.plural, "MSSQLInstance", secrets),
        "backup": CustomResources(c, c.backup_plural, "MSSQLBackup", secrets),
        "policy": CustomResources(c, c.backup_policy_plural, "MSSQLBackupPolicy", secrets),
        "restore": CustomResources(c, c.restore_plural, "MSSQLRestore", secrets),
    }
