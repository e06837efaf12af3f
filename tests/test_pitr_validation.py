"""The restored rows judged against the journal: per-row commit times and latency windows.

The validation is a pure function, so every boundary is chosen here: a commit exactly
at the target time, a latency window ending exactly there or one microsecond after, a
stamp one microsecond after; what a known commit time decides that a window cannot;
a loss of 0.2 s of acknowledged writes just before the target (caught), and a clean
restore at 20 writes/s (a handful of ambiguous rows at most, where a fixed ±0.5 s
window had about twenty). ``validate_pitr`` is run with the cluster calls replaced,
to show what the run folder records. The integration tests write rows the way the
load does and read their commit times back through pyodbc and psqlODBC, from the
server they were written to and from a point-in-time restore of it.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lab.engine import COMMIT_TIMESTAMPS, keep_commit_timestamps
from loadgen.journal import JournalWriter, Write, read_journal
from probes.errors import ProbeError
from probes.pitr import (
    COMMIT_TIMESTAMP,
    LATENCY_WINDOW,
    PITR_NAME,
    TargetRow,
    format_time,
    validate_restore,
)

X = 1_800_000_000.0  # the target time
US = 1e-6
RUN = "run-1"
TENANT = "tenant-0"


def _w(
    seq: int,
    ts: float | None,
    outcome: str = "ok",
    latency: float = 0.003,
    tenant: str = TENANT,
    writer: int = 0,
) -> Write:
    start = (ts or X) - 0.001
    return Write(
        tenant=tenant,
        writer=writer,
        seq=seq,
        start=start,
        end=start + latency,
        latency=latency,
        outcome=outcome,  # type: ignore[arg-type]
        server_ts=ts if outcome == "ok" else None,
    )


def _row(
    seq: int,
    ts: float,
    commit: float | None = None,
    run: str = RUN,
    tenant: str = TENANT,
    writer: int = 0,
) -> TargetRow:
    return TargetRow(run, tenant, writer, seq, ts, commit)


def _validate(writes: list[Write], rows: list[TargetRow], **kw: Any) -> Any:
    return validate_restore(RUN, TENANT, writes, rows, X, **kw)


# --------------------------------------------------------------------------- latency windows


def test_a_perfect_restore_is_ok_with_counts() -> None:
    writes = [_w(i, X - 10 + i) for i in range(20)]  # 10 s before to 9 s after X
    rows = [_row(i, X - 10 + i) for i in range(10)]  # everything up to X - 1
    v = _validate(writes, rows, achieved=X - 0.25)
    assert v.ok and v.window == LATENCY_WINDOW and v.commit_times == 0
    assert (v.expected, v.found, v.missing, v.extra, v.ambiguous) == (10, 10, 0, 0, 1)
    assert v.ambiguous_present == 0  # the write stamped exactly at X was not restored: allowed
    assert v.window_max_seconds == 0.003
    assert v.restore_point_error_seconds == -0.25


def test_a_window_ending_exactly_at_the_target_is_expected() -> None:
    writes = [_w(1, X - 0.003)]  # stamped 3 ms before X, acknowledged 3 ms later: committed by X
    assert _validate(writes, [_row(1, X - 0.003)]).ok
    missing = _validate(writes, [])
    assert not missing.ok and (missing.missing, missing.expected, missing.ambiguous) == (1, 1, 0)
    assert missing.missing_sample == [[0, 1]]


def test_a_window_containing_the_target_is_ambiguous_either_way() -> None:
    for ts in (X - 0.003 + US, X - 0.001, X):  # the commit may be on either side of X
        for rows in ([], [_row(1, ts)]):
            v = _validate([_w(1, ts)], rows)
            assert v.ok and (v.ambiguous, v.expected, v.extra) == (1, 0, 0), (ts, rows)
            assert v.ambiguous_present == len(rows)


def test_a_stamp_after_the_target_must_be_absent() -> None:
    after = X + US  # the commit comes after the stamp, so after X
    assert _validate([_w(1, after)], []).ok
    v = _validate([_w(1, after)], [_row(1, after)])
    assert not v.ok and v.extra == 1 and v.extra_sample == [[0, 1]] and v.ambiguous == 0


def test_each_write_has_its_own_window() -> None:
    slow, fast = _w(1, X - 0.2, latency=0.3), _w(2, X - 0.2, latency=0.01)
    v = _validate([slow, fast], [])  # neither restored
    assert (v.ambiguous, v.missing) == (1, 1) and v.missing_sample == [[0, 2]]
    assert v.window_max_seconds == 0.3


# --------------------------------------------------------------------------- commit times


def test_a_known_commit_time_decides_where_the_window_cannot() -> None:
    writes = [_w(1, X - 0.002), _w(2, X - 0.001), _w(3, X - 0.0005)]  # all windows contain X
    rows = [_row(1, X - 0.002, X - 0.001), _row(2, X - 0.001, X)]  # committed before / exactly at X
    v = _validate(writes, rows)
    assert v.ok and v.window == COMMIT_TIMESTAMP and v.commit_times == 2
    assert (v.expected, v.ambiguous, v.ambiguous_present) == (2, 1, 0)  # only the absent one is unsure
    late = _validate(writes, [*rows, _row(3, X - 0.0005, X + US)])  # committed after X, restored
    assert not late.ok and late.extra == 1 and late.extra_sample == [[0, 3]] and late.ambiguous == 0


def test_present_rows_without_a_commit_time_fall_back_to_their_window() -> None:
    writes = [_w(1, X - 1), _w(2, X - 0.001)]
    v = _validate(writes, [_row(1, X - 1, X - 0.999), _row(2, X - 0.001)])
    assert v.ok and v.window == LATENCY_WINDOW and v.commit_times == 1
    assert (v.expected, v.ambiguous, v.ambiguous_present) == (1, 1, 1)


def test_a_commit_time_outside_its_latency_window_is_counted() -> None:
    writes = [_w(1, X - 1), _w(2, X - 2)]
    v = _validate(writes, [_row(1, X - 1, X - 1 + 0.002), _row(2, X - 2, X - 1.5)])
    assert v.ok and v.commit_outside_latency == 1  # 0.5 s after its acknowledgement: not this insert


def test_a_coarse_restore_point_widens_the_band() -> None:
    """``STOPAT`` takes a datetime: a commit within 1/300 s of X may be on either side."""
    coarse = 1 / 300
    writes = [_w(1, X + 0.002), _w(2, X + 0.004), _w(3, X - 0.006)]
    rows = [_row(1, X + 0.002), _row(2, X + 0.004)]
    assert not _validate(writes, rows).ok  # microsecond resolution: both are extra
    v = _validate(writes, rows, resolution=coarse)
    assert (v.extra, v.extra_sample, v.ambiguous, v.missing) == (1, [[0, 2]], 2, 0)
    with pytest.raises(ProbeError, match="resolution"):
        _validate([], [], resolution=-1)


# --------------------------------------------------------------------------- what else counts


def test_rows_of_other_runs_and_tenants_are_ignored() -> None:
    writes = [_w(1, X - 3)]
    rows = [
        _row(1, X - 3),
        _row(2, X + 30, run="run-0"),  # an earlier run's row, restored with everything else
        _row(3, X - 30, run="run-0"),
        _row(9, X + 30, tenant="tenant-1"),  # another tenant's row in the same table
    ]
    v = _validate(writes, rows)
    assert v.ok and v.found == 1 and v.extra == 0 and v.unexpected == 0
    assert _validate([_w(1, X - 3, tenant="tenant-1")], []).expected == 0


def test_unexpected_and_changed_rows_are_mismatches() -> None:
    v = _validate([_w(1, X - 3)], [_row(1, X - 3), _row(7, X - 2)])
    assert not v.ok and v.unexpected == 1 and v.missing == 0 and v.extra == 0
    v = _validate([_w(1, X - 3)], [_row(1, X - 2.5)])
    assert not v.ok and v.changed == 1
    assert _validate([_w(1, X - 3)], [_row(1, X - 3 + 1e-6)]).ok  # microsecond rounding is not a change


def test_unknown_and_failed_outcomes_are_never_expected() -> None:
    writes = [_w(1, X - 3, outcome="info"), _w(2, X - 2, outcome="fail"), _w(3, X - 1)]
    v = _validate(writes, [_row(1, X - 3), _row(3, X - 1)])
    assert v.ok and v.expected == 1 and v.recovered_unknown == 1
    # an unknown write stamped after X that shows up is extra; so is one committed after X
    assert _validate([_w(4, None, outcome="info")], [_row(4, X + 2)]).extra == 1
    assert _validate([_w(4, None, outcome="info")], [_row(4, X - 2, X + 1)]).extra == 1


def test_an_acknowledged_write_without_a_server_time_is_ambiguous() -> None:
    odd = Write(TENANT, 0, 1, X - 9, X - 8, 1.0, "ok", None)
    v = _validate([odd], [])
    assert v.ok and v.ambiguous == 1 and v.expected == 0
    assert _validate([odd], [_row(1, X - 8.5, X - 8.4)]).expected == 1  # its commit time decides


def test_validation_dict_is_json_with_the_keys_reports_read() -> None:
    doc = json.loads(json.dumps(_validate([_w(1, X - 3)], []).as_dict(), allow_nan=False))
    assert doc["missing"] == 1 and doc["ok"] is False and doc["extra"] == 0
    assert {"restore_point_error_seconds", "ambiguous", "window", "commit_times"} <= doc.keys()
    assert _validate([], []).restore_point_error_seconds is None


# --------------------------------------------------------------------------- at 20 writes/s


def _load(seconds: float, rate: float = 20.0, writers: int = 4, seed: int = 7) -> list[Write]:
    """Acknowledged writes at ``rate`` per second from a few writers, with realistic latencies.

    Latency: mostly 1-5 ms, one in 20 up to 50 ms, one in 200 up to 0.4 s (a write
    abandoned at 0.5 s is not acknowledged).
    """
    rng = random.Random(seed)
    writes, t, seq = [], X - seconds / 2, 0
    while t < X + seconds / 2:
        t += rng.expovariate(rate)
        roll = rng.random()
        latency = rng.uniform(0.3, 0.4) if roll < 0.005 else rng.uniform(0.005, 0.05) if roll < 0.05 else 0
        latency = latency or rng.uniform(0.001, 0.005)
        seq += 1
        stamp = round(t + latency * rng.uniform(0.1, 0.5), 6)  # the stamp after the request arrives
        writes.append(_w(seq, stamp, latency=round(latency, 6), writer=seq % writers))
    return writes


def _restore(writes: list[Write], target: float, with_commit_times: bool, seed: int = 11) -> list[TargetRow]:
    """What a correct restore to ``target`` holds: the rows whose commit (inside each window) is by then."""
    rng = random.Random(seed)
    rows = []
    for w in writes:
        assert w.server_ts is not None
        commit = round(w.server_ts + rng.uniform(0.0, 1.0) * w.latency * 0.5, 6)
        if commit <= target:
            rows.append(_row(w.seq, w.server_ts, commit if with_commit_times else None, writer=w.writer))
    return rows


@pytest.mark.parametrize("with_commit_times", [True, False])
def test_a_loss_of_0_2_s_just_before_the_target_is_caught(with_commit_times: bool) -> None:
    writes = _load(60)
    rows = _restore(writes, X, with_commit_times)
    lost = {r.key for r in rows if X - 0.2 <= r.server_ts < X}  # a fixed ±0.5 s window passed these
    assert 2 <= len(lost) <= 10  # 0.2 s at 20 writes/s
    assert validate_restore(RUN, TENANT, writes, rows, X).ok
    v = validate_restore(RUN, TENANT, writes, [r for r in rows if r.key not in lost], X)
    by_key = {w.key: w for w in writes}
    unsure = {k for k in lost if (by_key[k].server_ts or 0) + by_key[k].latency > X}  # windows containing X
    assert not v.ok and v.missing == len(lost) - len(unsure) >= 2 and v.extra == 0
    assert {(w, q) for w, q in v.missing_sample} == lost - unsure
    assert v.window == (COMMIT_TIMESTAMP if with_commit_times else LATENCY_WINDOW)


@pytest.mark.parametrize("with_commit_times", [True, False])
def test_a_clean_restore_has_at_most_a_handful_of_ambiguous_rows(with_commit_times: bool) -> None:
    writes = _load(120)
    counts, fixed = [], []
    for i in range(200):  # target times across the middle of the run
        target = round(X - 30 + i * 0.3 + 0.0123, 6)
        v = validate_restore(RUN, TENANT, writes, _restore(writes, target, with_commit_times), target)
        assert v.ok, v
        assert v.expected > 0 and v.missing == 0 and v.extra == 0
        counts.append(v.ambiguous)
        fixed.append(sum(1 for w in writes if abs((w.server_ts or 0) - target) <= 0.5))
    assert max(counts) <= 3, counts
    assert sum(counts) / len(counts) < 0.5
    assert sum(fixed) / len(fixed) > 15  # what a fixed ±0.5 s window set apart


# --------------------------------------------------------------------------- validate_pitr


def test_validate_pitr_records_the_loss_and_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probes.k8s import backup_probes, restores

    writes = _load(20)
    journal = JournalWriter(tmp_path / "journal", RUN)
    try:
        for w in writes:
            journal.write(w)
    finally:
        journal.close()
    (tmp_path / "run.json").write_text(json.dumps({"run_id": RUN}))
    restore = {
        "ok": True,
        "target": "t-pitr",
        "target_time": format_time(X),
        "achieved": format_time(X - 0.01),
    }
    (tmp_path / PITR_NAME).write_text(json.dumps({"restore": restore}))
    rows = [r for r in _restore(writes, X, True) if not X - 0.2 <= r.server_ts < X]
    asked: list[tuple[str, tuple[Any, ...]]] = []

    def query(tenant: Any, sql: str, params: tuple[Any, ...], timeout: float) -> list[Any]:
        asked.append((sql, params))
        return [(r.writer, r.seq, r.server_ts, r.commit_ts) for r in rows]

    monkeypatch.setenv("HARNESS_RUN_DIR", str(tmp_path))
    # validate_pitr (reached through probes.k8s.backup_probes) looks these up in probes.k8s.restores.
    monkeypatch.setattr(restores, "wait_ready", lambda *a, **k: None)
    connected = SimpleNamespace(tenant=SimpleNamespace(dialect="postgresql"), close=lambda: None)
    monkeypatch.setattr(restores, "instance_tenant", lambda *a, **k: connected)
    monkeypatch.setattr(restores, "query", query)
    with pytest.raises(ProbeError, match=r"missing [1-9]\d*, extra 0.*judged by commit_timestamp"):
        backup_probes.validate_pitr(TENANT, target="t-pitr", epsilon_seconds=0.5)
    assert asked and "pg_xact_commit_timestamp(xmin)" in asked[0][0] and asked[0][1] == (RUN, TENANT)
    block = json.loads((tmp_path / PITR_NAME).read_text())["validation"]
    assert block["ok"] is False and block["missing"] >= 2 and block["extra"] == 0
    assert block["window"] == COMMIT_TIMESTAMP and block["ambiguous"] <= 3
    assert block["restore_point_error_seconds"] == -0.01 and block["target_time"] == format_time(X)


# --------------------------------------------------------------------------- the lab's servers


def test_commit_timestamps_are_kept_in_postgresql_conf(tmp_path: Path) -> None:
    conf = tmp_path / "postgresql.conf"
    conf.write_text("#track_commit_timestamp = off\t# (change requires restart)\nport = 5432\n")
    assert keep_commit_timestamps(tmp_path)  # a commented-out default is not a setting
    assert conf.read_text().endswith(f"\n{COMMIT_TIMESTAMPS}\n")
    assert not keep_commit_timestamps(tmp_path)  # idempotent
    conf.write_text(conf.read_text() + "track_commit_timestamp = 'off'\n")
    assert keep_commit_timestamps(tmp_path)  # the last line wins, so it is turned on again
    assert not keep_commit_timestamps(tmp_path)


def _write_rows(tenant: Any, folder: Path, count: int) -> list[Write]:
    """``count`` rows written the way the load writes them (TenantWriter and its journal)."""
    from loadgen.writer import TenantWriter

    journal = JournalWriter(folder, RUN)
    writer = TenantWriter(
        tenant, 0, RUN, journal, interval=0.01, attempts=count, write_timeout=5.0, connect_timeout=5.0
    )
    try:
        writer.start()
        assert writer.join(60.0)
    finally:
        writer.stop(5.0)
        journal.close()
    writes, _ = read_journal(folder)
    assert [w.outcome for w in writes] == ["ok"] * count, writes
    return writes


def _read_back(tenant: Any) -> list[TargetRow]:
    """The tenant's rows of this run with their commit times, through pyodbc and psqlODBC."""
    import pyodbc

    from loadgen.dialects import dialect

    conn = pyodbc.connect(tenant.connection_string(), autocommit=True, timeout=10)
    try:
        raw = conn.execute(dialect(tenant.dialect).read_back_committed, (RUN, tenant.name)).fetchall()
    finally:
        conn.close()
    return [
        TargetRow(RUN, tenant.name, int(w), int(q), float(ts), None if c is None else float(c))
        for w, q, ts, c in raw
    ]


@pytest.mark.integration
def test_commit_times_come_back_through_psqlodbc(engine: Any, tmp_path: Path) -> None:
    from loadgen.tenants import load_tenants
    from tests.conftest import write_tenants

    inst = engine.create("t0")
    (tenant,) = load_tenants(write_tenants(tmp_path / "tenants.json", [inst]))
    writes = _write_rows(tenant, tmp_path / "journal", 40)
    rows = _read_back(tenant)
    assert len(rows) == 40 and all(isinstance(r.commit_ts, float) for r in rows)
    acked = {w.key: w for w in writes}
    for r in rows:  # the latency window's premise, on a real server: stamp <= commit <= acknowledgement
        w = acked[r.key]
        assert w.server_ts is not None and r.commit_ts is not None
        assert w.server_ts - 1e-6 <= r.commit_ts <= w.server_ts + w.latency + 1e-6, (w, r)
    target = sorted(r.commit_ts or 0 for r in rows)[19]  # exactly the 20th commit
    restored = [r for r in rows if (r.commit_ts or 0) <= target]
    v = validate_restore(RUN, "t0", writes, restored, target)
    assert v.ok and v.window == COMMIT_TIMESTAMP and v.commit_outside_latency == 0
    assert (v.expected, v.found, v.ambiguous) == (20, 20, 0)

    # With the setting off the same statement answers NULL commit times instead of failing.
    engine._psql(inst, "ALTER SYSTEM SET track_commit_timestamp = off")
    engine.restart("t0")
    blind = _read_back(tenant)
    assert len(blind) == 40 and all(r.commit_ts is None for r in blind)
    kept = {r.key for r in restored}
    v = validate_restore(RUN, "t0", writes, [r for r in blind if r.key in kept], target)
    assert v.ok and v.window == LATENCY_WINDOW and v.ambiguous <= 1


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_point_in_time_restore_keeps_the_commit_times(
    engine: Any, engine_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full backup, writes, log backup, then the lab executor's restore to exactly one row's commit time.

    The source is set up as the lab's engine image sets it up: WAL archived into a
    store, and no port in ``postgresql.conf`` (the image gives it on the command line;
    here ``PGPORT``), because the executor's private recovery server reads that file.
    """
    import shutil

    from lab.executor.backup import Connection, full_backup, log_backup
    from lab.executor.restore import restore
    from lab.executor.store import BackupStore
    from lab.kubelet.engine_image import archive_settings
    from lab.paths import server_user
    from loadgen.tenants import load_tenants

    store = BackupStore(engine_root / "store")
    for sub in ("", "wal", "full", "log", "restores"):
        (store.root / sub).mkdir(exist_ok=True)
        if server_user() is not None:
            shutil.chown(store.root / sub, server_user(), server_user())
    src = engine.create("src")
    engine.stop("src")
    conf = src.data / "postgresql.conf"
    lines = [line for line in conf.read_text().splitlines() if not line.startswith("port = ")]
    settings = archive_settings(store.root)
    lines += [f"{n} = '{v}'" for n, _, v in (settings[i].partition("=") for i in range(1, len(settings), 2))]
    conf.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("PGPORT", str(src.port))
    engine.start("src")
    monkeypatch.delenv("PGPORT")
    conn = Connection(
        {
            "LAB_DB_HOST": "127.0.0.1",
            "LAB_DB_PORT": str(src.port),
            "LAB_DB_USER": "postgres",
            "PGPASSWORD": src.password_file.read_text(),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
    )
    tenants = tmp_path / "tenants.json"
    tenants.write_text(json.dumps({"tenants": [src.tenant()]}))
    (tenant,) = load_tenants(tenants)
    full_backup(store, "full-1", conn)
    writes = _write_rows(tenant, tmp_path / "journal", 30)
    source = _read_back(tenant)
    assert all(r.commit_ts is not None for r in source)
    target = sorted(r.commit_ts or 0 for r in source)[14]  # exactly the 15th commit
    log_backup(store, "log-1", conn)

    dst = engine.create("dst")
    engine.stop("dst")
    outcome = restore(store, dst.home, target, "restore-1")
    assert outcome["achievedRestorePoint"] == format_time(target)
    with (dst.data / "postgresql.conf").open("a") as out:  # the restored file is the source's
        out.write(f"port = {dst.port}\nunix_socket_directories = '{dst.socket_dir}'\narchive_mode = off\n")
    engine.start("dst")
    tenants.write_text(json.dumps({"tenants": [{**src.tenant(), "port": dst.port}]}))
    (restored,) = load_tenants(tenants)
    rows = _read_back(restored)
    committed = {r.key: r.commit_ts for r in source}
    assert sorted(r.key for r in rows) == sorted(k for k, c in committed.items() if (c or 0) <= target)
    assert all(r.commit_ts == committed[r.key] for r in rows)  # replayed, not re-stamped
    v = validate_restore(RUN, "src", writes, rows, target)
    assert v.ok and v.window == COMMIT_TIMESTAMP and (v.expected, v.ambiguous) == (15, 0)
