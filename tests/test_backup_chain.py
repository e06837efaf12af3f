"""The backup chain's holes, and why a restore failed: the pure parts, on a hand-made backup store.

A store is built in the executor's layout (:mod:`lab.executor.store`) with small
stand-in WAL files whose SHA-256 and commit times the log backups record. Deleting or
changing one of them must become a gap with its start and end in the harness's chain,
and the latest restorable time must stop before it. The executor's choice of the line
that explains a failed recovery is checked on a real server log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lab.errors import LabError
from lab.executor.diagnose import server_log_reason
from lab.executor.restore import full_candidates, restore
from lab.executor.store import META, BackupStore, checksum_of, format_ts, parse_ts, write_json
from lab.executor.wal import covered_ranges, expected_segments, sha256_of
from probes.k8s.backup_chain import chain_report

T0 = parse_ts("2026-11-27T00:00:00Z")
US = 1e-6


def _t(seconds: float) -> str:
    return format_ts(T0 + seconds)


def _seg(n: int) -> str:
    return f"{1:08X}{0:08X}{n:08X}"


class FakeStore:
    """A backup store with full backups and log backups over stand-in WAL segments."""

    def __init__(self, root: Path) -> None:
        self.store = BackupStore(root)
        for sub in ("wal", "full", "log", "restores"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.crs: list[dict[str, Any]] = []

    def full(self, name: str, end: float) -> None:
        folder = self.store.full_dir(name)
        folder.mkdir(parents=True)
        (folder / "PG_VERSION").write_text("15\n")
        meta = {"id": name, "type": "full", "start": _t(end - 1), "end": _t(end)}
        meta.update(coveredFrom=_t(end), coveredTo=_t(end), checksum=checksum_of(folder))
        write_json(folder / META, meta)
        self.crs.append(_cr(name, "full", {"coveredFrom": _t(end), "coveredTo": _t(end)}))

    def log(self, name: str, start: float, end: float, segments: dict[int, tuple[float, float]]) -> None:
        """Log backup ``name`` covering ``[start, end]`` with segments number -> (first, last commit)."""
        wal = []
        for number, (first, last) in segments.items():
            path = self.store.wal / _seg(number)
            path.write_bytes(os.urandom(64))
            wal.append(
                {
                    "segment": _seg(number),
                    "sha256": sha256_of(path),
                    "first_commit": _t(first),
                    "last_commit": _t(last),
                }
            )
        ranges = [{"from": _t(start), "to": _t(end)}]
        meta = {
            "id": name,
            "type": "log",
            "chainStart": _t(start),
            "coveredFrom": _t(start),
            "coveredTo": _t(end),
            "ranges": ranges,
            "last_segment": _seg(max(segments)),
            "segments": [w["segment"] for w in wal],
            "missing": [],
            "wal": wal,
        }
        write_json(self.store.log_file(name), meta)
        status = {"coveredFrom": _t(start), "coveredTo": _t(end), "coveredRanges": ranges}
        self.crs.append(_cr(name, "log", status))


def _cr(name: str, kind: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"instance": "tenant-0", "type": kind},
        "status": {"phase": "Completed", "backupId": name, **status},
    }


@pytest.fixture
def fake(tmp_path: Path) -> FakeStore:
    """full-1 at 10 s; log-1 [0, 20] (segments 1, 2), log-2 [20, 40] (3, 4), log-3 [40, 50] (5)."""
    store = FakeStore(tmp_path / "store")
    store.full("full-1", 10)
    store.log("log-1", 0, 20, {1: (0, 9), 2: (11, 19.5)})
    store.log("log-2", 20, 40, {3: (21, 29), 4: (31, 39)})
    store.log("log-3", 40, 50, {5: (41, 49)})
    return store


def _gaps(report: Any) -> list[tuple[float, float]]:
    return [(parse_ts(g["from"]) - T0, parse_ts(g["to"]) - T0) for g in report.brief()["gaps"]]


def _latest(report: Any) -> float:
    return float(report.latest_restorable - T0)


def test_an_intact_chain_has_no_gap_and_reaches_the_last_log(fake: FakeStore) -> None:
    report = chain_report(fake.crs, fake.store.root)
    assert _gaps(report) == [] and report.problems == []
    assert _latest(report) == pytest.approx(50)
    assert report.brief()["full"] == 1 and report.brief()["log"] == 3


def test_a_deleted_segment_is_a_gap_and_the_chain_stops_before_it(fake: FakeStore) -> None:
    (fake.store.wal / _seg(4)).unlink()
    report = chain_report(fake.crs, fake.store.root)
    ((start, end),) = _gaps(report)
    # Recovery needs a commit after the target: the last one before the hole is at 29 s.
    assert start == pytest.approx(29 - US, abs=2 * US) and end == pytest.approx(40)
    assert _latest(report) == pytest.approx(29 - US, abs=2 * US)
    assert any(f"WAL segment {_seg(4)} is missing from the archive" in p for p in report.problems)
    assert report.brief()["log"] == 3  # pieces of a log backup are not more log backups


def test_a_hole_at_the_start_of_a_log_backup_starts_at_the_previous_ones_end(fake: FakeStore) -> None:
    (fake.store.wal / _seg(3)).unlink()
    report = chain_report(fake.crs, fake.store.root)
    assert _gaps(report) == [pytest.approx((20, 31))]
    assert _latest(report) == pytest.approx(20)


def test_a_changed_segment_is_a_hole_too(fake: FakeStore) -> None:
    path = fake.store.wal / _seg(4)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    report = chain_report(fake.crs, fake.store.root)
    assert len(_gaps(report)) == 1
    assert any("checksum mismatch" in p for p in report.problems)


def test_a_hole_at_the_end_of_the_newest_log_backup_is_still_a_gap(fake: FakeStore) -> None:
    (fake.store.wal / _seg(5)).unlink()
    report = chain_report(fake.crs, fake.store.root)
    assert _gaps(report) == [pytest.approx((40, 50))]
    assert _latest(report) == pytest.approx(40)


def test_a_hole_before_the_first_full_backup_limits_nothing(tmp_path: Path) -> None:
    store = FakeStore(tmp_path / "store")
    store.log("log-1", 0, 20, {1: (0, 9), 2: (11, 19.5)})
    store.full("full-1", 25)
    store.log("log-2", 20, 40, {3: (21, 29)})
    (store.store.wal / _seg(1)).unlink()
    report = chain_report(store.crs, store.store.root)
    assert _gaps(report) == [] and _latest(report) == pytest.approx(40)
    assert any(_seg(1) in p for p in report.problems)  # still named


def test_without_the_store_the_status_ranges_show_the_hole(fake: FakeStore) -> None:
    log2 = next(c for c in fake.crs if c["metadata"]["name"] == "log-2")
    log2["status"]["coveredRanges"] = [{"from": _t(20), "to": _t(25)}, {"from": _t(31), "to": _t(40)}]
    log2["status"]["coveredFrom"] = _t(31)
    report = chain_report(fake.crs, None)
    assert _gaps(report) == [pytest.approx((25, 31))]
    assert _latest(report) == pytest.approx(25)
    assert "store not readable" in report.brief()["checked"]


def test_a_log_backup_gone_from_the_store_covers_nothing(fake: FakeStore) -> None:
    fake.store.log_file("log-2").unlink()
    report = chain_report(fake.crs, fake.store.root)
    assert _gaps(report) == [pytest.approx((20, 40))]
    assert _latest(report) == pytest.approx(20)


# --------------------------------------------------------------------------- executor


def test_covered_ranges_split_at_unusable_segments() -> None:
    wal = [
        {"segment": "a", "first_commit": _t(1), "last_commit": _t(5)},
        {"segment": "b", "first_commit": _t(6), "last_commit": _t(9)},
        {"segment": "c", "first_commit": _t(11), "last_commit": _t(14)},
    ]
    whole = covered_ranges(T0, T0 + 15, wal, [])
    assert whole == [(T0, T0 + 15)]
    split = covered_ranges(T0, T0 + 15, wal, ["b"])
    assert split == [pytest.approx((T0, T0 + 5 - US)), pytest.approx((T0 + 11, T0 + 15))]
    assert covered_ranges(T0, T0 + 15, wal, ["a"]) == [(T0, T0), pytest.approx((T0 + 6, T0 + 15))]
    assert covered_ranges(T0, T0 + 15, wal, ["c"]) == [pytest.approx((T0, T0 + 9 - US))]


def test_expected_segments_count_across_the_high_word_and_timelines() -> None:
    assert expected_segments("0000000100000000000000FE", "000000010000000100000001", []) == [
        "0000000100000000000000FF",
        "000000010000000100000000",
        "000000010000000100000001",
    ]
    present = [_seg(3), _seg(5)]
    assert expected_segments("", _seg(5), present) == [_seg(3), _seg(4), _seg(5)]
    other = "000000020000000000000007"
    assert expected_segments(_seg(5), "000000020000000000000008", [other]) == [
        other,
        "000000020000000000000008",
    ]


SERVER_LOG = """\
2026-11-30 02:13:35.519 UTC [13722] LOG:  database system was interrupted; last known up at 2026-11-30
2026-11-30 02:13:35.610 UTC [13724] FATAL:  the database system is starting up
cp: cannot stat '/store/wal/00000002.history': No such file or directory
2026-11-30 02:13:35.626 UTC [13722] LOG:  starting point-in-time recovery to 2026-11-30 02:13:32.209872+00
2026-11-30 02:13:35.671 UTC [13722] LOG:  restored log file "000000010000000000000009" from archive
2026-11-30 02:13:35.682 UTC [13722] LOG:  consistent recovery state reached at 0/7000100
2026-11-30 02:13:35.682 UTC [13722] LOG:  incorrect resource manager data checksum in record at 0/9000118
2026-11-30 02:13:35.682 UTC [13722] LOG:  redo done at 0/90000D0 system usage: CPU: user: 0.00 s
2026-11-30 02:13:35.682 UTC [13722] FATAL:  recovery ended before configured recovery target was reached
2026-11-30 02:13:35.684 UTC [13718] LOG:  startup process (PID 13722) exited with exit code 1
2026-11-30 02:13:35.684 UTC [13718] LOG:  terminating any other active server processes
2026-11-30 02:13:35.685 UTC [13718] LOG:  shutting down due to startup process failure
2026-11-30 02:13:35.686 UTC [13718] LOG:  database system is shut down
"""


def test_the_fatal_line_explains_a_failed_recovery_not_the_shutdown_lines() -> None:
    assert server_log_reason(SERVER_LOG) == (
        "FATAL: recovery ended before configured recovery target was reached "
        "(after: incorrect resource manager data checksum in record at 0/9000118)"
    )
    assert server_log_reason("LOG:  x\nERROR:  disk full\nLOG:  shut down\n") == "ERROR: disk full"
    assert server_log_reason("FATAL:  the database system is starting up\nLOG:  bye\n") is None
    # A status query refused while the server is still in recovery says nothing about why it stopped.
    late = "FATAL:  recovery ended before configured recovery target was reached\n"
    late += "FATAL:  the database system is in recovery mode\nLOG:  database system is shut down\n"
    assert server_log_reason(late) == "FATAL: recovery ended before configured recovery target was reached"


def test_damaged_full_backups_are_skipped_newest_first_and_the_failure_is_recorded(tmp_path: Path) -> None:
    fake = FakeStore(tmp_path / "store")
    fake.full("full-1", 10)
    fake.full("full-2", 20)
    fake.log("log-1", 0, 30, {1: (0, 29)})
    assert [f["id"] for f in full_candidates(fake.store, T0 + 25)] == ["full-2", "full-1"]
    for name in ("full-1", "full-2"):
        (fake.store.full_dir(name) / "PG_VERSION").write_text("damaged\n")
    with pytest.raises(LabError, match="no intact full backup") as caught:
        restore(fake.store, tmp_path / "home", T0 + 25, "r-1")
    assert "backup full-2: checksum mismatch" in str(caught.value)
    failure = json.loads(fake.store.restore_failure_file("r-1").read_text())
    assert failure["reason"] == str(caught.value)
    assert [s["backupId"] for s in failure["skippedBackups"]] == ["full-2", "full-1"]
