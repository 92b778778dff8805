"""The middleware in front of the proxy: epik landings, ``/_ps`` served locally, page views counted once."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import proxy_upstream
import pytest
from proxy_support import PROXY_SERVER_OPTIONS
from test_proxy_inject import BROWSER

from pinsignal import MemorySink
from pinsignal.config import Config
from pinsignal.proxy import ProxySettings, create_app
from support import ServerThread

pytestmark = pytest.mark.integration

EPIK = "dj0yJnU9NTZ6eVhBd0Q2aG4xNm5GX0dQN0Z3TkZ3cGx6OTNJdk8mcD0yJm09MSZ0PUFBQUFBR1l4b0lr"


@pytest.fixture
def fronted(upstream) -> Iterator[tuple[ServerThread, MemorySink]]:
    sink = MemorySink()
    config = Config(secret="proxy-test-secret-0123456789", ad_account_id="549755885175")
    app = create_app(ProxySettings(upstream=upstream.url, inject=True, server_pageviews=True), config=config, sink=sink)
    with ServerThread(app, **PROXY_SERVER_OPTIONS) as server:
        yield server, sink


def wait_for(sink: MemorySink, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while len(sink.events) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return sink.events


def test_collector_routes_are_served_by_pinsignal_never_by_the_upstream(fronted) -> None:
    server, _ = fronted
    before = len(proxy_upstream.SEEN_PATHS)
    script = httpx.get(server.url + "/_ps/c.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    httpx.post(server.url + "/_ps/e", content=b"{}", headers={"content-type": "text/plain"})
    httpx.get(server.url + "/_ps/anything-else")
    assert not [path for path in proxy_upstream.SEEN_PATHS[before:] if path.startswith("/_ps")]


def test_epik_landing_gets_the_cookie_and_the_upstream_cookies_are_untouched(fronted) -> None:
    server, _ = fronted
    response = httpx.get(server.url + f"/page?epik={EPIK}", headers=BROWSER)
    cookies = response.headers.get_list("set-cookie")
    assert "upstream_session=abc; Path=/" in cookies
    epik = [cookie for cookie in cookies if cookie.startswith("_epik=")]
    assert len(epik) == 1 and epik[0].startswith(f"_epik={EPIK};")


def test_server_page_view_and_the_script_page_call_count_once(fronted) -> None:
    server, sink = fronted
    response = httpx.get(server.url + f"/page?epik={EPIK}", headers=BROWSER)
    match = re.search(rb'<script src="(/_ps/c\.js\?v=[^"]+)" defer data-pv="([0-9a-f]{32})"></script></HEAD>',
                      response.content)
    assert match is not None
    script = httpx.get(server.url + match.group(1).decode().replace("&amp;", "&"))
    assert script.status_code == 200 and "immutable" in script.headers.get("cache-control", "")
    pageview_id = match.group(2).decode()
    (event,) = wait_for(sink, 1)
    assert event["event_name"] == "page_visit"
    assert event["event_id"] == pageview_id
    assert event["user_data"]["click_id"] == EPIK  # type: ignore[index]
    # What c.js sends for the same page view: its first page call carries the data-pv id.
    cookie = "; ".join(c.split(";", 1)[0] for c in response.headers.get_list("set-cookie"))
    headers = {"content-type": "text/plain", "user-agent": BROWSER["user-agent"], "origin": server.url,
               "cookie": cookie}
    page_call = {"type": "page", "message_id": pageview_id, "context": {"page": {"url": server.url + "/page"}}}
    answer = httpx.post(server.url + "/_ps/e", headers=headers, json=page_call)
    assert answer.status_code == 202  # answered after enqueueing: nothing more can arrive later
    assert [e["event_id"] for e in sink.events].count(pageview_id) == 1


def test_websockets_pass_the_middleware_and_the_proxy(fronted) -> None:
    from websockets.sync.client import connect

    server, _ = fronted
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10) as socket:
        socket.send("through both")
        assert socket.recv(timeout=10) == "echo:through both"


def test_opt_in_mode_counts_no_server_page_view_before_consent(upstream) -> None:
    sink = MemorySink()
    config = Config(secret="proxy-test-secret-0123456789", ad_account_id="549755885175", consent="opt-in")
    app = create_app(ProxySettings(upstream=upstream.url, server_pageviews=True), config=config, sink=sink)
    with ServerThread(app, **PROXY_SERVER_OPTIONS) as server:
        response = httpx.get(server.url + f"/page?epik={EPIK}", headers=BROWSER)
        assert response.status_code == 200
        assert not [c for c in response.headers.get_list("set-cookie") if c.startswith("_epik=")]
        deadline = time.monotonic() + 2  # give a wrongly counted view the time to show up
        while time.monotonic() < deadline and not sink.counters["dropped_consent"]:
            time.sleep(0.01)
    assert sink.events == []
    assert sink.counters["dropped_consent"] == 1
