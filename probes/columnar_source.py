"""A journal folder as one DuckDB relation: every segment, JSON lines or Parquet, read in place.

:class:`JournalSource` opens an in-memory DuckDB connection with a memory limit, a thread
count and a temporary folder of its own (spilled data, copies of torn files), lists the
folder's segments as :func:`loadgen.journal.journal_segments` does (one per stem,
Parquet preferred) and exposes their ``write`` records as the view ``writes``:

- **Parquet** segments are read where they lie (``read_parquet``), each checked first
  against its ``records`` metadata; their clock samples come from the ``clocks`` metadata.
- **JSON lines** are read once with ``read_json`` (explicit columns, undecodable lines
  skipped) into a temporary table, keeping ``write`` and ``clock`` lines. A file whose last
  line is torn (no newline yet) is read from a copy without it, so a complete object
  still waiting for its newline is skipped exactly as the Python reader skips it. A
  segment compacted between listing and reading is found again by listing once more.

A write record missing a field the analysis needs, or with an outcome other than
``ok``, ``fail`` or ``info``, stops the reading with one line naming its file (fail
closed). Records are identical to :func:`loadgen.journal.read_journal`'s, except that a
record with fields this version does not know is read rather than refused.

Queries spill beyond DuckDB's memory limit; :mod:`probes.columnar_arrays` fetches the
attempts into numpy a group of tenants at a time.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from loadgen.journal import ClockSample, journal_segments
from probes.errors import ProbeError

__all__ = ["EngineSettings", "JournalSource", "sql_text"]

_REQUIRED = ("tenant", "writer", "seq", "start", "end", "latency", "outcome")
_LINE_COLUMNS = (  # what is kept of each JSON line: write and clock fields
    ("kind", "VARCHAR"),
    ("tenant", "VARCHAR"),
    ("writer", "BIGINT"),
    ("seq", "BIGINT"),
    ("start", "DOUBLE"),
    ("end", "DOUBLE"),
    ("latency", "DOUBLE"),
    ("outcome", "VARCHAR"),
    ("server_ts", "DOUBLE"),
    ("due", "DOUBLE"),
    ("at", "DOUBLE"),
    ("skew", "DOUBLE"),
    ("rtt", "DOUBLE"),
)
_JSON_COLUMNS = "{" + ", ".join(f"\"{name}\": '{kind}'" for name, kind in _LINE_COLUMNS) + "}"
_LINE_NAMES = ", ".join(f'"{name}"' for name, _ in _LINE_COLUMNS) + ", filename"
_WRITE_COLUMNS = 'tenant, writer, seq, start, "end", latency, outcome, server_ts, due'
_LIST_ATTEMPTS = 3


@dataclass(frozen=True)
class EngineSettings:
    """How much of the machine the columnar analysis may use.

    ``memory_limit`` is DuckDB's own (beyond it, it spills to disk); ``group_rows`` bounds
    the attempts held as numpy arrays at once (37 bytes each). Spilled data and copies of
    torn files go in a fresh folder under ``temp_directory`` (None: the system's), removed
    on close.
    """

    memory_limit: str = "512MB"
    threads: int = 2
    temp_directory: Path | None = None
    group_rows: int = 16_000_000


def sql_text(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _sql_list(paths: Sequence[Path]) -> str:
    return "[" + ", ".join(sql_text(str(p)) for p in paths) + "]"


class JournalSource:
    """The write records and clock samples of one journal folder (module docstring)."""

    def __init__(self, folder: str | Path, settings: EngineSettings | None = None) -> None:
        self.folder = Path(folder)
        self.settings = settings or EngineSettings()
        if not self.folder.is_dir():
            raise ProbeError(f"journal folder {self.folder} does not exist; pass a run's journal/ folder")
        try:
            self._tmp = Path(tempfile.mkdtemp(prefix="columnar-", dir=self.settings.temp_directory))
        except OSError as exc:
            where = self.settings.temp_directory or tempfile.gettempdir()
            raise ProbeError(
                f"cannot make a temporary folder under {where} ({exc.strerror or exc}); "
                "pass a writable temp_directory"
            ) from None
        self._copies: dict[str, str] = {}  # copy of a file with a torn last line -> the file
        try:
            self.con = duckdb.connect(
                ":memory:",
                config={
                    "memory_limit": self.settings.memory_limit,
                    "threads": self.settings.threads,
                    "temp_directory": str(self._tmp / "spill"),
                    "preserve_insertion_order": False,
                },
            )
            self.files, self.parquet_clocks, self.parquet_ends = self._open()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> JournalSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and remove the temporary folder."""
        con = getattr(self, "con", None)
        if con is not None:
            con.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- reading -----------------------------------------------------------------------

    def _open(self) -> tuple[list[Path], list[ClockSample], dict[Path, tuple[float, float]]]:
        for attempt in range(_LIST_ATTEMPTS):
            files = journal_segments(self.folder)
            try:
                return files, *self._load(files)
            except FileNotFoundError:
                if attempt == _LIST_ATTEMPTS - 1:
                    raise ProbeError(
                        f"journal files under {self.folder} kept disappearing while being read; "
                        "stop whatever removes them and analyse again"
                    ) from None
        raise AssertionError("unreachable")

    def _load(self, files: list[Path]) -> tuple[list[ClockSample], dict[Path, tuple[float, float]]]:
        lines = [p for p in files if p.suffix == ".jsonl"]
        parquet = [p for p in files if p.suffix == ".parquet"]
        self._stage_lines(lines)
        clocks, ends = self._check_parquet(parquet)
        self._parquet = parquet
        self.con.execute("CREATE OR REPLACE TEMP VIEW writes AS " + self._union(parquet))
        return clocks, ends

    @staticmethod
    def _union(parquet: Sequence[Path]) -> str:
        branches = ["SELECT " + _WRITE_COLUMNS + ", filename FROM journal_lines WHERE kind = 'write'"]
        if parquet:
            branches.append(
                f'SELECT tenant::VARCHAR AS tenant, writer, seq, start, "end", latency, '
                f"outcome::VARCHAR AS outcome, server_ts, due, filename "
                f"FROM read_parquet({_sql_list(parquet)}, filename = true)"
            )
        return " UNION ALL ".join(branches)

    def writes_ending(self, lo: float, hi: float) -> str:
        """A relation (SQL text) of the write records whose ``end`` is in ``[lo, hi)``.

        Only the Parquet segments whose recorded ``end`` range can hold such records are
        opened (every segment without statistics is).
        """
        margin = 1.0  # statistics are text: never let their rounding drop a file
        files = [
            p
            for p in self._parquet
            if (span := self.parquet_ends.get(p)) is None
            or (span[0] - margin < hi and span[1] + margin >= lo)
        ]
        return f'(SELECT * FROM ({self._union(files)}) WHERE "end" >= {lo!r} AND "end" < {hi!r})'

    def _stage_lines(self, lines: list[Path]) -> None:
        """Every ``write`` and ``clock`` line of the JSON-lines files, in a temporary table."""
        sources = [self._whole_lines(p) for p in lines]
        if not sources:
            empty = ", ".join(
                f'NULL::{kind} AS "{name}"' for name, kind in (*_LINE_COLUMNS, ("filename", "VARCHAR"))
            )
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE journal_lines AS SELECT {empty} WHERE false")
            return
        try:
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE journal_lines AS SELECT {_LINE_NAMES} "
                f"FROM read_json({_sql_list(sources)}, format = 'newline_delimited', ignore_errors = true, "
                f"filename = true, columns = {_JSON_COLUMNS}) WHERE kind IN ('write', 'clock')"
            )
        except duckdb.IOException as exc:
            if any(not p.exists() for p in sources):
                raise FileNotFoundError(str(exc)) from None
            raise ProbeError(f"the journal under {self.folder} cannot be read: {_first_line(exc)}") from None

    def _whole_lines(self, path: Path) -> Path:
        """``path``, or a copy of it without its torn last line (one not ended by a newline yet)."""
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            if size == 0:
                return path
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return path
            handle.seek(0)
            copy = self._tmp / "lines" / path.name
            copy.parent.mkdir(exist_ok=True)
            with copy.open("wb") as out:
                remaining, last_newline = size, -1
                while remaining > 0:
                    block = handle.read(min(remaining, 1 << 22))
                    remaining -= len(block)
                    at = block.rfind(b"\n")
                    if at >= 0:
                        last_newline = size - remaining - len(block) + at
                    out.write(block)
                out.truncate(last_newline + 1)
        self._copies[str(copy)] = str(path)
        return copy

    def _check_parquet(
        self, parquet: list[Path]
    ) -> tuple[list[ClockSample], dict[Path, tuple[float, float]]]:
        """Clock samples and the ``end`` range of every Parquet segment; refuse a segment that lies."""
        if not parquet:
            return [], {}
        files = _sql_list(parquet)
        try:
            counts = dict(
                self.con.execute(f"SELECT file_name, num_rows FROM parquet_file_metadata({files})").fetchall()
            )
            kv = self.con.execute(
                f"SELECT file_name, decode(key), decode(value) FROM parquet_kv_metadata({files}) "
                "WHERE decode(key) IN ('records', 'clocks')"
            ).fetchall()
            stats = self.con.execute(
                "SELECT file_name, min(TRY_CAST(stats_min_value AS DOUBLE)), "
                f"max(TRY_CAST(stats_max_value AS DOUBLE)) FROM parquet_metadata({files}) "
                "WHERE path_in_schema = 'end' GROUP BY file_name"
            ).fetchall()
            columns = self.con.execute(f"SELECT * FROM read_parquet({files}) LIMIT 0").description
        except duckdb.IOException as exc:
            if any(not p.exists() for p in parquet):
                raise FileNotFoundError(str(exc)) from None
            raise ProbeError(
                f"a Parquet journal segment under {self.folder} cannot be read: {_first_line(exc)}"
            ) from None
        except duckdb.Error as exc:
            raise ProbeError(
                f"a Parquet journal segment under {self.folder} cannot be read: {_first_line(exc)}"
            ) from None
        missing = [c for c in _REQUIRED if c not in {d[0] for d in columns or ()}]
        if missing:
            raise ProbeError(
                f"Parquet journal segments under {self.folder} lack column(s) {', '.join(missing)}: "
                "they were not written by this harness; move them out of the journal folder"
            )
        clocks: list[ClockSample] = []
        for name, key, value in kv:
            if key == "records" and str(counts.get(name)) != value:
                raise ProbeError(
                    f"journal segment {name} holds {counts.get(name)} rows but its metadata says {value}: "
                    "the file is damaged; restore it from a backup, or move it out and count its records lost"
                )
            if key == "clocks":
                clocks += _clock_samples(name, value)
        ends = {Path(name): (lo, hi) for name, lo, hi in stats if lo is not None and hi is not None}
        return clocks, ends

    # -- queries -----------------------------------------------------------------------

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one query, a DuckDB failure as a ProbeError."""
        try:
            return self.con.execute(sql, list(params)).fetchall()
        except duckdb.Error as exc:
            raise ProbeError(
                f"the journal under {self.folder} cannot be analysed: {_first_line(exc)}"
            ) from None

    def check(self) -> dict[str, int]:
        """Write attempts per tenant; ProbeError naming the file of a record that cannot be read."""
        broken = (
            " OR ".join(f'"{c}" IS NULL' for c in _REQUIRED) + " OR outcome NOT IN ('ok', 'fail', 'info')"
        )
        counts = self.rows(
            f"SELECT tenant, count(*), count(*) FILTER (WHERE {broken}) FROM writes GROUP BY tenant"
        )
        if any(bad for _, _, bad in counts):
            name, count = self.rows(
                f"SELECT filename, count(*) FROM writes WHERE {broken} "
                "GROUP BY filename ORDER BY filename LIMIT 1"
            )[0]
            raise ProbeError(
                f"journal file {self._copies.get(name, name)} has {count} write record(s) with a missing "
                "or unreadable field or an unknown outcome: the analysis cannot trust it; fix the file or "
                "move it out of the journal folder"
            )
        return {t: n for t, n, _ in counts}

    def clocks(self) -> list[ClockSample]:
        """Every clock sample: JSON lines ``clock`` records and the Parquet segments' metadata."""
        rows = self.rows("SELECT tenant, \"at\", skew, rtt FROM journal_lines WHERE kind = 'clock'")
        return [ClockSample(t, at, skew, rtt) for t, at, skew, rtt in rows] + self.parquet_clocks

    def batches(self, sql: str) -> Iterator[Any]:
        """The rows of one query as Arrow record batches, streamed; a DuckDB failure as a ProbeError."""
        try:
            yield from self.con.sql(sql).to_arrow_reader(1 << 20)
        except duckdb.Error as exc:
            raise ProbeError(
                f"the journal under {self.folder} cannot be analysed: {_first_line(exc)}"
            ) from None


def _clock_samples(name: str, text: str) -> list[ClockSample]:
    try:
        return [ClockSample(**c) for c in json.loads(text)]
    except (ValueError, TypeError) as exc:
        raise ProbeError(
            f"journal segment {name} has unreadable clock samples ({exc}): it was not written by this harness"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
