"""The v5 events contract: schema shape (from openapi.yaml) and the documented rules."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pinsignal.pinterest import contract
from pinsignal.pinterest.contract import (
    HASHED_FIELDS,
    MAX_EVENT_AGE,
    MAX_FUTURE_SKEW,
    STANDARD_EVENT_NAMES,
    is_expired,
    request_schema_errors,
    rule_errors,
    schema_errors,
    validate_event,
)
from pinsignal.pinterest.schema import SCHEMA_FILE

NOW = 1_795_000_000.0
HASH = "411e44ce1261728ffd2c0686e44e3fffe413c0e2c5adc498bc7da883d476b9c8"
ROOT = Path(__file__).resolve().parents[2]


def valid_event() -> dict[str, Any]:
    """The reference's own example request event (pinterest-api.md 3.7), with a fresh time."""
    return {
        "event_name": "checkout",
        "action_source": "web",
        "event_time": int(NOW) - 60,
        "event_id": "order-1001",
        "event_source_url": "https://www.my-clothing-shop.org/checkout?epik=dj0yJnU9",
        "partner_name": "ss-partnername",
        "user_data": {
            "em": [HASH],
            "ph": ["45df139772a81b6011bdc1c9cc3d1cb408fc0b10ec0c5cb9d4d4e107f0ddc49d"],
            "client_ip_address": "216.3.128.12",
            "client_user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0 Safari/537.36",
            "click_id": "dj0yJnU9b2JDcFFHekV4SHJNcmVrbFBkUEdqakh0akdUT1VjVVUmcD0yJm49cnNBQ3F2Q2dOVDBXWWhkWklr",
        },
        "custom_data": {
            "currency": "USD",
            "value": "72.39",
            "content_ids": ["product-id-001"],
            "contents": [{"id": "product-id-001", "item_price": "14.99", "quantity": 3}],
            "num_items": 3,
            "order_id": "order-1001",
        },
    }


def with_change(path: str, value: Any) -> dict[str, Any]:
    event = valid_event()
    *parents, last = path.split(".")
    node: Any = event
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return event


DELETE = object()


def test_the_reference_example_is_valid() -> None:
    assert validate_event(valid_event(), now=NOW) == []


def test_every_app_and_device_field_of_the_schema_is_accepted() -> None:
    event = valid_event()
    event.update(
        app_id="429047995", app_name="Pinterest", app_version="7.9", device_brand="Apple", device_carrier=None,
        device_model="iPhone X", device_type="iPhone", os_version="12.1.4", wifi=False, language="en",
        opt_out=False,
        app_info={"app_id": "1", "app_name": "x", "app_package_name": "com.x", "app_store": "Apple App Store",
                  "app_version": "1", "install_time": 1739222269, "user_agent": "ua", "window_height": 900,
                  "window_width": 30720},
        device_info={"battery_level": 78, "form_factor": "cellphone", "network_type": "wifi", "os_family": "ios",
                     "languages": ["en", "de"], "locale": "en-us", "screen_density": 400, "cpu_cores": 8},
    )
    event["custom_data"].update(content_name=None, predicted_ltv="2794.82", opt_out_type="LDP", np=None,
                                search_string="shirts", content_category="shirts", content_brand="p",
                                external_measurement_vendor_id=1)
    event["user_data"].update(partner_id=None, click_id=None, hashed_maids=[HASH], customer_type="new")
    assert validate_event(event, now=NOW) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("event_name", DELETE, "event_name: required field is missing"),
        ("action_source", DELETE, "action_source: required field is missing"),
        ("event_time", DELETE, "event_time: required field is missing"),
        ("user_data", DELETE, "user_data: required field is missing"),
        ("event_id", DELETE, "event_id: required field is missing"),
        ("custom_data.value", 72.39, "custom_data.value: expected a string, got 72.39"),
        ("custom_data.contents.0.item_price", 14.99, "custom_data.contents[0].item_price: expected a string, got 14"),
        ("custom_data.contents.0.quantity", "3", "custom_data.contents[0].quantity: expected an integer, got '3'"),
        ("custom_data.num_items", 3.0, "custom_data.num_items: expected an integer, got 3.0"),
        ("custom_data.num_items", True, "custom_data.num_items: expected an integer, got true"),
        ("custom_data.content_ids", "sku", "custom_data.content_ids: expected an array, got 'sku'"),
        ("custom_data.content_ids", None, "custom_data.content_ids: expected an array, got null"),
        ("custom_data.category_name", "x", "custom_data.category_name: unknown field; did you mean 'content_name'?"),
        ("custom_data.contents.0.sku", "x", "custom_data.contents[0].sku: unknown field; allowed: id, item_brand"),
        ("event_time", "1735689600", "event_time: expected an integer, got '1735689600'"),
        ("event_time", 2**63, "event_time: expected a value of at most 9223372036854775807"),
        ("user_data.em", HASH, "user_data.em: expected an array, got '411e44ce"),
        ("user_data.em", [1], "user_data.em[0]: expected a string, got 1"),
        ("user_data.click_id", ["x"], "user_data.click_id: expected a string, got an array of 1"),
        ("opt_out", "no", "opt_out: expected a boolean, got 'no'"),
        ("event_source_url", None, None),
        ("user_data.madeup_key", "kept", None),
        ("referrer", "x", "referrer: unknown field; allowed: action_source"),
    ],
)
def test_schema_violations_have_precise_messages(path: str, value: Any, message: str | None) -> None:
    errors = schema_errors(with_change(path, value))
    if message is None:
        assert errors == []
    else:
        assert len(errors) == 1, errors
        assert errors[0].startswith(message), errors


def test_app_and_device_ranges_and_enums() -> None:
    event = valid_event()
    event["app_info"] = {"window_width": 30721, "install_time": -1, "app_store": "x" * 101}
    event["device_info"] = {"form_factor": "phone", "battery_level": 101, "languages": ["en"] * 101}
    assert sorted(schema_errors(event, path="data[2]")) == [
        "data[2].app_info.app_store: expected at most 100 characters, got 101",
        "data[2].app_info.install_time: expected a value of at least 0, got -1",
        "data[2].app_info.window_width: expected a value of at most 30720, got 30721",
        "data[2].device_info.battery_level: expected a value of at most 100, got 101",
        "data[2].device_info.form_factor: expected one of desktop, laptop, cellphone, tablet, smartwatch, tv, vr, "
        "console, other, got 'phone'",
        "data[2].device_info.languages: expected at most 100 items, got 101",
    ]


@pytest.mark.parametrize(
    ("user_data", "ok"),
    [
        ({"em": [HASH]}, True),
        ({"hashed_maids": [HASH]}, True),
        ({"client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0"}, True),
        ({"client_ip_address": "203.0.113.9"}, False),
        ({"client_user_agent": "Mozilla/5.0"}, False),
        ({"ph": [HASH], "external_id": [HASH], "click_id": "x"}, False),
        ({}, False),
    ],
)
def test_minimum_match_keys(user_data: dict[str, Any], ok: bool) -> None:
    errors = schema_errors(with_change("user_data", user_data))
    expected = [] if ok else [
        "user_data: needs at least one match key: em, or hashed_maids, or client_ip_address with client_user_agent"
    ]
    assert errors == expected


def test_non_objects_are_rejected_without_crashing() -> None:
    for value in (None, [], "event", 3):
        assert schema_errors(value) and schema_errors(value)[0].startswith("event: expected an object")
        assert rule_errors(value, now=NOW) == []
    assert schema_errors(with_change("user_data", "me"))[0] == "user_data: expected an object, got 'me'"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("event_time", int(NOW * 1000), "event_time: 1795000000000 looks like milliseconds; send Unix seconds"),
        ("event_time", int(NOW) - MAX_EVENT_AGE - 1, "event_time: 1794395199 is 7.0 days old"),
        ("event_time", int(NOW) + MAX_FUTURE_SKEW + 10, "event_time: 1795000310 is 310 seconds in the future"),
        ("event_name", "subscription", "event_name: unknown event name 'subscription'; did you mean 'subscribe'?"),
        ("event_name", "purchase", "event_name: unknown event name 'purchase'; use a standard name"),
        ("event_name", "Checkout", "event_name: unknown event name 'Checkout'; did you mean 'checkout'?"),
        ("action_source", "website", "action_source: unknown action source 'website'; use one of app_android"),
        ("event_id", " ", "event_id: must not be empty"),
        ("user_data.em", ["jane@example.com"], "user_data.em[0]: expected a SHA-256 digest (64 lowercase hex"),
        ("user_data.ph", [HASH.upper()], "user_data.ph[0]: expected a SHA-256 digest"),
        ("user_data.client_ip_address", "999.1.1.1", "user_data.client_ip_address: expected an IPv4 or IPv6"),
        ("user_data.client_ip_address", "0.0.0.0", "user_data.client_ip_address: '0.0.0.0' is the unspecified"),
        ("user_data.client_user_agent", "", "user_data.client_user_agent: must not be empty"),
        ("custom_data.value", "abc", "custom_data.value: expected a decimal string like '72.39', got 'abc'"),
        ("custom_data.value", "0", "custom_data.value: expected a positive amount, got '0'"),
        ("custom_data.value", "-5.00", "custom_data.value: expected a positive amount, got '-5.00'"),
        ("custom_data.value", "1e3", "custom_data.value: expected a decimal string"),
        ("custom_data.contents.0.item_price", "-1", "custom_data.contents[0].item_price: expected a non-negative"),
        ("custom_data.contents.0.quantity", -1, "custom_data.contents[0].quantity: expected a non-negative integer"),
        ("custom_data.num_items", -2, "custom_data.num_items: expected a non-negative integer, got -2"),
        ("custom_data.currency", "usd", "custom_data.currency: expected a three-letter ISO-4217 code"),
    ],
)
def test_rule_violations_have_precise_messages(path: str, value: Any, message: str) -> None:
    event = with_change(path, value)
    assert schema_errors(event) == []
    errors = rule_errors(event, now=NOW)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message), errors


def test_rules_accept_the_edges() -> None:
    for event_time in (int(NOW) - MAX_EVENT_AGE, int(NOW) + MAX_FUTURE_SKEW):
        assert rule_errors(with_change("event_time", event_time), now=NOW) == []
    assert rule_errors(with_change("custom_data.contents.0.item_price", "0"), now=NOW) == []
    assert rule_errors(with_change("custom_data.value", "0.01"), now=NOW) == []
    assert rule_errors(with_change("user_data.client_ip_address", "2001:db8::1"), now=NOW) == []


def test_hashed_field_errors_never_quote_the_raw_value() -> None:
    errors = rule_errors(with_change("user_data.em", ["jane.doe@example.com"]), now=NOW)
    assert errors and "jane" not in errors[0]


def test_every_reason_is_reported_with_a_prefix() -> None:
    event = with_change("custom_data.value", 72.39)
    event["event_name"] = "buy"
    event["user_data"] = {"em": ["x"]}
    del event["event_id"]
    errors = validate_event(event, now=NOW, path="data[0]")
    assert errors == [
        "data[0].event_id: required field is missing",
        "data[0].custom_data.value: expected a string, got 72.39",
        "data[0].event_name: unknown event name 'buy'; "
        "use a standard name such as 'checkout', 'page_visit' or 'custom'",
        "data[0].user_data.em[0]: expected a SHA-256 digest (64 lowercase hex characters), got a 1-character value; "
        "hash it with transform normalised_sha256",
    ]


def test_request_body_shape() -> None:
    assert request_schema_errors({"data": [valid_event()]}) == []
    assert request_schema_errors({"data": []}) == ["data: expected at least 1 item(s), got 0"]
    assert request_schema_errors({"data": [valid_event()] * 1001}) == ["data: expected at most 1000 items, got 1001"]
    assert request_schema_errors({"data": [valid_event()], "test": True}) == ["test: unknown field; allowed: data"]
    assert request_schema_errors({}) == ["data: required field is missing"]
    assert request_schema_errors([1])[0].startswith("request body: expected an object")
    bad = valid_event()
    bad["custom_data"]["value"] = 1
    errors = request_schema_errors({"data": [valid_event(), bad]})
    assert errors == ["data[1].custom_data.value: expected a string, got 1"]


def test_expiry() -> None:
    assert not is_expired(valid_event(), NOW)
    assert is_expired(with_change("event_time", int(NOW) - MAX_EVENT_AGE - 1), NOW)
    assert not is_expired(with_change("event_time", "old"), NOW)
    assert not is_expired("not an event", NOW)


def test_constants() -> None:
    assert len(contract.SPEC_EVENT_NAMES) == 15
    assert len(STANDARD_EVENT_NAMES) == 22
    assert {"contact", "start_trial", "app_open"} <= STANDARD_EVENT_NAMES
    assert "click_id" not in HASHED_FIELDS and len(HASHED_FIELDS) == 12


def test_validation_does_not_mutate_the_event() -> None:
    event = with_change("custom_data.value", 5)
    before = copy.deepcopy(event)
    validate_event(event, now=NOW)
    assert event == before


def test_committed_schema_matches_the_openapi_file(tmp_path: Path) -> None:
    """The JSON inside the package is what the extraction script makes from openapi.yaml.

    The regeneration half needs the shared reference folder beside the checkout; the structural
    half always runs.
    """
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    document = json.loads(committed)
    assert document["root"] == "ConversionEvents"
    assert set(document["schemas"]) == {
        "ConversionEvents", "ConversionEventsUserData", "ConversionEventsUserDataProperties",
        "ConversionEventAppInfo", "ConversionEventDeviceInfo",
    }
    assert "5.23.0" in document["source"]
    source = ROOT.parent / "shared" / "reference" / "openapi.yaml"
    if source.is_file():
        script = ROOT / "scripts" / "extract_events_schema.py"
        copy_of_script = tmp_path / "scripts" / script.name
        copy_of_script.parent.mkdir()
        copy_of_script.write_text(script.read_text(encoding="utf-8"), encoding="utf-8")
        target = tmp_path / "middleware" / "pinsignal" / "pinterest"
        target.mkdir(parents=True)
        subprocess.run([sys.executable, str(copy_of_script), str(source)], check=True, capture_output=True)
        assert (target / "events_schema.json").read_text(encoding="utf-8") == committed


def test_one_field_at_a_time_from_the_same_schema_and_rules() -> None:
    # What pipelines' own checks are made of (pipeline/checks.py): a field's node of the same document,
    # fastjsonschema's yes/no of it, and the rules' closures at its path.
    from pinsignal.pinterest.schema import field_ok, field_schema

    assert field_schema("custom_data.value") == {"type": ["string", "null"]}
    assert field_schema("user_data.em") == {"type": "array", "items": {"type": "string"}}  # through allOf/$ref
    assert field_schema("user_data")["anyOf"][0] == {"required": ["em"]}
    assert field_schema("custom_data.nope") is None and field_schema("nope.value") is None
    assert field_ok("device_info.form_factor")("tablet") and not field_ok("device_info.form_factor")("fridge")
    assert field_ok("custom_data.contents")([{"id": "a", "quantity": 1}])
    assert not field_ok("custom_data.contents")([{"sku": "a"}])
    assert contract.rule_check("custom_data.order_id") is None
    assert contract.rule_check("custom_data.value")("0", NOW) is not None
    assert contract.rule_check("custom_data.value")("0.5", NOW) is None
    assert contract.rule_check("custom_data.contents[].quantity")(-1, NOW) is not None
    assert contract.rule_check("custom_data.contents")([{"item_price": "1"}, {"item_price": "x"}], NOW) is not None
    assert contract.rule_check("user_data.em")(["a" * 64, "A" * 64], NOW) is not None
    assert contract.rule_check("event_time")(int(NOW) - 10 * 86400, NOW) is not None
    with pytest.raises(ValueError):
        contract.rule_check("custom_data[].value")


@pytest.mark.parametrize("value", ["0", "0.0", "00.00", "0.", ".0", "-0", "1", "0.01", "5.", ".5", "10", "007",
                                   "-1", "-0.5", "1e3", "", ".", "1.2.3", "٣", " 1"])
def test_money_without_float_agrees_with_the_decimal_value(value: str) -> None:
    # Plain decimals are judged by their digits (no float()); the verdict is the amount's.
    import re
    from decimal import Decimal

    for positive in (True, False):
        problem = contract._money(value, positive=positive)
        if not re.fullmatch(r"-?[0-9]+(\.[0-9]*)?|-?\.[0-9]+", value):
            assert problem is not None and "decimal string" in problem
        else:
            amount = Decimal(value)
            assert (problem is None) == (amount > 0 if positive else amount >= 0), (value, positive, problem)


def test_remembered_addresses_are_only_good_ones() -> None:
    # The ip rule remembers the addresses it accepted; a refused one is refused again, every time.
    check = contract.rule_check("user_data.client_ip_address")
    for _ in range(2):
        assert check("203.0.113.9", NOW) is None and check("2001:db8::1", NOW) is None
        assert check("0.0.0.0", NOW) is not None and check("::", NOW) is not None
        assert check("203.0.113.300", NOW) is not None and check("", NOW) is not None
