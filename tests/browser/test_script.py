"""The browser script in a real headless Chromium, against a real uvicorn server and the real Redis queue.

A visitor lands with ``?epik=``, the server sets ``_epik``; the page calls ``pinsignal.identify`` and
``pinsignal.track``; the Pinterest events read back from the queue carry the IP, the user agent,
the click id from the cookie and the hashed email.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from pinsignal import Config, keys
from support import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ACCOUNT = "549755885175"
EPIK = "dj0yJnU9TXlDbGlja0lkJm49YmFyJm09YmF6JnQ9QUFBQUFB"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def shop(redis_url: str, shop_server: Callable[..., ServerThread]) -> ServerThread:
    config = Config(secret="browser-test-secret-0123456789", redis_url=redis_url, ad_account_id=ACCOUNT)
    return shop_server(config)


def queued_events(redis_url: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [orjson.loads(fields[b"e"]) for _, fields in client.xrange(keys.stream(ACCOUNT))]
    finally:
        client.close()


def test_landing_track_and_identify_in_chromium(shop: ServerThread, redis_url: str, chromium: Any,
                                                poll: Callable[..., Any]) -> None:
    with chromium.launch() as browser:
        context = browser.new_context(user_agent=chromium.user_agent)
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
                                for cookie in context.cookies()), 20.0), "no _psid cookie after the page view"
        assert tab.evaluate("document.cookie").count("_epik=") == 1  # the Pinterest Tag can read it

        tab.evaluate("pinsignal.identify('u-42', {email: ' Jane.Doe@Example.com '})")
        assert poll(lambda: any(cookie["name"] == "_psu" for cookie in context.cookies()), 20.0), "no _psu cookie"
        event_id = tab.evaluate("""pinsignal.track('order_completed', {order_id: 'o-1', revenue: 72.39,
            currency: 'USD', products: [{product_id: 'sku-1', price: 14.99, quantity: 3}]})""")
        assert isinstance(event_id, str) and event_id

        checkout = poll(lambda: next((event for event in queued_events(redis_url)
                                      if event.get("event_id") == event_id), None), 20.0)
        assert checkout is not None, f"event {event_id} never reached the queue: {queued_events(redis_url)}"
        user_data = checkout["user_data"]
        assert user_data["client_ip_address"] == "127.0.0.1"
        assert user_data["client_user_agent"] == chromium.user_agent
        assert user_data["click_id"] == EPIK
        assert user_data["em"] == [sha256("jane.doe@example.com")]
        assert user_data["external_id"] == [sha256("u-42")]
        assert checkout["event_name"] == "checkout" and checkout["custom_data"]["value"] == "72.39"
        page_visits = [event for event in queued_events(redis_url) if event["event_name"] == "page_visit"]
        assert page_visits and page_visits[0]["user_data"]["click_id"] == EPIK
        assert "Jane" not in orjson.dumps(queued_events(redis_url)).decode()


def test_an_event_tracked_right_before_leaving_the_page_still_arrives(shop: ServerThread, redis_url: str,
                                                                      chromium: Any, poll: Callable[..., Any]) -> None:
    # A click handler that tracks and then navigates at once: the script must send before the
    # page goes away (it flushes at the end of the current task, with keepalive), not on a timer.
    with chromium.launch() as browser:
        tab = browser.new_context(user_agent=chromium.user_agent).new_page()
        tab.goto(f"{shop.url}/")
        for i in range(6):
            tab.wait_for_function("() => window.pinsignal && typeof window.pinsignal.track === 'function'")
            with tab.expect_navigation():
                tab.evaluate(f"""() => {{ pinsignal.track("product_added",
                    {{product_id: "sku-{i}", price: 3, quantity: 1}}); location.href = "/?n={i}"; }}""")

    def carts() -> list[str]:
        return sorted(e["custom_data"]["content_ids"][0] for e in queued_events(redis_url)
                      if e["event_name"] == "add_to_cart")

    poll(lambda: len(carts()) == 6, timeout=10)
    assert carts() == [f"sku-{i}" for i in range(6)]
