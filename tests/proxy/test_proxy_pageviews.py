"""``--server-pageviews``: one ``page`` event per successful HTML navigation by a person, none otherwise."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from test_proxy_inject import BROWSER

from pinsignal.proxy.pageviews import PageviewPolicy, is_navigation, page_event

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def scope(method: str = "GET", **headers: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/p", "raw_path": b"/p", "query_string": b"a=1",
            "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


@pytest.mark.parametrize(("request_scope", "counted"), [
    (scope(sec_fetch_dest="document", user_agent=FIREFOX), True),
    (scope(accept="text/html,*/*", user_agent=FIREFOX), True),  # no fetch metadata: Accept decides
    (scope(sec_fetch_dest="image", accept="text/html", user_agent=FIREFOX), False),
    (scope(sec_fetch_dest="iframe", user_agent=FIREFOX), False),
    (scope(accept="application/json", user_agent=FIREFOX), False),
    (scope("POST", sec_fetch_dest="document", user_agent=FIREFOX), False),
    (scope(sec_fetch_dest="document", sec_purpose="prefetch", user_agent=FIREFOX), False),
    (scope(sec_fetch_dest="document", user_agent="Mozilla/5.0 (compatible; Googlebot/2.1)"), False),
    (scope(sec_fetch_dest="document"), False),  # no user agent at all: a script, not a person
])
def test_policy(request_scope: dict[str, Any], counted: bool) -> None:
    assert (PageviewPolicy().pageview_id(request_scope) is not None) is counted


@pytest.mark.parametrize(("request_scope", "page", "frame"), [
    (scope(sec_fetch_dest="document"), True, True),
    (scope(sec_fetch_dest="iframe"), False, True),  # a navigation, but not a page view of its own
    (scope(accept="text/html,*/*"), True, True),  # no fetch metadata: Accept decides
    (scope(accept="text/html", sec_fetch_dest="image"), False, False),  # fetch metadata wins, wherever it is
    (scope(sec_fetch_dest="empty", accept="text/html"), False, False),
    (scope("POST", sec_fetch_dest="document"), False, False),
    (scope(accept="application/json"), False, False),
])
def test_is_navigation(request_scope: dict[str, Any], page: bool, frame: bool) -> None:
    assert is_navigation(request_scope, frames=False) is page
    assert is_navigation(request_scope) is frame


def test_page_event_has_url_referrer_and_the_id() -> None:
    event = page_event(scope(host="shop.example", referer="https://www.pinterest.com/"), "pv1", scheme="https")
    assert event["type"] == "page" and event["message_id"] == "pv1"
    assert event["context"]["page"] == {"url": "https://shop.example/p?a=1", "referrer": "https://www.pinterest.com/"}
    assert event["timestamp"].endswith("Z")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[dict[str, Any], dict[str, Any]]] = []

    async def __call__(self, request_scope: dict[str, Any], event: dict[str, Any]) -> None:
        self.events.append((request_scope, event))

    def wait(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return [event for _, event in self.events]


@pytest.mark.integration
def test_navigation_produces_one_event_whose_id_is_in_the_injected_tag(make_proxy) -> None:
    recorder = Recorder()
    proxy = make_proxy(inject=True, server_pageviews=True, handoff=recorder)
    response = httpx.get(proxy.url + "/page?epik=dj0yJnU9abc", headers={**BROWSER, "referer": "https://pin.it/x"})
    (event,) = recorder.wait(1)
    match = re.search(rb'<script src="/_ps/c.js" defer data-pv="([0-9a-f]{32})"></script></HEAD>', response.content)
    assert match is not None
    assert event["message_id"] == match.group(1).decode()
    assert event["context"]["page"]["url"] == f"http://127.0.0.1:{proxy.port}/page?epik=dj0yJnU9abc"
    assert event["context"]["page"]["referrer"] == "https://pin.it/x"


@pytest.mark.integration
def test_no_event_for_errors_assets_bots_or_non_html(make_proxy) -> None:
    recorder = Recorder()
    proxy = make_proxy(inject=True, server_pageviews=True, handoff=recorder)
    not_found = httpx.get(proxy.url + "/missing", headers=BROWSER)
    assert b"data-pv" not in not_found.content and b"/_ps/c.js" in not_found.content
    httpx.get(proxy.url + "/page", headers={**BROWSER, "sec-fetch-dest": "script"})
    httpx.get(proxy.url + "/page", headers={**BROWSER, "user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"})
    httpx.get(proxy.url + "/binary", headers=BROWSER)
    httpx.get(proxy.url + "/page", headers=BROWSER)  # the one that counts, last
    assert len(recorder.wait(1)) == 1
    time.sleep(0.2)
    assert len(recorder.events) == 1


@pytest.mark.integration
def test_pageviews_without_inject_need_no_script(make_proxy) -> None:
    recorder = Recorder()
    proxy = make_proxy(server_pageviews=True, handoff=recorder)
    response = httpx.get(proxy.url + "/page", headers=BROWSER)
    assert b"<script" not in response.content
    assert len(recorder.wait(1)) == 1


@pytest.mark.integration
def test_page_url_uses_the_scheme_a_trusted_proxy_reports(make_proxy) -> None:
    recorder = Recorder()
    proxy = make_proxy(server_pageviews=True, handoff=recorder)
    httpx.get(proxy.url + "/page", headers={**BROWSER, "host": "shop.example", "x-forwarded-proto": "https"})
    (event,) = recorder.wait(1)
    assert event["context"]["page"]["url"] == "https://shop.example/page"
