"""What the browser tests share: the system's Chromium through Playwright, a shop page that loads c.js
under pinsignal on a real uvicorn server, and polling.

    def test_landing(shop_server, chromium, poll):
        server = shop_server(Config(secret=...), sink=MemorySink())
        with chromium.launch() as browser:
            tab = browser.new_context(user_agent=chromium.user_agent).new_page()
            tab.goto(f"{server.url}/?epik=...")
            assert poll(lambda: ..., timeout=10)

Chromium is the system's (``/usr/bin/chromium``, or ``PINSIGNAL_CHROMIUM``): without one, the tests
skip on a laptop and fail in CI (``support.need``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from pinsignal import Config, MemorySink, PinSignalMiddleware, script_url
from support import CHROMIUM_ARGS, ServerThread, chromium_path, need

# Headless Chromium announces itself as "HeadlessChrome", which the crawler list rightly flags;
# the tests play a visitor on an ordinary Chrome.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


class Chromium:
    """Launches the system's Chromium for one test; whatever is still open at its end is closed."""

    user_agent = USER_AGENT

    def __init__(self, playwright: Any, executable: str) -> None:
        self.playwright = playwright
        self.executable = executable
        self.browsers: list[Any] = []

    def launch(self, *, browser_user_agent: bool = False) -> Any:
        """A headless Chromium with ``support.CHROMIUM_ARGS`` (a Playwright ``Browser``, usable in ``with``).

        ``browser_user_agent=True`` sets :data:`USER_AGENT` for the whole browser, not only for a context:
        a keepalive request that outlives its page goes out with the browser's own ("HeadlessChrome",
        which the crawler list drops).
        """
        args = [*CHROMIUM_ARGS, f"--user-agent={USER_AGENT}"] if browser_user_agent else CHROMIUM_ARGS
        browser = self.playwright.chromium.launch(executable_path=self.executable, args=args)
        self.browsers.append(browser)
        return browser


@pytest.fixture
def chromium() -> Iterator[Chromium]:
    """Playwright on the system's Chromium (skips on a laptop without one, fails in CI)."""
    executable = chromium_path()
    need(executable, "a Chromium binary (Debian package chromium) for the browser tests")
    assert executable is not None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launcher = Chromium(playwright, executable)
        try:
            yield launcher
        finally:
            for browser in launcher.browsers:
                if browser.is_connected():
                    browser.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ServerThread]]:
    """``serve(app)``: the ASGI app under a real uvicorn server (lifespan on), stopped at the test's end."""
    servers: list[ServerThread] = []

    def start(app: Any) -> ServerThread:
        server = ServerThread(app).__enter__()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(servers):
            server.__exit__(None, None, None)


def shop_page(script: str = "async", title: str = "Shop") -> Callable[[Request], Any]:
    """A page that loads c.js with the ``<script>`` attributes ``script`` (``"async"``, ``"defer"``,
    ``'data-auto="off"'``, or ``""``)."""
    attributes = f" {script}" if script else ""

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(f"""<!doctype html><html><head><title>{title}</title>
<script src="{script_url(request)}"{attributes}></script></head><body><h1>{title}</h1></body></html>""")

    return page


@pytest.fixture
def shop_server(serve: Callable[[Any], ServerThread]) -> Callable[..., ServerThread]:
    """``shop_server(config, *, script="async", title="Shop", paths=("/",), routes=(), sink=None)``: a
    Starlette site whose ``paths`` serve :func:`shop_page`, with ``routes`` beside them, behind
    :class:`~pinsignal.PinSignalMiddleware` (``sink``: a ``MemorySink``, else the Redis queue of ``config``)."""

    def start(config: Config, *, script: str = "async", title: str = "Shop", paths: Sequence[str] = ("/",),
              routes: Sequence[BaseRoute] = (), sink: MemorySink | None = None) -> ServerThread:
        page = shop_page(script, title)
        site = Starlette(routes=[*(Route(path, page) for path in paths), *routes])
        return serve(PinSignalMiddleware(site, config=config, sink=sink))

    return start


@pytest.fixture
def poll() -> Callable[..., Any]:
    """``poll(check, timeout=10.0, interval=0.05)``: ``check()`` until it is truthy or the time is up;
    returns its last result."""

    def wait(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result or time.monotonic() > deadline:
                return result
            time.sleep(interval)

    return wait
