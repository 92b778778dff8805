"""The inspector in a real headless Chromium: a visitor shops in one tab while the inspector, open in
another, shows each event arrive without a reload, marks this browser's own events (the
``_psdebug`` cookie the page set), filters, opens the detail view and draws its three charts.

Real everything: the middleware under uvicorn, the embedded Redis, ``pinsignal worker`` delivering
to the sandbox over HTTP, the inspector under uvicorn. The screenshots in ``docs/inspector.md``
come from this test: ``INSPECTOR_SCREENSHOTS=docs .venv/bin/python -m pytest tests/browser/test_inspector.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pinsignal import Config
from pinsignal.inspector import create_app
from support import ServerThread, pinsignal_cmd, run_process

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SECRET = "inspector-browser-secret-0123456789"
EPIK = "dj0yJnU9TXlDbGlja0lkJm49YmFyJm09YmF6JnQ9QUFBQUFB"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def until(poll: Callable[..., Any]) -> Callable[..., None]:
    def wait(tab: Any, expression: str, timeout: float = 30.0) -> None:
        """``tab.wait_for_function`` without eval: the page's CSP (script-src 'self') forbids it, rightly."""
        assert poll(lambda: tab.evaluate(expression), timeout, interval=0.1), f"never true: {expression}"

    return wait


@pytest.fixture
def servers(redis_url: str, sandbox_server: Any, tmp_path: Path, shop_server: Callable[..., ServerThread],
            serve: Callable[[Any], ServerThread]) -> Iterator[tuple[str, str]]:
    config = Config(secret=SECRET, redis_url=redis_url, ad_account_id=sandbox_server.account_id)
    shop = shop_server(config)
    inspector = serve(create_app(Config(), redis_url=redis_url, heartbeat=1.0))
    env = {"REDIS_URL": redis_url, "PINTEREST_API_URL": sandbox_server.url, "PINTEREST_ACCESS_TOKEN":
           sandbox_server.token, "PINTEREST_AD_ACCOUNT_ID": sandbox_server.account_id, "PINSIGNAL_SECRET": SECRET,
           "PINSIGNAL_BATCH_MAX_WAIT": "0.05"}
    with run_process(pinsignal_cmd("worker"), env=env, log=tmp_path / "worker.log"):
        yield shop.url, inspector.url


def test_the_inspector_shows_events_live_with_filters_detail_and_charts(servers: tuple[str, str], tmp_path: Path,
                                                                       chromium: Any,
                                                                       until: Callable[..., None]) -> None:
    shop_url, inspector_url = servers
    shots = ROOT / os.environ["INSPECTOR_SCREENSHOTS"] if os.environ.get("INSPECTOR_SCREENSHOTS") else tmp_path
    user_agent = chromium.user_agent
    with chromium.launch() as browser:
        context = browser.new_context(user_agent=user_agent, viewport={"width": 1400, "height": 1000})
        inspector = context.new_page()
        inspector.goto(inspector_url + "/")
        inspector.wait_for_selector("#live.on", timeout=15000)
        code = inspector.text_content("#debug-code")
        assert code and any(c["name"] == "_psdebug" and c["value"] == code for c in context.cookies())

        # another visitor, without the debug cookie, checks out too
        answer = httpx.post(f"{shop_url}/_ps/e", headers={"user-agent": user_agent, "content-type": "text/plain",
                                                            "sec-fetch-site": "same-origin"},
                            content='{"type":"track","event":"order_completed","message_id":"other-1",'
                                    '"properties":{"revenue":10,"currency":"USD"},"traits":{"email":"x@y.example"}}')
        assert answer.status_code == 202

        shop = context.new_page()  # the same browser: the _psdebug cookie goes with its events
        shop.goto(f"{shop_url}/?epik={EPIK}")
        shop.wait_for_function("window.pinsignal && typeof window.pinsignal.track === 'function'")
        # the page view delivered first, so that the checkout leads its own worker batch: the worker
        # keeps the Pinterest event of the first event of each batch record in the trace
        until(inspector, "document.querySelectorAll('#events .stage.delivered').length >= 2")
        shop.evaluate("pinsignal.identify('u-42', {email: ' Jane.Doe@Example.com '})")
        # identify's hashed keys ride in the _psu cookie its answer sets: the checkout must leave after it
        deadline = time.monotonic() + 15
        while not any(c["name"] == "_psu" for c in context.cookies()):
            assert time.monotonic() < deadline, "identify() set no _psu cookie"
            shop.wait_for_timeout(50)
        event_id = shop.evaluate("""pinsignal.track('order_completed', {order_id: 'o-1', revenue: 72.39,
            currency: 'USD', products: [{product_id: 'sku-1', price: 14.99, quantity: 3}]})""")
        shop.evaluate("pinsignal.track('clicked_banner', {})")  # no pipeline: refused, counted

        # no reload: the rows arrive over the live stream and reach "delivered"
        row = f'#events tr[data-key="m:{event_id}"]'
        inspector.wait_for_selector(f"{row} .stage.delivered", timeout=30000)
        inspector.wait_for_selector('#events tr[data-key="m:other-1"] .stage.delivered', timeout=30000)
        assert "mine" in (inspector.get_attribute(row, "class") or "")
        assert inspector.evaluate("performance.getEntriesByType('navigation').length") == 1

        # "only my browser" hides the other visitor's checkout, keeps ours
        inspector.check("#f-mine")
        inspector.wait_for_selector('#events tr[data-key="m:other-1"]', state="detached")
        assert inspector.query_selector(row) is not None
        inspector.select_option("#f-stage", "refused")
        until(inspector, "document.querySelectorAll('#events tbody tr').length >= 1")
        assert "clicked_banner" in inspector.inner_text("#events tbody")
        inspector.select_option("#f-stage", "")
        inspector.fill("#f-id", event_id)
        until(inspector, "document.querySelectorAll('#events tbody tr').length === 1")

        # the charts are drawn from the records: bars of outcomes, a coverage cell per key, latency bars
        assert inspector.eval_on_selector_all("#chart-outcomes rect", "nodes => nodes.length") > 6
        coverage = inspector.inner_text("#chart-coverage")
        assert "checkout" in coverage and "em" in coverage and "%" in coverage
        assert "p50" in inspector.inner_text("#chart-latency")
        until(inspector, "document.querySelector('#refused').innerText.includes('no_pipeline')")
        inspector.fill("#f-id", "")
        inspector.uncheck("#f-mine")
        inspector.wait_for_timeout(600)
        inspector.screenshot(path=str(shots / "inspector.png"), full_page=True)

        # the detail view: envelope as stored (hashed), the pipeline, the Pinterest event, attempts
        inspector.click(row)
        inspector.wait_for_selector("#detail:not([hidden])")
        until(inspector, "document.querySelector('#detail-attempts tbody').innerText.includes('200')")
        envelope = inspector.inner_text("#detail-envelope")
        assert "order_completed" in envelope and "Jane" not in envelope and "jane" not in envelope
        assert '"checkout"' in inspector.inner_text("#detail-pipelines")
        assert '"em"' in inspector.inner_text("#detail-pinterest")
        stages = inspector.inner_text("#detail-stages")
        for stage in ("received", "queued", "sent", "delivered"):
            assert stage in stages
        inspector.screenshot(path=str(shots / "inspector-detail.png"), full_page=True)
