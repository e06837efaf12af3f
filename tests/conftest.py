"""Fixtures that start real things: PostgreSQL servers on free ports, run folders.

Servers live under the lab directory (PostgreSQL runs as the ``postgres`` user and
must reach its data directory) in a fresh folder per fixture, removed afterwards.

Labs and control planes the tests start run under the ``fast`` timing profile
(:mod:`lab.timing`) unless a test names another: many faults must fit in a few minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.engine import Engine, Instance
from lab.paths import lab_dir
from lab.timing import ENV as TIMING_ENV
from lab.timing import FAST

os.environ[TIMING_ENV] = FAST.name

#: Integration modules that may run beside other tests: each starts only its own API server,
#: kubelet, operator or PostgreSQL on free ports, and none times what it measures. Everything
#: else that is ``integration`` brings a whole lab up, drives load, or measures RTO, CPU,
#: memory growth or throughput, and runs alone.
ALONGSIDE = frozenset(
    {
        "test_api_chaosk8s", "test_api_fidelity", "test_api_fidelity_objects", "test_api_fuzz",
        "test_api_kubectl", "test_api_openapi", "test_api_rbac_kubectl", "test_api_semantics",
        "test_bad_input", "test_controllers", "test_crds", "test_engine", "test_events", "test_harness_image",
        "test_kubelet", "test_kubelet_identity", "test_kubelet_service_env", "test_operator", "test_pitr",
        "test_pitr_validation", "test_pod_security", "test_rbac_preflight", "test_readback_ranges",
    }
)  # fmt: skip
#: Unit modules that measure CPU time of real processes: a busy neighbour would skew them.
ALONE = frozenset({"test_resources", "test_bench_measure"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``parallel`` what ``make test`` runs first on several workers: the unit tests (but
    :data:`ALONE`) and the integration tests of :data:`ALONGSIDE`; the rest runs one at a time."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""
        integration = item.get_closest_marker("integration") is not None
        if (module in ALONGSIDE) if integration else (module not in ALONE):
            item.add_marker(pytest.mark.parallel)


@pytest.fixture
def engine_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="test-", dir=lab_dir()))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def engine(engine_root: Path) -> Iterator[Engine]:
    with Engine(engine_root / "engine") as eng:
        yield eng


def write_tenants(path: Path, instances: list[Instance]) -> Path:
    """A tenants file for ``instances`` (password by file reference only)."""
    path.write_text(json.dumps({"tenants": [i.tenant() for i in instances]}))
    return path
