"""The shop's migration switch (SHOP_PINTEREST_TAG_ID): the Tag on every page, c.js in companion mode,
and the Tag's call for the server's checkout on the order page with the checkout's own event id."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from pinsignal import Config, MemorySink
from pinsignal.demo import load_shop
from pinsignal.pipeline import Engine

pytestmark = pytest.mark.anyio

UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      "Version/17.5 Safari/605.1.15")




async def test_with_the_switch_the_order_page_fires_the_tag_for_the_servers_checkout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_PINTEREST_TAG_ID", "2612345678901")
    sink = MemorySink()
    app = load_shop().create_app(Config(secret="shop-test-secret-0123456789"), sink=sink,
                                 engine=Engine.from_config(Config()))
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test", headers={"user-agent": UA}) as http:
        home = await http.get("/")
        await http.post("/cart/add", data={"sku": "sku-101", "quantity": "2"})
        placed = await http.post("/checkout", data={"email": "jane@example.com"})
        order = await http.get(placed.headers["location"])
        lead = await http.post("/contact", data={"email": "jane@example.com"})
    assert '<script src="/_ps/c.js" defer data-tag></script>' in home.text
    assert "pintrk('load', \"2612345678901\")" in home.text
    assert home.text.index("pintrk('load'") < home.text.index("/_ps/c.js")  # the Tag's queue exists first
    [checkout] = [event for event in sink.events if event["event_name"] == "checkout"]
    [[name, parameters]] = [json.loads(f"[{args}]") for args in re.findall(r'pintrk\("track",(.*?)\);', order.text)]
    assert name == "checkout" and parameters["event_id"] == checkout["event_id"]
    assert checkout["event_id"].startswith("order-")
    assert parameters["value"] == float(checkout["custom_data"]["value"])
    assert parameters["order_quantity"] == 2 and parameters["currency"] == "USD"
    [lead_event] = [event for event in sink.events if event["event_name"] == "lead"]
    assert f'pintrk("track","lead",{{"event_id":"{lead_event["event_id"]}"' in lead.text


async def test_without_the_switch_no_tag_anywhere() -> None:
    app = load_shop().create_app(Config(secret="shop-test-secret-0123456789"), sink=MemorySink(),
                     engine=Engine.from_config(Config()))
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test", headers={"user-agent": UA}) as http:
        await http.post("/cart/add", data={"sku": "sku-101", "quantity": "1"})
        placed = await http.post("/checkout", data={"email": "jane@example.com"})
        order = await http.get(placed.headers["location"])
    assert "pintrk(" not in order.text and "data-tag" not in order.text.split("<!--")[0]
