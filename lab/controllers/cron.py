"""Standard 5-field cron schedules (minute hour day-of-month month day-of-week).

Fields take ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``,
month and weekday names (``jan``, ``mon``), and ``7`` for Sunday; the macros
``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight`` and
``@hourly`` are accepted. As in cron, when both day fields are restricted a day
matches if either does (``*/n`` with n > 1 counts as restricted, as in Kubernetes).
Times are naive datetimes in the schedule's time zone; :meth:`CronSchedule.latest`
and :meth:`CronSchedule.next_after` skip whole months, days and hours that cannot
match, so even yearly schedules cost few steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from lab.errors import LabError

__all__ = ["CronSchedule"]

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_LIMIT_STEPS = 100_000
_UNRESTRICTED = ("*", "?", "*/1")  # robfig/cron (what Kubernetes uses): "*/2" counts as restricted


def _value(text: str, names: dict[str, int]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise ValueError(part)
        if span in ("*", "?"):
            start, end = low, high
        elif "-" in span:
            a, b = span.split("-", 1)
            start, end = _value(a, names or {}), _value(b, names or {})
        else:
            start = _value(span, names or {})
            end = high if step_text else start
        if start < low or end > high or start > end:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        """Parse a schedule; LabError with the offending text when it is not valid."""
        spec = _MACROS.get(text.strip().lower(), text.strip())
        fields = spec.split()
        if len(fields) != 5:
            raise LabError(
                f"invalid cron schedule {text!r}: expected 5 fields (minute hour day month weekday)"
            )
        try:
            weekdays = _field(fields[4], 0, 7, _DAYS)
            return cls(
                minutes=_field(fields[0], 0, 59),
                hours=_field(fields[1], 0, 23),
                days=_field(fields[2], 1, 31),
                months=_field(fields[3], 1, 12, _MONTHS),
                weekdays=frozenset(d % 7 for d in weekdays),
                days_restricted=fields[2] not in _UNRESTRICTED,
                weekdays_restricted=fields[4] not in _UNRESTRICTED,
            )
        except ValueError as exc:
            raise LabError(f"invalid cron schedule {text!r}: bad field {exc}") from None

    def _day_matches(self, moment: datetime) -> bool:
        dom = moment.day in self.days
        dow = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def matches(self, moment: datetime) -> bool:
        return (
            moment.month in self.months
            and self._day_matches(moment)
            and moment.hour in self.hours
            and moment.minute in self.minutes
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first scheduled minute strictly after ``moment``."""
        t = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(_LIMIT_STEPS):
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise LabError("cron schedule never matches (e.g. 30 February): fix the schedule")

    def latest(self, moment: datetime) -> datetime:
        """The last scheduled minute at or before ``moment``."""
        t = moment.replace(second=0, microsecond=0)
        for _ in range(_LIMIT_STEPS):
            if t.month not in self.months:
                t = t.replace(day=1, hour=0, minute=0) - timedelta(minutes=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) - timedelta(minutes=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) - timedelta(minutes=1)
            elif t.minute not in self.minutes:
                t -= timedelta(minutes=1)
            else:
                return t
        raise LabError("cron schedule never matches (e.g. 30 February): fix the schedule")
