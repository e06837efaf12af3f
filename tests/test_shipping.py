"""Journal shipping on constructed message sequences: resends, duplicates, gaps, restarts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadgen.collector import Collector
from loadgen.journal import JournalWriter, Write, read_journal
from loadgen.shipping import (
    Shipper,
    ShippingError,
    assignment,
    sharing,
    user_count,
    writer_number,
)

WORKER = "pod-a_0123abcd"


def _spool(tmp_path: Path, writes: int, name: str = "spool") -> JournalWriter:
    journal = JournalWriter(tmp_path / name, "run-1")
    for seq in range(writes):
        journal.write(_write(seq))
    return journal


def _write(seq: int, writer: int = 0) -> Write:
    return Write(
        "tenant-0", writer, seq, 100.0 + seq, 100.1 + seq, 0.1, "ok", 100.05 + seq, None, 100.0 + seq
    )


def _ship_all(shipper: Shipper, collector: Collector, worker: str = WORKER, index: int = 0) -> None:
    while (batch := shipper.poll(now=0.0)) is not None:
        assert collector.receive(batch.message(worker, index))
        shipper.ack(batch.number)


def _final(shipper: Shipper, worker: str = WORKER, index: int = 0) -> dict[str, Any]:
    final = shipper.final(worker, index, [index], ["tenant-0"])
    assert final is not None
    return final


def test_batches_are_contiguous_complete_lines_and_bounded(tmp_path: Path) -> None:
    journal = _spool(tmp_path, 12)
    shipper = Shipper(journal.path, max_lines=5)
    batches = []
    while (batch := shipper.poll(now=0.0)) is not None:
        batches.append(batch)
    assert [b.number for b in batches] == [0, 1, 2]
    assert [len(b.lines) for b in batches] == [5, 5, 3]  # meta + 12 writes
    assert json.loads(batches[0].lines[0])["kind"] == "meta"
    assert sum(b.records for b in batches) == 12 == shipper.records
    with journal.path.open("a") as handle:
        handle.write('{"kind":"write","tenant"')  # a torn line is not shipped yet
    assert shipper.poll(now=0.0) is None
    with journal.path.open("a") as handle:
        handle.write(":1}\n")
    late = shipper.poll(now=0.0)
    assert late is not None and late.number == 3 and late.records == 1


def test_unacked_batches_are_resent_after_the_timeout_only(tmp_path: Path) -> None:
    shipper = Shipper(_spool(tmp_path, 3).path)
    batch = shipper.poll(now=10.0)
    assert batch is not None
    assert shipper.due(now=11.0, resend_after=2.0) == []
    assert [b.number for b in shipper.due(now=12.5, resend_after=2.0)] == [0]
    assert shipper.due(now=13.0, resend_after=2.0) == []  # just resent
    early = shipper.final(WORKER, 0, [0], ["tenant-0"])  # sent but unacknowledged: the final may go
    assert early is not None and early["batches"] == 1 and shipper.unacked  # and the batch is still resent
    assert shipper.ack(0) and not shipper.ack(0)
    assert shipper.due(now=100.0) == []
    final = _final(shipper)
    assert final["batches"] == 1 and final["records"] == 3


def test_final_waits_for_lines_not_yet_shipped(tmp_path: Path) -> None:
    journal = _spool(tmp_path, 2)
    shipper = Shipper(journal.path)
    _ship_all(shipper, Collector(tmp_path / "master"))
    journal.write(_write(99))
    assert shipper.final(WORKER, 0, [0], ["tenant-0"]) is None  # the new line is not shipped


def test_duplicates_and_lost_acks_keep_one_copy(tmp_path: Path) -> None:
    journal = _spool(tmp_path, 7)
    shipper = Shipper(journal.path, max_lines=3)
    collector = Collector(tmp_path / "master")
    sent = [b for b in iter(lambda: shipper.poll(now=0.0), None)]
    for batch in sent:  # every ack is lost: everything is resent
        assert collector.receive(batch.message(WORKER, 0))
    for batch in shipper.due(now=10.0):
        assert not collector.receive(batch.message(WORKER, 0))  # dropped, acked again
        shipper.ack(batch.number)
    collector.final(_final(shipper))
    writes, _ = read_journal(tmp_path / "master")
    assert sorted(w.seq for w in writes) == list(range(7))
    status = collector.status({0: [0]})
    assert status["complete"] and status["workers"][0]["records"] == 7


def test_out_of_order_batches_complete_once_the_gap_fills(tmp_path: Path) -> None:
    shipper = Shipper(_spool(tmp_path, 8).path, max_lines=3)
    collector = Collector(tmp_path / "master")
    batches = list(iter(lambda: shipper.poll(now=0.0), None))
    for batch in (batches[2], batches[0]):
        collector.receive(batch.message(WORKER, 0))
    final = {"worker": WORKER, "index": 0, "batches": 3, "records": 8, "writers": [0], "tenants": ["t"]}
    collector.final(final)
    entry = collector.status({0: [0]})["workers"][0]
    assert not entry["complete"] and not entry["contiguous"]
    assert entry["missing"] == [[1, 1]] and "batches 1 of 3 never arrived" in entry["reason"]
    collector.receive(batches[1].message(WORKER, 0))
    assert collector.status({0: [0]})["complete"]


def test_no_final_count_mismatch_and_never_seen_worker_are_incomplete(tmp_path: Path) -> None:
    collector = Collector(tmp_path / "master")
    a = Shipper(_spool(tmp_path, 4, "a").path)
    _ship_all(a, collector, "worker-a", 0)  # no final: it died before
    b = Shipper(_spool(tmp_path, 4, "b").path)
    _ship_all(b, collector, "worker-b", 1)
    lying = dict(_final(b, "worker-b", 1), records=5)
    collector.final(lying)
    status = collector.status({0: [0], 1: [1], 2: [0, 1]})
    assert not status["complete"] and status["expected_workers"] == 3
    by_index = {e["index"]: e for e in status["workers"]}
    assert "no final message" in by_index[0]["reason"] and by_index[0]["worker"] == "worker-a"
    assert "4 records held, its final says 5" in by_index[1]["reason"]
    assert by_index[2]["worker"] is None and by_index[2]["tenants"] == [0, 1]
    assert "never shipped anything" in by_index[2]["reason"]
    assert not any(e["complete"] for e in status["workers"])


def test_empty_expectation_is_never_complete(tmp_path: Path) -> None:
    assert not Collector(tmp_path).status({})["complete"]


def test_recover_after_a_master_restart_drops_what_it_had(tmp_path: Path) -> None:
    shipper = Shipper(_spool(tmp_path, 9).path, max_lines=4)
    first = Collector(tmp_path / "master")
    batches = list(iter(lambda: shipper.poll(now=0.0), None))
    first.receive(batches[0].message(WORKER, 3))
    first.receive(batches[1].message(WORKER, 3))
    restarted = Collector(tmp_path / "master")
    restarted.recover()
    assert not restarted.receive(batches[1].message(WORKER, 3))  # already held before the restart
    assert restarted.receive(batches[2].message(WORKER, 3))
    restarted.final({"worker": WORKER, "index": 3, "batches": 3, "records": 9})
    again = Collector(tmp_path / "master")
    again.recover()
    assert again.status({3: [0]})["complete"]
    assert not again.final({"worker": WORKER, "index": 3, "batches": 3, "records": 9})  # held once
    writes, _ = read_journal(tmp_path / "master")  # readers skip batch and final lines
    assert sorted(w.seq for w in writes) == list(range(9))
    assert len(again.files()) == 1 and again.path(f"{WORKER}.jsonl") is not None


def test_each_batch_is_one_write_ending_with_its_marker(tmp_path: Path) -> None:
    shipper = Shipper(_spool(tmp_path, 2).path)
    collector = Collector(tmp_path / "master")
    _ship_all(shipper, collector)
    lines = (tmp_path / "master" / f"{WORKER}.jsonl").read_text().splitlines()
    marker = json.loads(lines[-1])
    assert marker["kind"] == "batch" and marker["worker"] == WORKER and marker["batch"] == 0
    assert marker["records"] == 2 and marker["at"] > 0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"worker": "../etc/passwd"}, "worker id"),
        ({"worker": "a/b"}, "worker id"),
        ({"worker": 5}, "worker id"),
        ({"batch": -1}, "'batch'"),
        ({"records": 9}, "says 9 records but holds 1"),
        ({"lines": ['{"kind":"write"}\n{"kind":"write"}']}, "single-line"),
    ],
)
def test_bad_messages_are_refused_with_one_line(tmp_path: Path, change: dict[str, Any], words: str) -> None:
    msg = {"worker": WORKER, "index": 0, "batch": 0, "lines": ['{"kind":"write"}'], "records": 1}
    collector = Collector(tmp_path)
    with pytest.raises(ShippingError) as caught:
        collector.receive({**msg, **change})
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    assert collector.path("../etc/passwd") is None


@pytest.mark.parametrize(
    ("tenants", "workers", "expected"),
    [
        (2, 3, {0: [0], 1: [1], 2: [0]}),  # N < K: U = 3, writer 2 writes tenant 0
        (3, 3, {0: [0], 1: [1], 2: [2]}),  # N = K
        (4, 2, {0: [0, 2], 1: [1, 3]}),  # N > K, a multiple
        (5, 2, {0: [0, 2, 4], 1: [0, 1, 3]}),  # not a multiple: U = 6, writer 5 writes tenant 0
    ],
)
def test_assignment(tenants: int, workers: int, expected: dict[int, list[int]]) -> None:
    assert assignment(tenants, workers) == expected
    users = user_count(tenants, workers)
    assert users % workers == 0 and users >= tenants
    writers = [writer_number(w, j, tenants, workers) for w in range(workers) for j in range(users // workers)]
    assert sorted(w for w in writers if w is not None) == list(range(users))
    assert writer_number(0, users // workers, tenants, workers) is None  # a re-dispatched user idles
    assert writer_number(workers, 0, tenants, workers) is None  # an index beyond K idles
    assert sum(sharing(t, tenants, users) for t in range(tenants)) == users


def test_assignment_refuses_nonsense() -> None:
    with pytest.raises(ShippingError, match="at least one tenant"):
        assignment(0, 2)


def test_a_final_that_overtakes_its_last_batch_is_complete_only_when_it_lands(tmp_path: Path) -> None:
    """A worker sends its final before its acks came back (Locust reads no message for
    --stop-timeout after a stop); the master is complete only when the resent batch lands."""
    shipper = Shipper(_spool(tmp_path, 3).path)
    batch = shipper.poll(now=0.0)
    assert batch is not None
    collector = Collector(tmp_path / "master")
    assert collector.final(_final(shipper))
    (entry,) = collector.status({0: [0]})["workers"]
    assert not entry["complete"] and entry["missing"] == [[0, 0]]
    assert collector.receive(batch.message(WORKER, 0))
    (entry,) = collector.status({0: [0]})["workers"]
    assert entry["complete"] and entry["records"] == 3
