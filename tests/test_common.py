"""The shared basics: UTC times as text, boolean configuration values, CRD coordinates."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import ConfigurationError, boolean, name_list
from common.crd import CONFIGURATION_KEYS, CrdCoordinates
from common.times import format_time, parse_time, require_time, utc_iso

# 2026-11-27T00:01:02.123456Z
EPOCH = 1795737662.123456

# Within these years an epoch float still resolves single microseconds exactly.
moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


# ------------------------------------------------------------------------------ times


def test_format_precisions() -> None:
    assert format_time(EPOCH) == "2026-11-27T00:01:02Z"
    assert format_time(EPOCH, digits=3) == "2026-11-27T00:01:02.123Z"
    assert format_time(EPOCH, digits=6) == "2026-11-27T00:01:02.123456Z"
    assert utc_iso(1700000000.5) == "2023-11-14T22:13:20.500Z"
    assert utc_iso(None) is None


def test_format_cuts_fractions_instead_of_rounding_up() -> None:
    assert format_time(1700000000.9999) == "2023-11-14T22:13:20Z"
    assert format_time(1700000000.9999, digits=3) == "2023-11-14T22:13:20.999Z"


def test_format_defaults_to_now() -> None:
    before = math.floor(datetime.now(UTC).timestamp())
    assert before <= require_time(format_time()) <= before + 2


def test_format_refuses_other_precisions() -> None:
    with pytest.raises(ValueError, match="digits"):
        format_time(EPOCH, digits=2)


@given(moments)
def test_microsecond_round_trip(moment: datetime) -> None:
    epoch = moment.timestamp()
    text = format_time(epoch, digits=6)
    assert text.endswith("Z") and len(text) == len("2026-11-27T00:01:02.123456Z")
    assert parse_time(text) == epoch
    assert datetime.fromtimestamp(require_time(text), UTC) == moment


@given(moments)
def test_coarser_formats_cut_towards_the_past(moment: datetime) -> None:
    epoch = moment.timestamp()
    seconds = require_time(format_time(epoch))
    millis = require_time(format_time(epoch, digits=3))
    assert seconds == moment.replace(microsecond=0).timestamp()
    assert millis == moment.replace(microsecond=moment.microsecond // 1000 * 1000).timestamp()


@given(moments, offsets)
def test_offsets_and_naive_text_read_as_the_same_instant(moment: datetime, offset: timezone) -> None:
    epoch = moment.timestamp()
    assert parse_time(moment.astimezone(offset).isoformat()) == epoch
    assert parse_time(moment.replace(tzinfo=None).isoformat()) == epoch  # naive means UTC
    assert parse_time(moment.isoformat().replace("+00:00", "z")) == epoch


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T00:01:02.123456Z", EPOCH),
        ("2026-11-27T01:01:02.123456+01:00", EPOCH),
        ("2026-11-26T23:01:02.123456-01:00", EPOCH),
        ("2026-11-27T00:01:02.123456", EPOCH),
        ("  2026-11-27T00:01:02.123456z ", EPOCH),
        ("2026-11-27 00:01:02.123456Z", EPOCH),
        ("2026-11-27T00:01:02.123456789Z", EPOCH),  # beyond microseconds is cut
        ("2026-11-27T00:01:02Z", 1795737662.0),
        ("2026-11-27", 1795737600.0),  # a date alone is its midnight UTC
    ],
)
def test_parse_text(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected, abs=1e-6)
    assert require_time(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("number", [0, 1795737662, EPOCH, -1.5])
def test_parse_epoch_numbers(number: float) -> None:
    assert parse_time(number) == float(number)


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "",
        "   ",
        "yesterday",
        "1795737662",
        "2026-13-01T00:00:00Z",
        "2026-11-27T00:01:02+25:00",
        True,
        False,
        math.nan,
        math.inf,
        [EPOCH],
        {"at": EPOCH},
    ],
)
def test_garbage_is_not_a_time(garbage: object) -> None:
    assert parse_time(garbage) is None
    with pytest.raises(ValueError, match="is not a time: use RFC 3339"):
        require_time(garbage)


def test_old_import_paths_are_the_same_functions() -> None:
    from lab.api import fields
    from lab.controllers import loop
    from lab.kubelet import status
    from reports import times

    assert times.utc_iso is utc_iso and times.parse_time is parse_time
    assert fields.parse_time is parse_time and loop.parse_time is parse_time
    assert status.rfc3339(EPOCH) == fields.format_time(EPOCH) == loop.format_time(EPOCH)
    assert status.parse_rfc3339("2026-11-27T00:01:02Z") == 1795737662.0


# ------------------------------------------------------------------------------ booleans


@pytest.mark.parametrize(
    "value", [True, 1, "true", "True", "TRUE", "t", "T", "1", "yes", "Yes", "on", "ON", " true "]
)
def test_boolean_true(value: object) -> None:
    assert boolean(value, default=False) is True


@pytest.mark.parametrize(
    "value", [False, 0, "false", "False", "f", "F", "0", "no", "NO", "off", "Off", " off\n"]
)
def test_boolean_false(value: object) -> None:
    assert boolean(value, default=True) is False


@pytest.mark.parametrize("value", [None, "", "  "])
@pytest.mark.parametrize("default", [True, False])
def test_boolean_unset_is_the_default(value: object, default: bool) -> None:
    assert boolean(value, default=default) is default


@pytest.mark.parametrize("value", ["maybe", "y", "n", "2", "truee", 2, -1, 1.0, [], {"on": True}])
def test_boolean_refuses_anything_else(value: object) -> None:
    with pytest.raises(ValueError, match="is not a boolean: use true/false, yes/no, on/off") as caught:
        boolean(value, default=False)
    assert repr(value) in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)


def test_boolean_names_the_key() -> None:
    with pytest.raises(ConfigurationError, match=r"^allow_node_restart 'sure' is not a boolean"):
        boolean("sure", default=False, name="allow_node_restart")


def test_name_list_moved_but_importable_from_discovery() -> None:
    from loadgen import discovery

    assert discovery.name_list is name_list
    assert name_list("a, b,,") == ["a", "b"] and name_list(["x", " y "]) == ["x", "y"]
    assert name_list(None) == [] and name_list("") == []


# ------------------------------------------------------------------------------ CRD coordinates


def test_crd_defaults() -> None:
    for configuration in (None, {}, dict.fromkeys(CONFIGURATION_KEYS, ""), dict.fromkeys(CONFIGURATION_KEYS)):
        coords = CrdCoordinates.from_configuration(configuration)
        assert coords == CrdCoordinates()
    coords = CrdCoordinates()
    assert (coords.group, coords.version, coords.api_version) == (
        "mssql.example.com",
        "v1alpha1",
        "mssql.example.com/v1alpha1",
    )
    assert (coords.plural, coords.backup_policy_plural, coords.backup_plural, coords.restore_plural) == (
        "mssqlinstances",
        "mssqlbackuppolicies",
        "mssqlbackups",
        "mssqlrestores",
    )
    assert coords.endpoint_path == "status.endpoint"
    assert coords.secret_path == "status.credentialsSecret"
    assert coords.database_path == "status.database"
    assert coords.ready_path == coords.policy_ready_path == "status.conditions[type=Ready].status"


def test_crd_overrides_keep_their_configuration_keys() -> None:
    configuration: dict[str, Any] = {
        "mssql_group": "sql.vendor.io",
        "mssql_version": "v2",
        "mssql_plural": "sqlservers",
        "backup_policy_plural": "policies",
        "backup_plural": "backups",
        "restore_plural": " restores ",
        "endpoint_path": "status.connection.endpoint",
        "secret_path": "spec.secretName",
        "database_path": "spec.db",
        "ready_path": "status.ready",
        "policy_ready_path": "status.phase",
        "namespace": "elsewhere",  # not a coordinate: ignored
    }
    coords = CrdCoordinates.from_configuration(configuration)
    assert coords == CrdCoordinates(
        group="sql.vendor.io",
        version="v2",
        plural="sqlservers",
        backup_policy_plural="policies",
        backup_plural="backups",
        restore_plural="restores",
        endpoint_path="status.connection.endpoint",
        secret_path="spec.secretName",
        database_path="spec.db",
        ready_path="status.ready",
        policy_ready_path="status.phase",
    )
    assert coords.api_version == "sql.vendor.io/v2"
    partial = CrdCoordinates.from_configuration({"mssql_version": "v1"})
    assert partial == CrdCoordinates(version="v1")


@pytest.mark.parametrize("value", [1, 1.5, True, ["v1"], {"v": 1}])
def test_crd_value_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(
        ConfigurationError, match=r"configuration key mssql_version must be a string"
    ) as caught:
        CrdCoordinates.from_configuration({"mssql_version": value})
    assert repr(value) in str(caught.value) and "'v1alpha1'" in str(caught.value)


def test_crd_one_class_for_every_caller() -> None:
    from lab import cluster
    from lab.operator import objects, protection
    from loadgen import discovery

    assert discovery.CrdCoordinates is CrdCoordinates
    defaults = CrdCoordinates()
    assert cluster.INSTANCES == objects.INSTANCES
    assert (objects.INSTANCES.group, objects.INSTANCES.version, objects.INSTANCES.plural) == (
        defaults.group,
        defaults.version,
        defaults.plural,
    )
    assert [k.plural for k in (protection.POLICIES, protection.BACKUPS, protection.RESTORES)] == [
        defaults.backup_policy_plural,
        defaults.backup_plural,
        defaults.restore_plural,
    ]


def test_durations_read_as_prometheus_writes_them() -> None:
    from common.times import parse_duration

    assert parse_duration("1m") == 60 and parse_duration("1h30m") == 5400 and parse_duration("500ms") == 0.5
    assert parse_duration("0s") == 0 and parse_duration(5) == 5.0
    for bad in ("", "1x", "1m junk", "m", True, -1, float("nan")):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(bad)
