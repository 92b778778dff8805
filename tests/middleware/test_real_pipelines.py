"""The collector with the shipped pipelines and the real Redis queue (no stand-ins)."""

from __future__ import annotations

import hashlib

import orjson
import pytest
import redis
from mw_support import BROWSER, SECRET, client

from pinsignal import Config, PinSignalMiddleware, keys

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

ACCOUNT = "549755885175"


async def test_events_reach_redis_hashed_and_counters_are_shared(redis_url: str) -> None:
    config = Config(secret=SECRET, redis_url=redis_url, ad_account_id=ACCOUNT)
    app = PinSignalMiddleware(lambda scope, receive, send: None, config=config)  # type: ignore[arg-type,return-value]
    order = {"type": "track", "event": "Order Completed", "messageId": "o-77",
             "properties": {"revenue": 72.39, "currency": "USD", "order_id": "o-77",
                            "products": [{"product_id": "sku-1", "price": 14.99, "quantity": 3}]},
             "traits": {"email": " Jane.Doe@Example.com "}}
    headers = {"content-type": "text/plain", "user-agent": BROWSER, "cookie": "_epik=click-1",
               "referer": "http://testserver/checkout"}
    try:
        async with client(app, peer="203.0.113.9") as http:
            first = await http.post("/_ps/e", content=orjson.dumps(order), headers=headers)
            again = await http.post("/_ps/e", content=orjson.dumps(order), headers=headers)
            refused = await http.post("/_ps/e", content=orjson.dumps({**order, "messageId": "o-78"}),
                                      headers={**headers, "sec-gpc": "1"})
    finally:
        await app.intake.close()
    assert first.json() == again.json() == {"accepted": ["o-77"], "rejected": []}
    assert refused.json()["accepted"] == []
    store = redis.Redis.from_url(redis_url)
    try:
        events = [orjson.loads(fields[b"e"]) for _, fields in store.xrange(keys.stream(ACCOUNT))]
        counters = {key.decode(): int(value) for name in (keys.COUNTERS, keys.account_counters(ACCOUNT))
                    for key, value in store.hgetall(name).items()}
    finally:
        store.close()
    [checkout] = events  # the repeat was a duplicate
    assert checkout["event_name"] == "checkout" and checkout["event_id"] == "o-77"
    assert checkout["user_data"]["em"] == [hashlib.sha256(b"jane.doe@example.com").hexdigest()]
    assert checkout["user_data"]["client_ip_address"] == "203.0.113.9"
    assert checkout["user_data"]["click_id"] == "click-1"
    assert counters["dropped_consent"] == 1 and counters["duplicates"] == 1
