"""The soak's backup policies: log backups every few minutes for every tenant, put back afterwards.

Each tenant gets ``<tenant>-backups`` (the name ``probes.k8s.backup_requests.apply_backup_policy``
gives) with the soak's full schedule and log interval, and is waited for until Ready. When
the soak ends (also on an error or an interrupt) a policy the soak created is deleted
and one that was there before gets its old spec back, so later runs do not keep
backing up every 20 seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from orchestration.soak_settings import SoakSettings
from probes.errors import ProbeError
from probes.k8s.backup_requests import apply_backup_policy
from probes.k8s.crs import custom_resources

__all__ = ["BackupPolicies", "undo"]

log = logging.getLogger("chaostoolkit")


def undo(now: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``now`` back into ``before``: keys ``before`` lacked become null."""
    patch: dict[str, Any] = {}
    for key in now.keys() | before.keys():
        if key not in before:
            patch[key] = None
        elif isinstance(now.get(key), Mapping) and isinstance(before[key], Mapping):
            patch[key] = undo(now[key], before[key])
        else:
            patch[key] = before[key]
    return patch


class BackupPolicies:
    """Apply the soak's policy to every tenant; :meth:`restore` undoes it."""

    def __init__(
        self,
        tenants: list[str],
        namespace: str,
        settings: SoakSettings,
        configuration: Mapping[str, Any],
        secrets: Mapping[str, Any] | None,
    ) -> None:
        self.tenants = tenants
        self.namespace = namespace
        self.settings = settings
        self.configuration = dict(configuration)
        self.secrets = secrets
        self._before: dict[str, dict[str, Any] | None] = {}

    def apply(self) -> None:
        """Create or update each tenant's policy and wait until it is Ready (ProbeError if not)."""
        policies = custom_resources(self.configuration, self.secrets)["policy"]
        for tenant in self.tenants:
            name = f"{tenant}-backups"
            if name not in self._before:
                existing = policies.get(self.namespace, name)
                self._before[name] = dict(existing.get("spec") or {}) if existing else None
            apply_backup_policy(
                instance=tenant,
                namespace=self.namespace,
                full_schedule=self.settings.full_schedule,
                log_interval_seconds=max(1, round(self.settings.log_interval_seconds)),
                timeout=self.settings.backup_timeout,
                configuration=self.configuration,
                secrets=self.secrets,
            )

    def restore(self) -> None:
        """Delete the policies the soak created; give the others their spec from before."""
        try:
            policies = custom_resources(self.configuration, self.secrets)["policy"]
            for name, spec in self._before.items():
                if spec is None:
                    policies.delete(self.namespace, name)
                else:
                    now = policies.get(self.namespace, name)
                    patch = undo(dict((now or {}).get("spec") or {}), spec)
                    policies.patch(self.namespace, name, {"spec": patch})
        except (ProbeError, OSError) as exc:
            log.error(
                f"soak: could not put the backup policies back ({exc}); check {self.namespace}'s policies"
            )
