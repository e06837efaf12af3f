"""One tenant's attempts as numpy arrays, fetched from a :class:`~probes.columnar_source.JournalSource`.

:func:`tenant_arrays` yields the tenants in the order asked, fetching them in groups
whose attempts together stay within ``EngineSettings.group_rows`` (a tenant larger than
that comes alone): one scan of the journal per group, each batch copied into arrays
sized beforehand from the tenants' counts, so memory is one group (37 bytes an attempt),
whatever the journal's size.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from probes.columnar_source import JournalSource, sql_text
from probes.errors import ProbeError

__all__ = ["OUTCOMES", "TenantArrays", "tenant_arrays"]

OUTCOMES = ("ok", "fail", "info")
"""Outcome codes in :class:`TenantArrays`: 0 ok, 1 fail, 2 info."""

_OUTCOME_CODE = "CASE outcome WHEN 'ok' THEN 0 WHEN 'fail' THEN 1 WHEN 'info' THEN 2 END::UTINYINT"
_COLUMNS = {
    "code": np.uint32,
    "writer": np.int64,
    "seq": np.int64,
    "start": np.float64,
    "end": np.float64,
    "outcome": np.uint8,
}


@dataclass(frozen=True)
class TenantArrays:
    """One tenant's write attempts as parallel arrays, in no particular order."""

    tenant: str
    writer: np.ndarray  # int64
    seq: np.ndarray  # int64
    start: np.ndarray  # float64
    end: np.ndarray  # float64
    outcome: np.ndarray  # uint8 codes, OUTCOMES

    def __len__(self) -> int:
        return len(self.end)

    @classmethod
    def empty(cls, tenant: str) -> TenantArrays:
        i, f = np.empty(0, np.int64), np.empty(0, np.float64)
        return cls(tenant, i, i, f, f, np.empty(0, np.uint8))


def tenant_arrays(
    source: JournalSource, counts: Mapping[str, int], names: Sequence[str]
) -> Iterator[TenantArrays]:
    """Each of ``names`` as arrays, in that order (``counts``: attempts per tenant, from ``source.check``)."""
    group: list[str] = []
    size = 0
    for name in names:
        if group and size + counts.get(name, 0) > source.settings.group_rows:
            yield from _group(source, group, counts)
            group, size = [], 0
        group.append(name)
        size += counts.get(name, 0)
    if group:
        yield from _group(source, group, counts)


def _group(source: JournalSource, names: list[str], counts: Mapping[str, int]) -> Iterator[TenantArrays]:
    present = [n for n in names if counts.get(n, 0)]
    arrays = _fetch(source, present, sum(counts[n] for n in present)) if present else {}
    for name in names:
        if name not in present:
            yield TenantArrays.empty(name)
            continue
        pick = np.flatnonzero(arrays["code"] == present.index(name))
        yield TenantArrays(name, *(arrays[c][pick] for c in ("writer", "seq", "start", "end", "outcome")))


def _fetch(source: JournalSource, names: list[str], total: int) -> dict[str, np.ndarray]:
    listed = ", ".join(sql_text(n) for n in names)
    sql = (
        f'SELECT (list_position([{listed}], tenant) - 1)::UINTEGER AS code, writer, seq, start, "end", '
        f"{_OUTCOME_CODE} AS outcome FROM writes WHERE tenant IN ({listed})"
    )
    out = {c: np.empty(total, dtype) for c, dtype in _COLUMNS.items()}
    at = 0
    for batch in source.batches(sql):
        n = batch.num_rows
        if at + n > total:
            break
        for i, column in enumerate(_COLUMNS):
            out[column][at : at + n] = batch.column(i).to_numpy(zero_copy_only=False)
        at += n
    else:
        if at == total:
            return out
    raise ProbeError(f"the journal under {source.folder} changed while it was read; analyse it again")
