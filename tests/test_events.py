"""The canonical envelope: conversion, clock skew, deterministic ids, precise reasons, limits."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from pinsignal.events import (
    MAX_DEPTH,
    MAX_ID,
    MAX_ITEMS,
    MAX_KEYS,
    MAX_REASONS,
    MAX_STRING,
    EnvelopeError,
    iso_time,
    parse_envelope,
    parse_time,
    snake_event_name,
)

RECEIVED = 1_795_000_000.0  # 2026-11-18T11:06:40Z


def segment_track() -> dict[str, Any]:
    """What analytics.js sends for a track call (camelCase, traits in context)."""
    return {
        "type": "track", "event": "Order Completed", "messageId": "ajs-1", "anonymousId": "anon-1",
        "userId": "u-42", "timestamp": "2026-11-18T11:06:00.000Z", "sentAt": "2026-11-18T11:06:10.000Z",
        "properties": {"revenue": 72.39, "currency": "USD",
                       "products": [{"product_id": "sku-1", "price": 14.99, "quantity": 3}]},
        "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0", "page": {"url": "https://shop.example/"},
                    "traits": {"email": "jane@example.com"}},
        "integrations": {"All": True}, "writeKey": "abc", "_metadata": {"bundled": []}, "version": 2,
    }


def reasons_for(raw: object) -> list[str]:
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(raw, received_at=RECEIVED)
    return caught.value.reasons


def test_segment_names_are_converted_and_extras_dropped() -> None:
    envelope = parse_envelope(segment_track(), received_at=RECEIVED)
    assert envelope["type"] == "track"
    assert envelope["event"] == "order_completed"
    assert envelope["message_id"] == "ajs-1"
    assert envelope["anonymous_id"] == "anon-1"
    assert envelope["user_id"] == "u-42"
    assert envelope["traits"] == {"email": "jane@example.com"}  # from context.traits
    assert envelope["context"]["userAgent"] == "Mozilla/5.0"  # context keeps Segment's names
    for dropped in ("integrations", "writeKey", "_metadata", "version", "messageId", "sentAt", "sent_at"):
        assert dropped not in envelope


def test_clock_skew_is_corrected_with_sent_at() -> None:
    # The client clock is 10 s behind what it said at sending: timestamp - sent_at + received_at.
    envelope = parse_envelope(segment_track(), received_at=RECEIVED)
    assert envelope["timestamp"] == iso_time(RECEIVED - 10)
    assert envelope["timestamp"] == "2026-11-18T11:06:30.000Z"
    assert envelope["received_at"] == "2026-11-18T11:06:40.000Z"
    assert envelope["original_timestamp"] == "2026-11-18T11:06:00.000Z"


def test_timestamp_forms() -> None:
    base = {"type": "page"}
    assert parse_envelope(base, received_at=RECEIVED)["timestamp"] == iso_time(RECEIVED)
    for stamp in (1795000000, 1795000000000, "1795000000", "2026-11-18T11:06:40Z", "2026-11-18T12:06:40+01:00",
                  "2026-11-18T11:06:40"):
        envelope = parse_envelope({**base, "timestamp": stamp}, received_at=RECEIVED + 99)
        assert envelope["timestamp"] == "2026-11-18T11:06:40.000Z", stamp
    envelope = parse_envelope({**base, "originalTimestamp": "2026-11-18T11:06:40Z"}, received_at=RECEIVED + 5)
    assert envelope["timestamp"] == "2026-11-18T11:06:40.000Z"


def test_snake_case_wins_over_camel_case() -> None:
    envelope = parse_envelope({"type": "page", "message_id": "snake", "messageId": "camel"}, received_at=RECEIVED)
    assert envelope["message_id"] == "snake"


def test_page_calls_keep_name_and_category_and_drop_event() -> None:
    envelope = parse_envelope({"type": "page", "name": "Kitchen", "category": "Category", "event": "x"},
                              received_at=RECEIVED)
    assert (envelope["name"], envelope["category"]) == ("Kitchen", "Category")
    assert "event" not in envelope
    identify = parse_envelope({"type": "identify", "userId": 42, "traits": {"email": "a@b.co"}, "name": "x"},
                              received_at=RECEIVED)
    assert identify["user_id"] == "42" and "name" not in identify


@pytest.mark.parametrize(("name", "snake"), [
    ("Order Completed", "order_completed"), ("orderCompleted", "order_completed"),
    ("order-completed", "order_completed"),
    ("order_completed", "order_completed"), ("  Products Searched ", "products_searched"), ("Sign Up!", "sign_up"),
])
def test_event_names_become_snake_case(name: str, snake: str) -> None:
    assert snake_event_name(name) == snake


def test_missing_message_id_is_deterministic_from_content() -> None:
    raw = segment_track()
    del raw["messageId"]
    first = parse_envelope(copy.deepcopy(raw), received_at=RECEIVED)["message_id"]
    resent = dict(raw, sentAt="2026-11-18T11:10:00.000Z")  # a retry: same payload, later send
    again = parse_envelope(resent, received_at=RECEIVED + 300)["message_id"]
    assert first == again and first.startswith("ps-") and len(first) == 35
    other = dict(raw, properties={**raw["properties"], "revenue": 80})
    assert parse_envelope(other, received_at=RECEIVED)["message_id"] != first


def test_reasons_are_precise_and_all_reported() -> None:
    raw = {
        "type": "track", "event": "", "propeties": {}, "timestamp": "yesterday", "userId": ["x"],
        "properties": {"revenue": "abc", "quantity": 1.5, "total": "12.50", "price": None,
                       "products": [{"price": "x", "quantity": "2"}, "sku-9"]},
        "traits": "jane", "sentAt": {},
    }
    assert reasons_for(raw) == [
        "'propeties': unknown top-level key; did you mean 'properties'?",
        "event: a track call needs an event name, got ''",
        "user_id: expected a string, got an array of 1",
        "traits: expected an object, got 'jane'",
        "properties.revenue: expected a number, got 'abc'",
        "properties.quantity: expected an integer, got 1.5",
        "properties.products[0].price: expected a number, got 'x'",
        "properties.products[1]: expected a product object, got 'sku-9'",
        "timestamp: expected an ISO-8601 time like '2026-11-29T12:00:00Z' or epoch seconds, got 'yesterday'",
        "sent_at: expected an ISO-8601 time like '2026-11-29T12:00:00Z' or epoch seconds, got an object",
    ]


@pytest.mark.parametrize(("raw", "reason"), [
    ([], "the event must be a JSON object, got an array of 0"),
    ("track", "the event must be a JSON object, got 'track'"),
    ({}, "type: required; use 'track', 'page' or 'identify'"),
    ({"type": "screen"}, "type: 'screen' is not supported; use 'track', 'page' or 'identify'"),
    ({"type": "track"}, "event: a track call needs an event name, got null"),
    ({"type": "track", "event": "x" * (MAX_ID + 1)}, f"event: longer than {MAX_ID} characters ({MAX_ID + 1})"),
    ({"type": "page", "messageId": "m" * 201}, "message_id: longer than 200 characters (201)"),
    ({"type": "page", "name": 5}, "name: expected a string of at most 200 characters, got 5"),
    ({"type": "page", "timestamp": 10**20}, "timestamp: expected an ISO-8601 time"),
    ({"type": "page", "properties": {"note": "x" * (MAX_STRING + 1)}},
     f"properties.note: string longer than {MAX_STRING} characters"),
    ({"type": "page", "properties": {f"k{i}": i for i in range(MAX_KEYS + 1)}},
     f"properties: more than {MAX_KEYS} keys"),
    ({"type": "page", "properties": {"products": [{}] * (MAX_ITEMS + 1)}},
     f"properties.products: more than {MAX_ITEMS} items"),
    ({"type": "page", "properties": {"a": float("nan")}}, "properties.a: expected a finite number, got nan"),
    ({"type": "page", "properties": {"a": {1, 2}}}, "properties.a: expected a JSON value, got a set"),
    ({"type": "page", "properties": {3: "x"}}, "properties: keys must be strings, got 3"),
    ({"type": "page", 3: "x"}, "keys must be strings, got 3"),
])
def test_single_reasons(raw: object, reason: str) -> None:
    reasons = reasons_for(raw)
    assert len(reasons) == 1 and reasons[0].startswith(reason), reasons


def test_depth_limit() -> None:
    nested: dict[str, Any] = {"leaf": 1}
    for _ in range(MAX_DEPTH - 2):  # properties is level 2
        nested = {"n": nested}
    parse_envelope({"type": "page", "properties": nested}, received_at=RECEIVED)
    reasons = reasons_for({"type": "page", "properties": {"n": nested}})
    assert reasons == [f"properties{'.n' * (MAX_DEPTH - 1)}: nested deeper than {MAX_DEPTH} levels"]


def test_reason_count_is_bounded() -> None:
    raw = {"type": "page", "properties": {f"k{i}": "x" * (MAX_STRING + 1) for i in range(50)}}
    reasons = reasons_for(raw)
    assert len(reasons) == MAX_REASONS + 1
    assert reasons[-1] == f"... and {50 - MAX_REASONS} more problems"


def test_numeric_strings_and_nulls_are_accepted_unchanged() -> None:
    raw = {"type": "track", "event": "x", "properties": {"revenue": " 12.50 ", "quantity": "3", "tax": None},
           "context": None}
    envelope = parse_envelope(raw, received_at=RECEIVED)
    assert envelope["properties"]["revenue"] == " 12.50 "
    assert envelope["context"] == {}


def test_input_is_not_mutated() -> None:
    raw = segment_track()
    before = copy.deepcopy(raw)
    parse_envelope(raw, received_at=RECEIVED)
    assert raw == before


def test_parse_time() -> None:
    assert parse_time("2026-11-18T11:06:40Z") == RECEIVED
    assert parse_time(RECEIVED * 1000) == RECEIVED
    assert parse_time(True) is None and parse_time("soon") is None and parse_time(float("inf")) is None
    assert iso_time(RECEIVED + 0.1234) == "2026-11-18T11:06:40.123Z"
    assert iso_time(RECEIVED + 0.9999) == "2026-11-18T11:06:41.000Z"


def test_digits_that_are_not_ascii_are_not_a_time() -> None:
    # str.isdigit() takes superscripts and Arabic-Indic digits; float() of them raised ValueError (a 5xx)
    assert parse_time("\u00b9") is None and parse_time("\u0663\u0663") is None
    with pytest.raises(EnvelopeError):
        parse_envelope({"type": "track", "event": "x", "timestamp": "\u00b9"}, received_at=RECEIVED)


@settings(max_examples=300, deadline=None)
@given(seconds=st.floats(min_value=-86400 * 365, max_value=7_000 * 365 * 86400, allow_nan=False))
def test_times_formatted_here_read_back_as_the_parser_reads_them(seconds: float) -> None:
    # iso_time remembers the value of each text it makes, for parse_time: it must be the parser's value.
    text = iso_time(seconds)
    assert parse_time(text) == datetime.fromisoformat(text).timestamp()
    assert iso_time(seconds) == text  # the repeat (one remembered call) gives the same text


def test_the_server_context_replaces_the_events_own() -> None:
    raw = segment_track()
    envelope = parse_envelope(raw, received_at=RECEIVED, context={"ip": "203.0.113.9"})
    assert envelope["context"] == {"ip": "203.0.113.9"}
    with pytest.raises(EnvelopeError):
        parse_envelope(raw, received_at=RECEIVED, context={"x" * 300: 1})
