"""Point-in-time restore checks without a cluster: chain, files, SQL, the summary.

The chain is a pure function, so every boundary is chosen here. The validation of the
restored rows has its own file (``test_pitr_validation.py``). The summary test writes
a run folder by hand (formats of the journal writer, the read-back and ``pitr.json``)
and runs the real build and go/no-go.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot.errors import ParseError

from loadgen.backup_sql import BACKUP_SQL, MSSQL, backup_sql, quote_name
from loadgen.errors import LoadgenError
from loadgen.journal import JournalWriter, Write
from probes.errors import ProbeError
from probes.pitr import (
    INTEGRITY_NAME,
    PITR_NAME,
    BackupRecord,
    analyze_chain,
    format_time,
    lsn_gaps,
    parse_time,
    read_json_block,
    update_pitr,
)

X = 1_800_000_000.0  # the target time
TENANT = "tenant-0"


def _w(seq: int, ts: float) -> Write:
    return Write(TENANT, 0, seq, ts - 0.002, ts + 0.001, 0.003, "ok", ts)


# --------------------------------------------------------------------------- chain


def _b(name: str, kind: str, start: float | None, end: float) -> BackupRecord:
    return BackupRecord(name, kind, None if start is None else X + start, X + end)


def test_chain_is_ordered_and_reaches_the_last_contiguous_log() -> None:
    chain = analyze_chain([_b("log-2", "log", 20, 30), _b("full-1", "full", 0, 5), _b("log-1", "log", 5, 20)])
    assert [b.name for b in chain.backups] == ["full-1", "log-1", "log-2"]
    assert chain.gaps == []
    assert chain.earliest_restorable == X + 5 and chain.latest_restorable == X + 30
    assert (chain.fulls, chain.logs) == (1, 2)


def test_a_gap_between_logs_is_reported_and_stops_the_chain_until_the_next_full() -> None:
    chain = analyze_chain(
        [
            _b("full-1", "full", 0, 5),
            _b("log-1", "log", 5, 10),
            _b("log-2", "log", 12, 20),  # 10 -> 12 missing
            _b("log-3", "log", 20, 25),
        ]
    )
    (gap,) = chain.gaps
    assert (gap.after, gap.before, gap.seconds) == ("log-1", "log-2", 2.0)
    assert chain.latest_restorable == X + 10
    doc = chain.as_dict()
    assert doc["gaps"][0]["seconds"] == 2.0 and doc["latest_restorable"] == format_time(X + 10)
    healed = analyze_chain([*chain.backups, _b("full-2", "full", 21, 22), _b("log-4", "log", 25, 40)])
    assert healed.latest_restorable == X + 40


def test_logs_before_any_full_restore_nothing() -> None:
    assert analyze_chain([_b("log-1", "log", 0, 5)]).latest_restorable is None
    assert analyze_chain([]).as_dict()["latest_restorable"] is None
    chain = analyze_chain([_b("log-0", "log", -5, 0), _b("full-1", "full", 1, 3)])
    assert chain.latest_restorable == X + 3 and chain.earliest_restorable == X + 3


def test_lsn_gaps_find_a_broken_log_chain() -> None:
    history = [
        {"type": "D", "first_lsn": 100, "last_lsn": 200, "name": "full.bak"},
        {"type": "L", "first_lsn": 100, "last_lsn": 300, "name": "log1.trn"},
        {"type": "L", "first_lsn": 300, "last_lsn": 400, "name": "log2.trn"},
        {"type": "L", "first_lsn": 450, "last_lsn": 500, "name": "log3.trn"},
    ]
    assert lsn_gaps(history) == [
        {"after": "log2.trn", "before": "log3.trn", "last_lsn": 400, "first_lsn": 450}
    ]
    assert lsn_gaps(history[:3]) == []


# --------------------------------------------------------------------------- times and files


def test_times_round_trip_with_microseconds() -> None:
    assert parse_time("2026-11-27T00:01:02.123456Z") == pytest.approx(1795737662.123456, abs=1e-6)
    assert parse_time("2026-11-27T01:01:02.5+01:00") == parse_time("2026-11-27T00:01:02.5Z")
    assert parse_time("2026-11-27T00:01:02") == parse_time("2026-11-27T00:01:02Z")  # naive is UTC
    text = format_time(1795737662.123456)
    assert re.fullmatch(r"2026-11-27T00:01:02\.12345\dZ", text)
    assert parse_time(text) == pytest.approx(1795737662.123456, abs=2e-6)
    with pytest.raises(ProbeError, match="not an RFC 3339 time"):
        parse_time("yesterday")


def test_update_pitr_merges_blocks(tmp_path: Path) -> None:
    update_pitr(tmp_path, "backup", {"policy_ready": True})
    update_pitr(tmp_path, "backup", {"full": {"ok": True, "name": "f"}})
    doc = update_pitr(tmp_path, "restore", {"ok": False, "error": "x"})
    assert doc == json.loads((tmp_path / PITR_NAME).read_text())
    assert doc["backup"] == {"policy_ready": True, "full": {"ok": True, "name": "f"}}
    assert update_pitr(None, "restore", {"ok": True}) == {"restore": {"ok": True}}  # outside a run
    assert read_json_block(tmp_path / "absent.json") is None
    (tmp_path / PITR_NAME).write_text("[1, 2]")
    with pytest.raises(ProbeError, match="must hold a JSON object"):
        read_json_block(tmp_path / PITR_NAME)
    (tmp_path / PITR_NAME).write_text("{broken")
    with pytest.raises(ProbeError, match="delete it"):
        update_pitr(tmp_path, "backup", {})


# --------------------------------------------------------------------------- SQL

_SQLGLOT = {"mssql": "tsql", "postgresql": "postgres"}


@pytest.mark.parametrize("name", sorted(BACKUP_SQL))
def test_row_statements_parse(name: str) -> None:
    sql = BACKUP_SQL[name]
    for text in (sql.read_rows, sql.count_until):
        parsed = sqlglot.parse(text, read=_SQLGLOT[name], error_level=sqlglot.ErrorLevel.RAISE)
        assert parsed and all(p is not None for p in parsed)
    assert sql.read_rows.count("?") == 1 and sql.count_until.count("?") == 1


def test_backup_history_parses_as_tsql_and_orders_the_chain() -> None:
    assert MSSQL.backup_history is not None
    select = sqlglot.parse_one(MSSQL.backup_history, read="tsql")
    assert isinstance(select, sqlglot.exp.Select)
    columns = {c.alias_or_name for c in select.expressions}
    assert {
        "type",
        "backup_start_date",
        "backup_finish_date",
        "first_lsn",
        "last_lsn",
        "has_backup_checksums",
        "is_damaged",
        "physical_device_name",
    } <= columns
    order = [o.this.name for o in select.args["order"].expressions]
    assert order == ["first_lsn", "backup_finish_date"]
    tables = {t.name for t in select.find_all(sqlglot.exp.Table)}
    assert tables == {"backupset", "backupmediafamily"}


# sqlglot (30.x) has no grammar for RESTORE: it raises ParseError instead of returning
# even a generic Command. So each RESTORE statement is checked three ways: sqlglot
# confirms it still cannot parse it (if that changes, parse it for real here), the
# T-SQL tokenizer accepts it (brackets, parameters), and a regex checks its structure.
_RESTORES = {
    "restore_database": r"RESTORE DATABASE \[harness\] FROM DISK = \? WITH NORECOVERY, CHECKSUM",
    "restore_log": r"RESTORE LOG \[harness\] FROM DISK = \? WITH STOPAT = \?, RECOVERY",
    "restore_log_norecovery": r"RESTORE LOG \[harness\] FROM DISK = \? WITH STOPAT = \?, NORECOVERY",
    "verify_only": r"RESTORE VERIFYONLY FROM DISK = \? WITH CHECKSUM",
}


@pytest.mark.parametrize("field", sorted(_RESTORES))
def test_restore_statements_are_well_formed_tsql(field: str) -> None:
    template = getattr(MSSQL, field)
    assert template is not None
    text = template.format(database=quote_name("harness"))
    with pytest.raises(ParseError):
        sqlglot.parse_one(text, read="tsql")
    tokens = sqlglot.tokenize(text, read="tsql")
    assert tokens[0].text.upper() == "RESTORE"
    assert sum(1 for t in tokens if t.token_type == sqlglot.TokenType.PLACEHOLDER) == text.count("?")
    if "{database}" in template:
        assert any(t.token_type == sqlglot.TokenType.IDENTIFIER and t.text == "harness" for t in tokens)
    assert re.fullmatch(_RESTORES[field], text)


def test_quote_name_and_unknown_dialect() -> None:
    assert quote_name("a]b") == "[a]]b]"
    with pytest.raises(LoadgenError):
        quote_name("")
    with pytest.raises(LoadgenError, match="use one of mssql, postgresql"):
        backup_sql("oracle")
    assert BACKUP_SQL["postgresql"].verify_only is None


# --------------------------------------------------------------------------- summary and go/no-go


def _restore_run(root: Path, validation_ok: bool) -> Path:
    run = root / "run-pitr"
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps(
            {
                "run_id": "run-pitr",
                "tenants": [TENANT],
                "objective": {"rto_seconds": 60, "rpo_seconds": 0},
                "stability_seconds": 2,
                "started_at": X - 20,
                "ended_at": X + 20,
                "target": "kubernetes",
                "experiment": {"title": "pitr", "fault": "pitr-restore"},
                "chaos_status": "completed",
            }
        )
    )
    writer = JournalWriter(run / "journal", "run-pitr")
    try:
        for i in range(40):
            writer.write(_w(i, X - 20 + i))
    finally:
        writer.close()
    rows = [[0, i, X - 20 + i] for i in range(40)]
    (run / "readback.json").write_text(json.dumps({TENANT: {"read_at": X + 21, "error": None, "rows": rows}}))
    pitr = {
        "backup": {"policy_ready": True, "full": {"ok": True, "name": "f"}, "log": {"ok": True, "name": "l"}},
        "restore": {
            "ok": True,
            "target": "tenant-0-pitr",
            "target_time": format_time(X),
            "create_target": True,
        },
        "validation": {
            "ok": validation_ok,
            "missing": 0 if validation_ok else 2,
            "extra": 0,
            "restore_point_error_seconds": -0.2,
        },
    }
    (run / PITR_NAME).write_text(json.dumps(pitr))
    (run / INTEGRITY_NAME).write_text(
        json.dumps({"ok": True, "detail": "1 full backup checksum(s) verified"})
    )
    return run


@pytest.mark.parametrize("validation_ok", [True, False])
def test_build_carries_pitr_and_integrity_into_the_summary_and_gonogo(
    tmp_path: Path, validation_ok: bool
) -> None:
    from reports.build import build
    from reports.gonogo import FAIL, LAB_ONLY, PASS, write_gonogo

    run = _restore_run(tmp_path, validation_ok)
    build(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pitr"] == json.loads((run / PITR_NAME).read_text())
    assert summary["integrity"]["ok"] is True
    result = write_gonogo([run], tmp_path / "gonogo.md")
    gates = {g.item.text: g for g in result.gates}
    validation = gates["Data validation confirms target matches expected targetTime window"]
    assert validation.result == (LAB_ONLY if validation_ok else FAIL), validation.evidence
    assert gates["PITR restore request completes to target instance"].result == LAB_ONLY
    assert gates["Backup integrity verification job (checksum + restore smoke)"].result == LAB_ONLY
    assert PASS not in {g.result for g in result.gates}  # a run that is not on a cluster proves nothing


def test_a_broken_pitr_file_fails_the_build_with_its_name(tmp_path: Path) -> None:
    from reports.build import build
    from reports.errors import ReportError

    run = _restore_run(tmp_path, True)
    (run / PITR_NAME).write_text("{")
    with pytest.raises(ReportError, match=PITR_NAME):
        build(run)


@pytest.mark.integration
def test_row_statements_run_on_the_stand_in_engine(engine: Any, tmp_path: Path) -> None:
    import pyodbc

    from loadgen.dialects import dialect
    from loadgen.tenants import load_tenants
    from tests.conftest import write_tenants

    (tenant,) = load_tenants(write_tenants(tmp_path / "tenants.json", [engine.create("t0")]))
    sql, load = backup_sql("postgresql"), dialect("postgresql")
    conn = pyodbc.connect(tenant.connection_string(), autocommit=True, timeout=10)
    try:
        conn.execute(load.create_table)
        stamps = [
            conn.execute(load.insert, (run, "t0", 0, seq)).fetchone()[0]
            for run in ("a", "b")
            for seq in (1, 2)
        ]
        rows = conn.execute(sql.read_rows, ("a",)).fetchall()
        assert sorted((r[0], r[1], r[2], r[3]) for r in rows) == [("a", "t0", 0, 1), ("a", "t0", 0, 2)]
        assert sorted(float(r[4]) for r in rows) == pytest.approx(sorted(stamps[:2]), abs=1e-6)
        assert conn.execute(sql.count_until, (stamps[1],)).fetchone()[0] == 2  # the boundary counts
        assert conn.execute(sql.count_until, (stamps[1] - 1e-4,)).fetchone()[0] == 1
        assert conn.execute(sql.count_until, (1e12,)).fetchone()[0] == 4
    finally:
        conn.close()


# --------------------------------------------------------------------------- activities' bookkeeping


def test_backup_records_summarise_per_type_and_track_the_pending_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probes.k8s.backup_requests import _record_backup

    monkeypatch.setenv("HARNESS_RUN_DIR", str(tmp_path))

    def block() -> dict[str, Any]:
        return json.loads((tmp_path / PITR_NAME).read_text())["backup"]

    _record_backup({"name": "f1", "type": "full", "phase": "Pending", "ok": False}, pending=True)
    assert block()["pending"] == "f1" and "full" not in block()  # nothing finished: no verdict yet
    _record_backup({"name": "l1", "type": "log", "phase": "Completed", "ok": True})
    assert block()["pending"] == "f1"  # another backup finishing does not forget the pending one
    _record_backup({"name": "f1", "type": "full", "phase": "Completed", "ok": True})
    doc = block()
    assert doc["pending"] is None and doc["last_requested"] == "f1"
    assert doc["full"] == {"ok": True, "name": "f1", "count": 1, "failed": []}
    assert [b["name"] for b in doc["backups"]] == ["l1", "f1"]
    _record_backup({"name": "l2", "type": "log", "phase": "Failed", "ok": False})
    assert block()["log"] == {"ok": False, "name": "l2", "count": 2, "failed": ["l2"]}


def test_activities_refuse_before_touching_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probes.k8s import backup_actions, backup_probes

    monkeypatch.delenv("HARNESS_RUN_DIR", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    with pytest.raises(ProbeError, match="HARNESS_RUN_DIR"):
        backup_probes.validate_pitr("t-0")
    monkeypatch.setenv("HARNESS_RUN_DIR", str(tmp_path))
    # With an allow-list the guard needs no API (an empty one must ask whether this is the lab).
    allowed = {"allowed_namespaces": "tenants"}
    with pytest.raises(ProbeError, match="run mark_target_time first"):
        backup_actions.request_restore("t-0", configuration=allowed)
    with pytest.raises(ProbeError, match="is the source itself"):
        backup_actions.request_restore("t-0", target="t-0", target_time=format_time(X), configuration=allowed)
    with pytest.raises(ProbeError, match="not an RFC 3339 time"):
        backup_actions.request_restore("t-0", target_time="noon", configuration=allowed)
    with pytest.raises(ProbeError, match="not in allowed_namespaces"):
        backup_actions.request_backup("t-0", namespace="prod", configuration=allowed)
    with pytest.raises(ProbeError, match="not full or log"):
        backup_actions.request_backup("t-0", type="diff", configuration=allowed)
    with pytest.raises(ProbeError, match="does not exist: set KUBECONFIG"):
        backup_actions.request_backup("t-0")  # an empty allow-list asks the API server, which is not there
    (tmp_path / "tenants.json").write_text(json.dumps({"tenants": [{"name": "t-0"}, {"name": "t-1"}]}))
    with pytest.raises(ProbeError, match="refusing to delete t-1"):
        backup_actions.delete_restore_target("t-0", target="t-1", configuration=allowed)
    marked = backup_actions.mark_target_time()
    assert json.loads((tmp_path / PITR_NAME).read_text())["mark"]["target_time"] == marked
    assert abs(parse_time(marked) - time.time()) < 5
    assert json.loads((tmp_path / "observations.jsonl").read_text().splitlines()[0]) == {
        "name": "pitr_target_time",
        "value": marked,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [("false", False), ("0", False), ("", False), ("yes", True), (True, True), (0, False)],
)
def test_boolean_arguments_from_the_environment(value: Any, expected: bool) -> None:
    from probes.k8s.backup_crs import flag

    assert flag(value, "wait") is expected
