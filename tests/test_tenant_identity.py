"""The harness refuses a server that is not its tenant's lab's, against real PostgreSQL servers.

Two local servers (:mod:`lab.engine`): ``mine`` records lab A in ``harness_identity``
(:meth:`lab.engine.Engine.record_identity`, the SQL the lab's engine image runs) and
``bare`` records none. A tenant entry naming lab A is accepted on ``mine``; naming lab B
it is refused by the load's preflight, the writers' connection and the read-back, with
one line naming the tenant, both lab ids and the fix, before anything is written there;
so is any lab's tenant on ``bare``. A tenant without ``lab_id`` (a real SQL Server) is not
checked at all.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyodbc
import pytest

from lab.engine import Engine, Instance
from lab.paths import lab_dir
from loadgen.deadlines import Deadlines
from loadgen.dialects import TABLE, dialect
from loadgen.errors import LoadgenError
from loadgen.identity import WrongServer, connect_tenant
from loadgen.journal import JournalWriter, read_journal
from loadgen.runner import preflight
from loadgen.session import connect
from loadgen.tenants import Tenant, load_tenants
from loadgen.writer import TenantWriter
from probes.readback import read_back_tenant

LAB_A = "lab-aaaaaaaaaaaa"
LAB_B = "lab-bbbbbbbbbbbb"


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Instance]]:
    root = Path(tempfile.mkdtemp(prefix="test-identity-", dir=lab_dir()))
    root.chmod(0o755)
    try:
        with Engine(root / "engine") as engine:
            made = {"mine": engine.create("mine"), "bare": engine.create("bare")}
            assert engine.record_identity("mine", LAB_A) == [LAB_A]
            assert engine.record_identity("mine", LAB_B) == [LAB_A], "a later start changes nothing"
            yield made
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _tenant(tmp_path: Path, inst: Instance, lab_id: str | None) -> Tenant:
    path = tmp_path / f"tenants-{inst.name}-{lab_id}.json"
    path.write_text(json.dumps({"tenants": [inst.tenant(lab_id)]}))
    (tenant,) = load_tenants(path)
    return tenant


def _plain(inst: Instance) -> Tenant:
    """The tenant with no lab id: connections to it are not checked."""
    return Tenant(
        name=inst.name,
        dialect="postgresql",
        server="127.0.0.1",
        port=inst.port,
        database="harness",
        user="harness",
        password_file=str(inst.password_file),
    )


def _tables(inst: Instance) -> set[str]:
    conn = connect_tenant(_plain(inst), 5)
    try:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    finally:
        conn.close()
    return {str(r[0]) for r in rows}


@pytest.mark.integration
def test_the_right_lab_is_accepted_and_a_server_outside_a_lab_is_not_checked(
    servers: dict[str, Instance], tmp_path: Path
) -> None:
    preflight([_tenant(tmp_path, servers["mine"], LAB_A)])
    assert TABLE in _tables(servers["mine"])
    preflight([_tenant(tmp_path, servers["bare"], None)])  # no lab_id: no query, as for SQL Server
    assert TABLE in _tables(servers["bare"])
    conn = connect_tenant(_plain(servers["bare"]), 5)
    conn.execute(f"DROP TABLE {TABLE}")  # leave "bare" as it was for the refusals below
    conn.close()


@pytest.mark.integration
def test_another_labs_server_is_refused_before_anything_is_written(
    servers: dict[str, Instance], tmp_path: Path
) -> None:
    wrong = _tenant(tmp_path, servers["mine"], LAB_B)
    with pytest.raises(WrongServer) as refused:
        preflight([wrong])
    message = str(refused.value)
    assert "\n" not in message
    assert f"tenant mine (postgresql://harness@127.0.0.1:{servers['mine'].port}/harness)" in message
    assert f"belongs to lab {LAB_A}, not to lab {LAB_B}" in message
    assert "stop the other lab, or run `python -m lab up` in this lab" in message
    assert refused.value.expected == LAB_B and refused.value.found == [LAB_A]
    assert isinstance(refused.value, LoadgenError)


@pytest.mark.integration
def test_a_server_without_a_lab_id_is_refused_for_a_labs_tenant(
    servers: dict[str, Instance], tmp_path: Path
) -> None:
    before = _tables(servers["bare"])
    with pytest.raises(WrongServer) as refused:
        preflight([_tenant(tmp_path, servers["bare"], LAB_A)])
    message = str(refused.value)
    assert "the server there records no lab id (table harness_identity unreadable:" in message
    assert f"expected lab {LAB_A}" in message and "restart its pod so its engine records the id" in message
    assert _tables(servers["bare"]) == before, "nothing may be created in a server that is not ours"


@pytest.mark.integration
def test_each_new_writer_connection_checks_and_journals_a_refusal(
    servers: dict[str, Instance], tmp_path: Path
) -> None:
    sql = dialect("postgresql")
    good = _tenant(tmp_path, servers["mine"], LAB_A)
    wrong = _tenant(tmp_path, servers["mine"], LAB_B)
    session = connect(good, sql, good.connection_string(), 2.0, True)
    session.close()
    with pytest.raises(WrongServer):
        connect(wrong, sql, wrong.connection_string(), 2.0, True)
    for tenant, outcome, error in ((good, "ok", None), (wrong, "fail", "WrongServer")):
        folder = tmp_path / f"journal-{tenant.lab_id}"
        journal = JournalWriter(folder, "r1")
        writer = TenantWriter(
            tenant,
            0,
            "r1",
            journal,
            attempts=3,
            connect_timeout=3.0,
            write_timeout=3.0,
            rng=random.Random(1),
            deadlines=Deadlines(poll=0.005),
        )
        writer.start()
        assert writer.join(15.0)
        writer.stop(1.0)
        writes, _ = read_journal(folder)
        assert [(w.outcome, w.error) for w in writes] == [(outcome, error)] * 3
        if outcome == "fail":
            assert writer.wrong_server is not None and LAB_B in str(writer.wrong_server)
        else:
            assert writer.wrong_server is None


@pytest.mark.integration
def test_the_read_back_of_another_labs_server_is_an_error_not_rows(
    servers: dict[str, Instance], tmp_path: Path
) -> None:
    preflight([_tenant(tmp_path, servers["mine"], LAB_A)])
    right = read_back_tenant(_tenant(tmp_path, servers["mine"], LAB_A), "no-such-run")
    assert right.error is None and right.ranges == ()
    wrong = read_back_tenant(_tenant(tmp_path, servers["mine"], LAB_B), "no-such-run")
    assert wrong.ranges == () and wrong.error is not None
    assert f"belongs to lab {LAB_A}, not to lab {LAB_B}" in wrong.error


@pytest.mark.integration
def test_the_tenants_role_may_read_its_identity_but_not_change_it(servers: dict[str, Instance]) -> None:
    conn = connect_tenant(_plain(servers["mine"]), 5)
    try:
        rows = conn.execute("SELECT lab_id, instance FROM harness_identity").fetchall()
        assert [tuple(r) for r in rows] == [(LAB_A, "mine")]
        for statement in (
            "INSERT INTO harness_identity VALUES ('x', 'y')",
            "UPDATE harness_identity SET lab_id = 'x'",
        ):
            with pytest.raises(pyodbc.Error) as denied:
                conn.execute(statement)
            assert denied.value.args[0] == "42501"
    finally:
        conn.close()


def test_a_tenants_lab_id_must_be_a_string(tmp_path: Path) -> None:
    path = tmp_path / "tenants.json"
    entry = {"name": "t", "server": "127.0.0.1", "port": 5432, "database": "d", "user": "u", "lab_id": ""}
    path.write_text(json.dumps({"tenants": [entry]}))
    with pytest.raises(LoadgenError, match="tenant t: lab_id must be the lab's id"):
        load_tenants(path)
    entry["lab_id"] = LAB_A
    path.write_text(json.dumps({"tenants": [entry]}))
    assert load_tenants(path)[0].lab_id == LAB_A
