"""Jobs: run pods until ``completions`` succeed or ``backoffLimit`` is exceeded.

Pods are created with ``generateName: <job>-`` and the labels Kubernetes uses
(``batch.kubernetes.io/controller-uid``, ``batch.kubernetes.io/job-name`` and their
short forms); a Job without ``spec.selector`` gets one on the controller uid first, so
``kubectl logs job/<name>`` finds its pods. At most ``parallelism`` pods run at a time.
Succeeded and Failed pods are counted (and kept, as in Kubernetes). The job is:

* ``Complete`` (conditions ``SuccessCriteriaMet`` and ``Complete``, ``completionTime``)
  once ``succeeded >= completions``;
* ``Failed`` (``FailureTarget`` and ``Failed``) with reason ``BackoffLimitExceeded``
  when ``failed > backoffLimit``, or ``DeadlineExceeded`` after
  ``activeDeadlineSeconds``; its running pods are then deleted.

``suspend: true`` deletes running pods and creates none. ``ttlSecondsAfterFinished``
deletes a finished Job (and its pods) after that many seconds. Retries are immediate
(no exponential back-off delay: the lab favours short tests).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lab.controllers.loop import (
    Obj,
    condition,
    delete_with_propagation,
    format_time,
    is_active_pod,
    is_pod_ready,
    is_terminating,
    new_pod,
    one_object,
    owned_by,
    parse_time,
)
from lab.kubeclient import ApiError, KubeClient

__all__ = ["JobController", "job_finished"]

log = logging.getLogger(__name__)


def job_finished(job: Obj) -> str | None:
    """``Complete`` or ``Failed`` when the job has finished, else None."""
    for ctype in ("Complete", "Failed"):
        cond = condition(job, ctype)
        if cond and cond.get("status") == "True":
            return ctype
    return None


class JobController:
    name = "job"
    interval = 1.0
    watches: tuple[str, ...] = ("pods", "jobs")

    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock

    def reconcile_once(self) -> None:
        jobs = self.client.list("jobs")
        if not jobs:
            return
        pods = owned_by(self.client.list("pods"))
        for job in jobs:
            if is_terminating(job):
                continue
            with one_object(self.name, job, self.client):
                self._sync(job, pods.get(job["metadata"]["uid"], []))

    def _sync(self, job: Obj, pods: list[Obj]) -> None:
        md, spec = job["metadata"], job.get("spec", {})
        ns, name = md["namespace"], md["name"]
        now = self.clock()
        finished = job_finished(job)
        if finished:
            ttl = spec.get("ttlSecondsAfterFinished")
            done_at = parse_time((job.get("status") or {}).get("completionTime")) or parse_time(
                (condition(job, finished) or {}).get("lastTransitionTime")
            )
            if ttl is not None and done_at is not None and now - done_at >= int(ttl):
                delete_with_propagation(self.client, "jobs", name, ns)
                log.info("job %s/%s deleted (ttlSecondsAfterFinished)", ns, name)
            return
        if not spec.get("selector"):
            self._set_selector(job)
            return
        active = [p for p in pods if is_active_pod(p)]
        succeeded = sum(1 for p in pods if p.get("status", {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if p.get("status", {}).get("phase") == "Failed")
        completions = int(spec.get("completions") if spec.get("completions") is not None else 1)
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        backoff = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)
        status = dict(job.get("status") or {})
        suspended = bool(spec.get("suspend"))
        if not suspended and not status.get("startTime"):
            status["startTime"] = format_time(now)
        started = parse_time(status.get("startTime"))
        outcome: tuple[str, str, str] | None = None
        if succeeded >= completions:
            outcome = ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        elif failed > backoff:
            outcome = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif (
            spec.get("activeDeadlineSeconds") is not None
            and started is not None
            and not suspended
            and now - started >= int(spec["activeDeadlineSeconds"])
        ):
            outcome = ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        if outcome is not None or suspended:
            for pod in active:
                self.client.delete("pods", pod["metadata"]["name"], ns)
            active = []
        elif len(active) < min(parallelism, completions - succeeded):
            for _ in range(min(parallelism, completions - succeeded) - len(active)):
                try:
                    created = self.client.create(
                        "pods",
                        new_pod(
                            spec.get("template") or {},
                            job,
                            generate_name=f"{name}-",
                            labels=self._labels(job),
                        ),
                        ns,
                    )
                except ApiError as exc:
                    if exc.code in (403, 404, 409):
                        break
                    raise
                active.append(created)
        status.update(
            {
                "active": len(active),
                "ready": sum(1 for p in active if is_pod_ready(p)),
                "succeeded": succeeded,
                "failed": failed,
                "terminating": sum(1 for p in pods if is_terminating(p)),
            }
        )
        if outcome is not None:
            ctype, reason, message = outcome
            stamp = format_time(now)
            target = "SuccessCriteriaMet" if ctype == "Complete" else "FailureTarget"
            status["conditions"] = [
                *[c for c in status.get("conditions") or [] if c.get("type") not in (target, ctype)],
                *[
                    {
                        "type": t,
                        "status": "True",
                        "reason": reason,
                        "message": message,
                        "lastProbeTime": stamp,
                        "lastTransitionTime": stamp,
                    }
                    for t in (target, ctype)
                ],
            ]
            if ctype == "Complete":
                status["completionTime"] = stamp
            log.info("job %s/%s %s (%s)", ns, name, ctype.lower(), reason)
        if status != (job.get("status") or {}):
            try:
                self.client.patch("jobs", name, {"status": status}, ns, sub="status")
            except ApiError as exc:
                if exc.code != 404:
                    raise

    @staticmethod
    def _labels(job: Obj) -> dict[str, str]:
        uid, name = job["metadata"]["uid"], job["metadata"]["name"]
        return {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }

    def _set_selector(self, job: Obj) -> None:
        md = job["metadata"]
        labels = self._labels(job)
        patch = {
            "metadata": {"resourceVersion": md["resourceVersion"]},
            "spec": {
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": md["uid"]}},
                "template": {"metadata": {"labels": labels}},
            },
        }
        try:
            self.client.patch("jobs", md["name"], patch, md["namespace"])
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise
