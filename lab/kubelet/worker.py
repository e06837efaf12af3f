"""One thread per pod: start its containers, restart them, probe them, stop them, report.

The worker owns its pod's processes and status. Every tick (0.1 s) it polls its
containers, runs the probes that are due, restarts exited containers as
``restartPolicy`` says (the first restart at once, then a back-off doubling from
``backoff_base`` to ``backoff_max``, reset after a run of twice ``backoff_max``) and
publishes the status when it changed, with a JSON patch that first tests
``metadata.uid``, so a worker never writes into a newer pod of the same name.

A pod whose containers ran under a previous kubelet (a node restart) has them
started again, ``restartCount`` + 1; with ``restartPolicy: Never`` they count as
failed instead (exit 137), as on a real node that rebooted.

Each container runs as the user :mod:`lab.kubelet.run_as` chooses, in a working folder
that user owns, with the pod's service-account token (:mod:`lab.kubelet.sa_token`,
requested before the first container starts and refreshed while the pod runs). A container
that cannot start yet (a missing Secret or ServiceAccount, ``runAsNonRoot`` with root)
waits with ``CreateContainerConfigError`` and a ``Failed`` Warning "Error: ..." (once per
distinct message); the kubelet retries every second.

The worker's parts: its containers (:mod:`lab.kubelet.slots`), their probes
(:mod:`lab.kubelet.pod_probes`), the status it publishes (:mod:`lab.kubelet.pod_status`),
its Events, log files and final deletion (:mod:`lab.kubelet.pod_lifecycle`; Events
are queued, so the worker never waits on the API server for one), and the lab knob of a
planted memory leak, started and stopped as the pod's annotation says
(:mod:`lab.kubelet.memory_leak`).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from typing import TYPE_CHECKING, Any

from lab import events
from lab.errors import LabError
from lab.kubeclient import ApiError, KubeClient
from lab.kubelet import podspec
from lab.kubelet.container_log import log_file_for
from lab.kubelet.container_setup import PodSetup
from lab.kubelet.memory_leak import PodLeak
from lab.kubelet.pod_lifecycle import PodEvents, confirm_deleted, retire_pod_logs
from lab.kubelet.pod_probes import check_probes
from lab.kubelet.pod_status import StatusPublisher
from lab.kubelet.probes import ProbeContext, ProbeState
from lab.kubelet.runtime import ContainerProcess
from lab.kubelet.sa_token import PodToken
from lab.kubelet.slots import Slot, adopt_slot, kill_slots, stop_slots
from lab.kubelet.status import TERMINAL, pod_phase

if TYPE_CHECKING:
    from lab.kubelet.kubelet import Kubelet

__all__ = ["PodWorker", "log_file_for"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
FORCE_DELETE_GRACE = 2.0
CONFIG_RETRY = 1.0
MEMBER_REFRESH = 2.0
NODE_SHUTDOWN = "NodeShutdown"
#: How long a stopping kubelet's worker waits for the Events still queued.
EVENTS_FLUSH = 1.0


class PodWorker(threading.Thread):
    """Runs one pod (see the module doc); :meth:`update` feeds it the pod's latest version."""

    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        md = pod.get("metadata") or {}
        super().__init__(name=f"pod-{md.get('namespace')}/{md.get('name')}", daemon=True)
        self.kubelet = kubelet
        self.cfg = kubelet.cfg
        self.uid = str(md.get("uid", ""))
        self.namespace = str(md.get("namespace", "default"))
        self.pod_name = str(md.get("name", ""))
        self.client: KubeClient = kubelet.new_client()
        self.finished = threading.Event()
        self._latest: Obj | None = pod
        self._lock = threading.Lock()
        self._wake = threading.Event()
        spec = pod.get("spec") or {}
        self.restart_policy = str(spec.get("restartPolicy") or "Always")
        old = pod.get("status") or {}
        self._phase = str(old.get("phase") or "")
        self._phase = self._phase if self._phase in TERMINAL else ""
        self._current_phase = self._phase or "Pending"
        self.status = StatusPublisher(self.client, self.namespace, self.pod_name, self.uid, time.time())
        self.events = PodEvents(kubelet.events_client, self.cfg.node, self.namespace, self.pod_name, self.uid)
        self.init_slots = [
            adopt_slot(c, True, old.get("initContainerStatuses")) for c in spec.get("initContainers") or []
        ]
        self.slots = [
            adopt_slot(c, False, old.get("containerStatuses")) for c in spec.get("containers") or []
        ]
        self._scratch, self._emptydir = podspec.pod_volume_dirs(kubelet.runtime_dir, self.uid)
        self.token: PodToken | None = None
        if self.cfg.service_account_tokens:
            self.token = PodToken(self.client, pod, self._scratch, self.cfg.access.ca_pem)
        self.setup = PodSetup(
            self.cfg, kubelet.runtime_dir, kubelet.can_switch, self._scratch, self._lookup, self.token
        )
        self.leak = PodLeak(
            kubelet.spawner,
            self.cfg.containers_dir,
            self.namespace,
            self.pod_name,
            self.uid,
            lambda reason, message, etype: self._event(None, reason, message, etype),
        )

    # -- feeding ----------------------------------------------------------------------------

    def update(self, pod: Obj | None) -> None:
        """The pod's newest version, or None when it is gone from the API server."""
        with self._lock:
            self._latest = pod
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("pod worker %s/%s failed; stopping its containers", self.namespace, self.pod_name)
            self._kill_all()
        finally:
            self.finished.set()

    def _loop(self) -> None:
        while True:
            with self._lock:
                pod = self._latest
            if self.kubelet.stopping.is_set():
                self._shutdown()
                return
            if pod is None:
                self._stop_all(FORCE_DELETE_GRACE)
                self._cleanup()
                return
            md = pod.get("metadata") or {}
            if md.get("deletionTimestamp"):
                self._terminate(pod)
                return
            if self._phase not in TERMINAL:
                self._sync(pod)
                if self.token is not None:
                    self.token.refresh_if_due()
            running = self._phase not in TERMINAL and any(s.proc is not None for s in self.slots)
            self.leak.sync(pod, running)
            self._publish(pod)
            self._wake.wait(self.cfg.tick)
            self._wake.clear()

    # -- running containers --------------------------------------------------------------------

    def _sync(self, pod: Obj) -> None:
        now = time.monotonic()
        for slot in self.init_slots:
            if slot.state.state == "terminated" and slot.state.exit_code == 0 and slot.proc is None:
                continue
            self._sync_container(pod, slot, now)
            if not (slot.state.state == "terminated" and slot.state.exit_code == 0):
                self._update_phase()
                return
        for slot in self.slots:
            self._sync_container(pod, slot, now)
        self._update_phase()

    def _update_phase(self) -> None:
        states = [s.state for s in self.slots]
        phase = pod_phase(self.restart_policy, [s.state for s in self.init_slots], states, self._phase)
        if phase in TERMINAL and self._phase not in TERMINAL:
            self._stop_all(FORCE_DELETE_GRACE)
        self._phase = phase if phase in TERMINAL else ""
        self._current_phase = phase

    def _should_restart(self, slot: Slot) -> bool:
        st = slot.state
        if self.restart_policy == "Never":
            return False
        if st.reason == NODE_SHUTDOWN:
            return True
        if slot.init:
            return st.exit_code != 0
        return self.restart_policy == "Always" or st.exit_code != 0

    def _sync_container(self, pod: Obj, slot: Slot, now: float) -> None:
        if slot.proc is not None:
            code = slot.proc.poll()
            if code is None:
                if now - slot.refreshed >= MEMBER_REFRESH:
                    slot.proc.refresh_members()
                    slot.refreshed = now
                self._probe(slot, now)
                if slot.proc is not None:
                    return
            else:
                self._on_exit(slot, code, now)
        if slot.state.state == "terminated" and not self._should_restart(slot):
            return
        if slot.state.state == "terminated" and slot.has_run and slot.next_start == 0.0:
            self._schedule_restart(slot, now, ran=0.0)
        if now < slot.next_start:
            return
        self._start(pod, slot)

    def _on_exit(self, slot: Slot, code: int, now: float) -> None:
        st = slot.state
        ran = now - (slot.proc.started_mono if slot.proc else now)
        st.state, st.exit_code, st.finished_at = "terminated", code, time.time()
        st.reason = "Completed" if code == 0 else "Error"
        st.message = slot.kill_reason
        st.ready = st.started = False
        slot.proc, slot.probes, slot.kill_reason = None, {}, ""
        log.info("%s/%s container %s exited with %s", self.namespace, self.pod_name, st.name, code)
        if self._should_restart(slot):
            self._schedule_restart(slot, now, ran)

    def _schedule_restart(self, slot: Slot, now: float, ran: float) -> None:
        if ran >= 2 * self.cfg.backoff_max:
            slot.backoff = 0.0
        delay = slot.backoff
        slot.backoff = self.cfg.backoff_base if delay == 0 else min(self.cfg.backoff_max, delay * 2)
        slot.next_start = now + delay
        if delay > 0:
            st = slot.state
            st.last_terminated = st.terminated_view()
            st.state, st.reason = "waiting", "CrashLoopBackOff"
            st.message = f"back-off {delay:g}s restarting failed container={st.name} pod={self.pod_name}"
            pod = f"{self.pod_name}_{self.namespace}({self.uid})"
            self._event(
                slot, "BackOff", f"Back-off restarting failed container {st.name} in pod {pod}", "Warning"
            )

    def _event(self, slot: Slot | None, reason: str, message: str, etype: str = "Normal") -> None:
        """Record an Event on this pod (on one of its containers with ``slot``), as the kubelet does."""
        if slot is None:
            self.events.emit(None, False, reason, message, etype)
        else:
            self.events.emit(slot.name, slot.init, reason, message, etype)

    def _lookup(self, plural: str, namespace: str, name: str) -> Obj | None:
        return self.client.get_or_none(plural, name, namespace)

    def _start(self, pod: Obj, slot: Slot) -> None:
        st = slot.state
        now = time.monotonic()
        try:
            prep = self.setup.prepare(pod, slot.spec)
        except podspec.ConfigError as exc:
            self._wait(slot, exc.reason, exc.message, now + CONFIG_RETRY)
            return
        except ApiError as exc:
            self._wait(slot, "ContainerCreating", str(exc), now + CONFIG_RETRY)
            return
        except OSError as exc:
            message = f"cannot prepare the container's folders: {exc.strerror or exc}: {exc.filename}"
            self._wait(slot, "CreateContainerConfigError", message, now + CONFIG_RETRY)
            return
        launch, env, cwd, engine_port = prep.launch, prep.env, prep.cwd, prep.engine_port
        if slot.has_run:
            if st.state == "terminated":
                st.last_terminated = st.terminated_view()
            st.restart_count += 1
        proc = ContainerProcess(
            self.kubelet.spawner,
            launch.argv,
            env=env,
            cwd=cwd,
            log_path=log_file_for(self.cfg.logs, pod, st.name, init=slot.init),
            record_path=self.cfg.containers_dir / f"{self.uid}_{st.name}.json",
            record_meta={
                "namespace": self.namespace,
                "pod": self.pod_name,
                "uid": self.uid,
                "container": st.name,
            },
            run_as=prep.run_as,
            keep_previous=slot.has_run,
        )
        slot.has_run = True
        self._event(slot, "Pulled", f'Container image "{st.image}" already present on machine')
        try:
            proc.start()
        except OSError as exc:
            self._start_failed(slot, f"failed to start {launch.argv[0]}: {exc.strerror or exc}", now)
            return
        group = self.kubelet.cpu_group
        try:
            if group is not None and proc.pid is not None:
                group.add(proc.pid)  # before it forks anything: its children inherit the group
        except LabError as exc:
            proc.kill()
            self._start_failed(slot, str(exc), now)
            return
        log.info("%s/%s container %s started: pid %s", self.namespace, self.pod_name, st.name, proc.pid)
        self._event(slot, "Created", f"Created container: {st.name}")
        self._event(slot, "Started", f"Started container {st.name}")
        slot.proc, slot.refreshed = proc, now
        st.state, st.reason, st.message, st.exit_code, st.finished_at = "running", "", "", None, None
        st.started_at, st.pid = proc.started_at, proc.pid
        slot.ctx = ProbeContext(
            container=slot.spec, env=env, cwd=cwd, engine_port=engine_port, run_as=prep.run_as
        )
        slot.probes = {
            kind: ProbeState(kind, slot.spec[key], proc.started_mono)
            for kind, key in (
                ("startup", "startupProbe"),
                ("liveness", "livenessProbe"),
                ("readiness", "readinessProbe"),
            )
            if not slot.init and isinstance(slot.spec.get(key), dict)
        }
        st.started = "startup" not in slot.probes
        st.ready = st.started and "readiness" not in slot.probes and not slot.init

    def _start_failed(self, slot: Slot, message: str, now: float) -> None:
        st = slot.state
        st.state, st.exit_code, st.reason, st.message = "terminated", 128, "StartError", message
        st.started_at = st.finished_at = time.time()
        self._event(slot, "Failed", f"Error: {message}", "Warning")
        if self._should_restart(slot):
            self._schedule_restart(slot, now, 0.0)

    def _wait(self, slot: Slot, reason: str, message: str, retry_at: float) -> None:
        st = slot.state
        waiting = ("waiting", reason, message)
        if reason == "CreateContainerConfigError" and (st.state, st.reason, st.message) != waiting:
            self._event(slot, "Failed", f"Error: {message}", "Warning")  # once per distinct message
        if st.state == "terminated":
            st.last_terminated = st.terminated_view()
        st.state, st.reason, st.message = "waiting", reason, message
        slot.next_start = retry_at

    # -- probes ---------------------------------------------------------------------------------

    def _probe(self, slot: Slot, now: float) -> None:
        def report(message: str) -> None:
            self._event(slot, "Unhealthy", message, "Warning")

        kill = check_probes(self.kubelet.spawner, slot, now, report, f"{self.namespace}/{self.pod_name}")
        if kill is not None:
            self._kill_for_probe(slot, kill)

    def _kill_for_probe(self, slot: Slot, message: str) -> None:
        log.info("%s/%s container %s: %s", self.namespace, self.pod_name, slot.name, message)
        probe = message.split(" ", 1)[0].lower()
        self._event(slot, "Killing", f"Container {slot.name} failed {probe} probe, will be restarted")
        proc = slot.proc
        assert proc is not None
        grace = float((self._latest or {}).get("spec", {}).get("terminationGracePeriodSeconds") or 30)
        code = proc.stop(min(grace, self.cfg.stop_grace_cap))
        slot.kill_reason = message
        self._on_exit(slot, code, time.monotonic())

    # -- stopping --------------------------------------------------------------------------------

    def _running(self) -> list[Slot]:
        return [s for s in (*self.init_slots, *self.slots) if s.proc is not None]

    def _stop_all(self, grace: float) -> None:
        """SIGTERM every main process, wait up to ``grace``, SIGKILL every process left."""
        self.leak.stop()
        stop_slots(self._running(), grace)

    def _kill_all(self) -> None:
        self.leak.stop()
        kill_slots(self._running())

    def _terminate(self, pod: Obj) -> None:
        md = pod.get("metadata") or {}
        requested = md.get("deletionGracePeriodSeconds")
        if requested is None:
            requested = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        grace = float(requested if isinstance(requested, int | float) else 30)
        log.info("%s/%s terminating (grace %gs)", self.namespace, self.pod_name, grace)
        for slot in self._running():
            self._event(slot, "Killing", f"Stopping container {slot.name}")
        self._stop_all(grace)
        for slot in (*self.init_slots, *self.slots):
            slot.state.ready = False
        self._publish(pod, terminating=True, force=True)
        containers = [(s.name, s.init) for s in (*self.init_slots, *self.slots)]
        retire_pod_logs(self.cfg.logs, pod, containers, self.uid)
        # As Kubernetes' kubelet does, reclaim the pod's volumes before the final delete: once the
        # pod is gone from the API, nothing of its emptyDir may be left (a test saw it linger).
        self._cleanup()
        confirm_deleted(self.client, self.namespace, self.pod_name, self.uid, self.kubelet.stopping)

    def _shutdown(self) -> None:
        """The kubelet is stopping: stop the containers, say why, leave the pod to the next kubelet."""
        pod = self._latest
        grace = float(((pod or {}).get("spec") or {}).get("terminationGracePeriodSeconds") or 30)
        had_running = {s.name for s in self._running()}
        self._stop_all(min(grace, self.cfg.stop_grace_cap))
        for slot in (*self.init_slots, *self.slots):
            if slot.name in had_running:
                slot.state.reason, slot.state.message = NODE_SHUTDOWN, "the node's kubelet stopped"
        if pod is not None and self._phase not in TERMINAL:
            self._publish(pod, terminating=True, force=True)
        events.flush(EVENTS_FLUSH)

    def _cleanup(self) -> None:
        for folder in (self._scratch, self._emptydir):
            shutil.rmtree(folder, ignore_errors=True)

    # -- status ------------------------------------------------------------------------------------

    def _publish(self, pod: Obj, terminating: bool = False, force: bool = False) -> None:
        """Write the status when it changed (see :class:`~lab.kubelet.pod_status.StatusPublisher`)."""
        init, regular = [s.state for s in self.init_slots], [s.state for s in self.slots]
        phase = self._phase or self._current_phase
        self.status.publish(pod, phase, init, regular, terminating=terminating, force=force)
