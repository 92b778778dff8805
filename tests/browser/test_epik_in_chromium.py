"""``_epik`` in a real Chromium: a Tag's script-set 7-day copy does not stick (issue 19).

The Pinterest Tag rewrites ``_epik`` from JavaScript, and Safari keeps a cookie written by script for
7 days at most. Chromium does not cap script cookies, but it keeps what ``Max-Age`` says, so a
7-day write from script stands in for the Tag's write here; what matters is which write the
browser holds last. pinsignal's answer: the collector writes ``_epik`` again from the server
(400 days) on every post that carries it, and c.js posts once more at ``pagehide``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from pinsignal import Config, MemorySink
from support import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.integration]

EPIK = "dj0yJnU9UmVuZXdhbFRlc3Qmbj1iYXImbT1iYXomdD1BQUFBQUE"
DAY = 86_400
# What the Tag does after the page has loaded: the same click id, written from script, for 7 days.
TAG_REWRITE = f"document.cookie = '_epik={EPIK}; Max-Age={7 * DAY}; Path=/; SameSite=Lax'"


@pytest.fixture
def site(shop_server: Callable[..., ServerThread]) -> Callable[..., ServerThread]:
    def start(**changes: Any) -> ServerThread:
        config = Config(secret="browser-epik-secret-0123456789", **changes)
        return shop_server(config, script="defer", paths=("/", "/next"), sink=MemorySink())

    return start


def epik_cookie(context: Any) -> dict[str, Any] | None:
    return next((cookie for cookie in context.cookies() if cookie["name"] == "_epik"), None)


def days_left(cookie: dict[str, Any] | None) -> float:
    assert cookie is not None, "no _epik cookie at all"
    return (cookie["expires"] - time.time()) / DAY


def renewed(context: Any) -> bool:
    cookie = epik_cookie(context)
    return cookie is not None and cookie["value"] == EPIK and days_left(cookie) > 399


def test_a_tags_7_day_rewrite_is_replaced_by_400_days_after_the_next_pages_events(
        site: Callable[..., ServerThread], chromium: Any, poll: Callable[..., Any]) -> None:
    server = site()
    with chromium.launch(browser_user_agent=True) as browser:
        context = browser.new_context(user_agent=chromium.user_agent)
        tab = context.new_page()
        tab.goto(f"{server.url}/?epik={EPIK}")
        assert 399 < days_left(epik_cookie(context)) <= 400
        tab.wait_for_function("window.pinsignal")
        tab.evaluate(TAG_REWRITE)
        assert 6 < days_left(epik_cookie(context)) <= 7  # the Tag's copy has replaced ours

        tab.goto(f"{server.url}/next")  # the next page's automatic page view carries _epik
        assert poll(lambda: renewed(context)), f"_epik not renewed: {epik_cookie(context)}"
        assert days_left(epik_cookie(context)) > 399

        # Every post renews (no "renewed lately" shortcut): a rewrite after the first renewal
        # is undone by the next event too.
        tab.evaluate(TAG_REWRITE)
        tab.evaluate("pinsignal.track('product_added', {product_id: 'sku-1', price: 3})")
        assert poll(lambda: renewed(context)), f"_epik not renewed by an event: {epik_cookie(context)}"


@pytest.mark.parametrize("leave", ["navigate to another site", "close the tab"])
def test_a_visitor_who_leaves_after_one_page_keeps_400_days(site: Callable[..., ServerThread], chromium: Any,
                                                            poll: Callable[..., Any], leave: str) -> None:
    # The landing page is the hard case: the Tag writes after load, and there may be no next page.
    # c.js posts an empty batch at pagehide with keepalive; Chromium's network service keeps the
    # Set-Cookie of that answer although the page that sent it is gone.
    server, elsewhere = site(), site()
    with chromium.launch(browser_user_agent=True) as browser:
        context = browser.new_context(user_agent=chromium.user_agent)
        tab = context.new_page()
        tab.goto(f"{server.url}/?epik={EPIK}")
        tab.wait_for_function("window.pinsignal")
        time.sleep(0.3)  # the page view's own renewal has come and gone
        tab.evaluate(TAG_REWRITE)
        assert days_left(epik_cookie(context)) <= 7
        if leave == "close the tab":
            context.new_page()  # keep the context alive
            tab.close(run_before_unload=True)
        else:
            tab.goto(f"{elsewhere.url.replace('127.0.0.1', 'localhost')}/")
        assert poll(lambda: renewed(context)), f"_epik not renewed at pagehide: {epik_cookie(context)}"


def test_opt_in_renews_nothing_before_consent_and_everything_after(site: Callable[..., ServerThread], chromium: Any,
                                                                   poll: Callable[..., Any]) -> None:
    server = site(consent="opt-in")
    with chromium.launch(browser_user_agent=True) as browser:
        context = browser.new_context(user_agent=chromium.user_agent)
        tab = context.new_page()
        tab.goto(f"{server.url}/?epik={EPIK}")
        tab.wait_for_function("window.pinsignal")
        assert epik_cookie(context) is None  # opt-in: no cookie before consent
        tab.evaluate(TAG_REWRITE)  # a Tag that does not wait for consent
        tab.goto(f"{server.url}/next")
        tab.wait_for_function("window.pinsignal")
        tab.evaluate("pinsignal.track('product_added', {product_id: 'sku-1', price: 3})")
        time.sleep(0.5)
        assert days_left(epik_cookie(context)) <= 7, "renewed before consent"

        tab.evaluate("pinsignal.consent({advertising: true})")
        assert poll(lambda: any(cookie["name"] == "_psc" for cookie in context.cookies()))
        tab.evaluate(TAG_REWRITE)
        tab.goto(f"{server.url}/")
        assert poll(lambda: renewed(context)), f"_epik not renewed after consent: {epik_cookie(context)}"
