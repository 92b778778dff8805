"""The example shop, in process: every page renders with the collector, and every event it sends
(browser or server) becomes the Pinterest event its docstring table promises, through the shipped
pipelines. Events land in a ``MemorySink`` instead of Redis."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pinsignal import Config, MemorySink
from pinsignal.demo import load_shop
from pinsignal.pipeline import Engine

pytestmark = pytest.mark.anyio

EPIK = "dj0yJnU9c2hvcC10ZXN0JnA9MQ"
UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      "Version/17.5 Safari/605.1.15")
SHOP = load_shop()


def promised_events() -> dict[str, str]:
    """The shop's docstring table: incoming event name -> Pinterest event name."""
    table = {}
    for row in re.findall(r"^\|[^|]+\|\s*(\w+)[^|]*\|\s*(\w+)\s*\|", SHOP.app.__doc__ or "", re.M):
        if row[0] not in ("event", "page"):
            table[row[0]] = row[1]
    return table


def sent_event_names() -> set[str]:
    """Every event name the shop's code sends, from the browser or from the server."""
    from pathlib import Path

    source = "".join(p.read_text() for p in Path(SHOP.__file__).parent.glob("*.py"))
    names = set(re.findall(r"pinsignal\.track\('(\w+)'", source))
    assert "pinterest_custom: true" in source
    names |= set(re.findall(r'on_load\("(\w+)"', source))
    names |= set(re.findall(r'await track\(request, "(\w+)"', source))
    return names


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture(scope="module")
def engine() -> Engine:
    """The shipped pipelines, loaded once for the module (loading them is the slow part of an app)."""
    return Engine.from_config(Config())


@pytest.fixture
async def client(sink: MemorySink, engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = SHOP.create_app(Config(secret="shop-test-secret-0123456789"), sink=sink, engine=engine)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test", headers={"user-agent": UA}) as c:
        yield c


def by_name(sink: MemorySink, name: str) -> list[dict[str, Any]]:
    return [e for e in sink.events if e["event_name"] == name]


async def test_the_table_covers_every_event_the_shop_sends() -> None:
    table = promised_events()
    assert sent_event_names() == set(table)
    standard = {"page_visit", "view_category", "search", "add_to_cart", "checkout", "signup", "lead", "watch_video",
                "custom"}
    assert standard - {"page_visit"} <= set(table.values()), "the shop must exercise every standard event"


@pytest.mark.parametrize("path", ["/", "/category/kitchen", "/search?q=linen", "/product/sku-101", "/cart",
                                  "/signup", "/contact", "/video"])
async def test_pages_render_with_the_collector_and_the_consent_banner(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert '<script src="/_ps/c.js" defer></script>' in page.text
    assert 'id="consent"' in page.text and "pinsignal.consent({advertising: granted})" in page.text
    assert "add data-tag to the c.js script tag" in page.text  # the migration note, a comment
    assert "pintrk(" not in page.text and "s.pinimg.com" not in page.text  # no Tag without the switch
    assert "<!-- Migrating from the Pinterest Tag?" in page.text


async def test_unknown_things_are_404(client: httpx.AsyncClient) -> None:
    for path in ("/product/nope", "/category/nope", "/order/nope"):
        assert (await client.get(path)).status_code == 404


async def test_search_escapes_the_query(client: httpx.AsyncClient) -> None:
    page = await client.get("/search", params={"q": "</script><b>x"})
    assert "</script><b>x" not in page.text
    assert "\\u003c/script\\u003e" in page.text  # inside the products_searched call, safely encoded


@pytest.mark.parametrize("incoming", sorted(promised_events()))
async def test_each_event_the_shop_sends_becomes_the_promised_pinterest_event(
    client: httpx.AsyncClient, sink: MemorySink, incoming: str
) -> None:
    event = {"type": "track", "event": incoming, "message_id": f"test-{incoming}",
             "properties": {"product_id": "sku-101", "price": 14.99, "quantity": 1, "currency": "USD", "query": "mug",
                            "revenue": 14.99, "products": [{"product_id": "sku-101", "price": 14.99, "quantity": 1}]},
             "traits": {"email": "jane@example.com"},
             "context": {"page": {"url": "http://shop.test/product/sku-101"}, "consent": {"advertising": True}}}
    if promised_events()[incoming] == "custom":
        event["properties"]["pinterest_custom"] = True  # as the shop's care-guide button sends it
    answer = await client.post("/_ps/e", json=event, headers={"cookie": f"_epik={EPIK}"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["rejected"] == []
    names = [e["event_name"] for e in sink.events]
    assert names == [promised_events()[incoming]], f"{incoming} produced {names}"
    assert sink.events[0]["event_id"] == f"test-{incoming}"


async def test_landing_cart_and_checkout_send_the_order_server_side(client: httpx.AsyncClient,
                                                                    sink: MemorySink) -> None:
    landing = await client.get(f"/?epik={EPIK}")
    assert any(h.startswith(f"_epik={EPIK};") for h in landing.headers.get_list("set-cookie"))
    added = await client.post("/cart/add", data={"sku": "sku-101", "quantity": "2"})
    assert added.json() == {"count": 2}
    await client.post("/cart/add", data={"sku": "sku-201", "quantity": "1"})
    placed = await client.post("/checkout", data={"email": " Jane.Doe@Example.com ", "phone": "+1 (415) 555-0123"})
    assert placed.status_code == 303
    order_id = placed.headers["location"].rsplit("/", 1)[1]
    (checkout,) = by_name(sink, "checkout")
    assert checkout["event_id"] == f"order-{order_id}"
    user = checkout["user_data"]
    assert user["em"] == [hashlib.sha256(b"jane.doe@example.com").hexdigest()]
    assert user["ph"] == [hashlib.sha256(b"14155550123").hexdigest()]
    assert user["click_id"] == EPIK
    assert user["client_ip_address"] == "198.51.100.7"
    assert user["client_user_agent"] == UA
    assert checkout["custom_data"]["value"] == "53.98"
    assert checkout["custom_data"]["currency"] == "USD"
    assert sorted(checkout["custom_data"]["content_ids"]) == ["sku-101", "sku-201"]
    confirmation = await client.get(f"/order/{order_id}")
    assert f'<code id="event-id">order-{order_id}</code>' in confirmation.text
    assert "cart" not in client.cookies, "the cart is emptied after the order"


async def test_checkout_with_an_empty_cart_sends_nothing(client: httpx.AsyncClient, sink: MemorySink) -> None:
    answer = await client.post("/checkout", data={"email": "jane@example.com"})
    assert answer.status_code == 303 and answer.headers["location"] == "/cart"
    assert sink.events == []


async def test_signup_identifies_the_visitor_for_later_anonymous_events(client: httpx.AsyncClient,
                                                                        sink: MemorySink) -> None:
    answer = await client.post("/signup", data={"name": "Jane Doe", "email": "Jane.Doe@example.com"})
    assert answer.status_code == 303
    assert any(h.startswith("_psu=") for h in answer.headers.get_list("set-cookie"))
    (signup,) = by_name(sink, "signup")
    assert signup["user_data"]["external_id"] and signup["event_id"].startswith("signup-u-")
    email_hash = hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert signup["user_data"]["em"] == [email_hash]
    # a later browser event, with no traits of its own, carries the hashed email from the _psu cookie
    later = {"type": "track", "event": "product_added", "properties": {"product_id": "sku-101", "price": 14.99},
             "context": {"page": {"url": "http://shop.test/product/sku-101"}}}
    assert (await client.post("/_ps/e", json=later)).status_code == 202
    (added,) = by_name(sink, "add_to_cart")
    assert added["user_data"]["em"] == [email_hash]


async def test_lead_form_sends_a_lead_without_the_message(client: httpx.AsyncClient, sink: MemorySink) -> None:
    answer = await client.post("/contact", data={"email": "buyer@cafe.example", "message": "secret plans"})
    assert answer.status_code == 200
    (lead,) = by_name(sink, "lead")
    assert lead["event_id"].startswith("lead-")
    assert "secret plans" not in str(sink.events)


async def test_opt_in_mode_sends_and_sets_nothing_before_the_banner_is_accepted(engine: Engine) -> None:
    sink = MemorySink()
    app = SHOP.create_app(Config(secret="shop-test-secret-0123456789", consent="opt-in"), sink=sink, engine=engine)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test", headers={"user-agent": UA}) as c:
        landing = await c.get(f"/?epik={EPIK}", headers={"accept": "text/html"})
        assert "Nothing is sent and no tracking cookie is set unless you accept." in landing.text
        assert landing.headers.get_list("set-cookie") == [], "opt-in: no cookie before consent"
        event = {"type": "track", "event": "product_added", "properties": {"product_id": "sku-101", "price": 14.99},
                 "context": {"page": {"url": f"http://shop.test/?epik={EPIK}"}}}
        assert (await c.post("/_ps/e", json=event)).status_code == 202
        assert sink.events == []
        # the banner's Accept: pinsignal.consent({advertising: true}) posts the choice and the kept epik
        accepted = await c.post("/_ps/consent", json={"advertising": True, "epik": EPIK})
        cookies = accepted.headers.get_list("set-cookie")
        assert any(h.startswith("_psc=") for h in cookies) and any(h.startswith(f"_epik={EPIK};") for h in cookies)
        assert (await c.post("/_ps/e", json=event)).status_code == 202
        (added,) = sink.events
        assert added["event_name"] == "add_to_cart" and added["user_data"]["click_id"] == EPIK


async def test_opt_out_mode_stops_sending_once_the_banner_is_declined(client: httpx.AsyncClient,
                                                                       sink: MemorySink) -> None:
    event = {"type": "track", "event": "product_added", "properties": {"product_id": "sku-101", "price": 14.99},
             "context": {"page": {"url": "http://shop.test/product/sku-101"}}}
    assert (await client.post("/_ps/e", json=event)).status_code == 202
    assert len(sink.events) == 1, "opt-out: events flow until the visitor declines"
    declined = await client.post("/_ps/consent", json={"advertising": False})
    assert any(h.startswith("_psc=") for h in declined.headers.get_list("set-cookie"))
    assert (await client.post("/_ps/e", json=event)).status_code == 202
    await client.post("/cart/add", data={"sku": "sku-101", "quantity": "1"})
    placed = await client.post("/checkout", data={"email": "jane@example.com"})
    assert placed.headers["location"].startswith("/order/"), "the order itself goes through"
    assert len(sink.events) == 1, "nothing more after Decline, from the browser or the server"
