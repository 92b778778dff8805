"""``_epik`` is written again from the server by the collector and ``track()`` (DESIGN 5, issue 19).

A Tag still on the page rewrites ``_epik`` from JavaScript, and Safari caps that copy at 7 days. The
server cannot see a cookie's expiry, so every collector post and every ``track()`` request that
carries ``_epik`` gets it back as a 400-day, server-set cookie: the same value, or a newer click id.
"""

from __future__ import annotations

from typing import Any

import pytest
from mw_support import BROWSER, client, cookies_named, wrap
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pinsignal import MemorySink, track

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json", "user-agent": BROWSER}
RENEWED = "_epik=click-1; Max-Age=34560000; Path=/; SameSite=Lax"


def event(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "product_added", "message_id": "m-1", "properties": {}, **fields}


async def test_every_collector_post_carrying_epik_renews_it_for_400_days(sink: MemorySink) -> None:
    async with client(wrap(sink=sink)) as http:
        posts = [await http.post("/_ps/e", json=event(message_id=f"m-{i}"),
                                 headers={**JSON, "cookie": "_epik=click-1"}) for i in range(3)]
        empty = await http.post("/_ps/e", json={"batch": []}, headers={**JSON, "cookie": "_epik=click-1"})
    async with client(wrap(sink=sink)) as http:
        without = await http.post("/_ps/e", json=event(message_id="m-9"), headers=JSON)
    # No throttle: the second and third posts renew too (a Tag may have rewritten it in between).
    for response in [*posts, empty]:
        assert response.status_code == 202
        assert cookies_named(response, "_epik") == [RENEWED]
    assert cookies_named(without, "_epik") == []


async def test_the_renewal_beacon_is_an_empty_batch_and_renews_only(sink: MemorySink) -> None:
    beacon = {"content-type": "text/plain;charset=UTF-8", "user-agent": BROWSER, "sec-fetch-site": "same-origin",
              "cookie": "_epik=click-1"}
    async with client(wrap(sink=sink)) as http:
        response = await http.post("/_ps/e", content=b'{"batch":[]}', headers=beacon)
    assert response.status_code == 202 and response.json() == {"accepted": [], "rejected": []}
    assert cookies_named(response, "_epik") == [RENEWED]
    assert sink.events == []
    # No event, no device id: the renewal post at pagehide is not a visitor's first event.
    assert cookies_named(response, "_psid") == []


async def test_a_newer_click_id_in_the_page_url_replaces_the_cookie(sink: MemorySink) -> None:
    landing = event(context={"page": {"url": "https://shop.example/p?utm=x&epik=click-2#top"}})
    async with client(wrap(sink=sink), https=True) as http:
        response = await http.post("/_ps/e", json=landing, headers={**JSON, "cookie": "_epik=click-1"})
    assert cookies_named(response, "_epik") == ["_epik=click-2; Max-Age=34560000; Path=/; SameSite=Lax; Secure"]


@pytest.mark.parametrize("value", ["a\\b", "x" * 1025, "caf\u00e9", "a,b"])
async def test_an_implausible_cookie_value_is_never_written_back(sink: MemorySink, value: str) -> None:
    async with client(wrap(sink=sink)) as http:
        raw = f"_epik={value}".encode("latin-1")
        response = await http.post("/_ps/e", json=event(), headers={**JSON, "cookie": raw})
    async with client(wrap(sink=sink)) as http:
        bad_url = await http.post("/_ps/e", json=event(context={"page": {"url": "https://s.example/?epik=a%3Bb"}}),
                                  headers=JSON)
    assert cookies_named(response, "_epik") == []
    assert cookies_named(bad_url, "_epik") == []


@pytest.mark.parametrize(("changes", "headers", "renewed"), [
    ({}, {"sec-gpc": "1"}, False),                                      # Global Privacy Control
    ({}, {"cookie": "_epik=click-1; _psc=0"}, False),                   # refused
    ({"consent": "opt-in"}, {}, False),                                 # opt-in, nothing given yet
    ({"consent": "opt-in"}, {"cookie": "_epik=click-1; _psc=1"}, True),  # opt-in, given
    ({"consent": "opt-in", "consent_cookie": "cmp"}, {"cookie": "_epik=click-1; cmp=granted"}, True),
])
async def test_renewal_follows_consent_in_both_modes(sink: MemorySink, changes: dict[str, Any],
                                                    headers: dict[str, str], renewed: bool) -> None:
    cookie = headers.get("cookie", "_epik=click-1")
    async with client(wrap(sink=sink, **changes)) as http:
        response = await http.post("/_ps/e", json=event(), headers={**JSON, **headers, "cookie": cookie})
    async with client(wrap(sink=sink, **changes)) as http:
        # An event that says "consent given" on its own is not consent for cookies in opt-in.
        given = await http.post("/_ps/e", json=event(context={"consent": {"advertising": True}}),
                                headers={**JSON, **headers, "cookie": cookie})
    assert cookies_named(response, "_epik") == ([RENEWED] if renewed else [])
    assert cookies_named(given, "_epik") == ([RENEWED] if renewed else [])


async def renew_in_handler(request: Request) -> Response:
    result = await track(request, "product_added", properties={"product_id": "sku-1"})
    return JSONResponse({"event_id": result.event_id})


@pytest.mark.parametrize(("path", "cookie", "expected"), [
    ("/buy", "_epik=click-1", RENEWED),
    ("/buy?epik=click-2", "_epik=click-1", "_epik=click-2; Max-Age=34560000; Path=/; SameSite=Lax"),
    ("/buy", "other=1", None),
])
async def test_track_renews_epik_on_the_apps_response(sink: MemorySink, path: str, cookie: str,
                                                     expected: str | None) -> None:
    app = wrap(Starlette(routes=[Route("/buy", renew_in_handler)]), sink=sink)
    async with client(app) as http:
        response = await http.get(path, headers={"user-agent": BROWSER, "cookie": cookie})
    assert response.status_code == 200
    # One _epik header, never two: the landing's own cookie and the renewal are the same write.
    assert cookies_named(response, "_epik") == ([expected] if expected else [])


async def test_track_renews_nothing_without_consent(sink: MemorySink) -> None:
    app = wrap(Starlette(routes=[Route("/buy", renew_in_handler)]), sink=sink, consent="opt-in")
    async with client(app) as http:
        response = await http.get("/buy", headers={"user-agent": BROWSER, "cookie": "_epik=click-1"})
    assert cookies_named(response, "_epik") == []
