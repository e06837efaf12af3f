"""Reading a Prometheus server and an Alertmanager over their HTTP APIs.

Only what the alert drill needs, with the documented endpoints:

- Prometheus ``GET /api/v1/rules`` (loaded alerting rules, their ``duration``, i.e. the
  rule's ``for:``), ``GET /api/v1/alerts`` (pending and firing alerts, ``activeAt``),
  ``GET /api/v1/status/config`` (the loaded configuration, for the scrape and evaluation
  intervals), ``GET /api/v1/query``;
- Alertmanager ``GET /api/v2/alerts`` (the alerts it holds, ``startsAt``, ``status.state``).

Every failure (refused connection, HTTP error, a body that is not the documented JSON)
is a :class:`probes.errors.ProbeError` naming the URL and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import yaml

from common.times import parse_duration
from probes.errors import ProbeError

__all__ = ["Alert", "AlertRule", "Alertmanager", "Prometheus", "Intervals"]

TIMEOUT = 5.0


@dataclass(frozen=True)
class AlertRule:
    """One loaded alerting rule: its name, group, ``for:`` in seconds, and health."""

    name: str
    group: str
    for_seconds: float
    health: str
    state: str
    last_error: str = ""


@dataclass(frozen=True)
class Alert:
    """One alert as Prometheus (``pending``/``firing``) or Alertmanager (``active``, …) reports it."""

    name: str
    state: str
    labels: dict[str, str]
    active_at: str | None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in labels.items())


@dataclass(frozen=True)
class Intervals:
    """The server's global scrape and rule evaluation intervals, seconds."""

    scrape: float
    evaluation: float


def _get(url: str, what: str, params: Mapping[str, str] | None = None) -> Any:
    try:
        response = requests.get(url, params=params, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise ProbeError(
            f"{what} at {url} cannot be reached ({type(exc).__name__}): check its URL "
            "(prometheus_url / alertmanager_url, or start the lab with its monitoring)"
        ) from None
    if response.status_code != 200:
        raise ProbeError(
            f"{what} at {url} answered HTTP {response.status_code}: check the URL and the server"
        )
    try:
        return response.json()
    except ValueError:
        raise ProbeError(f"{what} at {url} did not answer JSON: is this the right server?") from None


def _data(body: Any, url: str) -> Any:
    if not isinstance(body, Mapping) or body.get("status") != "success":
        raise ProbeError(f"{url} did not answer a Prometheus API success: {str(body)[:200]}")
    return body.get("data")


class Prometheus:
    """A Prometheus server's HTTP API at ``url`` (e.g. ``http://127.0.0.1:9090``)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        url = f"{self.url}{path}"
        return _data(_get(url, "Prometheus", params), url)

    def rules(self) -> list[AlertRule]:
        """Every alerting rule Prometheus has loaded."""
        data = self._api("/api/v1/rules", {"type": "alert"})
        out = []
        for group in (data or {}).get("groups") or []:
            for rule in group.get("rules") or []:
                if rule.get("type") != "alerting":
                    continue
                out.append(
                    AlertRule(
                        name=str(rule.get("name")),
                        group=str(group.get("name")),
                        for_seconds=float(rule.get("duration") or 0.0),
                        health=str(rule.get("health") or "unknown"),
                        state=str(rule.get("state") or "inactive"),
                        last_error=str(rule.get("lastError") or ""),
                    )
                )
        return out

    def alerts(self) -> list[Alert]:
        """Pending and firing alerts."""
        data = self._api("/api/v1/alerts")
        return [
            Alert(
                name=str((a.get("labels") or {}).get("alertname")),
                state=str(a.get("state")),
                labels={str(k): str(v) for k, v in (a.get("labels") or {}).items()},
                active_at=a.get("activeAt"),
            )
            for a in (data or {}).get("alerts") or []
        ]

    def intervals(self) -> Intervals:
        """The global ``scrape_interval`` and ``evaluation_interval`` of the loaded configuration."""
        data = self._api("/api/v1/status/config")
        try:
            config = yaml.safe_load((data or {}).get("yaml") or "") or {}
            glob = config.get("global") or {}
            return Intervals(
                scrape=parse_duration(glob.get("scrape_interval", "1m")),
                evaluation=parse_duration(glob.get("evaluation_interval", "1m")),
            )
        except (yaml.YAMLError, ValueError, AttributeError) as exc:
            raise ProbeError(f"cannot read Prometheus's configuration at {self.url} ({exc})") from None

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector result (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        data = self._api("/api/v1/query", {"query": expr})
        result = (data or {}).get("result")
        return result if isinstance(result, list) else []


class Alertmanager:
    """An Alertmanager's v2 HTTP API at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def alerts(self, name: str | None = None) -> list[Alert]:
        """The alerts Alertmanager holds (active, silenced or inhibited; resolved ones are gone)."""
        url = f"{self.url}/api/v2/alerts"
        params = {"filter": f'alertname="{name}"'} if name else None
        body = _get(url, "Alertmanager", params)
        if not isinstance(body, list):
            raise ProbeError(f"{url} did not answer a list of alerts: is this an Alertmanager?")
        return [
            Alert(
                name=str((a.get("labels") or {}).get("alertname")),
                state=str((a.get("status") or {}).get("state") or "unknown"),
                labels={str(k): str(v) for k, v in (a.get("labels") or {}).items()},
                active_at=a.get("startsAt"),
            )
            for a in body
            if isinstance(a, Mapping)
        ]
