"""Issue 18, item 9: in opt-in mode, nothing about the landing's ``epik`` may stop c.js in a real Chromium.

c.js keeps the landing's click id in ``sessionStorage`` until consent arrives. It used to decode it
with ``decodeURIComponent``, which throws ``URIError`` on ``%ZZ`` or ``100%``; storing it can throw
too (``QuotaExceededError`` when the storage is full or refused). Either way the script stopped
before ``window.pinsignal`` was defined, and every ``pinsignal.track()`` on the page threw. Now
the whole stash is one ``try``: whatever goes wrong there, the page's events still go out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pinsignal import Config, MemorySink
from support import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# sessionStorage that refuses every write, as a full or locked-down one does
REFUSING_STORAGE = ("Storage.prototype.setItem = function () {"
                    " throw new DOMException('the quota has been exceeded', 'QuotaExceededError'); };")


@pytest.fixture
def opt_in_shop(shop_server: Callable[..., ServerThread]) -> tuple[ServerThread, MemorySink]:
    sink = MemorySink()
    config = Config(secret="browser-bad-epik-secret-0123456789", consent="opt-in")
    return shop_server(config, script="", sink=sink), sink


@pytest.mark.parametrize(("query", "init_script"), [
    ("?epik=%ZZ", None),
    ("?epik=100%", None),
    ("?utm_source=pinterest&epik=%E0%A4%A", None),  # a truncated UTF-8 escape
    ("?epik=dj0yJnU9QmFkRXBpa1Rlc3Q", REFUSING_STORAGE),
], ids=["percent-ZZ", "trailing-percent", "truncated-utf8", "storage-refuses"])
def test_regression_bad_epik_item9_never_stops_the_script_in_opt_in_mode(
        opt_in_shop: tuple[ServerThread, MemorySink], chromium: Any, poll: Callable[..., Any], query: str,
        init_script: str | None) -> None:
    server, sink = opt_in_shop
    with chromium.launch(browser_user_agent=True) as browser:
        context = browser.new_context(user_agent=chromium.user_agent)
        if init_script is not None:
            context.add_init_script(init_script)
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(f"{server.url}/{query}")
        assert tab.evaluate("typeof window.pinsignal && typeof window.pinsignal.track") == "function", errors
        event_id = tab.evaluate("pinsignal.track('product_added', {product_id: 'sku-9', price: 4})")
        assert isinstance(event_id, str) and event_id
        assert sink.events == []  # opt-in: nothing before consent
        tab.evaluate("pinsignal.consent({advertising: true})")
        arrived = poll(lambda: [event for event in sink.events if event["event_id"] == event_id])
        assert arrived, f"the held event never arrived after consent: {sink.events}"
        assert errors == []
