"""A known server CPU cost per committed insert: a test instrument, not a model of SQL Server.

A capacity search needs a target whose capacity is known in advance. With a CPU quota
per node (:mod:`lab.cgroups`, ``python -m lab up --node-cpu CORES``) and every insert
costing a fixed amount of server CPU (``--commit-cpu-ms MS``), a node carries at most
``node_cpu / (commit_cpu_seconds * rate)`` tenants writing ``rate`` rows per second, and a
search can be checked against that number. Nothing here tries to resemble how SQL Server
spends CPU; it is a lab knob.

When the kubelet gives an engine container ``LAB_COMMIT_CPU_MS``, the engine image
(:mod:`lab.kubelet.engine_image`) installs into the tenant database, as the superuser,
at every start:

* schema ``lab_capacity`` (usage granted to PUBLIC, so the non-superuser harness role
  can run what the trigger calls; functions are executable by PUBLIC by default) with
  ``burn(n)``, a PL/pgSQL loop of ``n`` empty iterations, and ``commit_cost()``, a row
  trigger function calling ``burn(K)``;
* trigger ``lab_commit_cost`` (``BEFORE INSERT ... FOR EACH ROW``) on every table of
  schema ``public`` that exists, and event trigger ``lab_commit_cost`` on
  ``ddl_command_end`` that attaches it to every table created there later (the load
  generator creates its table on its first connection; the lab does not know its name).

``K`` is calibrated on the server itself (:func:`calibrate`): a backend runs the same
loop for about 0.3 s of CPU and reads its own CPU time from ``/proc/self/schedstat``
(nanoseconds), or ``/proc/self/stat`` (utime + stime in clock ticks) where the kernel
has no schedstat, before and after. CPU time, not wall time: under a CPU quota the wall
time includes throttling, and the quota is exactly what the knob is measured against.

Without the variable, :func:`uninstall_sql` drops the event trigger and the schema with
everything depending on it (the row triggers), so a normal lab pays nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from lab.errors import LabError

__all__ = [
    "CALIBRATION_SECONDS",
    "ENV",
    "MAX_COMMIT_CPU_MS",
    "calibrate",
    "calibration_sql",
    "commit_cpu_ms",
    "install_sql",
    "uninstall_sql",
]

#: The variable the kubelet sets in an engine container when the node knob is on.
ENV = "LAB_COMMIT_CPU_MS"
#: The largest cost a commit may be given (a knob for capacity, not for a stall).
MAX_COMMIT_CPU_MS = 1000.0
#: CPU time the calibration loop runs for (clock ticks are 10 ms: long enough for 3%).
CALIBRATION_SECONDS = 0.3
_INT_MAX = 2**31 - 1
_FIRST_GUESS = 1_000_000
_ROUNDS = 6
_SCHEMA = "lab_capacity"
_TRIGGER = "lab_commit_cost"
_LOOP = "BEGIN\n  FOR i IN 1..n LOOP\n  END LOOP;\nEND"

#: Runs a psql script as the superuser; returns its output (``-At``: unaligned, tuples only).
SqlRunner = Callable[[str], str]


def commit_cpu_ms(env: Mapping[str, str]) -> float | None:
    """The cost asked for in ``env`` (None when unset or empty); LabError when it is not usable."""
    raw = (env.get(ENV) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_COMMIT_CPU_MS:
        raise LabError(
            f"{ENV}={raw!r} is not a CPU cost in milliseconds: give a number above 0 and at most "
            f"{MAX_COMMIT_CPU_MS:g} (python -m lab up --commit-cpu-ms MS)"
        )
    return value


def calibration_sql(iterations: int) -> str:
    """A script that runs the loop ``iterations`` times in one backend, reading its CPU time around it."""
    read = (
        "SELECT 'stat=' || btrim(pg_read_file('/proc/self/stat'), E'\\n');\n"
        "SELECT 'sched=' || coalesce(\n"
        "  btrim(pg_read_file('/proc/self/schedstat', 0, 4096, true), E'\\n'), '');\n"
    )
    return (
        "\\set ON_ERROR_STOP 1\n"
        "SET client_min_messages = warning;\n"
        "CREATE FUNCTION pg_temp.lab_burn(n integer) RETURNS void LANGUAGE plpgsql AS $f$\n"
        f"{_LOOP}\n$f$;\n"
        "SELECT pg_temp.lab_burn(1000);\n"  # compiled before the clock starts
        f"{read}SELECT pg_temp.lab_burn({iterations});\n{read}"
    )


def _cpu_seconds(output: str) -> float:
    """CPU time between the two readings of :func:`calibration_sql`'s output."""
    stats = [line[5:] for line in output.splitlines() if line.startswith("stat=")]
    scheds = [line[6:] for line in output.splitlines() if line.startswith("sched=")]
    if len(stats) != 2 or len(scheds) != 2:
        raise LabError(
            "calibrating the commit CPU cost failed: the server did not report its CPU time "
            f"(/proc/self/stat): unset {ENV} or check that PostgreSQL can read /proc"
        )
    if all(s.split() and s.split()[0].isdigit() for s in scheds):
        return (int(scheds[1].split()[0]) - int(scheds[0].split()[0])) / 1e9

    def ticks(stat: str) -> int:
        fields = stat.rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)

    return (ticks(stats[1]) - ticks(stats[0])) / os.sysconf("SC_CLK_TCK")


def calibrate(run: SqlRunner, cost_ms: float) -> tuple[int, float]:
    """Loop iterations costing ``cost_ms`` of server CPU, and the CPU seconds one iteration took."""
    iterations, seconds = _FIRST_GUESS, 0.0
    for _ in range(_ROUNDS):
        seconds = _cpu_seconds(run(calibration_sql(iterations)))
        if seconds >= CALIBRATION_SECONDS * 0.8 or iterations >= _INT_MAX:
            break
        factor = 100.0 if seconds <= 0 else min(100.0, max(2.0, CALIBRATION_SECONDS / seconds))
        iterations = min(_INT_MAX, int(iterations * factor))
    if seconds <= 0:
        raise LabError(
            f"calibrating the commit CPU cost failed: {iterations} loop iterations used no measurable CPU: "
            f"unset {ENV}"
        )
    per_iteration = seconds / iterations
    count = round(cost_ms / 1000 / per_iteration)
    if count > _INT_MAX:
        raise LabError(f"{ENV}={cost_ms:g} needs more loop iterations than fit an integer: ask for less")
    return max(1, count), per_iteration


def install_sql(iterations: int) -> str:
    """The idempotent install (one transaction) making every insert into ``public`` run ``burn(K)``."""
    return f"""\\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;
CREATE SCHEMA IF NOT EXISTS {_SCHEMA};
GRANT USAGE ON SCHEMA {_SCHEMA} TO PUBLIC;
CREATE OR REPLACE FUNCTION {_SCHEMA}.burn(n integer) RETURNS void LANGUAGE plpgsql AS $f$
{_LOOP}
$f$;
CREATE OR REPLACE FUNCTION {_SCHEMA}.commit_cost() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM {_SCHEMA}.burn({int(iterations)});
  RETURN NEW;
END
$f$;
CREATE OR REPLACE FUNCTION {_SCHEMA}.attach(target regclass) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = target AND tgname = '{_TRIGGER}') THEN
    EXECUTE format('CREATE TRIGGER {_TRIGGER} BEFORE INSERT ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION {_SCHEMA}.commit_cost()', target);
  END IF;
END
$f$;
CREATE OR REPLACE FUNCTION {_SCHEMA}.on_create_table() RETURNS event_trigger LANGUAGE plpgsql AS $f$
DECLARE
  created record;
BEGIN
  FOR created IN
    SELECT c.oid FROM pg_event_trigger_ddl_commands() AS d JOIN pg_class AS c ON c.oid = d.objid
    WHERE d.classid = 'pg_class'::regclass AND d.object_type = 'table' AND d.schema_name = 'public'
      AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  LOOP
    PERFORM {_SCHEMA}.attach(created.oid::regclass);
  END LOOP;
END
$f$;
DROP EVENT TRIGGER IF EXISTS {_TRIGGER};
CREATE EVENT TRIGGER {_TRIGGER} ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
  EXECUTE FUNCTION {_SCHEMA}.on_create_table();
DO $d$
DECLARE
  existing regclass;
BEGIN
  FOR existing IN
    SELECT c.oid::regclass FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  LOOP
    PERFORM {_SCHEMA}.attach(existing);
  END LOOP;
END
$d$;
COMMIT;
"""


def uninstall_sql() -> str:
    """Remove any earlier install: the event trigger, then the schema and the row triggers using it."""
    return (
        "\\set ON_ERROR_STOP 1\n"
        "SET client_min_messages = warning;\n"
        f"DROP EVENT TRIGGER IF EXISTS {_TRIGGER};\n"
        f"DROP SCHEMA IF EXISTS {_SCHEMA} CASCADE;\n"
    )
