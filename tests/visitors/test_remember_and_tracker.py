"""remember(), POST /_ps/remember, track(..., visitor_key=) and Tracker: the visitor's context by key (DESIGN 8.2)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).parent.parent / "middleware"))

from mw_support import BROWSER, SECRET, client

from pinsignal import Config, MemorySink, PinSignalMiddleware, Tracker, remember, track
from pinsignal.pipeline.normalise import sha256_hex
from pinsignal.visitors import MemoryVisitors, VisitorContext

pytestmark = pytest.mark.anyio

EPIK = "dj0yJnU9bGFuZGluZyZwPTE"
SHOPPER = "203.0.113.9"
PROVIDER = "198.51.100.7"
PROVIDER_UA = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


async def checkout(request: Request) -> Response:
    data = await request.json()
    kept = await remember(request, data["key"], traits=data.get("traits"), ldp=data.get("ldp"))
    return JSONResponse({"remembered": kept})


async def webhook(request: Request) -> Response:
    data = await request.json()
    result = await track(request, "order_completed", visitor_key=data["key"], properties=data["properties"],
                         traits=data.get("traits"), timestamp=data.get("created"), ldp=data.get("ldp"))
    return JSONResponse({"event_id": result.event_id, "queued": result.queued, "known": result.visitor_known,
                         "reasons": result.reasons})


async def page(request: Request) -> Response:
    return JSONResponse({})


def shop(sink: MemorySink, **changes: Any) -> PinSignalMiddleware:
    app = Starlette(routes=[Route("/", page), Route("/checkout", checkout, methods=["POST"]),
                            Route("/webhooks/payment", webhook, methods=["POST"])])
    return PinSignalMiddleware(app, config=Config(secret=SECRET, **changes), sink=sink)


async def land_and_remember(app: PinSignalMiddleware, key: str, *, headers: dict[str, str] | None = None,
                            browser: bool = False, **body: Any) -> dict[str, Any]:
    headers = {"user-agent": BROWSER, **(headers or {})}
    async with client(app, peer=SHOPPER) as shopper:
        landing = await shopper.get(f"/?epik={EPIK}", headers=headers)
        assert landing.status_code == 200
        if browser:  # c.js's pinsignal.remember(key), from the checkout page
            answer = await shopper.post("/_ps/remember", json={"key": key, **body},
                                        headers={**headers, "referer": "http://testserver/cart"})
        else:
            answer = await shopper.post("/checkout", json={"key": key, **body},
                                        headers={**headers, "referer": "http://testserver/cart"})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


async def paid(app: PinSignalMiddleware, key: str, order_id: str = "o-1001", **body: Any) -> dict[str, Any]:
    async with client(app, peer=PROVIDER) as provider:
        answer = await provider.post("/webhooks/payment", headers={"user-agent": PROVIDER_UA},
                                     json={"key": key, "properties": {"order_id": order_id, "revenue": 72.39,
                                                                      "currency": "USD"}, **body})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


@pytest.mark.parametrize("browser", [False, True], ids=["remember()", "POST /_ps/remember"])
async def test_a_webhook_sends_the_shoppers_click_id_ip_and_user_agent(browser: bool) -> None:
    sink = MemorySink()
    app = shop(sink)
    assert await land_and_remember(app, "cs_test_1", browser=browser) == {"remembered": True}
    created = datetime.now(UTC) - timedelta(minutes=5)
    result = await paid(app, "cs_test_1", created=created.isoformat())
    assert result["queued"] and result["known"] is True, result
    [event] = sink.events
    assert event["event_name"] == "checkout"
    assert event["event_id"] == result["event_id"]
    assert event["event_time"] == int(created.timestamp())
    user = event["user_data"]
    assert user["click_id"] == EPIK
    assert user["client_ip_address"] == SHOPPER
    assert user["client_user_agent"] == BROWSER
    assert event["event_source_url"] == "http://testserver/cart"
    assert "opt_out_type" not in event.get("custom_data", {})
    assert sink.counters["visitor_key_found"] == 1


async def test_remembered_traits_are_hashed_and_never_raw() -> None:
    store = MemoryVisitors(Config(secret=SECRET))
    sink = MemorySink()
    app = shop(sink)
    app.intake.visitors = store
    await land_and_remember(app, "cart-9", traits={"email": " Jane.Doe@Example.com "})
    [(_, stored)] = store._items.items()
    assert b"jane" not in stored[1].lower() and b"cart-9" not in stored[1]
    context = VisitorContext.loads(stored[1])
    assert context is not None and context.traits == {"email": sha256_hex("jane.doe@example.com")}
    await paid(app, "cart-9")
    assert sink.events[0]["user_data"]["em"] == [sha256_hex("jane.doe@example.com")]


async def test_an_unknown_key_still_sends_with_what_the_webhook_has_and_says_so() -> None:
    sink = MemorySink()
    app = shop(sink)
    result = await paid(app, "never-remembered", traits={"email": "jane@example.com"})
    assert result["known"] is False and result["queued"], result
    [event] = sink.events
    # the webhook's own address and user agent are the payment provider's, never sent as the shopper's
    assert "client_ip_address" not in event["user_data"] and "click_id" not in event["user_data"]
    assert event["user_data"]["em"] == [sha256_hex("jane@example.com")]
    assert sink.counters["visitor_key_unknown"] == 1


async def test_a_visitor_without_consent_is_remembered_as_the_verdict_alone() -> None:
    sink = MemorySink()
    app = shop(sink)
    assert await land_and_remember(app, "k", headers={"cookie": "_psc=0"}) == {"remembered": False}
    result = await paid(app, "k")
    assert not result["queued"] and "refused advertising consent" in result["reasons"][0]
    assert sink.events == []


async def test_the_collector_route_refuses_a_bad_key() -> None:
    async with client(shop(MemorySink()), peer=SHOPPER) as shopper:
        for body in ({}, {"key": ""}, {"key": "x" * 201}, [1]):
            answer = await shopper.post("/_ps/remember", json=body, headers={"user-agent": BROWSER})
            assert answer.status_code == 400, body
            assert "key" in answer.json()["error"]


async def test_tracker_restores_the_visitor_outside_any_request() -> None:
    config = Config(secret=SECRET)
    store = MemoryVisitors(config)
    app = shop(MemorySink())
    app.intake.visitors = store
    await land_and_remember(app, "sub-42")
    sink = MemorySink()
    async with Tracker(config, sink=sink, visitors=store) as tracker:
        result = await tracker.track("order_completed", visitor_key="sub-42",
                                     properties={"order_id": "renewal-7", "revenue": 9.5})
        again = await tracker.track("order_completed", visitor_key="sub-42",
                                    properties={"order_id": "renewal-7", "revenue": 9.5})
    assert result.queued and result.visitor_known is True
    assert again.duplicate and again.event_id == result.event_id  # the event id comes from the order id
    [event] = sink.events
    assert event["user_data"]["click_id"] == EPIK and event["user_data"]["client_ip_address"] == SHOPPER


async def test_tracker_refuses_an_event_outside_pinterests_window() -> None:
    sink = MemorySink()
    async with Tracker(Config(secret=SECRET), sink=sink) as tracker:
        result = await tracker.track("order_completed", traits={"email": "a@example.com"},
                                     properties={"order_id": "o-old"},
                                     timestamp=datetime.now(UTC) - timedelta(days=30))
    assert not result.queued and any("event_time" in reason for reason in result.reasons), result.reasons


# ---------------------------------------------------------------- Limited Data Processing


def _ldp(event: dict[str, Any]) -> str | None:
    value: str | None = event.get("custom_data", {}).get("opt_out_type")
    return value


async def _browser_event(app: PinSignalMiddleware, headers: dict[str, str]) -> Any:
    async with client(app, peer=SHOPPER) as shopper:
        return await shopper.post("/_ps/e", json={"type": "track", "event": "order_completed",
                                                  "properties": {"order_id": "o-1", "revenue": 1}},
                                  headers={"user-agent": BROWSER, **headers})


@pytest.mark.parametrize(("mode", "gpc", "sent", "flagged"), [
    ("off", False, True, False),
    ("off", True, False, False),     # GPC refuses
    ("always", False, True, True),
    ("always", True, False, False),  # GPC still refuses
    ("gpc", False, True, False),
    ("gpc", True, True, True),       # GPC is sent with LDP instead of not at all
])
async def test_ldp_modes(mode: str, gpc: bool, sent: bool, flagged: bool) -> None:
    sink = MemorySink()
    answer = await _browser_event(shop(sink, ldp=mode), {"sec-gpc": "1"} if gpc else {})
    assert answer.status_code == 202
    assert bool(sink.events) is sent
    if sent:
        assert (_ldp(sink.events[0]) == "LDP") is flagged


async def test_ldp_from_the_browsers_consent_call() -> None:
    sink = MemorySink()
    app = shop(sink)
    async with client(app, peer=SHOPPER) as shopper:
        answer = await shopper.post("/_ps/consent", json={"advertising": True, "ldp": True},
                                    headers={"user-agent": BROWSER})
        psl = [c for c in answer.headers.get_list("set-cookie") if c.startswith("_psl=")]
        assert psl and psl[0].startswith("_psl=1;")
        await shopper.post("/_ps/e", json={"type": "track", "event": "order_completed",
                                           "properties": {"order_id": "o-2"}},
                           headers={"user-agent": BROWSER, "cookie": "_psc=1; _psl=1"})
        withdrawn = await shopper.post("/_ps/consent", json={"advertising": True, "ldp": False},
                                       headers={"user-agent": BROWSER, "cookie": "_psl=1"})
        assert any(c.startswith("_psl=;") for c in withdrawn.headers.get_list("set-cookie"))
    assert _ldp(sink.events[0]) == "LDP"


async def test_ldp_per_call_in_remember_track_and_tracker() -> None:
    sink = MemorySink()
    app = shop(sink)
    await land_and_remember(app, "ldp-visitor", ldp=True)
    await paid(app, "ldp-visitor", order_id="o-a")
    await paid(app, "other", order_id="o-b", ldp=True, traits={"email": "b@example.com"})
    await paid(app, "other", order_id="o-c", traits={"email": "c@example.com"})
    async with Tracker(Config(secret=SECRET), sink=sink) as tracker:
        await tracker.track("order_completed", properties={"order_id": "o-d"}, traits={"email": "d@example.com"},
                            ldp=True)
    flags = {event["custom_data"]["order_id"]: _ldp(event) for event in sink.events}
    assert flags == {"o-a": "LDP", "o-b": "LDP", "o-c": None, "o-d": "LDP"}


# ---------------------------------------------------------------- a server source's context.visitor_key

WRITE_KEY = "backend-write-key-0123456789"


async def test_a_server_source_sends_context_visitor_key() -> None:
    sink = MemorySink()
    app = shop(sink, write_keys=(f"backend:{WRITE_KEY}",))
    await land_and_remember(app, "cart-php-1", browser=True)
    async with client(app, peer=PROVIDER) as backend:
        for key in ("cart-php-1", "cart-unknown"):
            answer = await backend.post("/_ps/v1/track", auth=(WRITE_KEY, ""), json={
                "event": "Order Completed", "userId": "u-7", "context": {"visitor_key": key},
                "properties": {"order_id": f"o-{key}", "revenue": 20, "email": "php@example.com"}})
            assert answer.status_code == 200, answer.text
            if key == "cart-unknown":
                assert answer.json() == {"success": True, "unknown_visitor_keys": ["cart-unknown"]}
            else:
                assert answer.json() == {"success": True}
    known, unknown = sink.events
    assert known["user_data"]["click_id"] == EPIK and known["user_data"]["client_ip_address"] == SHOPPER
    assert known["user_data"]["client_user_agent"] == BROWSER
    assert "click_id" not in unknown["user_data"] and "client_ip_address" not in unknown["user_data"]
    assert sink.counters["visitor_key_found"] == 1 and sink.counters["visitor_key_unknown"] == 1
