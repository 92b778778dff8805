"""Tag companion mode end to end: Chromium browses the example shop with the Pinterest Tag switched on.

A stand-in for the Tag's ``core.js`` (served in place of ``https://s.pinimg.com/ct/core.js``)
records every ``pintrk`` call in the tab's sessionStorage; the shop runs under uvicorn with the real
Redis queue, a real ``pinsignal worker`` delivers to the sandbox. For every event, the automatic page
views and the checkout that ``track()`` sends from the server included, there must be exactly one
Tag call and one sandbox event, with equal event ids: that is what lets Pinterest count it once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pinsignal.collector.companion import tag_name
from pinsignal.config import Config
from pinsignal.demo import load_shop
from pinsignal.pipeline import Engine
from support import ServerThread, pinsignal_cmd, run_process

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

EPIK = "dj0yJnU9Q29tcGFuaW9uVGVzdCZuPWJhciZtPWJheiZ0PUFBQUFBQQ"
SECRET = "tag-companion-secret-0123456789abcdef"
# The Tag's core.js stand-in: takes over the queue the base code left, records each call.
STAND_IN_TAG = """(function () {
  var queued = (window.pintrk && window.pintrk.queue) || [];
  window.pintrk = function () {
    var calls = JSON.parse(sessionStorage.getItem('tag-calls') || '[]');
    calls.push(Array.prototype.slice.call(arguments));
    sessionStorage.setItem('tag-calls', JSON.stringify(calls));
  };
  queued.forEach(function (args) { window.pintrk.apply(null, args); });
})();"""


@pytest.fixture
def shop(sandbox_server: Any, redis_url: str, tmp_path: Path,
         serve: Callable[[Any], ServerThread]) -> Iterator[ServerThread]:
    config = Config(secret=SECRET, redis_url=redis_url, ad_account_id=sandbox_server.account_id,
                    access_token=sandbox_server.token, api_url=sandbox_server.url, batch_max_wait=0.2)
    app = load_shop().create_app(config, tag_id="2612345678901", engine=Engine.from_config(config))
    worker_env = {"REDIS_URL": redis_url, "PINTEREST_AD_ACCOUNT_ID": sandbox_server.account_id,
                  "PINTEREST_ACCESS_TOKEN": sandbox_server.token, "PINTEREST_API_URL": sandbox_server.url,
                  "PINSIGNAL_BATCH_MAX_WAIT": "0.2", "PINSIGNAL_DATA_DIR": str(tmp_path)}
    server = serve(app)
    with run_process(pinsignal_cmd("worker"), env=worker_env, log=tmp_path / "worker.log"):
        yield server


def click(tab: Any, element_id: str) -> None:
    # Through the DOM: the consent banner may cover the button, and what matters is the handler.
    tab.evaluate(f"document.getElementById({json.dumps(element_id)}).click()")


def test_every_event_reaches_the_tag_and_the_sandbox_once_with_one_id(shop: ServerThread, sandbox_server: Any,
                                                                       chromium: Any) -> None:
    with chromium.launch(browser_user_agent=True) as browser:
        context = browser.new_context(user_agent=chromium.user_agent)
        context.route("https://s.pinimg.com/**", lambda route: route.fulfill(
            status=200, content_type="text/javascript", body=STAND_IN_TAG))
        tab = context.new_page()
        # goto waits for the load event, which waits for c.js, t.js and the Tag: every page
        # view has been handed to the Tag by then.
        tab.goto(f"{shop.url}/?epik={EPIK}")
        tab.goto(f"{shop.url}/category/kitchen")
        tab.goto(f"{shop.url}/search?q=linen")
        tab.goto(f"{shop.url}/product/sku-101")
        with tab.expect_response(lambda response: response.url.endswith("/cart/add")):
            click(tab, "add-to-cart")
        click(tab, "wishlist")
        click(tab, "care-guide")
        tab.goto(f"{shop.url}/video")
        click(tab, "play")
        tab.goto(f"{shop.url}/cart")
        tab.fill("input[name=email]", "jane.doe@example.com")
        with tab.expect_navigation(url="**/order/*"):
            click(tab, "place-order")
        order_event_id = tab.text_content("#event-id")
        tab.goto(f"{shop.url}/contact")
        tab.fill("input[name=email]", "jane.doe@example.com")
        with tab.expect_navigation():
            click(tab, "send-lead")
        tab.wait_for_load_state("load")
        calls = json.loads(tab.evaluate("sessionStorage.getItem('tag-calls')"))

    tracked = [call for call in calls if call[0] == "track"]
    assert [call[:2] for call in calls if call[0] != "track"][:2] == [["load", "2612345678901"], ["page"]]
    tag_events = Counter((call[1], call[2]["event_id"]) for call in tracked)
    assert all(count == 1 for count in tag_events.values()), f"a Tag event was sent twice: {tag_events}"

    expected = len(tracked)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sandbox_server.stats()["events_recorded"] < expected:
        time.sleep(0.1)
    time.sleep(1.0)  # anything more than the Tag got would show up now
    delivered = [record["event"] for record in sandbox_server.events()]
    sandbox_events = Counter((tag_name(event["event_name"]), event["event_id"]) for event in delivered)
    assert sandbox_events == tag_events, (
        f"Tag only: {tag_events - sandbox_events}; sandbox only: {sandbox_events - tag_events}")

    names = {name for name, _ in tag_events}
    assert {"pagevisit", "viewcategory", "search", "viewcontent", "addtocart", "addtowishlist", "custom",
            "watchvideo", "initiatecheckout", "checkout", "lead"} <= names
    assert sum(1 for name, _ in tag_events if name == "pagevisit") == 9  # every page, the order page too
    # The checkout came from the server (track()), the Tag's copy from tag_call() on the order page.
    assert ("checkout", order_event_id) in tag_events
    checkout_call = next(call for call in tracked if call[1] == "checkout")
    checkout = next(event for event in delivered if event["event_name"] == "checkout")
    assert checkout_call[2]["value"] == float(checkout["custom_data"]["value"])
    assert checkout_call[2]["order_id"] == checkout["custom_data"]["order_id"]
    cart_call = next(call for call in tracked if call[1] == "addtocart")
    assert cart_call[2]["line_items"][0]["product_id"] == "sku-101" and cart_call[2]["currency"] == "USD"
    landing = next(event for event in delivered if event["event_name"] == "page_visit")
    assert landing["user_data"]["click_id"] == EPIK
