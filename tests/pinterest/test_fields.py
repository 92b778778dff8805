"""Each field's test (pinterest/fields.py) agrees with ``validate_event``, for every writable v5 field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pinsignal.pinterest.contract import validate_event
from pinsignal.pinterest.fields import REQUIRED, USER_DATA_ALTERNATIVES, field_test
from pinsignal.pipeline.spec import TARGETS

NOW = 1_795_000_000.0
DIGEST = "0123456789abcdef" * 4
BASE: dict[str, Any] = {"event_name": "checkout", "action_source": "web", "event_time": int(NOW),
                        "event_id": "e-1", "user_data": {"em": [DIGEST]}}

# Values chosen to sit on every edge the contract draws (types, bounds, formats, empties).
EDGES: list[Any] = [
    None, True, False, 0, 1, -1, 3, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**11, 10**11 - 1,
    int(NOW), int(NOW) - 7 * 86400, int(NOW) - 7 * 86400 - 1, int(NOW) + 300, int(NOW) + 301, 1.5, 0.0, float("nan"),
    "", " ", "\t", "x", "abc", "checkout", "page_visit", "Checkout", "web", "app_ios", "offline", "e-1",
    "72.39", "0", "0.0", "-1", "-0.5", ".5", "5.", "1e3", "+1", "10", "0.00", "00", ".0", "0.", "000.001", "1" * 400,
    "1.2.3", "٣", "1_0", "USD", "usd", "US", "USDX", "ÜSD",
    "203.0.113.9", "0.0.0.0", "::", "::1", "2001:db8::1", "256.1.1.1", "1.2.3", "localhost",
    DIGEST, DIGEST.upper(), DIGEST[:-1], DIGEST + "0", " " + DIGEST, "z" * 64,
    "a" * 101, "a" * 201, "a" * 16385, "desktop", "wifi", "ios", "cellular_5g",
    [], [DIGEST], [DIGEST, DIGEST.upper()], [DIGEST, 1], ["sku-1"], ["sku-1", 2], [None], [[]], ["a"] * 101,
    {}, {"a": 1},
    [{"id": "sku-1", "item_price": "14.99", "quantity": 3}], [{"id": "x", "quantity": -1}],
    [{"id": "x", "quantity": 2**63}], [{"item_price": "0"}], [{"item_price": "-1"}], [{"item_price": "abc"}],
    [{"item_price": 14.99}], [{"item_price": "0.0"}], [{"item_price": "٣"}], [{"item_price": ".5"}],
    [{"id": 1}], [{"sku": "x"}], [{}], ["x"], [{"quantity": True}],
    [{"item_name": "Mug", "item_brand": "B", "item_category": "C"}],
]


def event_with(path: str, value: Any) -> dict[str, Any]:
    event = copy.deepcopy(BASE)
    node = event
    *parents, key = path.split(".")
    for parent in parents:
        node = node.setdefault(parent, {})
    node[key] = value
    return event


def agrees(path: str, value: Any) -> None:
    if value is None:
        return  # pipelines never write None; absent fields are the generated check's business
    expected = validate_event(event_with(path, value), now=NOW) == []
    assert field_test(path).compiled()(value, NOW) == expected, (path, value)


@pytest.mark.parametrize("path", sorted(TARGETS))
def test_every_field_agrees_on_the_edges(path: str) -> None:
    for value in EDGES:
        agrees(path, value)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(EDGES[:60])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "item_price", "quantity", "item_name", "sku", "x"]), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(sorted(TARGETS)), value=json_values)
def test_every_field_agrees_on_generated_values(path: str, value: Any) -> None:
    agrees(path, value)


def test_tuples_are_at_most_refused_more_often() -> None:
    # JSON has no tuples and pipelines write lists; a tuple may be refused where validate_event lets it pass.
    for path in ("user_data.em", "custom_data.contents", "custom_data.content_ids"):
        value = (DIGEST,) if path == "user_data.em" else ()
        if field_test(path).compiled()(value, NOW):
            assert validate_event(event_with(path, value), now=NOW) == []


def test_required_fields_and_user_data_alternatives_come_from_the_schema() -> None:
    assert set(REQUIRED) == {"event_name", "action_source", "event_time", "event_id", "user_data"}
    assert set(USER_DATA_ALTERNATIVES) == {("em",), ("hashed_maids",), ("client_ip_address", "client_user_agent")}
    for key in REQUIRED:
        event = copy.deepcopy(BASE)
        del event[key]
        assert validate_event(event, now=NOW)
