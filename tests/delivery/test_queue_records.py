"""The enqueue script's records: ``encode_records`` writes out ``entry_meta`` and ``match_key_mask``
for speed; here it is compared with the records built from those two functions, as before."""

from __future__ import annotations

import struct
from typing import Any

import orjson
from hypothesis import given, settings, strategies as st

from pinsignal.queue import encode_records, entry_meta


def encode(value: Any) -> bytes:
    return str(value).encode()


def former_records(events: list[dict[str, Any]]) -> bytes:
    parts: list[bytes] = []
    for event in events:
        name, event_id = event["event_name"], event["event_id"]
        name = name.encode() if type(name) is str else encode(name)
        event_id = event_id.encode() if type(event_id) is str else encode(event_id)
        meta, payload = entry_meta(event).encode(), orjson.dumps(event)
        parts += (struct.pack(">IIII", len(name), len(event_id), len(meta), len(payload)),
                  name, event_id, meta, payload)
    return b"".join(parts)


keys = st.sampled_from(["em", "ph", "external_id", "click_id", "client_ip_address", "client_user_agent", "other"])
values = st.one_of(st.none(), st.just(""), st.just([]), st.just(["a" * 64]), st.text(max_size=3), st.integers(0, 2))
events = st.fixed_dictionaries(
    {"event_name": st.one_of(st.sampled_from(["checkout", "page_visit", "ünïcode"]), st.integers(-(2**63), 2**63 - 1)),
     "event_id": st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1))},
    optional={"event_time": st.one_of(st.integers(0, 2**40), st.floats(0, 1e10), st.text(max_size=3), st.booleans()),
              "user_data": st.one_of(st.dictionaries(keys, values, max_size=7), st.none(), st.text(max_size=3))})


@settings(max_examples=500)
@given(batch=st.lists(events, max_size=5))
def test_records_are_those_of_entry_meta_and_the_mask(batch: list[dict[str, Any]]) -> None:
    assert encode_records(batch, encode) == former_records(batch)
