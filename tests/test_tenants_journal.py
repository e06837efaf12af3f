"""Tenant files, secrets, the journal format and claims: no servers needed."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from loadgen.claims import claim_writer
from loadgen.errors import LoadgenError
from loadgen.journal import ClockSample, JournalWriter, Write, read_journal
from loadgen.tenants import load_tenants, redact


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def _entry(**kw: object) -> dict[str, object]:
    return {"name": "a", "server": "127.0.0.1", "port": 5432, "database": "d", "user": "u", **kw}


def test_connection_string_reads_the_secret_and_redact_hides_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("T_PW", "p;w}d")
    (tenant,) = load_tenants(_write(tmp_path / "t.json", {"tenants": [_entry(password_env="T_PW")]}))
    conn = tenant.connection_string()
    assert "Pwd={p;w}}d}" in conn
    assert "p;w" not in redact(conn) and "Pwd=***" in redact(conn)
    assert "PASSWORD=***" in redact("x;PASSWORD=abc;y")


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ("{not json", "not valid JSON"),
        ({"tenants": []}, "at least one tenant"),
        ({"tenants": [{"name": "a"}]}, "lacks server, port, database, user"),
        ({"tenants": [_entry(port="x")]}, "port must be a number"),
        ({"tenants": [_entry(port=70000)]}, "out of range"),
        ({"tenants": [_entry(dialect="db2")]}, "unknown SQL dialect 'db2'"),
        ({"tenants": [_entry(), _entry()]}, "duplicate tenant names ['a']"),
    ],
)
def test_bad_tenants_files(tmp_path: Path, doc: object, needle: str) -> None:
    with pytest.raises(LoadgenError) as err:
        load_tenants(_write(tmp_path / "t.json", doc))
    assert needle in str(err.value)


def test_missing_password_sources_say_where(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NOPE_PW", raising=False)
    (a,) = load_tenants(_write(tmp_path / "a.json", {"tenants": [_entry(password_env="NOPE_PW")]}))
    with pytest.raises(LoadgenError, match="NOPE_PW is not set"):
        a.password()
    (b,) = load_tenants(_write(tmp_path / "b.json", {"tenants": [_entry(password_file=str(tmp_path / "x"))]}))
    with pytest.raises(LoadgenError, match="cannot read password_file"):
        b.password()


def _record(seq: int, outcome: str = "ok") -> Write:
    return Write(
        tenant="a",
        writer=0,
        seq=seq,
        start=100.0 + seq,
        end=100.1 + seq,
        latency=0.1,
        outcome=outcome,
        server_ts=100.05 + seq if outcome == "ok" else None,
    )  # type: ignore[arg-type]


def test_journal_round_trip_append_and_torn_line(tmp_path: Path) -> None:
    first = JournalWriter(tmp_path, "r1")
    first.write(_record(1))
    first.clock(ClockSample(tenant="a", at=1.0, skew=0.002, rtt=0.001))
    # Readable while being written: no close, no flush call needed.
    writes, clocks = read_journal(tmp_path)
    assert writes == [_record(1)] and clocks[0].skew == 0.002
    first.write(_record(2, "info"))
    first.close()
    # A second writer in the same process appends; it never truncates.
    second = JournalWriter(tmp_path, "r1")
    second.write(_record(3, "fail"))
    second.close()
    with second.path.open("a") as handle:
        handle.write('{"kind":"write","tenant":"a"')  # torn last line of a crashed writer
    writes, _ = read_journal(tmp_path)
    assert [(w.seq, w.outcome) for w in writes] == [(1, "ok"), (2, "info"), (3, "fail")]


def _claim(folder: str) -> int:
    return claim_writer(Path(folder))


def test_claims_are_unique_across_processes(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        numbers = pool.map(_claim, [str(tmp_path)] * 12)
    assert sorted(numbers) == list(range(12))


def test_a_write_line_is_the_record_as_json(tmp_path: Path) -> None:
    """The hand-spelled journal line holds exactly the record's fields (no drift)."""
    import dataclasses
    import json

    journal = JournalWriter(tmp_path / "j", "r1")
    records = [
        Write('tenant-"0"', 3, 7, 1764000000.123456, 1.7e9, 0.076544, "ok", 1.7e9, None, 1.7e9),
        Write("t", 1, 2, 1.0, 2.0, 1e-07, "info", None, 'WriteTimeout "x"', None),
    ]
    for record in records:
        journal.write(record)
    journal.close()
    (path,) = list((tmp_path / "j").glob("*.jsonl"))
    lines = [json.loads(x) for x in path.read_text().splitlines()[1:]]
    assert lines == [{"kind": "write", **dataclasses.asdict(r)} for r in records]
    assert read_journal(tmp_path / "j")[0] == sorted(records, key=lambda w: w.start)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("", []),
        (None, []),
        (" a, ,b ", ["a", "b"]),
        (["x", "", " y"], ["x", "y"]),
        ("tenant-0", ["tenant-0"]),
    ],
)
def test_name_lists_from_configuration(value: object, names: list[str]) -> None:
    from loadgen.discovery import name_list

    assert name_list(value) == names
