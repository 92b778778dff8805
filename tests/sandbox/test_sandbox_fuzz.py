"""Whatever a sender posts, the sandbox answers 200, 400 or 422 in Pinterest's shapes, never a 5xx."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from pinsignal.sandbox import create_app

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=8,
)
FIELDS = ["event_name", "action_source", "event_time", "event_id", "user_data", "custom_data", "event_source_url",
          "opt_out", "app_info", "device_info", "language", "unexpected"]
USER_FIELDS = ["em", "ph", "external_id", "click_id", "client_ip_address", "client_user_agent", "hashed_maids"]


def valid_event(number: int) -> dict[str, Any]:
    return {"event_name": "checkout", "action_source": "web", "event_time": int(time.time()),
            "event_id": f"e{number}", "user_data": {"em": ["a" * 64], "client_ip_address": "203.0.113.9",
                                                    "client_user_agent": "Mozilla/5.0"},
            "custom_data": {"value": "1.00", "currency": "USD"}}


mutation = st.tuples(st.sampled_from(["set", "delete", "set_user", "delete_user"]),
                     st.sampled_from(FIELDS), st.sampled_from(USER_FIELDS), JSON)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(st.lists(mutation, max_size=3), min_size=1, max_size=4), test=st.booleans())
def test_mutated_events_never_cause_a_server_error(mutations: list[list[tuple[str, str, str, Any]]],
                                                    test: bool) -> None:
    events = []
    for number, changes in enumerate(mutations):
        event = valid_event(number)
        for action, field, user_field, value in changes:
            user_data = event.get("user_data")
            if action == "set":
                event[field] = value
            elif action == "delete":
                event.pop(field, None)
            elif isinstance(user_data, dict) and action == "set_user":
                user_data[user_field] = value
            elif isinstance(user_data, dict):
                user_data.pop(user_field, None)
        events.append(event)
    status, body = asyncio.run(_post(_encode(events), test))
    assert status in (200, 400, 422), (status, body)
    if status == 400:
        assert set(body) == {"code", "message"} and body["message"].startswith("Invalid request: ")
        return
    answer = body["details"] if status == 422 else body
    assert answer["num_events_received"] == len(events)
    assert len(answer["events"]) == len(events)
    assert answer["num_events_processed"] == sum(entry["status"] == "processed" for entry in answer["events"])
    assert (status == 422) == (answer["num_events_processed"] < len(events))


def _encode(events: list[dict[str, Any]]) -> bytes:
    try:
        return orjson.dumps({"data": events})
    except TypeError:  # integers beyond 64 bits: send them as the text JSON allows
        import json

        return json.dumps({"data": events}).encode()


async def _post(body: bytes, test: bool) -> tuple[int, Any]:
    app = create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as client:
        response = await client.post("/v5/ad_accounts/1/events", content=body, params={"test": "true"} if test else {},
                                     headers={"authorization": "Bearer sandbox-token",
                                              "content-type": "application/json"})
    return response.status_code, response.json()
