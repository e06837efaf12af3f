"""Where the operator's custom resources are, in one place.

The harness must work against any SQL Server operator, so the API group, version and
plurals of its CRDs, and the status paths it reads, are configuration with these
defaults (the lab's reference CRDs). Each configuration key keeps the name experiments
and var files already use; a key that is unset or empty takes the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from common.config import ConfigurationError

__all__ = ["CONFIGURATION_KEYS", "RESTORE_TARGET", "ROLE_LABEL", "CrdCoordinates", "is_restore_target"]

#: The label on an MSSQLInstance made for a restore (a PITR target, a verify scratch
#: instance): the operator sets it on the targets it creates, the harness on the ones it
#: asked for. Such an instance is never a tenant: tenant discovery and the steady-state
#: probes leave it out unless it is named explicitly.
ROLE_LABEL = "mssql.example.com/role"
RESTORE_TARGET = "restore-target"


def is_restore_target(obj: Mapping[str, Any]) -> bool:
    """True when ``obj`` (an MSSQLInstance) carries ``mssql.example.com/role: restore-target``."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return isinstance(labels, Mapping) and labels.get(ROLE_LABEL) == RESTORE_TARGET


#: configuration key -> CrdCoordinates field.
CONFIGURATION_KEYS = {
    "mssql_group": "group",
    "mssql_version": "version",
    "mssql_plural": "plural",
    "backup_policy_plural": "backup_policy_plural",
    "backup_plural": "backup_plural",
    "restore_plural": "restore_plural",
    "endpoint_path": "endpoint_path",
    "secret_path": "secret_path",
    "database_path": "database_path",
    "ready_path": "ready_path",
    "policy_ready_path": "policy_ready_path",
}


@dataclass(frozen=True)
class CrdCoordinates:
    """The MSSQL CRDs (group, version, plurals) and where instance fields live in an object.

    Paths are dotted; ``name[key=value]`` picks the list item whose ``key`` equals ``value``.
    """

    group: str = "mssql.example.com"
    version: str = "v1alpha1"
    plural: str = "mssqlinstances"
    backup_policy_plural: str = "mssqlbackuppolicies"
    backup_plural: str = "mssqlbackups"
    restore_plural: str = "mssqlrestores"
    endpoint_path: str = "status.endpoint"
    secret_path: str = "status.credentialsSecret"  # noqa: S105 - a field path, not a secret
    database_path: str = "status.database"
    ready_path: str = "status.conditions[type=Ready].status"
    policy_ready_path: str = "status.conditions[type=Ready].status"

    @property
    def api_version(self) -> str:
        """``group/version``, as in an object's ``apiVersion``."""
        return f"{self.group}/{self.version}"

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any] | None) -> CrdCoordinates:
        """The coordinates a configuration names (keys in CONFIGURATION_KEYS), defaults for the rest.

        A value that is not a string raises ConfigurationError (a ValueError) naming the key.
        """
        config = configuration or {}
        given: dict[str, str] = {}
        for key, field in CONFIGURATION_KEYS.items():
            value = config.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise ConfigurationError(
                    f"configuration key {key} must be a string, got {value!r} ({type(value).__name__}): "
                    f"quote it in the var file (default {_DEFAULTS[field]!r})"
                )
            if value.strip():
                given[field] = value.strip()
        return cls(**given)


_DEFAULTS = {f.name: f.default for f in fields(CrdCoordinates)}
