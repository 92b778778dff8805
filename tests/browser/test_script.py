"""The browser script in a real headless Chromium, against a real uvicorn server and the real Redis queue.

A visitor lands with ``?epik=``, the server sets ``_epik``; the page calls ``pinsignal.identify`` and
``pinsignal.track``; the Pinterest events read back from the queue carry the IP, the user agent,
the click id from the cookie and the hashed email.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from pinsignal import Config, PinSignalMiddleware, keys, script_url
from support import CHROMIUM_ARGS, ServerThread, chromium_path, need

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ACCOUNT = "549755885175"
EPIK = "dj0yJnU9TXlDbGlja0lkJm49YmFyJm09YmF6JnQ9QUFBQUFB"
# Headless Chromium announces itself as "HeadlessChrome", which the crawler list rightly flags;
# the test plays a visitor on an ordinary Chrome.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html><html><head><title>Shop</title>
<script src="{script_url(request)}" async></script></head><body><h1>Shop</h1></body></html>""")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def poll(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


@pytest.fixture
def shop(redis_url: str) -> Iterator[ServerThread]:
    config = Config(secret="browser-test-secret-0123456789", redis_url=redis_url, ad_account_id=ACCOUNT)
    app = PinSignalMiddleware(Starlette(routes=[Route("/", page)]), config=config)
    with ServerThread(app) as server:
        yield server


def queued_events(redis_url: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [orjson.loads(fields[b"e"]) for _, fields in client.xrange(keys.stream(ACCOUNT))]
    finally:
        client.close()


def test_landing_track_and_identify_in_chromium(shop: ServerThread, redis_url: str) -> None:
    executable = chromium_path()
    need(executable, "a Chromium binary (Debian package chromium) for the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(user_agent=USER_AGENT)
            tab = context.new_page()
            tab.goto(f"{shop.url}/?epik={EPIK}")
            tab.wait_for_function("window.pinsignal && typeof window.pinsignal.track === 'function'")

            cookies = {cookie["name"]: cookie for cookie in context.cookies()}
            epik = cookies["_epik"]
            assert epik["value"] == EPIK
            assert abs(epik["expires"] - (time.time() + 34_560_000)) < 120  # 400 days
            assert epik["httpOnly"] is False and epik["sameSite"] == "Lax" and epik["path"] == "/"
            # The device id comes with the first event, the page view the script sends on load.
            assert poll(lambda: any(cookie["name"] == "_psid" and cookie["httpOnly"]
                                    for cookie in context.cookies())), "no _psid cookie after the page view"
            assert tab.evaluate("document.cookie").count("_epik=") == 1  # the Pinterest Tag can read it

            tab.evaluate("pinsignal.identify('u-42', {email: ' Jane.Doe@Example.com '})")
            assert poll(lambda: any(cookie["name"] == "_psu" for cookie in context.cookies())), "no _psu cookie"
            event_id = tab.evaluate("""pinsignal.track('order_completed', {order_id: 'o-1', revenue: 72.39,
                currency: 'USD', products: [{product_id: 'sku-1', price: 14.99, quantity: 3}]})""")
            assert isinstance(event_id, str) and event_id

            checkout = poll(lambda: next((event for event in queued_events(redis_url)
                                          if event.get("event_id") == event_id), None))
            assert checkout is not None, f"event {event_id} never reached the queue: {queued_events(redis_url)}"
            user_data = checkout["user_data"]
            assert user_data["client_ip_address"] == "127.0.0.1"
            assert user_data["client_user_agent"] == USER_AGENT
            assert user_data["click_id"] == EPIK
            assert user_data["em"] == [sha256("jane.doe@example.com")]
            assert user_data["external_id"] == [sha256("u-42")]
            assert checkout["event_name"] == "checkout" and checkout["custom_data"]["value"] == "72.39"
            page_visits = [event for event in queued_events(redis_url) if event["event_name"] == "page_visit"]
            assert page_visits and page_visits[0]["user_data"]["click_id"] == EPIK
            assert "Jane" not in orjson.dumps(queued_events(redis_url)).decode()
        finally:
            browser.close()


def test_an_event_tracked_right_before_leaving_the_page_still_arrives(shop: ServerThread, redis_url: str) -> None:
    # A click handler that tracks and then navigates at once: the script must send before the
    # page goes away (it flushes at the end of the current task, with keepalive), not on a timer.
    executable = chromium_path()
    need(executable, "a Chromium binary (Debian package chromium) for the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_context(user_agent=USER_AGENT).new_page()
            tab.goto(f"{shop.url}/")
            for i in range(6):
                tab.wait_for_function("() => window.pinsignal && typeof window.pinsignal.track === 'function'")
                with tab.expect_navigation():
                    tab.evaluate(f"""() => {{ pinsignal.track("product_added",
                        {{product_id: "sku-{i}", price: 3, quantity: 1}}); location.href = "/?n={i}"; }}""")
        finally:
            browser.close()

    def carts() -> list[str]:
        return sorted(e["custom_data"]["content_ids"][0] for e in queued_events(redis_url)
                      if e["event_name"] == "add_to_cart")

    poll(lambda: len(carts()) == 6, timeout=10)
    assert carts() == [f"sku-{i}" for i in range(6)]
