"""The shop's payment path (what ``pinsignal demo`` runs): checkout remembers the shopper and goes to
DemoPay's page; DemoPay's signed webhook, from another address and user agent, sends the order with the
shopper's click id, IP and user agent (in process, events in a ``MemorySink``)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import pytest

from pinsignal import Config, MemorySink
from pinsignal.demo import load_shop
from pinsignal.pipeline import Engine

pytestmark = pytest.mark.anyio

EPIK = "dj0yJnU9cGF5bWVudHMmcD0x"
UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      "Version/17.5 Safari/605.1.15")
SECRET = "demopay-test-secret-0123456789"
SHOP = load_shop()


async def test_the_payment_webhook_sends_the_shoppers_context() -> None:
    from pinsignal_demo_shop.payments import SIGNATURE_HEADER, WEBHOOK_USER_AGENT, sign

    sink = MemorySink()
    app = SHOP.create_app(Config(secret="shop-test-secret-0123456789"), sink=sink, engine=Engine.from_config(Config()),
                          payments_url="http://pay.test", payments_secret=SECRET)
    shopper = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.7", 40000)),
                                base_url="http://shop.test", headers={"user-agent": UA})
    provider = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("192.0.2.44", 50000)),
                                 base_url="http://shop.test", headers={"user-agent": WEBHOOK_USER_AGENT})
    async with shopper, provider:
        await shopper.get(f"/?epik={EPIK}")
        await shopper.post("/cart/add", data={"sku": "sku-101", "quantity": "2"})
        placed = await shopper.post("/checkout", data={"email": " Jane.Doe@Example.com "})
        assert placed.status_code == 303
        location = placed.headers["location"]
        assert location.startswith("http://pay.test/pay/") and "amount=29.98&currency=USD" in location
        order_id = location.split("/pay/", 1)[1].split("?", 1)[0]
        assert not [e for e in sink.events if e["event_name"] == "checkout"], "nothing is sent before the payment"
        assert "Waiting for DemoPay" in (await shopper.get(f"/order/{order_id}")).text

        created = int(time.time()) - 30
        body = json.dumps({"type": "payment.succeeded", "order_id": order_id, "created": created}).encode()
        forged = await provider.post("/webhooks/payment", content=body, headers={SIGNATURE_HEADER: "0" * 64})
        assert forged.status_code == 401
        confirmed = await provider.post("/webhooks/payment", content=body,
                                        headers={SIGNATURE_HEADER: sign(SECRET, body)})
        assert confirmed.status_code == 200
        again = await provider.post("/webhooks/payment", content=body, headers={SIGNATURE_HEADER: sign(SECRET, body)})
        assert again.status_code == 200  # a webhook delivered twice sends nothing twice
        page = (await shopper.get(f"/order/{order_id}")).text
        assert f'<code id="event-id">order-{order_id}</code>' in page and "payment webhook" in page

    (checkout,) = [e for e in sink.events if e["event_name"] == "checkout"]
    user: dict[str, Any] = checkout["user_data"]
    assert checkout["event_id"] == f"order-{order_id}" and checkout["event_time"] == created
    assert user["click_id"] == EPIK
    assert user["client_ip_address"] == "198.51.100.7" and user["client_user_agent"] == UA
    assert user["em"] == [hashlib.sha256(b"jane.doe@example.com").hexdigest()]
    assert checkout["custom_data"]["value"] == "29.98"
