"""Closed journal segments turned into Parquet: the same records in about a tenth of the bytes.

:func:`compact` converts every *closed* JSON-lines segment of a journal folder (one with
a higher-numbered segment of the same prefix, :mod:`loadgen.journal`) into
``<prefix>.s<NNNNNN>.parquet``: written under a hidden temporary name, fsynced, renamed
into place, the folder fsynced, then the JSON lines removed. So at any moment a segment
exists whole in one form or the other (both, briefly, and readers then prefer Parquet),
and a reader that has the JSON lines open keeps reading them. It never touches an
unsegmented file or the newest segment of a prefix (still being written, or the last one
of a writer that died: left as JSON lines). Running it again, or twice at once, is harmless.

One row per ``write`` record, in file order: ``tenant`` string (dictionary), ``writer``
int64, ``seq`` int64, ``start``/``end``/``latency`` float64, ``outcome`` string
(dictionary), ``server_ts`` float64, ``error`` string, ``due`` float64 (the last three
nullable). zstd, floats byte-stream-split and ``seq`` delta-encoded (they compress best
so). File key-value metadata: ``run_id`` (the segment's ``meta`` line), ``clocks`` (JSON
list of its clock samples, in order) and ``records`` (its write rows). Lines are parsed
exactly as the JSON reader parses them (:func:`loadgen.journal.parse_line`: torn and
undecodable lines skipped), in chunks, so memory is bounded whatever the segment's size.
A segment Parquet cannot hold exactly (a field of another type, an unknown field, a
second ``meta`` line) is left as JSON lines and named in :attr:`CompactStats.refused`:
readers then return exactly what they returned before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from loadgen.errors import LoadgenError
from loadgen.journal import ClockSample, Write, parse_line, split_segment

__all__ = [
    "SCHEMA",
    "WRITER_OPTIONS",
    "CompactStats",
    "compact",
    "parquet_run_id",
    "parquet_writes",
    "read_parquet",
]

_FLOATS = ("start", "end", "latency", "server_ts", "due")
_REQUIRED = ("tenant", "writer", "seq", "start", "end", "latency", "outcome")
_WRITE_KEYS = frozenset(("kind", *Write.__dataclass_fields__))
_FIELDS: tuple[str, ...] = tuple(Write.__dataclass_fields__)
_CHUNK_ROWS = 131_072  # write rows parsed per row group: bounds memory per segment

SCHEMA = pa.schema(
    [
        pa.field("tenant", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("writer", pa.int64(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("latency", pa.float64(), nullable=False),
        pa.field("outcome", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("server_ts", pa.float64()),
        pa.field("error", pa.string()),
        pa.field("due", pa.float64()),
    ]
)
"""The Parquet form of a segment's write records (one row each, file order)."""

WRITER_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": ["tenant", "outcome", "error", "writer"],
    "column_encoding": {"seq": "DELTA_BINARY_PACKED", **dict.fromkeys(_FLOATS, "BYTE_STREAM_SPLIT")},
}


@dataclass(frozen=True)
class CompactStats:
    """What one :func:`compact` did: segments converted, their write rows, bytes before and after.

    ``refused`` names each closed segment left as JSON lines, with why.
    """

    segments: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    refused: tuple[str, ...] = ()


class _Refused(Exception):
    """This segment cannot be held exactly in Parquet: leave it as JSON lines."""


def compact(folder: str | Path) -> CompactStats:
    """Convert every closed JSON-lines segment under ``folder`` to Parquet (module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoadgenError(f"journal folder {folder} does not exist: pass a run's journal/ folder")
    _remove_stale_temporaries(folder)
    lines = sorted(folder.glob("*.jsonl"))
    newest: dict[str, int] = {}
    for path in [*lines, *folder.glob("*.parquet")]:
        prefix, index = split_segment(path)
        if index is not None:
            newest[prefix] = max(index, newest.get(prefix, -1))
    segments = rows = before = after = 0
    refused: list[str] = []
    for path in lines:
        prefix, index = split_segment(path)
        if index is None or index >= newest[prefix]:
            continue  # unsegmented, or the newest of its prefix: never touched
        target = path.with_suffix(".parquet")
        if target.exists():  # an earlier compaction stopped between rename and removal
            path.unlink(missing_ok=True)
            continue
        try:
            size = path.stat().st_size
            written = _convert(path, target)
        except FileNotFoundError:
            continue  # compacted meanwhile by another compaction
        except _Refused as exc:
            refused.append(f"{path.name}: {exc}")
            continue
        path.unlink(missing_ok=True)
        segments, rows, before, after = (
            segments + 1,
            rows + written,
            before + size,
            after + target.stat().st_size,
        )
    return CompactStats(segments, rows, before, after, tuple(refused))


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of compactions whose process is gone (killed mid-write)."""
    for tmp in folder.glob(".*.parquet.*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue  # not ours to judge: another user's process, or not our name


def _convert(path: Path, target: Path) -> int:
    """Write ``target`` from the JSON lines at ``path``; the number of write rows."""
    tmp = _temporary(target)
    chunk = _Chunk(path)
    try:
        with path.open("rb") as source:
            writer = pq.ParquetWriter(tmp, SCHEMA, **WRITER_OPTIONS)
            try:
                for line in source:
                    if not line.endswith(b"\n"):
                        break  # a torn last line: skipped, as the JSON reader skips it
                    if chunk.add(line) >= _CHUNK_ROWS:
                        writer.write_batch(chunk.batch())
                if chunk.pending:
                    writer.write_batch(chunk.batch())
                writer.add_key_value_metadata(chunk.metadata())
            finally:
                writer.close()
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return chunk.records


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Chunk:
    """Write records parsed from one segment's lines, as columns, a chunk at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: dict[str, list[Any]] = {name: [] for name in _FIELDS}
        self.pending = 0
        self.records = 0
        self.clocks: list[dict[str, Any]] = []
        self.run_ids: list[str] = []

    def add(self, line: bytes) -> int:
        """Take one complete line; the write rows now pending."""
        rec = parse_line(line)
        if rec is None:
            return self.pending
        kind = rec.get("kind")
        if kind == "write":
            if not rec.keys() <= _WRITE_KEYS:
                raise _Refused(f"a write record with fields this version does not know: {sorted(rec)}")
            get, cols = rec.get, self.columns
            for name in _FIELDS:
                cols[name].append(get(name))
            self.pending += 1
        elif kind == "clock":
            del rec["kind"]
            try:
                ClockSample(**rec)
            except TypeError as exc:
                raise _Refused(f"a clock record this version cannot read ({exc})") from None
            self.clocks.append(rec)
        elif kind == "meta":
            self.run_ids.append(str(rec.get("run_id")))
            if len(self.run_ids) > 1:
                raise _Refused("more than one meta line (a segment has one)")
        return self.pending

    def batch(self) -> pa.RecordBatch:
        """The pending rows as one record batch (then forgotten)."""
        arrays = [_column(name, values) for name, values in self.columns.items()]
        batch = pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)
        self.records += self.pending
        self.columns = {name: [] for name in _FIELDS}
        self.pending = 0
        return batch

    def metadata(self) -> dict[str, str]:
        out = {"clocks": json.dumps(self.clocks, separators=(",", ":")), "records": str(self.records)}
        if self.run_ids:
            out["run_id"] = self.run_ids[0]
        return out


def _column(name: str, values: list[Any]) -> pa.Array:
    """One column exactly as the JSON reader would hand it to :class:`Write`, or :class:`_Refused`."""
    try:
        array = pa.array(values)  # inferred, then checked: typed conversion would truncate 1.5 to 1
    except (pa.ArrowException, OverflowError, UnicodeEncodeError) as exc:
        raise _Refused(f"field {name!r} holds values Parquet cannot keep exactly ({exc})") from None
    wanted = SCHEMA.field(name).type
    if name in _REQUIRED and array.null_count:
        raise _Refused(f"a write record without {name!r}")
    if array.type == pa.null() or (name in _FLOATS and pa.types.is_integer(array.type)):
        try:
            array = array.cast(pa.float64() if name in _FLOATS else pa.string(), safe=True)
        except pa.ArrowException as exc:
            raise _Refused(f"field {name!r} holds integers a float cannot keep exactly ({exc})") from None
    value_type = wanted.value_type if pa.types.is_dictionary(wanted) else wanted
    if array.type != value_type:
        raise _Refused(f"field {name!r} holds {array.type} values, not {value_type}")
    return array.dictionary_encode() if pa.types.is_dictionary(wanted) else array


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise LoadgenError(
            f"journal segment {path} is not a readable Parquet file ({exc}): compaction only renames "
            "complete files into place, so check the disk and whatever else writes to this folder"
        ) from None


def _metadata(parquet: pq.ParquetFile) -> dict[bytes, bytes]:
    return dict(parquet.metadata.metadata or {})


def parquet_run_id(path: str | Path) -> str | None:
    """The run id a Parquet segment was made under (its ``meta`` line); None if it had none."""
    value = _metadata(_open_parquet(Path(path))).get(b"run_id")
    return None if value is None else value.decode("utf-8")


def parquet_writes(path: str | Path) -> Iterator[Write]:
    """The write records of one Parquet segment, in file order, a row group at a time."""
    parquet = _open_parquet(Path(path))
    for batch in parquet.iter_batches(columns=list(_FIELDS)):
        yield from map(Write, *(batch.column(i).to_pylist() for i in range(len(_FIELDS))))


def read_parquet(path: str | Path) -> tuple[list[Write], list[ClockSample]]:
    """The writes and clock samples of one Parquet segment, in file order."""
    path = Path(path)
    parquet = _open_parquet(path)
    try:
        clocks = [ClockSample(**c) for c in json.loads(_metadata(parquet).get(b"clocks", b"[]"))]
    except (ValueError, TypeError) as exc:
        raise LoadgenError(
            f"journal segment {path} has unreadable clock samples ({exc}): it was not written by this harness"
        ) from None
    return list(parquet_writes(path)), clocks
