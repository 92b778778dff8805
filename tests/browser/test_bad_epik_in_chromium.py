"""Issue 18, item 9: in opt-in mode, nothing about the landing's ``epik`` may stop c.js in a real Chromium.

c.js keeps the landing's click id in ``sessionStorage`` until consent arrives. It used to decode it
with ``decodeURIComponent``, which throws ``URIError`` on ``%ZZ`` or ``100%``; storing it can throw
too (``QuotaExceededError`` when the storage is full or refused). Either way the script stopped
before ``window.pinsignal`` was defined, and every ``pinsignal.track()`` on the page threw. Now
the whole stash is one ``try``: whatever goes wrong there, the page's events still go out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from pinsignal import Config, MemorySink, PinSignalMiddleware, script_url
from support import CHROMIUM_ARGS, ServerThread, chromium_path, need

pytestmark = [pytest.mark.browser, pytest.mark.integration]

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
# sessionStorage that refuses every write, as a full or locked-down one does
REFUSING_STORAGE = ("Storage.prototype.setItem = function () {"
                    " throw new DOMException('the quota has been exceeded', 'QuotaExceededError'); };")


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html><html><head><title>Shop</title>
<script src="{script_url(request)}"></script></head><body><h1>Shop</h1></body></html>""")


@pytest.fixture
def opt_in_shop() -> Iterator[tuple[ServerThread, MemorySink]]:
    sink = MemorySink()
    config = Config(secret="browser-bad-epik-secret-0123456789", consent="opt-in")
    app = PinSignalMiddleware(Starlette(routes=[Route("/", page)]), config=config, sink=sink)
    with ServerThread(app) as server:
        yield server, sink


def poll(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


@pytest.mark.parametrize(("query", "init_script"), [
    ("?epik=%ZZ", None),
    ("?epik=100%", None),
    ("?utm_source=pinterest&epik=%E0%A4%A", None),  # a truncated UTF-8 escape
    ("?epik=dj0yJnU9QmFkRXBpa1Rlc3Q", REFUSING_STORAGE),
], ids=["percent-ZZ", "trailing-percent", "truncated-utf8", "storage-refuses"])
def test_regression_bad_epik_item9_never_stops_the_script_in_opt_in_mode(
        opt_in_shop: tuple[ServerThread, MemorySink], query: str, init_script: str | None) -> None:
    server, sink = opt_in_shop
    executable = chromium_path()
    need(executable, "a Chromium binary (Debian package chromium) for the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable,
                                             args=[*CHROMIUM_ARGS, f"--user-agent={USER_AGENT}"])
        try:
            context = browser.new_context(user_agent=USER_AGENT)
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
        finally:
            browser.close()
