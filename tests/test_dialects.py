"""The SQL each dialect issues parses in that dialect (no SQL Server can run here)."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot.errors import ParseError

from loadgen.dialects import DIALECTS, dialect
from loadgen.errors import LoadgenError

_SQLGLOT = {"mssql": "tsql", "postgresql": "postgres"}


@pytest.mark.parametrize("name", sorted(DIALECTS))
@pytest.mark.parametrize("statement", ["create_table", "insert", "read_back", "server_now"])
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


def test_unknown_dialect_names_the_known_ones() -> None:
    with pytest.raises(LoadgenError, match="use one of mssql, postgresql"):
        dialect("oracle")
