"""CronJobs: create a Job for each scheduled time, like the Kubernetes controller (v2).

Each pass looks for the latest scheduled time after ``status.lastScheduleTime`` (or
the CronJob's creation) up to now, in ``spec.timeZone`` (UTC when unset). If there is
one and it is not older than ``startingDeadlineSeconds``, the Job
``<cronjob>-<scheduled time in minutes since the epoch>`` is created from
``jobTemplate`` (so a Job is never created twice for one time, even by two
controllers), unless ``concurrencyPolicy: Forbid`` and a Job is still running (the
time stays due until it finishes or the deadline passes); ``Replace`` deletes the
running Jobs first. Missed times collapse into one run. ``suspend: true`` creates
nothing. Status: ``lastScheduleTime``, ``lastSuccessfulTime``, ``active``. Finished
Jobs beyond ``successfulJobsHistoryLimit``/``failedJobsHistoryLimit`` are deleted
with their pods.

The clock is injectable (``clock`` returns epoch seconds), which is how tests move
time forward without waiting for the minute to turn.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lab.controllers.cron import CronSchedule
from lab.controllers.job import job_finished
from lab.controllers.loop import (
    Obj,
    controller_ref,
    delete_with_propagation,
    format_time,
    is_terminating,
    one_object,
    owned_by,
    parse_time,
)
from lab.errors import LabError
from lab.kubeclient import ApiError, KubeClient

__all__ = ["CronJobController", "job_name_for"]

log = logging.getLogger(__name__)

SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def job_name_for(cronjob: str, scheduled: float) -> str:
    """The Job name Kubernetes uses for the run scheduled at ``scheduled`` (epoch seconds)."""
    return f"{cronjob}-{int(scheduled // 60)}"


def _zone(name: str | None) -> tzinfo:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise LabError(f"unknown timeZone {name!r}") from exc


def _started(job: Obj) -> str:
    return str((job.get("status") or {}).get("startTime") or job["metadata"].get("creationTimestamp", ""))


class CronJobController:
    name = "cronjob"
    interval = 1.0
    watches: tuple[str, ...] = ("cronjobs", "jobs")

    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._complained: set[str] = set()

    def reconcile_once(self) -> None:
        cronjobs = self.client.list("cronjobs")
        if not cronjobs:
            return
        jobs = owned_by(self.client.list("jobs"))
        for cronjob in cronjobs:
            if is_terminating(cronjob):
                continue
            with one_object(self.name, cronjob, self.client):
                self._sync(
                    cronjob, [j for j in jobs.get(cronjob["metadata"]["uid"], []) if not is_terminating(j)]
                )

    def _due(self, cronjob: Obj, now: float) -> float | None:
        """The latest scheduled time not yet run, as epoch seconds, or None."""
        md, spec = cronjob["metadata"], cronjob.get("spec", {})
        key = f"{md['namespace']}/{md['name']}"
        try:
            zone = _zone(spec.get("timeZone"))
            schedule = CronSchedule.parse(str(spec.get("schedule", "")))
        except LabError as exc:
            if key not in self._complained:
                log.warning("cronjob %s: %s", key, exc)
                self._complained.add(key)
            return None
        self._complained.discard(key)
        earliest = parse_time((cronjob.get("status") or {}).get("lastScheduleTime")) or parse_time(
            md.get("creationTimestamp")
        )
        local_now = datetime.fromtimestamp(now, zone).replace(tzinfo=None)
        due = schedule.latest(local_now).replace(tzinfo=zone).timestamp()
        if earliest is not None and due <= earliest:
            return None
        return due

    def _sync(self, cronjob: Obj, jobs: list[Obj]) -> None:
        md, spec = cronjob["metadata"], cronjob.get("spec", {})
        ns, name = md["namespace"], md["name"]
        now = self.clock()
        status = dict(cronjob.get("status") or {})
        active = [j for j in jobs if job_finished(j) is None]
        self._trim_history(cronjob, jobs)
        due = None if spec.get("suspend") else self._due(cronjob, now)
        deadline = spec.get("startingDeadlineSeconds")
        policy = spec.get("concurrencyPolicy", "Allow")
        if due is not None and deadline is not None and now - due > int(deadline):
            log.info("cronjob %s/%s missed its starting deadline for %s", ns, name, format_time(due))
        elif due is not None and not (policy == "Forbid" and active):
            if policy == "Replace":
                for job in active:
                    delete_with_propagation(self.client, "jobs", job["metadata"]["name"], ns)
                active = []
            created = self._create_job(cronjob, due)
            if created is not None:
                if all(j["metadata"]["uid"] != created["metadata"]["uid"] for j in active):
                    active.append(created)
                status["lastScheduleTime"] = format_time(due)
        status["active"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "namespace": ns,
                "name": j["metadata"]["name"],
                "uid": j["metadata"]["uid"],
            }
            for j in sorted(active, key=lambda j: j["metadata"]["name"])
        ]
        if not status["active"]:
            status.pop("active")
        completed = [
            t
            for t in (
                parse_time((j.get("status") or {}).get("completionTime"))
                for j in jobs
                if job_finished(j) == "Complete"
            )
            if t is not None
        ]
        if completed:
            status["lastSuccessfulTime"] = format_time(max(completed))
        if status != (cronjob.get("status") or {}):
            try:
                self.client.patch(
                    "cronjobs", name, {"status": {**status, "active": status.get("active")}}, ns, sub="status"
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise

    def _create_job(self, cronjob: Obj, due: float) -> Obj | None:
        md, spec = cronjob["metadata"], cronjob.get("spec", {})
        template = spec.get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        job_name = job_name_for(md["name"], due)
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job_name,
                "namespace": md["namespace"],
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": {**(tmeta.get("annotations") or {}), SCHEDULED_AT: format_time(due)},
                "ownerReferences": [controller_ref(cronjob)],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        try:
            job: Obj = self.client.create("jobs", body, md["namespace"])
        except ApiError as exc:
            if exc.code == 409:
                existing = self.client.get_or_none("jobs", job_name, md["namespace"])
                return existing
            if exc.code in (403, 404):
                return None
            raise
        log.info("cronjob %s/%s: created job %s", md["namespace"], md["name"], job_name)
        return job

    def _trim_history(self, cronjob: Obj, jobs: list[Obj]) -> None:
        spec = cronjob.get("spec", {})
        limits = {
            "Complete": int(spec.get("successfulJobsHistoryLimit", 3)),
            "Failed": int(spec.get("failedJobsHistoryLimit", 1)),
        }
        for outcome, keep in limits.items():
            done = sorted((j for j in jobs if job_finished(j) == outcome), key=_started)
            for job in done[: max(0, len(done) - keep)]:
                delete_with_propagation(
                    self.client, "jobs", job["metadata"]["name"], job["metadata"]["namespace"]
                )
