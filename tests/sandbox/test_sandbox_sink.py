"""The benchmark sink (tests/bench/sink.py) answers like Pinterest, so the worker benchmark stays honest."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from bench.sink import app

pytestmark = pytest.mark.anyio


async def test_sink_answers_a_valid_conversion_api_response_per_event(make_event: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sink") as client:
        await client.post("/_sink/reset")
        events = [make_event(event_id='tricky "event_id" value') for _ in range(3)]
        response = await client.post("/v5/ad_accounts/1/events", content=orjson.dumps({"data": events}))
        assert response.status_code == 200
        assert response.json() == {"num_events_received": 3, "num_events_processed": 3,
                                   "events": [{"status": "processed", "error_message": "",
                                               "warning_message": ""}] * 3}
        assert (await client.get("/_sink/stats")).json() == {"requests": 1, "events": 3}
        assert (await client.get("/elsewhere")).status_code == 404
