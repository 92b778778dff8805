"""@segment/analytics-next's browser bundle in Chromium, loaded with inline settings (no Segment CDN),
its API host pointed at pinsignal: the normal delivery cross-origin (CORS) and batching (``/v1/b``).

The bundle is the npm package's ``dist/umd`` (``tests/senders/node_modules``); its lazily loaded
chunks are served from those same files where the library asks Segment's CDN for them, and any
other request off the machine is refused, so nothing but pinsignal can receive the events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from senders_support import BUNDLES, EPIK, check_checkout, node_modules, order_properties, stack

from support import CHROMIUM_ARGS, chromium_path, free_port, need

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
              "Safari/537.36 pinsignal-test")
PUBLIC_KEY = "ajs-public-write-key-123"  # analytics.js's own key: public, never a server source's

# Loads the library as Segment's docs show for npm users (AnalyticsBrowser.load) with the settings
# inline, identifies the shopper and tracks their orders. __SETTINGS__ and __ORDERS__ are filled in.
SCRIPT = """async () => {
  const { AnalyticsBrowser } = window.AnalyticsNext;
  const settings = __SETTINGS__;
  const [analytics] = await AnalyticsBrowser.load(
    { writeKey: settings.writeKey, cdnSettings: settings.cdnSettings, cdnURL: settings.cdnURL },
    { initialPageview: false });
  await analytics.identify('u-42', { email: ' Jane.Doe@Example.com ' });
  const sent = [];
  for (const order of __ORDERS__) {
    const ctx = await analytics.track('Order Completed', order,
      { traits: { email: ' Jane.Doe@Example.com ', phone: '+1 (415) 555-0123' } });
    sent.push(ctx.event.messageId);
  }
  return sent;
}"""


def _run(page_url: str, api_host: str, orders: list[str], delivery: dict[str, Any] | None
         ) -> tuple[list[str], list[tuple[str, str]]]:
    """The message ids analytics.js made, and (method, path) of each request it made to /_ps/v1."""
    executable = chromium_path()
    need(executable, "a Chromium binary (Debian package chromium) for the browser tests")
    node_modules()
    from playwright.sync_api import Route, sync_playwright

    segmentio: dict[str, Any] = {"apiKey": PUBLIC_KEY, "apiHost": api_host, "protocol": "http"}
    if delivery is not None:
        segmentio["deliveryStrategy"] = delivery
    settings = {"writeKey": PUBLIC_KEY, "cdnURL": "https://cdn.segment.com",
                # metrics.sampleRate 0: the library's own telemetry (to api.segment.io/v1/m) stays off
                "cdnSettings": {"integrations": {"Segment.io": segmentio}, "plan": {}, "metrics": {"sampleRate": 0}}}
    script = (SCRIPT.replace("__SETTINGS__", json.dumps(settings))
              .replace("__ORDERS__", json.dumps([order_properties(order_id) for order_id in orders])))

    def from_the_package(route: Route) -> None:
        name = route.request.url.rsplit("/", 1)[-1].split("?", 1)[0]
        path = BUNDLES / name
        if path.is_file():
            route.fulfill(status=200, content_type="text/javascript", body=path.read_bytes())
        else:
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(user_agent=BROWSER_UA)
            # the last route registered is tried first: the package's chunks, then refuse the rest
            elsewhere: list[str] = []
            context.route("https://**", lambda route: (elsewhere.append(route.request.url), route.abort()))
            context.route("https://cdn.segment.com/analytics-next/bundles/**", from_the_package)
            tab = context.new_page()
            posts: list[tuple[str, str]] = []
            tab.on("request", lambda request: posts.append((request.method, request.url.split("/_ps", 1)[1]))
                   if "/_ps/v1/" in request.url else None)
            tab.goto(page_url)
            tab.add_script_tag(url="/ajs/index.js")
            sent: list[str] = tab.evaluate(script)
            # batching: what is left in the batch goes out after its timeout; keep the page open
            tab.wait_for_timeout(1500 if delivery else 100)
        finally:
            browser.close()
    assert elsewhere == [], elsewhere  # inline settings, no telemetry: nothing but the chunks asked off the machine
    return sent, posts


def test_normal_delivery_cross_origin(sandbox_server: Any, redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    orders = ["ajs-1", "ajs-2"]
    # the page on localhost, the API host on 127.0.0.1: another origin, allowed, answered with CORS
    with stack(sandbox_server, redis_url, tmp_path, port=port,
               allowed_origins=(f"http://localhost:{port}",)) as site:
        sent, posts = _run(f"http://localhost:{port}/checkout/ajs-1?epik={EPIK}", f"127.0.0.1:{port}/_ps/v1",
                           orders, None)
        checkouts = site.checkouts(len(orders))
    assert len(sent) == 2
    assert ("POST", "/v1/t") in posts and ("POST", "/v1/i") in posts
    assert sorted(checkouts) == orders
    for order_id, event in checkouts.items():
        check_checkout(event, order_id, ip="127.0.0.1", user_agent=BROWSER_UA)
        assert event["event_source_url"].startswith(f"http://localhost:{port}/checkout/ajs-1")


def test_batching_delivery_posts_to_b(sandbox_server: Any, redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    orders = [f"ajs-b{n}" for n in range(5)]
    with stack(sandbox_server, redis_url, tmp_path, port=port) as site:
        sent, posts = _run(f"http://127.0.0.1:{port}/checkout/b?epik={EPIK}", f"127.0.0.1:{port}/_ps/v1", orders,
                           {"strategy": "batching", "config": {"size": 3, "timeout": 500}})
        checkouts = site.checkouts(len(orders))
    assert len(sent) == 5
    assert {path for _, path in posts} == {"/v1/b"} and len(posts) >= 2, posts  # 6 calls in batches of 3
    assert sorted(checkouts) == sorted(orders)
    for order_id, event in checkouts.items():
        check_checkout(event, order_id, ip="127.0.0.1", user_agent=BROWSER_UA)
