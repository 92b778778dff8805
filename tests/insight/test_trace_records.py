"""The collector's trace entry per request: what it holds against the per-event records it replaced,
how readers split it, and the cap by records (rows) rather than entries, on a real Redis."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from pinsignal import keys
from pinsignal.pipeline import Produced
from pinsignal.trace import (
    EnvelopeHasher,
    TraceWriter,
    _digest,
    _hash_traits,
    decode_records,
    encode_request,
    read_recent,
)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hashed_envelope(envelope: Mapping[str, Any], user_data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The code the request entry replaced (trace.py before it): a hashed copy of each envelope (of
    ``properties``, since 5 Dec, the names alone)."""
    if user_data is None:
        user_data = {}
    copied = dict(envelope)
    traits = copied.get("traits")
    if traits:
        copied["traits"] = _hash_traits(traits, user_data) if type(traits) is dict else _digest(traits)
    user_id = copied.get("user_id")
    if user_id is not None and not (type(user_id) is str and _HEX64.match(user_id)):
        external = user_data.get("external_id")
        copied["user_id"] = external[0] if type(external) is list and external else _digest(user_id)
    properties = copied.get("properties")
    if properties:
        copied["properties"] = list(properties) if type(properties) is dict else None  # the names alone
    context = copied.get("context")
    if context and "traits" in context and type(context) is dict:
        inner = context["traits"]
        copied["context"] = {**context, "traits": _hash_traits(inner, user_data) if type(inner) is dict
                             else _digest(inner)}
    return copied


EM = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PH = hashlib.sha256(b"14155550123").hexdigest()
EXTERNAL = hashlib.sha256(b"customer-42").hexdigest()

SHARED_TRAITS = {"email": " Jane.Doe@Example.com ", "phone": "+1 (415) 555-0123", "plan": "gold"}
ENVELOPES: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
    ({"type": "track", "event": "order_completed", "message_id": "m-1",
      "properties": {"revenue": 72.39, "currency": "USD", "note": "a gift for Jane Doe", "gift": True,
                     "products": [{"product_id": "sku-1", "price": 14.99}]},
      "traits": {"email": " Jane.Doe@Example.com ", "phone": "+1 (415) 555-0123", "plan": "gold", "age": 41},
      "user_id": "customer-42", "context": {"ip": "203.0.113.9", "page": {"url": "https://shop.example/"}}},
     {"em": [EM], "ph": [PH], "external_id": [EXTERNAL]}),
    ({"type": "track", "event": "lead", "message_id": "m-2", "properties": {}, "traits": {},
      "context": {"traits": {"email": "Jane.Doe@Example.com", "address": {"city": "Paris"}}}}, None),
    ({"type": "identify", "message_id": "m-3", "user_id": EXTERNAL, "properties": {},
      "traits": {"email": EM, "tags": ["a", "b"]}, "context": {}}, {}),
    ({"type": "track", "event": "order_completed", "message_id": "m-9", "user_id": "customer-42",
      "properties": {"total": 272.5, "coupon": ""}, "traits": SHARED_TRAITS,  # analytics.js: context.traits
      "context": {"ip": "203.0.113.9", "traits": SHARED_TRAITS, "library": {"name": "analytics-python"}}},
     {"em": [EM], "ph": [PH], "external_id": [EXTERNAL]}),
    ({"type": "page", "message_id": "m-4", "user_id": "u-9", "properties": {"title": "Home", "n": 3},
      "traits": {"first_name": "Jane"}, "context": {"userAgent": "Mozilla/5.0"}}, {"fn": "not a list"}),
]


def _same_visitor(envelope: dict[str, Any], message_id: str) -> dict[str, Any]:
    return {**copy.deepcopy(envelope), "message_id": message_id}


# one visitor's batch: equal traits and match keys (hashed once), then equal traits with other keys, then others
BATCH = [*ENVELOPES, (_same_visitor(ENVELOPES[0][0], "m-5"), dict(ENVELOPES[0][1] or {})),
         (_same_visitor(ENVELOPES[0][0], "m-6"), {"em": [PH], "ph": [EM]}),
         (_same_visitor(ENVELOPES[0][0], "m-7"), None), (_same_visitor(ENVELOPES[1][0], "m-8"), None)]


def test_a_request_entry_holds_each_envelope_as_the_per_event_records_did_without_changing_what_they_held(
        ) -> None:
    hasher = EnvelopeHasher()  # one per request: equal traits and contexts are hashed and encoded once
    batch = copy.deepcopy(BATCH)  # hashed in place
    expected = [orjson.loads(orjson.dumps(hashed_envelope(envelope, user_data))) for envelope, user_data in batch]
    held = [list(envelope.values()) for envelope, _ in batch]  # what a Pinterest event may share with them
    before = copy.deepcopy(held)
    for envelope, user_data in batch:
        hasher.hash(envelope, [Produced("checkout", {"user_data": user_data})] if user_data is not None else [])
    entry = encode_request(12.5, "browser", "dbg123", [envelope for envelope, _ in batch])
    record = orjson.loads(entry)
    assert record["events"] == expected
    assert held == before  # only the envelopes' own keys were replaced
    for raw in (b"Jane.Doe", b"jane.doe", b"555-0123", b"customer-42", b"gift for", b"u-9", b"Paris"):
        assert raw not in entry


def test_a_request_holds_each_envelope_hashed_from_the_next_event_on_and_keeps_no_property_value() -> None:
    from pinsignal.collector.observer import MemoryObserver
    from pinsignal.config import Config

    observer = MemoryObserver(Config(secret="x" * 32))
    seen = observer.request(None, "browser")
    first, second = copy.deepcopy(ENVELOPES[0][0]), _same_visitor(ENVELOPES[0][0], "m-2")
    produced = [Produced("checkout", {"user_data": ENVELOPES[0][1]})]
    seen.received(first, produced)
    assert first["traits"]["email"] == " Jane.Doe@Example.com "  # the intake may still read it (routing, quarantine)
    seen.received(second, produced)
    # done with the first: what the request holds of it until the entry is written is flat, hashed JSON
    assert type(first["traits"]) is orjson.Fragment and type(first["context"]) is orjson.Fragment
    seen.flush()
    assert [r["stage"] for r in observer.records] == ["received", "received"]
    envelope = observer.records[0]["envelope"]
    assert envelope["properties"] == ["revenue", "currency", "note", "gift", "products"]
    assert envelope["traits"]["email"] == EM and observer.records[1]["envelope"]["traits"] == envelope["traits"]
    assert b"72.39" not in orjson.dumps(observer.records)  # the names of properties, not their values


def test_readers_put_each_queued_stage_after_the_other_stages_of_the_newest_event_with_its_id() -> None:
    first = {"type": "track", "event": "page", "message_id": "p-1"}
    again = {"type": "track", "event": "page", "message_id": "p-1"}  # the same id sent twice in one request
    bad = {"type": "track", "event": "order_completed", "message_id": "bad-1"}
    lone = {"type": "identify", "message_id": "i-1"}
    events = [
        first,
        [None, "lead", None, ["refused", "consent", "advertising consent was refused"]],
        [again, ["refused", "invalid_event", "page: a"], ["quarantined", "invalid_event", "q-1", "page"]],
        bad,
        lone,
    ]
    queued = [["p-1", "queued", "page_visit", "p-1", "page", "1"], ["bad-1", "duplicate", "checkout", "bad-1",
                                                                      "checkout", "1"],
              ["gone-1", "queued", "lead", "gone-1", "lead", "1"]]
    records = decode_records(b"9-0", {b"r": encode_request(3.0, "browser", None, events, queued)})
    assert [(r["stage"], r["message_id"]) for r in records] == [
        ("received", "p-1"), ("refused", None), ("received", "p-1"), ("refused", "p-1"), ("quarantined", "p-1"),
        ("queued", "p-1"), ("received", "bad-1"), ("duplicate", "bad-1"), ("received", "i-1"), ("queued", "gone-1")]
    assert records[0]["envelope"] == first and records[0]["event"] == "page" and records[8]["event"] == "identify"
    assert records[1]["item"] == 1 and "item" not in records[2]
    assert records[5] == {"at": 3.0, "id": "9-0", "message_id": "p-1", "stage": "queued", "event_name": "page_visit",
                          "event_id": "p-1", "pipeline": "page", "account": "1"}


def test_readers_split_an_entry_of_the_earlier_request_format_into_the_records_of_each_stage_in_order() -> None:
    # before each envelope was hashed as the request went (EnvelopeHasher): every event as
    # [message_id, event, envelope or None, stage, ...], the queued stages among the others
    envelope = {"type": "track", "event": "order_completed", "message_id": "ok-1", "properties": {}, "traits": {}}
    bad = {"type": "track", "event": "order_completed", "message_id": "bad-1", "properties": {}, "traits": {}}
    events = [
        [None, None, None, ["refused", "bot", "known crawler", 3]],
        [None, "lead", None, ["refused", "consent", "advertising consent was refused"]],
        ["c-1", "lead", None, ["refused", "consent", "advertising consent was refused"]],
        ["ok-1", "order_completed", envelope, ["queued", "checkout", "ok-1", "checkout", "549755885175"],
         ["duplicate", "lead", "ok-1", "lead", "549755885175"]],
        ["bad-1", "order_completed", bad, ["refused", "invalid_event", "checkout: value: must be > 0"],
         ["quarantined", "invalid_event", "q-1", "order_completed"]],
    ]
    entry = orjson.dumps({"at": 7.0, "source": "server", "debug": "dbg123", "events": events})
    records = decode_records(b"5-0", {b"c": b"7", b"r": entry})
    shared = {"at": 7.0, "debug": "dbg123", "id": "5-0"}
    assert records == [
        {**shared, "stage": "refused", "message_id": None, "event": None, "reason": "bot",
         "message": "known crawler", "count": 3, "item": 0},
        {**shared, "stage": "refused", "message_id": None, "event": "lead", "reason": "consent",
         "message": "advertising consent was refused", "item": 1},  # events without an id told apart
        {**shared, "stage": "refused", "message_id": "c-1", "event": "lead", "reason": "consent",
         "message": "advertising consent was refused"},
        {**shared, "stage": "received", "message_id": "ok-1", "event": "order_completed", "source": "server",
         "envelope": envelope},
        {**shared, "message_id": "ok-1", "stage": "queued", "event_name": "checkout", "event_id": "ok-1",
         "pipeline": "checkout", "account": "549755885175"},
        {**shared, "message_id": "ok-1", "stage": "duplicate", "event_name": "lead", "event_id": "ok-1",
         "pipeline": "lead", "account": "549755885175"},
        {**shared, "stage": "received", "message_id": "bad-1", "event": "order_completed", "source": "server",
         "envelope": bad},
        {**shared, "stage": "refused", "message_id": "bad-1", "event": "order_completed", "reason": "invalid_event",
         "message": "checkout: value: must be > 0"},
        {**shared, "stage": "quarantined", "message_id": "bad-1", "event": "order_completed",
         "reason": "invalid_event", "quarantine_id": "q-1"},
    ]
    # an entry written before the per-request record (a received record with its queued stage inside)
    old = orjson.dumps({"at": 1.0, "stage": "received", "message_id": "m-1", "event": "x", "envelope": {},
                        "then": [["queued", "checkout", "m-1", "checkout", "1"]]})
    assert [r["stage"] for r in decode_records(b"1-0", {b"r": old})] == ["received", "queued"]


async def _rows(redis: Any) -> int:
    return sum(len(decode_records(entry_id, fields)) for entry_id, fields in await redis.xrange(keys.TRACE))


def _request(n: int, size: int) -> bytes:
    return orjson.dumps({"at": 1.0, "source": "browser", "events": [
        [f"m-{n}-{i}", "x", {"message_id": f"m-{n}-{i}"}, ["queued", "checkout", f"m-{n}-{i}", "checkout", "1"]]
        for i in range(size)]})


@pytest.mark.anyio
async def test_the_cap_counts_records_so_request_entries_of_any_size_keep_memory_bounded(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.delete(keys.TRACE)
        # entries written before the cap was by records (no running count): the first to go
        for n in range(50):
            await redis.xadd(keys.TRACE, {"r": orjson.dumps({"at": 1.0, "stage": "received", "message_id": f"o-{n}"})})
        writer = TraceWriter(redis, maxlen=1000)
        for n in range(300):  # requests of 20 events, 40 records each: 12,000 records written
            writer.add_encoded(_request(n, 20), 40)
            if n % 50 == 0:
                await writer.flush()
        await writer.close()
        held = await _rows(redis)
        assert 1000 <= held <= 1000 + 1000 // 20 + 40, held  # the cap, its 5% slack and one entry
        assert 25 <= await redis.xlen(keys.TRACE) <= 28  # 40-record entries, not 1,000 of them
        newest = await read_recent(redis, count=3)
        assert [r["message_id"] for r in newest] == ["m-299-18", "m-299-19", "m-299-19"]
        assert len(await read_recent(redis, count=1000)) == 1000
        # single records (the worker's warnings, a lone post) count one each, under the same cap
        writer = TraceWriter(redis, maxlen=1000)
        for n in range(3000):
            writer.add({"stage": "warning", "event_id": f"w-{n}"})
        await writer.close()
        held = await _rows(redis)
        assert 1000 <= held <= 1000 + 1000 // 20 + 1, held
        assert (await read_recent(redis, count=1))[0]["event_id"] == "w-2999"
    finally:
        await redis.aclose()
