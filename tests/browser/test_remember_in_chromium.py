"""pinsignal.remember(key) and pinsignal.consent({advertising: true, ldp: true}) in a real Chromium: the
page remembers the visitor, a webhook (another client, another address) sends the order with the
visitor's click id and user agent, and the LDP choice flags the browser's next events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from pinsignal import Config, PinSignalMiddleware, keys, script_url, track
from support import CHROMIUM_ARGS, ServerThread, chromium_path, need

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ACCOUNT = "549755885175"
EPIK = "dj0yJnU9UmVtZW1iZXJlZCZuPWJhciZ0PUFBQUE"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html><html><head><title>Checkout</title>
<script src="{script_url(request)}" data-auto="off"></script></head><body><h1>Checkout</h1></body></html>""")


async def webhook(request: Request) -> JSONResponse:
    data = await request.json()
    result = await track(request, "order_completed", visitor_key=data["key"],
                         properties={"order_id": data["order_id"], "revenue": 19.5})
    return JSONResponse({"queued": result.queued, "known": result.visitor_known})


@pytest.fixture
def shop(redis_url: str) -> Iterator[ServerThread]:
    config = Config(secret="browser-test-secret-0123456789", redis_url=redis_url, ad_account_id=ACCOUNT)
    app = PinSignalMiddleware(Starlette(routes=[Route("/", page), Route("/webhook", webhook, methods=["POST"])]),
                              config=config)
    with ServerThread(app) as server:
        yield server


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


def test_remember_and_ldp_from_the_browser(shop: ServerThread, redis_url: str) -> None:
    executable = chromium_path()
    need(executable, "a Chromium binary (Debian package chromium) for the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_context(user_agent=USER_AGENT).new_page()
            tab.goto(f"{shop.url}/?epik={EPIK}")
            tab.wait_for_function("window.pinsignal && typeof window.pinsignal.remember === 'function'")
            answer = tab.evaluate("pinsignal.remember('cs_browser_1').then(r => r.json())")
            assert answer == {"remembered": True}
            tab.evaluate("pinsignal.consent({advertising: true, ldp: true})")
            tab.wait_for_function("document.cookie.includes('_psl=1')")
            tab.evaluate("pinsignal.track('order_completed', {order_id: 'browser-ldp', revenue: 5})")
        finally:
            browser.close()
    # the payment provider's webhook: another client, not the browser
    answer = httpx.post(f"{shop.url}/webhook", json={"key": "cs_browser_1", "order_id": "o-remembered"},
                        headers={"user-agent": "PayProvider-Webhooks/1.0"})
    assert answer.json() == {"queued": True, "known": True}
    events = {event["custom_data"]["order_id"]: event for event in queued(redis_url, 2)}
    remembered = events["o-remembered"]
    assert remembered["user_data"]["click_id"] == EPIK
    assert remembered["user_data"]["client_user_agent"] == USER_AGENT
    assert events["browser-ldp"]["custom_data"]["opt_out_type"] == "LDP"
    assert "opt_out_type" not in remembered["custom_data"]  # remembered before the LDP choice
