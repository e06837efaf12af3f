"""A synthetic soak journal with outages and lost writes planted at known places (numpy, pyarrow).

:func:`make_plan` lays out the day: ``tenants`` tenants of ``writers_per_tenant`` paced
writers each (writer ``i`` of tenant ``t`` is ``t * writers_per_tenant + i``), together
``rate`` writes/s per tenant, for as many seconds as ``writes`` needs; one fault every
``fault_every`` seconds, each aimed at one tenant:

- **outage**: that tenant's attempts due in ``[F, F + outage)`` fail at once
  (``connection refused``); the ones due in the 50 ms before F hang until F + 2 s and end
  ``info`` (their rows committed: recovered unknown). The analysis must find the tenant
  recovered with an RTO between ``outage`` and ``outage`` + :data:`RTO_TOLERANCE`;
- **loss** (every other fault): the acknowledged writes due in ``[F - 1.5 s, F - 0.1 s)``
  are missing from the read-back, so each is a lost write blamed on F.

:func:`write_minute` writes one minute of every writer as one segment per process,
as the soak leaves it: closed segments as Parquet with the compaction's own schema and
encodings (:mod:`loadgen.segments`), the last minute still JSON lines. Attempts start
0.3 ms (mean) after they are due and take a log-normal 3 ms; every time carries a
full-precision mantissa, as real clocks do, so the bytes on disk are honest.
:func:`write_jsonl` writes the same attempts as today's unsegmented JSON lines (one file
per process), for the peer measurement. Everything the analysis must find is computed
from the schedule (:func:`expected`), not read back from the files.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loadgen.segments import SCHEMA

try:  # the compaction's own encodings, so the bytes match what a soak leaves
    from loadgen.segments import WRITER_OPTIONS
except ImportError:  # pragma: no cover - an older loadgen.segments
    WRITER_OPTIONS = {"compression": "zstd"}

__all__ = ["RTO_TOLERANCE", "Plan", "PlantedFault", "expected", "make_plan", "write_jsonl", "write_minute"]

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RTO_TOLERANCE = 0.5
LOSS_SECONDS = 1.5
HANG_SECONDS = 2.0
OUTCOMES = ("ok", "fail", "info")
RUN_ID = "soak-bench"


@dataclass(frozen=True)
class PlantedFault:
    name: str
    at: float
    tenant: int
    outage: float
    loss: bool


@dataclass(frozen=True)
class Plan:
    tenants: int
    rate: float
    seconds: float
    writers_per_tenant: int
    processes: int
    seed: int
    faults: tuple[PlantedFault, ...]

    @property
    def interval(self) -> float:
        """Seconds between one writer's attempts."""
        return self.writers_per_tenant / self.rate

    @property
    def writers(self) -> int:
        return self.tenants * self.writers_per_tenant

    @property
    def minutes(self) -> int:
        return math.ceil(self.seconds / 60.0)

    def phase(self) -> np.ndarray:
        """Each writer's offset of its first due time within one interval."""
        return np.random.default_rng([self.seed, 0]).uniform(0.0, self.interval, self.writers)

    def tenant_name(self, index: int) -> str:
        return f"tenant-{index:02d}"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def make_plan(
    writes: int,
    *,
    tenants: int = 50,
    rate: float = 20.0,
    writers_per_tenant: int = 2,
    processes: int = 1,
    fault_every: float = 7200.0,
    seed: int = 1,
) -> Plan:
    """The day (or slice) that holds ``writes`` attempts, with its planted faults."""
    seconds = max(60.0, round(writes / (tenants * rate) / 60.0) * 60.0)
    count = max(1, int(seconds // fault_every))
    faults = tuple(
        PlantedFault(
            name=f"planted-{i}",
            at=T0 + (i + 0.5) * seconds / count + 0.123,
            tenant=(i * 7 + 3) % tenants,
            outage=8.0 + 4.0 * (i % 6),
            loss=i % 2 == 0,
        )
        for i in range(count)
    )
    return Plan(tenants, rate, seconds, writers_per_tenant, processes, seed, faults)


def _schedule(plan: Plan, lo: float, hi: float, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(writer, k)`` of every attempt due in ``[lo, hi)`` seconds after T0."""
    interval = plan.interval
    k_lo = np.ceil((lo - phase) / interval).astype(np.int64)
    k_hi = np.ceil((min(hi, plan.seconds) - phase) / interval).astype(np.int64)
    counts = np.maximum(k_hi - k_lo, 0)
    writer = np.repeat(np.arange(plan.writers), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(k_lo, counts)
    return writer, k


def _attempts(plan: Plan, minute: int) -> dict[str, np.ndarray]:
    """The attempts due in one minute, as columns (outcomes applied, sorted by end)."""
    rng = np.random.default_rng([plan.seed, minute + 1])
    phase = plan.phase()
    writer, k = _schedule(plan, minute * 60.0, (minute + 1) * 60.0, phase)
    n = len(k)
    due = T0 + phase[writer] + k * plan.interval
    start = due + rng.exponential(0.0003, n)
    latency = rng.lognormal(math.log(0.003), 0.5, n)
    outcome = np.zeros(n, np.int32)
    tenant = writer // plan.writers_per_tenant
    for fault in plan.faults:
        mine = tenant == fault.tenant
        failing = mine & (due >= fault.at) & (due < fault.at + fault.outage)
        hung = mine & (due >= fault.at - 0.05) & (due < fault.at)
        outcome[failing], outcome[hung] = 1, 2
        latency[failing] = rng.uniform(0.0005, 0.002, int(failing.sum()))
        latency[hung] = fault.at + HANG_SECONDS - start[hung]
    end = start + latency + rng.uniform(0.0, 2e-7, n)
    order = np.argsort(end, kind="stable")
    return {
        "writer": writer[order],
        "seq": k[order] + 1,
        "start": start[order],
        "end": end[order],
        "latency": latency[order],
        "outcome": outcome[order],
        "due": due[order],
        "server_ts": (start + latency / 2 + 0.0123)[order],
    }


def _process_rows(plan: Plan, cols: dict[str, np.ndarray], process: int) -> dict[str, np.ndarray]:
    mine = cols["writer"] % plan.processes == process
    return {name: values[mine] for name, values in cols.items()}


def _table(plan: Plan, cols: dict[str, np.ndarray]) -> pa.Table:
    errors = np.array([None, "connection refused", "timeout"], dtype=object)[cols["outcome"]]
    names = pa.array([plan.tenant_name(i) for i in range(plan.tenants)])
    return pa.table(
        {
            "tenant": pa.DictionaryArray.from_arrays(
                pa.array((cols["writer"] // plan.writers_per_tenant).astype(np.int32)), names
            ),
            "writer": pa.array(cols["writer"].astype(np.int64)),
            "seq": pa.array(cols["seq"].astype(np.int64)),
            "start": cols["start"],
            "end": cols["end"],
            "latency": cols["latency"],
            "outcome": pa.DictionaryArray.from_arrays(pa.array(cols["outcome"]), pa.array(OUTCOMES)),
            "server_ts": cols["server_ts"],
            "error": pa.array(errors, pa.string()),
            "due": cols["due"],
        },
        schema=SCHEMA,
    )


def _clocks(plan: Plan, minute: int) -> list[dict[str, Any]]:
    if minute % 60:
        return []
    at = T0 + minute * 60.0 + 0.5
    return [
        {"tenant": plan.tenant_name(t), "at": at, "skew": 0.001 * (t % 7), "rtt": 0.0004}
        for t in range(plan.tenants)
    ]


def write_minute(plan: Plan, folder: Path, minute: int) -> tuple[int, int]:
    """Minute ``minute``'s segment of every process; ``(rows, bytes)`` written."""
    cols = _attempts(plan, minute)
    rows = size = 0
    live = minute == plan.minutes - 1
    for process in range(plan.processes):
        mine = _process_rows(plan, cols, process)
        stem = f"bench-{process}.s{minute:06d}"
        if live:
            path = folder / f"{stem}.jsonl"
            _write_lines(plan, path, mine, _clocks(plan, minute))
        else:
            path = folder / f"{stem}.parquet"
            table = _table(plan, mine)
            writer = pq.ParquetWriter(path, SCHEMA, **WRITER_OPTIONS)
            writer.write_table(table)
            clocks = json.dumps(_clocks(plan, minute) if process == 0 else [], separators=(",", ":"))
            writer.add_key_value_metadata(
                {"run_id": RUN_ID, "clocks": clocks, "records": str(table.num_rows)}
            )
            writer.close()
        rows += len(mine["seq"])
        size += path.stat().st_size
    return rows, size


def _write_lines(plan: Plan, path: Path, cols: dict[str, np.ndarray], clocks: list[dict[str, Any]]) -> None:
    """JSON lines exactly as :class:`loadgen.journal.JournalWriter` spells them."""
    names = [json.dumps(plan.tenant_name(t)) for t in range(plan.tenants)]
    errors = ["null", '"connection refused"', '"timeout"']
    with path.open("a", encoding="utf-8") as out:
        if out.tell() == 0:
            out.write(json.dumps({"kind": "meta", "run_id": RUN_ID, "pid": 1}, separators=(",", ":")) + "\n")
        for clock in clocks:
            out.write(json.dumps({"kind": "clock", **clock}, separators=(",", ":")) + "\n")
        lines = [
            f'{{"kind":"write","tenant":{names[w // plan.writers_per_tenant]},"writer":{w},"seq":{s},'
            f'"start":{a!r},"end":{b!r},"latency":{lat!r},"outcome":"{OUTCOMES[o]}",'
            f'"server_ts":{ts!r},"error":{errors[o]},"due":{d!r}}}\n'
            for w, s, a, b, lat, o, ts, d in zip(
                cols["writer"].tolist(),
                cols["seq"].tolist(),
                cols["start"].tolist(),
                cols["end"].tolist(),
                cols["latency"].tolist(),
                cols["outcome"].tolist(),
                cols["server_ts"].tolist(),
                cols["due"].tolist(),
                strict=True,
            )
        ]
        out.writelines(lines)


def write_jsonl(plan: Plan, folder: Path) -> int:
    """Every attempt as today's unsegmented JSON lines, one file per process; bytes written."""
    for minute in range(plan.minutes):
        cols = _attempts(plan, minute)
        for process in range(plan.processes):
            _write_lines(
                plan,
                folder / f"bench-{process}.jsonl",
                _process_rows(plan, cols, process),
                _clocks(plan, minute),
            )
    return sum(p.stat().st_size for p in folder.glob("*.jsonl"))


@dataclass(frozen=True)
class Expected:
    """What the analysis must find, from the schedule alone."""

    ranges: dict[str, list[tuple[int, int, int]]]  # the read-back: every row except failed and lost ones
    lost: dict[int, list[tuple[int, int]]]  # per fault index: the planted lost keys
    unknown: dict[str, int]  # per tenant: hung attempts whose rows are present


def _keys_due(plan: Plan, tenant: int, lo: float, hi: float) -> list[tuple[int, int]]:
    """``(writer, seq)`` of ``tenant``'s attempts due in ``[lo, hi)`` (epoch seconds)."""
    phase = plan.phase()
    out: list[tuple[int, int]] = []
    for w in range(tenant * plan.writers_per_tenant, (tenant + 1) * plan.writers_per_tenant):
        k_lo = math.ceil((lo - T0 - phase[w]) / plan.interval)
        k_hi = math.ceil((hi - T0 - phase[w]) / plan.interval)
        out += [(w, k + 1) for k in range(max(k_lo, 0), k_hi)]
    return out


def expected(plan: Plan) -> Expected:
    phase = plan.phase()
    absent: dict[int, set[int]] = {w: set() for w in range(plan.writers)}
    lost: dict[int, list[tuple[int, int]]] = {}
    unknown: dict[str, int] = {}
    for i, fault in enumerate(plan.faults):
        for w, s in _keys_due(plan, fault.tenant, fault.at, fault.at + fault.outage):
            absent[w].add(s)
        hung = _keys_due(plan, fault.tenant, fault.at - 0.05, fault.at)
        name = plan.tenant_name(fault.tenant)
        unknown[name] = unknown.get(name, 0) + len(hung)
        if fault.loss:
            lost[i] = sorted(_keys_due(plan, fault.tenant, fault.at - LOSS_SECONDS, fault.at - 0.1))
            for w, s in lost[i]:
                absent[w].add(s)
    ranges: dict[str, list[tuple[int, int, int]]] = {}
    for w in range(plan.writers):
        last = math.ceil((plan.seconds - phase[w]) / plan.interval)  # attempts k = 0 .. last - 1
        first = 1
        spans = ranges.setdefault(plan.tenant_name(w // plan.writers_per_tenant), [])
        for s in sorted(absent[w]):
            if s > first:
                spans.append((w, first, s - 1))
            first = s + 1
        if first <= last:
            spans.append((w, first, last))
    return Expected(ranges, lost, unknown)
