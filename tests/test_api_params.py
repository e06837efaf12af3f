"""Query parameters read the way the Kubernetes API server reads them."""

from __future__ import annotations

import pytest

from lab.api.reads import bool_param
from lab.api.status import ApiError


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("False", False), ("", False)])
def test_boolean_query_parameters_read_as_kubernetes_reads_them(value: str, expected: bool) -> None:
    assert bool_param({"watch": value}, "watch") is expected


@pytest.mark.parametrize("value", ["yes", "on", "maybe"])
def test_boolean_query_parameters_kubernetes_refuses_are_refused(value: str) -> None:
    with pytest.raises(ApiError) as caught:
        bool_param({"watch": value}, "watch")
    assert caught.value.code == 400
