"""Reaching the instances the backup activities work on: connect, query, wait until Ready, delete.

A restore target or a scratch instance is found the way the load discovers tenants
(endpoint and credentials from its MSSQLInstance and Secret), with the credentials in a
private folder removed on :meth:`Connected.close`. Queries retry connection failures
while the instance is still starting. Used by :func:`probes.k8s.restores.validate_pitr`,
:func:`probes.k8s.restores.delete_restore_target` and the restore smoke of
:func:`probes.k8s.backup_integrity.verify_backups`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.errors import ProbeError
from probes.k8s.backup_crs import Configuration, Secrets, poll
from probes.k8s.crs import CustomResources, custom_resources
from probes.k8s.crs import coordinates as crd_coordinates

__all__ = ["Connected", "delete_instance", "instance_tenant", "query", "wait_ready"]


@dataclass
class Connected:
    """A tenant-shaped view of one instance (for loadgen's connection code) and its secrets folder."""

    tenant: Any
    folder: Path

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def instance_tenant(name: str, namespace: str, configuration: Configuration, timeout: float) -> Connected:
    """Find ``name``'s endpoint and credentials (as the load discovers tenants), waiting until it has them."""
    from loadgen.discovery import discover_tenants, write_tenants_file
    from loadgen.errors import LoadgenError
    from loadgen.tenants import load_tenants

    config = dict(configuration or {})
    coordinates = crd_coordinates(config)
    deadline = time.monotonic() + timeout
    folder = Path(tempfile.mkdtemp(prefix="harness-pitr-"))
    os.chmod(folder, 0o700)
    while True:
        try:
            entries, _ = discover_tenants(
                namespace,
                coordinates,
                names=[name],
                dialect=str(config.get("dialect") or "postgresql"),
                driver=str(config.get("odbc_driver") or ""),
                kubeconfig=config.get("kubeconfig") or None,
                secrets_dir=folder,
            )
            (tenant,) = load_tenants(write_tenants_file(folder / "tenants.json", entries))
            return Connected(tenant, folder)
        except LoadgenError as exc:
            if time.monotonic() >= deadline:
                shutil.rmtree(folder, ignore_errors=True)
                raise ProbeError(f"instance {namespace}/{name}: {exc}") from None
            time.sleep(1.0)


def query(tenant: Any, sql: str, params: tuple[Any, ...], timeout: float) -> list[Any]:
    """Run one query, retrying connection failures until ``timeout`` (the instance may be starting)."""
    import pyodbc

    from loadgen.identity import WrongServer, connect_tenant
    from loadgen.tenants import redact

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = connect_tenant(tenant, 5)
            try:
                return list(conn.execute(sql, params).fetchall())
            finally:
                conn.close()
        except WrongServer as exc:  # the instance may be starting: its engine records the lab id then
            if time.monotonic() >= deadline:
                raise ProbeError(str(exc)) from None
            time.sleep(1.0)
        except pyodbc.Error as exc:
            if time.monotonic() >= deadline:
                text = redact(str(exc.args[-1] if exc.args else exc)).splitlines()
                raise ProbeError(
                    f"cannot query {tenant.describe()}: {text[0] if text else exc.__class__.__name__}"
                ) from None
            time.sleep(1.0)


def wait_ready(
    name: str, namespace: str, timeout: float, configuration: Configuration, secrets: Secrets
) -> None:
    from loadgen.discovery import lookup

    coords = crd_coordinates(configuration)
    instances = custom_resources(configuration, secrets)["instance"]
    obj, _ = poll(
        lambda: instances.get(namespace, name), lambda o: str(lookup(o, coords.ready_path)) == "True", timeout
    )
    if obj is None or str(lookup(obj, coords.ready_path)) != "True":
        raise ProbeError(f"instance {namespace}/{name} is not Ready {timeout:g}s after the restore")


def delete_instance(name: str, namespace: str, timeout: float, crs: Mapping[str, CustomResources]) -> bool:
    instances = crs["instance"]
    if not instances.delete(namespace, name):
        return False
    left, _ = poll(lambda: instances.get(namespace, name), lambda _o: False, timeout)
    if left is not None:
        raise ProbeError(f"MSSQLInstance {namespace}/{name} still exists {timeout:g}s after its deletion")
    return True
