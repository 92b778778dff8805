"""pinsignal.remember(key) and pinsignal.consent({advertising: true, ldp: true}) in a real Chromium: the
page remembers the visitor, a webhook (another client, another address) sends the order with the
visitor's click id and user agent, and the LDP choice flags the browser's next events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import redis
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pinsignal import Config, keys, track
from support import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ACCOUNT = "549755885175"
EPIK = "dj0yJnU9UmVtZW1iZXJlZCZuPWJhciZ0PUFBQUE"


async def webhook(request: Request) -> JSONResponse:
    data = await request.json()
    result = await track(request, "order_completed", visitor_key=data["key"],
                         properties={"order_id": data["order_id"], "revenue": 19.5})
    return JSONResponse({"queued": result.queued, "known": result.visitor_known})


@pytest.fixture
def shop(redis_url: str, shop_server: Callable[..., ServerThread]) -> ServerThread:
    config = Config(secret="browser-test-secret-0123456789", redis_url=redis_url, ad_account_id=ACCOUNT)
    return shop_server(config, script='data-auto="off"', title="Checkout",
                       routes=[Route("/webhook", webhook, methods=["POST"])])


def queued(redis_url: str, count: int) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 20
    try:
        while True:
            events = [orjson.loads(fields[b"e"]) for _, fields in client.xrange(keys.stream(ACCOUNT))]
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.05)
    finally:
        client.close()


def test_remember_and_ldp_from_the_browser(shop: ServerThread, redis_url: str, chromium: Any) -> None:
    with chromium.launch() as browser:
        tab = browser.new_context(user_agent=chromium.user_agent).new_page()
        tab.goto(f"{shop.url}/?epik={EPIK}")
        tab.wait_for_function("window.pinsignal && typeof window.pinsignal.remember === 'function'")
        answer = tab.evaluate("pinsignal.remember('cs_browser_1').then(r => r.json())")
        assert answer == {"remembered": True}
        tab.evaluate("pinsignal.consent({advertising: true, ldp: true})")
        tab.wait_for_function("document.cookie.includes('_psl=1')")
        tab.evaluate("pinsignal.track('order_completed', {order_id: 'browser-ldp', revenue: 5})")
    # the payment provider's webhook: another client, not the browser
    answer = httpx.post(f"{shop.url}/webhook", json={"key": "cs_browser_1", "order_id": "o-remembered"},
                        headers={"user-agent": "PayProvider-Webhooks/1.0"})
    assert answer.json() == {"queued": True, "known": True}
    events = {event["custom_data"]["order_id"]: event for event in queued(redis_url, 2)}
    remembered = events["o-remembered"]
    assert remembered["user_data"]["click_id"] == EPIK
    assert remembered["user_data"]["client_user_agent"] == chromium.user_agent
    assert events["browser-ldp"]["custom_data"]["opt_out_type"] == "LDP"
    assert "opt_out_type" not in remembered["custom_data"]  # remembered before the LDP choice
