"""End to end: headless Chromium browses a site through ``pinsignal proxy``; events reach the Pinterest sandbox.

The proxy (middleware in front, ``--inject``, ``--server-pageviews``) serves the Python upstream,
the real Redis queue holds the events and a real ``pinsignal worker`` delivers them to the sandbox.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proxy_support import PROXY_SERVER_OPTIONS

from pinsignal.config import Config
from pinsignal.proxy import ProxySettings, create_app
from support import CHROMIUM_ARGS, ServerThread, chromium_path, need, pinsignal_cmd, run_process

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

EPIK = "dj0yJnU9UHJveHlMYW5kaW5nJm49YmFyJm09YmF6JnQ9QUFBQUFB"
# Headless Chromium calls itself "HeadlessChrome", which the crawler list flags: play an ordinary Chrome.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
SECRET = "proxy-browser-secret-0123456789abcdef"


@pytest.fixture
def proxied_site(upstream: ServerThread, sandbox_server: Any, redis_url: str, tmp_path: Path
                 ) -> Iterator[ServerThread]:
    config = Config(secret=SECRET, redis_url=redis_url, ad_account_id=sandbox_server.account_id,
                    access_token=sandbox_server.token, api_url=sandbox_server.url, batch_max_wait=0.2)
    app = create_app(ProxySettings(upstream=upstream.url, inject=True, server_pageviews=True), config=config)
    worker_env = {"REDIS_URL": redis_url, "PINTEREST_AD_ACCOUNT_ID": sandbox_server.account_id,
                  "PINTEREST_ACCESS_TOKEN": sandbox_server.token, "PINTEREST_API_URL": sandbox_server.url,
                  "PINSIGNAL_BATCH_MAX_WAIT": "0.2", "PINSIGNAL_DATA_DIR": str(tmp_path)}
    with ServerThread(app, **PROXY_SERVER_OPTIONS) as server, \
            run_process(pinsignal_cmd("worker"), env=worker_env, log=tmp_path / "worker.log"):
        yield server


def page_visits(sandbox: Any) -> list[dict[str, Any]]:
    return [record["event"] for record in sandbox.events() if record["event"]["event_name"] == "page_visit"]


def test_chromium_through_the_proxy_lands_with_epik_and_the_page_view_reaches_the_sandbox(
        proxied_site: ServerThread, sandbox_server: Any) -> None:
    executable = chromium_path()
    need(executable, "a Chromium binary (Debian package chromium) for the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(user_agent=USER_AGENT)
            tab = context.new_page()
            script_posts: list[Any] = []
            # keepalive fetches report no "requestfinished" in Chromium; the request itself is enough
            tab.on("request", lambda request: request.url.endswith("/_ps/e") and script_posts.append(request))
            response = tab.goto(f"{proxied_site.url}/page?epik={EPIK}")
            assert response is not None and response.status == 200
            tab.wait_for_function("window.pinsignal && typeof window.pinsignal.track === 'function'")
            assert tab.inner_text("h1") == "Hello from the upstream"
            cookies = {cookie["name"]: cookie["value"] for cookie in context.cookies()}
            assert cookies["_epik"] == EPIK
            assert cookies["upstream_session"] == "abc"  # the site's own cookie, untouched
            tag = tab.locator('script[src^="/_ps/c.js?v="]')  # the versioned, cacheable URL
            assert tag.count() == 1
            pageview_id = tag.get_attribute("data-pv")
            assert pageview_id and re.fullmatch(r"[0-9a-f]{32}", pageview_id)

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(e["event_id"] == pageview_id
                                                          for e in page_visits(sandbox_server)):
                time.sleep(0.1)
            delivered = {event["event_id"]: event for event in page_visits(sandbox_server)}
            assert pageview_id in delivered, f"server page view never reached the sandbox: {list(delivered)}"
            server_view = delivered[pageview_id]
            assert server_view["user_data"]["click_id"] == EPIK
            assert server_view["user_data"]["client_user_agent"] == USER_AGENT
            assert server_view["user_data"]["client_ip_address"] == "127.0.0.1"
            assert server_view["event_source_url"] == f"{proxied_site.url}/page?epik={EPIK}"

            # The script's automatic page call carries the data-pv id: one page view, one event.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not script_posts:
                tab.wait_for_timeout(50)
            assert script_posts, "the browser script never posted its page view"
            assert pageview_id in (script_posts[0].post_data or "")
            time.sleep(1.5)  # long enough for a second page view to be batched and delivered
            assert [event["event_id"] for event in page_visits(sandbox_server)] == [pageview_id]
        finally:
            browser.close()
