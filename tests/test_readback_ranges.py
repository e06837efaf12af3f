"""The read-back as ranges: streamed by keyset pagination, stored as ranges, asked by ``contains``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyodbc
import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

import probes.readback as readback
from lab.engine import Engine, Instance
from loadgen.dialects import DIALECTS, TABLE
from loadgen.runner import preflight
from loadgen.tenants import Tenant, load_tenants
from probes.errors import ProbeError
from probes.model import ReadBack
from probes.readback import load_readback, read_back_tenant, save_readback
from tests.conftest import write_tenants

_SQLGLOT = {"mssql": "tsql", "postgresql": "postgres"}

keys = st.sets(st.tuples(st.integers(0, 6), st.integers(0, 40)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(present=keys, probes=st.lists(st.tuples(st.integers(-1, 7), st.integers(-2, 42)), max_size=60))
def test_contains_and_count_agree_with_a_set(
    present: set[tuple[int, int]], probes: list[tuple[int, int]]
) -> None:
    rb = ReadBack.of_keys("t", present, 1.0)
    assert rb.count == len(present)
    for key in [*probes, *present]:
        assert rb.contains(*key) == (key in present), key
    # Sorted, non-overlapping, gaps between ranges of one writer: as compact as the keys allow.
    flat = [(w, s) for w, first, last in rb.ranges for s in range(first, last + 1)]
    assert flat == sorted(present)
    assert all(a[0] < b[0] or a[2] + 1 < b[1] for a, b in zip(rb.ranges, rb.ranges[1:], strict=False))


@settings(max_examples=100, deadline=None)
@given(present=keys)
def test_folding_keys_in_order_gives_the_same_ranges(present: set[tuple[int, int]]) -> None:
    fold = readback._Folder()
    for key in sorted(present):
        fold.add(*key)
    assert ReadBack("t", tuple(fold.ranges), 1.0) == ReadBack.of_keys("t", present, 1.0)
    assert tuple(fold.ranges) == ReadBack.of_keys("t", present, 1.0).ranges


def test_adjacent_ranges_merge_and_bad_ranges_are_refused() -> None:
    assert ReadBack("t", ((1, 0, 3), (1, 4, 9), (2, 0, 0)), 1.0).ranges == ((1, 0, 9), (2, 0, 0))
    for bad, why in [
        (((1, 5, 3),), "ends before it starts"),
        (((1, 0, 5), (1, 5, 6)), "overlaps or precedes"),
        (((2, 0, 5), (1, 0, 1)), "overlaps or precedes"),
        (((1, 0),), "is not \\[writer, first_seq, last_seq\\]"),
        (((1, 0, 2.5),), "is not \\[writer, first_seq, last_seq\\]"),
    ]:
        with pytest.raises(ValueError, match=why):
            ReadBack("t", bad, 1.0)  # type: ignore[arg-type]


def test_readback_json_stores_ranges_and_still_loads_rows(tmp_path: Path) -> None:
    path = tmp_path / "readback.json"
    rbs = {
        "a": ReadBack.of_keys("a", [(0, 1), (0, 2), (0, 3), (1, 7)], 10.0),
        "b": ReadBack("b", (), 11.0, error="connection refused"),
    }
    save_readback(path, rbs)
    doc = json.loads(path.read_text())
    assert doc["a"] == {"read_at": 10.0, "error": None, "ranges": [[0, 1, 3], [1, 7, 7]]}
    assert load_readback(path) == rbs
    # Written before read-backs were ranges.
    path.write_text(
        json.dumps({"a": {"read_at": 10.0, "error": None, "rows": [[0, 2, 1.5], [0, 1, 1.0], [1, 7, 2]]}})
    )
    assert load_readback(path) == {"a": ReadBack.of_keys("a", [(0, 1), (0, 2), (1, 7)], 10.0)}
    path.write_text(json.dumps({"a": {"read_at": 10.0, "error": None, "ranges": [[0, 5, 1]]}}))
    with pytest.raises(
        ProbeError, match=r"is not a valid read-back file .*ends before it starts.*read back again"
    ):
        load_readback(path)


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_page_statements_parse_and_name_each_parameter(name: str) -> None:
    sql = DIALECTS[name]
    for statement, args in (
        (sql.read_back_first, sql.read_back_first_args),
        (sql.read_back_after, sql.read_back_after_args),
    ):
        parsed = sqlglot.parse_one(statement, read=_SQLGLOT[name])
        assert [c.sql() for c in parsed.expressions] == ["writer", "seq"]
        assert statement.count("?") == len(args)
        assert "ORDER BY writer, seq" in statement
    first = sql.read_back_page("r", "t", None, 7)
    after = sql.read_back_page("r", "t", (3, 9), 7)
    assert sorted(map(str, first[1])) == ["7", "r", "t"]
    assert after[1].count(3) >= 1 and 9 in after[1] and 7 in after[1]


def test_a_bad_page_size_is_one_line() -> None:
    tenant = Tenant("t", "postgresql", "127.0.0.1", 1, "d", "u")
    with pytest.raises(ProbeError, match=r"page size 0 is not a positive number of rows: use e\.g\. 50000"):
        read_back_tenant(tenant, "r", page_rows=0)


# -- against a real PostgreSQL ------------------------------------------------------------------------

# Present rows of run r1 in the tenant: gaps inside writer 0, a lone row, a writer with no rows.
_PRESENT = [(0, s) for s in range(10)] + [(0, 12), (0, 13), (1, 5)] + [(3, s) for s in range(7)]


@pytest.fixture
def tenant(engine: Engine, tmp_path: Path) -> Iterator[tuple[Tenant, Instance]]:
    inst = engine.create("rb")
    (t,) = load_tenants(write_tenants(tmp_path / "tenants.json", [inst]))
    preflight([t])
    conn = pyodbc.connect(t.connection_string(), autocommit=True, timeout=10)
    try:
        insert = f"INSERT INTO {TABLE} (run_id, tenant, writer, seq) VALUES (?, ?, ?, ?)"
        rows = [("r1", t.name, w, s) for w, s in _PRESENT]
        rows += [("r2", t.name, 0, s) for s in range(40)]  # another run
        rows += [("r1", "someone-else", 2, s) for s in range(40)]  # another tenant
        conn.cursor().executemany(insert, rows)
    finally:
        conn.close()
    yield t, inst


class _Counting:
    """A connection that counts the statements run through it."""

    def __init__(self, conn: Any, seen: list[tuple[str, tuple[Any, ...]]]) -> None:
        self._conn, self._seen = conn, seen

    def execute(self, sql: str, params: tuple[Any, ...]) -> Any:
        self._seen.append((sql, params))
        return self._conn.execute(sql, params)

    def close(self) -> None:
        self._conn.close()


@pytest.mark.integration
def test_read_back_pages_by_key_and_folds_rows_into_ranges(
    tenant: tuple[Tenant, Instance], monkeypatch: pytest.MonkeyPatch
) -> None:
    t, _ = tenant
    seen: list[tuple[str, tuple[Any, ...]]] = []
    real = readback.connect_tenant
    monkeypatch.setattr(readback, "connect_tenant", lambda *a: _Counting(real(*a), seen))
    small = read_back_tenant(t, "r1", page_rows=3)
    assert small.error is None
    assert small.ranges == ((0, 0, 9), (0, 12, 13), (1, 5, 5), (3, 0, 6))
    assert small.count == len(_PRESENT) == 20
    assert len(seen) == 7  # six full pages of 3, then one of 2
    assert seen[1][1] == ("r1", t.name, 0, 2, 3)  # the second page starts after the first's last key
    seen.clear()
    whole = read_back_tenant(t, "r1")
    assert whole.ranges == small.ranges and len(seen) == 1  # fewer rows than a page: one query
    assert read_back_tenant(t, "no-such-run").ranges == ()
    seen.clear()
    assert read_back_tenant(t, "r1", page_rows=20).ranges == small.ranges
    assert len(seen) == 2  # a full page is followed by one that comes back empty


@pytest.mark.integration
def test_each_page_is_an_index_range_scan(tenant: tuple[Tenant, Instance]) -> None:
    t, _ = tenant
    sql = DIALECTS["postgresql"]
    conn = pyodbc.connect(t.connection_string(), autocommit=True, timeout=10)
    try:
        conn.execute("SET enable_seqscan = off")
        statement, params = sql.read_back_page("r1", t.name, (0, 12), 50_000)
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + statement, params).fetchall())
    finally:
        conn.close()
    assert "Index" in plan and "ROW(writer, seq) > ROW(" in plan.replace("'", ""), plan


@pytest.mark.integration
def test_a_server_that_is_gone_is_one_redacted_line_and_no_ranges(
    engine: Engine, tenant: tuple[Tenant, Instance]
) -> None:
    t, inst = tenant
    engine.stop(inst.name)
    rb = read_back_tenant(t, "r1", timeout=3)
    assert rb.ranges == () and rb.count == 0
    assert rb.error is not None and "\n" not in rb.error
    assert inst.password_file.read_text().strip() not in rb.error
