"""The SQL each dialect issues parses in that dialect (no SQL Server can run here)."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot.errors import ParseError

from loadgen.dialects import DIALECTS, dialect
from loadgen.errors import LoadgenError

_SQLGLOT = {"mssql": "tsql", "postgresql": "postgres"}


@pytest.mark.parametrize("name", sorted(DIALECTS))
@pytest.mark.parametrize(
    "statement", ["create_table", "insert", "read_back", "read_back_committed", "server_now"]
)
def test_statements_parse(name: str, statement: str) -> None:
    sql = getattr(DIALECTS[name], statement)
    parsed = sqlglot.parse(sql, read=_SQLGLOT[name], error_level=sqlglot.ErrorLevel.RAISE)
    assert parsed and all(p is not None for p in parsed)


def test_parser_catches_broken_tsql() -> None:
    with pytest.raises(ParseError):
        sqlglot.parse_one("INSERT INTO dbo.t (a OUTPUT INSERTED.a VALUES (?)", read="tsql")


def test_insert_returns_the_server_timestamp() -> None:
    assert "RETURNING" in DIALECTS["postgresql"].insert
    assert "OUTPUT" in DIALECTS["mssql"].insert and "INSERTED.written_at" in DIALECTS["mssql"].insert
    for d in DIALECTS.values():
        assert d.insert.count("?") == 4 and d.read_back.count("?") == 2


def test_read_back_committed_adds_a_commit_time_column() -> None:
    """Same rows and parameters as ``read_back``, plus one column: the commit time or NULL."""
    for name, d in DIALECTS.items():
        assert d.read_back_committed.count("?") == 2, name
        plain = sqlglot.parse_one(d.read_back, read=_SQLGLOT[name])
        committed = sqlglot.parse_one(d.read_back_committed, read=_SQLGLOT[name])
        assert len(committed.expressions) == len(plain.expressions) + 1, name
        assert committed.args["where"] == plain.args["where"], name
    assert "pg_xact_commit_timestamp(xmin)" in DIALECTS["postgresql"].read_back_committed
    # T-SQL cannot read a per-row commit time (no change tracking or CDC required): NULL.
    last = sqlglot.parse_one(DIALECTS["mssql"].read_back_committed, read="tsql").expressions[-1]
    assert isinstance(last, sqlglot.exp.Cast) and isinstance(last.this, sqlglot.exp.Null)
    assert DIALECTS["postgresql"].restore_resolution == 1e-6
    assert DIALECTS["mssql"].restore_resolution == pytest.approx(1 / 300)


def test_unknown_dialect_names_the_known_ones() -> None:
    with pytest.raises(LoadgenError, match="use one of mssql, postgresql"):
        dialect("oracle")


@pytest.mark.parametrize(
    ("name", "state", "definite"),
    [
        # PostgreSQL through psqlODBC: the server's own SQLSTATE.
        ("postgresql", "23505", True),  # duplicate key
        ("postgresql", "42601", True),  # syntax error
        ("postgresql", "42P01", True),  # undefined table
        ("postgresql", "22012", True),  # division by zero
        ("postgresql", "28P01", True),  # wrong password
        ("postgresql", "3D000", True),  # no such database
        ("postgresql", "40001", True),  # serialization failure: rolled back
        ("postgresql", "40P01", True),  # deadlock detected: rolled back
        ("postgresql", "40002", True),  # integrity constraint violation at commit
        ("postgresql", "40003", False),  # statement completion unknown
        ("postgresql", "40000", False),  # class 40 without a stated outcome
        ("postgresql", "57P01", False),  # terminated by an administrator
        ("postgresql", "08S01", False),  # connection lost mid-call
        ("postgresql", "HYT00", False),  # timeout
        ("postgresql", "", False),  # no SQLSTATE at all
        # SQL Server through Microsoft ODBC Driver 18 or FreeTDS.
        ("mssql", "40001", True),  # 1205 deadlock victim
        ("mssql", "23000", True),  # 2627 / 2601 / 547 / 515
        ("mssql", "42000", True),  # 102 syntax, 229 permission, RAISERROR
        ("mssql", "42S02", True),  # 208 invalid object name
        ("mssql", "22001", True),  # 8152 truncation
        ("mssql", "28000", True),  # 18456 login failed
        ("mssql", "40003", False),
        ("mssql", "08S01", False),  # communication link failure
        ("mssql", "HYT00", False),  # query timeout
        ("mssql", "HY000", False),  # general error
        ("mssql", "HY019", False),  # FreeTDS's 22003: left unknown
        ("mssql", "3D000", False),  # not a state these drivers give for a server error
    ],
)
def test_classify_is_per_dialect(name: str, state: str, definite: bool) -> None:
    import pyodbc

    from loadgen.writer import classify

    exc = pyodbc.Error(state, f"[{state}] message") if state else pyodbc.Error()
    assert classify(exc, DIALECTS[name]) == (definite, f"Error:{state}" if state else "Error")


def test_definite_states_are_classes_or_exact_codes() -> None:
    for d in DIALECTS.values():
        assert d.definite_states, d.name
        assert all(len(s) in (2, 5) for s in d.definite_states), d.name
        assert not any(s.startswith("40") and len(s) == 2 for s in d.definite_states), d.name
    assert DIALECTS["postgresql"].definite("40p01")  # drivers may report lower case
