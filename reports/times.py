"""Timestamp formatting shared by the summary, the report and the plots.

Every wall-clock time in the data model is seconds since the epoch, UTC. People read
them as ISO-8601 with a ``Z`` suffix (millisecond precision); ``None`` stays ``None``.
``parse_time`` accepts either form, for ``run.json`` fields written by other tools.
Both are :mod:`common.times`, the project's one implementation, re-exported here.
"""

from __future__ import annotations

from common.times import parse_time, utc_iso

__all__ = ["parse_time", "utc_iso"]
