"""The envelope's fast paths give what the general code gives.

* ``_fits_decoded`` (the size walk for events decoded from JSON, which the collector uses) says
  what ``_fits`` says about any decoded value, checked with the limits shrunk so that Hypothesis
  reaches every one of them;
* a raw event whose keys are all canonical is copied at once; the per-key loop (forced here by an
  ignored Segment key) gives the same envelope or the same reasons;
* the products' typed fields, written out, give the reasons of the former loop over them;
* the collector passes ``decoded=True`` and still answers over-limit events with the same reasons.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pinsignal import events
from pinsignal.errors import EnvelopeError
from pinsignal.events import parse_envelope

# Decoded JSON only: what orjson.loads can give (finite floats, string keys).
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=7))
decoded = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=40,
).map(lambda value: orjson.loads(orjson.dumps(value)))


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "MAX_DEPTH", 4)
    monkeypatch.setattr(events, "MAX_KEYS", 3)
    monkeypatch.setattr(events, "MAX_ITEMS", 3)
    monkeypatch.setattr(events, "MAX_ID", 4)
    monkeypatch.setattr(events, "MAX_STRING", 5)


@settings(max_examples=600, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.lists(decoded, max_size=5), st.dictionaries(st.text(max_size=6), decoded, max_size=5)),
       depth=st.integers(min_value=1, max_value=5))
def test_the_decoded_size_walk_agrees_with_the_general_one(small_limits: None, value: Any, depth: int) -> None:
    value = orjson.loads(orjson.dumps(value))
    assert events._fits_decoded(value, depth) == events._fits(value, depth)


def test_the_decoded_size_walk_at_the_real_limits() -> None:
    def agree(value: Any) -> bool:
        verdict = events._fits(value, 2)
        assert events._fits_decoded(value, 2) == verdict
        return verdict

    assert agree({"a": "x" * events.MAX_STRING}) and not agree({"a": "x" * (events.MAX_STRING + 1)})
    assert agree({"k" * events.MAX_ID: 1}) and not agree({"k" * (events.MAX_ID + 1): 1})
    assert agree({str(n): n for n in range(events.MAX_KEYS)})
    assert not agree({str(n): n for n in range(events.MAX_KEYS + 1)})
    assert agree({"a": list(range(events.MAX_ITEMS))}) and not agree({"a": list(range(events.MAX_ITEMS + 1))})
    nested: Any = 1
    for _ in range(events.MAX_DEPTH - 1):  # levels 2 .. MAX_DEPTH at depth 2
        nested = {"a": nested}
    assert agree({"a": nested}) is False and agree(nested) is True


def _outcome(raw: Any, **options: Any) -> Any:
    try:
        return parse_envelope(raw, received_at=1_796_000_000.0, **options)
    except EnvelopeError as error:
        return error.reasons


canonical = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["track", "page", "identify", "other", 3]),
    "event": st.one_of(st.sampled_from(["Order Completed", "order_completed", "orderCompleted", " ", ""]),
                       st.text(max_size=8), st.integers()),
    "name": st.one_of(st.text(max_size=8), st.none()), "category": st.text(max_size=8),
    "message_id": st.one_of(st.text(max_size=8), st.integers(), st.none()),
    "anonymous_id": st.text(max_size=8), "user_id": st.one_of(st.text(max_size=8), st.integers()),
    "timestamp": st.one_of(st.just("2026-11-29T12:00:00Z"), st.integers(), st.text(max_size=5)),
    "original_timestamp": st.just("2026-11-29T11:00:00Z"), "sent_at": st.just("2026-11-29T12:00:01Z"),
    "properties": st.one_of(decoded, st.fixed_dictionaries({}, optional={
        "revenue": scalars, "quantity": scalars, "products": st.one_of(decoded, st.lists(st.one_of(
            scalars, st.fixed_dictionaries({}, optional={"price": scalars, "quantity": scalars, "position": scalars,
                                                         "product_id": scalars})), max_size=3))})),
    "traits": decoded, "context": decoded,
})


@settings(max_examples=500)
@given(raw=canonical)
def test_canonical_keys_are_copied_as_the_loop_would(raw: dict[str, Any]) -> None:
    # "integrations" is dropped without a word, but sends the event through the per-key loop.
    assert _outcome(raw, decoded=True) == _outcome({**raw, "integrations": {"All": True}}, decoded=True)
    assert _outcome(raw) == _outcome({**raw, "integrations": {"All": True}}) == _outcome(raw, decoded=True)


def _former_product_reasons(properties: dict[str, Any]) -> list[str]:
    """The loop over (field, kind) pairs that the written-out product checks replaced."""
    reasons: list[str] = []
    products = properties.get("products")
    if type(products) is not list:
        return reasons
    for index, product in enumerate(products):
        if type(product) is not dict:
            continue
        for key, wanted in (("price", "a number"), ("quantity", "an integer"), ("position", "an integer")):
            value = product.get(key)
            if value is not None and type(value) is not int and not events._KIND_TESTS[wanted](value):
                reasons.append(f"properties.products[{index}].{key}: expected {wanted}, got "
                               f"{events._show(product[key])}")
    return reasons


product_values = st.one_of(scalars, st.sampled_from(["3", " 2 ", "1.5", "x", "-4", 2.0, 2.5, True]))


@settings(max_examples=400)
@given(products=st.lists(st.fixed_dictionaries({}, optional={
    "price": product_values, "quantity": product_values, "position": product_values}), max_size=4))
def test_product_fields_give_the_former_reasons(products: list[dict[str, Any]]) -> None:
    reasons: list[str] = []
    events._check_properties({"products": products}, reasons)
    assert [reason for reason in reasons if ".products[" in reason] == _former_product_reasons({"products": products})


def test_event_names_are_remembered_and_stay_the_same() -> None:
    for _ in range(2):
        envelope = parse_envelope({"type": "track", "event": "Order Completed"}, received_at=0)
        assert envelope["event"] == "order_completed"
    assert events._SNAKE_NAMES["Order Completed"] == "order_completed"
    for _ in range(2):  # names refused are never remembered
        assert _outcome({"type": "track", "event": " "}) == ["event: a track call needs an event name, got ' '"]
        assert _outcome({"type": "track", "event": "x" * 201}) == ["event: longer than 200 characters (201)"]
    assert " " not in events._SNAKE_NAMES
    assert "event" not in parse_envelope({"type": "page", "event": "Order Completed", "name": "n"}, received_at=0)
    assert "name" not in parse_envelope({"type": "track", "event": "e", "name": "n", "category": "c"}, received_at=0)


@pytest.mark.anyio
async def test_the_collector_refuses_oversized_events_with_the_general_reasons() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from mw_support import BROWSER, client, wrap

    from pinsignal import MemorySink

    deep: Any = "x"
    for _ in range(events.MAX_DEPTH):
        deep = {"a": deep}
    oversized = [
        {"properties": {"name": "x" * (events.MAX_STRING + 1)}},
        {"properties": {"k" * (events.MAX_ID + 1): 1}},
        {"traits": {str(n): n for n in range(events.MAX_KEYS + 1)}},
        {"properties": {"products": [{"price": 1}] * (events.MAX_ITEMS + 1)}},
        {"context": {"page": deep}},
    ]
    batch = [{"type": "track", "event": "order_completed", "message_id": f"m-{n}", **fields}
             for n, fields in enumerate(oversized)]
    sink = MemorySink()
    async with client(wrap(sink=sink)) as http:
        response = await http.post("/_ps/e", content=orjson.dumps({"batch": batch}),
                                   headers={"content-type": "application/json", "user-agent": BROWSER})
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == [] and len(answer["rejected"]) == len(batch)
    for rejected, raw in zip(answer["rejected"], batch, strict=True):
        context = {**raw.get("context", {}), "ip": "127.0.0.1", "userAgent": BROWSER}
        general = _outcome(raw, context=context)  # the general walk, with the context the server builds
        assert rejected["reasons"] == general and any("longer" in r or "more than" in r or "deeper" in r
                                                      for r in general)


long_text = st.one_of(st.text(max_size=6), st.text(min_size=190, max_size=260), st.just("{[" * 5))
wide = st.recursive(
    st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False),
              long_text),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(long_text, inner, max_size=4), max_leaves=12)


@settings(max_examples=800)
@given(value=st.dictionaries(long_text, wide, max_size=4), depth=st.integers(min_value=1, max_value=9))
def test_short_json_is_within_every_bound(value: dict[str, Any], depth: int) -> None:
    value = orjson.loads(orjson.dumps(value))
    if events._short_json(value, depth):
        assert events._fits(value, depth)


def test_short_json_refuses_what_it_cannot_vouch_for() -> None:
    nested: Any = {}
    for _ in range(events.MAX_DEPTH):
        nested = {"a": nested}
    assert not events._short_json(nested, 2) and not events._fits(nested, 2)
    assert not events._short_json({"k" * (events.MAX_ID + 1): 1}, 2)
    assert events._short_json({"email": "a@b.co", "phone": "+1 415 555 0123"}, 2)
