"""The lab API server's store and write-ahead log, in process: rules, compaction, crash recovery."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lab.api.history import History
from lab.api.store import Store
from lab.api.wal import Wal
from lab.errors import LabError


def _cm(name: str, data: str = "x", ns: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"k": data},
    }


def _open(folder: Path, compact_bytes: int = 1 << 20) -> Store:
    store = Store(Wal(folder, compact_bytes))
    store.open()
    return store


def test_store_versions_generation_and_no_op_updates():
    store = Store()
    created = store.create("configmaps", _cm("a"))
    assert created["metadata"]["generation"] == 1 and created["metadata"]["resourceVersion"] == "1"
    with pytest.raises(LabError) as exists:
        store.create("configmaps", _cm("a"))
    assert getattr(exists.value, "code", None) == 409
    labelled = {**created, "metadata": {**created["metadata"], "labels": {"x": "y"}}}
    assert store.update("configmaps", labelled)["metadata"]["generation"] == 1
    changed = store.update("configmaps", {**labelled, "data": {"k": "new"}})
    assert changed["metadata"]["generation"] == 2 and changed["metadata"]["resourceVersion"] == "3"
    with_status = store.update("configmaps", {**changed, "status": {"seen": True}})
    assert with_status["metadata"]["generation"] == 2
    again = store.update("configmaps", with_status)
    assert again["metadata"]["resourceVersion"] == with_status["metadata"]["resourceVersion"] == str(store.rv)
    forged = {**with_status, "metadata": {**with_status["metadata"], "uid": "forged", "generation": 99}}
    assert store.update("configmaps", forged)["metadata"]["uid"] == created["metadata"]["uid"]
    gone = store.delete("configmaps", "default", "a")
    assert (
        int(gone["metadata"]["resourceVersion"]) == store.rv
        and store.locate(created["metadata"]["uid"]) is None
    )


def test_history_expires_versions_it_no_longer_holds():
    store = Store(history_size=3)
    for i in range(5):
        store.create("configmaps", _cm(f"c{i}"))
    assert store.history.since(1, "configmaps") is None
    assert [e.obj["metadata"]["name"] for e in store.history.since(2, "configmaps") or []] == [
        "c2",
        "c3",
        "c4",
    ]
    assert History(5).since(0, "pods") == []


def test_log_replay_and_compaction(tmp_path: Path):
    folder = tmp_path / "state"
    store = _open(folder, compact_bytes=2_000)
    for i in range(30):
        store.create("configmaps", _cm(f"c{i}", "v" * 20))
        asyncio.run(store.sync())
    store.delete("configmaps", "default", "c0")
    asyncio.run(store.sync())
    assert (folder / "snapshot.json").exists()
    assert (folder / "wal.jsonl").stat().st_size < 2_000
    rv, count = store.rv, store.count()
    store.close()
    reopened = _open(folder)
    assert (reopened.rv, reopened.count()) == (rv, count)
    assert reopened.get("configmaps", "default", "c0") is None
    assert reopened.get("configmaps", "default", "c29")["data"] == {"k": "v" * 20}
    assert reopened.create("configmaps", _cm("next"))["metadata"]["resourceVersion"] == str(rv + 1)
    reopened.close()


def test_torn_tail_is_dropped_but_corruption_is_refused(tmp_path: Path):
    folder = tmp_path / "state"
    store = _open(folder)
    store.create("configmaps", _cm("kept"))
    asyncio.run(store.sync())
    store.close()
    log = folder / "wal.jsonl"
    with log.open("ab") as fh:
        fh.write(b'{"rv": 2, "op": "put", "key": "configmaps", "obj": {"metad')
    store = _open(folder)
    assert [o["metadata"]["name"] for o in store.copies("configmaps")] == ["kept"]
    assert log.read_bytes().endswith(b"\n")
    store.close()
    lines = log.read_bytes().splitlines()
    log.write_bytes(b"garbage\n" + b"\n".join(lines) + b"\n")
    with pytest.raises(LabError, match="corrupt"):
        _open(folder)


def test_log_records_covered_by_the_snapshot_are_skipped(tmp_path: Path):
    """A crash between writing the snapshot and emptying the log must not apply old records again."""
    folder = tmp_path / "state"
    store = _open(folder)
    store.create("configmaps", _cm("a"))
    asyncio.run(store.sync())
    only_a = store.snapshot()
    store.create("configmaps", _cm("b"))
    asyncio.run(store.sync())
    store.close()
    (folder / "snapshot.json").write_text(json.dumps({"rv": 2, "objects": only_a}))
    reopened = _open(folder)
    assert [o["metadata"]["name"] for o in reopened.copies("configmaps")] == ["a"] and reopened.rv == 2
    reopened.close()
