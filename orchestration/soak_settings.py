"""The soak's knobs, read from the experiment's configuration and checked before any load starts.

``experiments/opt-in/soak.json`` declares them (each with its ``HARNESS_SOAK_*`` environment
variable); :func:`soak_settings` turns the typed configuration
(:func:`orchestration.configuration.check_configuration`) into :class:`SoakSettings`, or
raises :class:`~orchestration.errors.OrchestrationError` with one line naming the
problem and the fix. The control calls it in ``before_experiment_control`` for every
experiment that declares ``soak_seconds``, so a bad soak never starts the load; the soak
action reads the same settings again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from orchestration.errors import OrchestrationError

__all__ = ["FAULTS", "SoakSettings", "is_soak", "soak_settings"]

DAY = 86400.0

#: The faults a soak may spread over its run: name -> the ``probes.k8s.actions`` function.
FAULTS = {"operator-restart": "restart_operator", "pod-eviction": "evict_tenant_pod"}


@dataclass(frozen=True)
class SoakSettings:
    """How long the soak runs and how often it checks, backs up, drills and injects faults (seconds)."""

    seconds: float = DAY
    check_seconds: float = 60.0
    log_interval_seconds: float = 300.0
    rpo_budget_seconds: float = 900.0
    drill_seconds: float = 4 * 3600.0
    fault: str = ""
    fault_every_seconds: float = 0.0
    leak_per_hour: float = 0.10
    metrics_port: int = 0
    segment_seconds: float = 60.0
    full_schedule: str = "0 0 * * *"
    backup_timeout: float = 300.0
    restore_timeout: float = 600.0
    seed: int = 0

    def plan(self) -> dict[str, Any]:
        """``soak/plan.json``'s settings part (the runner adds start time, tenants and faults)."""
        return asdict(self)


def is_soak(configuration: Mapping[str, Any] | None) -> bool:
    """Whether the experiment is a soak (it declares ``soak_seconds``)."""
    return "soak_seconds" in (configuration or {})


def _seconds(value: float) -> str:
    return f"{value:g} s"


def soak_settings(typed: Mapping[str, Any]) -> SoakSettings:
    """The soak's settings; OrchestrationError (one line, with the fix) for a plan that cannot work.

    Refused: a duration under the stability period (no recovery could ever be confirmed)
    or under one check interval (nothing would be checked), a log-backup interval not under
    the RPO budget (the budget would be broken by design between two backups, the backup's
    own duration included), a check interval not under the budget (an old backup could go
    unseen), a drill interval as long as the run or longer (the drill the soak promises
    would never run), a fault the soak does not know, and a fault interval longer than the run.
    """
    defaults = SoakSettings()

    def number(key: str, default: float) -> float:
        value = typed.get(key)
        return default if value is None else float(value)

    settings = SoakSettings(
        seconds=number("soak_seconds", defaults.seconds),
        check_seconds=number("soak_check_seconds", defaults.check_seconds),
        log_interval_seconds=number("soak_log_interval_seconds", defaults.log_interval_seconds),
        rpo_budget_seconds=number("backup_rpo_budget_seconds", defaults.rpo_budget_seconds),
        drill_seconds=number("soak_drill_seconds", defaults.drill_seconds),
        fault=str(typed.get("soak_fault") or ""),
        # No fault, no fault schedule: the interval's default would otherwise plan empty faults.
        fault_every_seconds=number("soak_fault_every_seconds", defaults.fault_every_seconds)
        if typed.get("soak_fault")
        else 0.0,
        leak_per_hour=number("soak_leak_per_hour", defaults.leak_per_hour),
        metrics_port=int(number("soak_metrics_port", defaults.metrics_port)),
        segment_seconds=number("journal_segment_seconds", defaults.segment_seconds),
        full_schedule=str(typed.get("full_schedule") or defaults.full_schedule),
        backup_timeout=number("backup_timeout", defaults.backup_timeout),
        restore_timeout=number("restore_timeout", defaults.restore_timeout),
        seed=int(number("soak_seed", defaults.seed)),
    )
    stability = number("stability_seconds", 5.0)
    if settings.seconds < stability:
        raise OrchestrationError(
            f"soak_seconds {_seconds(settings.seconds)} is under the stability period "
            f"{_seconds(stability)}: no recovery could be confirmed; set HARNESS_SOAK_SECONDS "
            "(or soak_seconds in the var file) to at least that"
        )
    if settings.check_seconds <= 0 or settings.seconds < settings.check_seconds:
        raise OrchestrationError(
            f"soak_check_seconds {_seconds(settings.check_seconds)} must be positive and fit in the soak "
            f"({_seconds(settings.seconds)}): lower HARNESS_SOAK_CHECK_SECONDS or lengthen the soak"
        )
    if settings.log_interval_seconds >= settings.rpo_budget_seconds:
        raise OrchestrationError(
            f"soak_log_interval_seconds {_seconds(settings.log_interval_seconds)} is not under the RPO "
            f"budget backup_rpo_budget_seconds {_seconds(settings.rpo_budget_seconds)}: the newest log "
            "backup would be older than the budget between two backups by design; back up more often "
            "(HARNESS_SOAK_LOG_INTERVAL) or raise the budget (HARNESS_BACKUP_RPO_BUDGET)"
        )
    if settings.log_interval_seconds <= 0 or settings.rpo_budget_seconds <= 0:
        raise OrchestrationError(
            "soak_log_interval_seconds and backup_rpo_budget_seconds must be positive: the soak is "
            "about periodic log backups; fix them in the var file"
        )
    if settings.drill_seconds < 0 or settings.drill_seconds >= settings.seconds:
        raise OrchestrationError(
            f"soak_drill_seconds {_seconds(settings.drill_seconds)} is longer than the soak "
            f"({_seconds(settings.seconds)}): no restore drill would run; drill more often "
            "(HARNESS_SOAK_DRILL_SECONDS) or set it to 0 to run none (the soak gate then cannot pass)"
        )
    if settings.check_seconds >= settings.rpo_budget_seconds:
        raise OrchestrationError(
            f"soak_check_seconds {_seconds(settings.check_seconds)} is not under the RPO budget "
            f"{_seconds(settings.rpo_budget_seconds)}: a backup older than the budget could go unseen "
            "between two checks; check more often (HARNESS_SOAK_CHECK_SECONDS)"
        )
    if settings.fault and settings.fault not in FAULTS:
        raise OrchestrationError(
            f"soak_fault {settings.fault!r} is not a fault the soak injects: use one of "
            f"{', '.join(sorted(FAULTS))}, or leave it empty for none"
        )
    if settings.fault and not 0 < settings.fault_every_seconds <= settings.seconds:
        raise OrchestrationError(
            f"soak_fault_every_seconds {_seconds(settings.fault_every_seconds)} must be positive and "
            f"fit in the soak ({_seconds(settings.seconds)}) when soak_fault is {settings.fault!r}: "
            "fix HARNESS_SOAK_FAULT_EVERY, or leave soak_fault empty"
        )
    if settings.leak_per_hour <= 0:
        raise OrchestrationError(
            f"soak_leak_per_hour {settings.leak_per_hour:g} must be a positive fraction (0.10 = a floor "
            "rising 10 % of its first value per hour is a leak)"
        )
    if settings.segment_seconds < 0:
        raise OrchestrationError(
            f"journal_segment_seconds {settings.segment_seconds:g} must be 0 (one journal file) or more"
        )
    return settings
