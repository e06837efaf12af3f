"""One point-in-time-restore drill of the soak: restore, validate, delete.

A drill restores one tenant to a random acknowledged moment of the last check round
(its journal ``end``; the runner picks it), into a new instance ``<tenant>-drill-<n>``
created by the operator. First a log backup is requested and waited for, so the chain
covers the moment; then ``request_restore`` and ``validate_pitr`` (every acknowledged
write of the tenant up to the moment present, none after: exactly what the
``pitr-restore`` experiment checks), and the target is deleted whatever happened.
Each drill appends one line to ``soak/drills.jsonl``; a drill that fails is recorded
as failed with its one-line reason, and the soak goes on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.times import format_time
from orchestration.soak_settings import SoakSettings
from probes.errors import ProbeError
from probes.k8s.backup_requests import request_backup
from probes.k8s.restores import delete_restore_target, request_restore, validate_pitr

__all__ = ["Drill"]

log = logging.getLogger("chaostoolkit")


class Drill:
    """The soak's drills, counted; :meth:`run` runs one."""

    def __init__(
        self,
        folder: Path,
        namespace: str,
        settings: SoakSettings,
        configuration: Mapping[str, Any],
        secrets: Mapping[str, Any] | None,
    ) -> None:
        self.folder = folder
        self.namespace = namespace
        self.settings = settings
        self.configuration = dict(configuration)
        self.secrets = secrets
        self.count = 0

    def run(self, tenant: str, moment: float | None) -> dict[str, Any]:
        """Drill ``tenant`` at ``moment`` (epoch seconds); the ``drills.jsonl`` record."""
        self.count += 1
        target = f"{tenant}-drill-{self.count}"
        started = time.time()
        record: dict[str, Any] = {
            "kind": "drill",
            "started_at": started,
            "tenant": tenant,
            "target": target,
            "target_time": format_time(moment, digits=6) if moment is not None else None,
            "problems": [],
        }
        kwargs: dict[str, Any] = {"configuration": self.configuration, "secrets": self.secrets}
        try:
            if moment is None:
                raise ProbeError(f"{tenant} acknowledged no write in the last round: nothing to restore to")
            request_backup(
                instance=tenant, type="log", namespace=self.namespace, wait=True,
                timeout=self.settings.backup_timeout, **kwargs,
            )  # fmt: skip
            restored = request_restore(
                source=tenant, target=target, namespace=self.namespace, target_time=record["target_time"],
                create_target=True, timeout=self.settings.restore_timeout, **kwargs,
            )  # fmt: skip
            if not restored.get("ok"):
                raise ProbeError(f"restore {restored.get('name')}: {restored.get('error')}")
            verdict = validate_pitr(source=tenant, target=target, namespace=self.namespace, **kwargs)
            if not verdict.get("ok"):
                raise ProbeError(str(verdict.get("error") or "the restored data does not match the journal"))
            record["result"] = "validated"
        except ProbeError as exc:
            record["result"] = "failed"
            record["problems"].append(str(exc))
        except Exception as exc:  # a drill runs in its own thread: record, never vanish
            record["result"] = "failed"
            record["problems"].append(f"{type(exc).__name__}: {exc}")
        finally:
            try:
                delete_restore_target(
                    source=tenant, target=target, namespace=self.namespace,
                    timeout=self.settings.restore_timeout, **kwargs,
                )  # fmt: skip
            except ProbeError as exc:
                record["problems"].append(f"deleting {target}: {exc}")
        record["ended_at"] = time.time()
        with (self.folder / "drills.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        log.info(
            f"soak: drill {self.count} on {tenant}: {record['result']} ({record['ended_at'] - started:.0f} s)"
        )
        return record
