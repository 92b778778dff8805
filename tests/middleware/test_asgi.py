"""PinSignalMiddleware as the wrapped app sees it: cookies header by header, pass-through, ASGI corners."""

from __future__ import annotations

import time
from typing import Any

import pytest
from mw_support import HTML, SECRET, client, cookies_named, wrap
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from pinsignal import MemorySink
from pinsignal.cookies import DeviceIds

pytestmark = pytest.mark.anyio

EPIK = "dj0yJnU9Zm9vJm49YmFyJm09YmF6JnQ9QUFBQUFB"


async def test_landing_over_https_sets_epik_next_to_the_apps_own_cookie() -> None:
    async with client(wrap(), https=True) as http:
        response = await http.get(f"/?epik={EPIK}", headers=HTML)
    assert response.status_code == 200
    assert response.headers.get_list("x-app") == ["1"]
    assert response.headers.get_list("set-cookie") == [
        "app_session=abc; HttpOnly; Path=/; SameSite=lax",
        f"_epik={EPIK}; Max-Age=34560000; Path=/; SameSite=Lax; Secure",
    ]


async def test_landing_over_http_has_no_secure_flag() -> None:
    async with client(wrap()) as http:
        response = await http.get(f"/?utm_source=pinterest&epik={EPIK}", headers=HTML)
    assert cookies_named(response, "_epik") == [f"_epik={EPIK}; Max-Age=34560000; Path=/; SameSite=Lax"]
    assert cookies_named(response, "app_session") == ["app_session=abc; HttpOnly; Path=/; SameSite=lax"]


async def test_forwarded_proto_is_believed_from_a_trusted_proxy_only() -> None:
    headers = {**HTML, "x-forwarded-proto": "https"}
    async with client(wrap(), peer="127.0.0.1") as http:
        trusted = await http.get(f"/?epik={EPIK}", headers=headers)
    async with client(wrap(), peer="198.51.100.7") as http:
        untrusted = await http.get(f"/?epik={EPIK}", headers=headers)
    async with client(wrap(trusted_proxies=("10.0.0.0/8",)), peer="10.1.2.3") as http:
        network = await http.get(f"/?epik={EPIK}", headers=headers)
    assert cookies_named(trusted, "_epik")[0].endswith("; Secure")
    assert not cookies_named(untrusted, "_epik")[0].endswith("; Secure")
    assert cookies_named(network, "_epik")[0].endswith("; Secure")


async def test_epik_httponly_is_configurable() -> None:
    async with client(wrap(epik_httponly=True), https=True) as http:
        response = await http.get(f"/?epik={EPIK}")
    assert cookies_named(response, "_epik") == [
        f"_epik={EPIK}; Max-Age=34560000; Path=/; SameSite=Lax; Secure; HttpOnly"]


async def test_landing_that_redirects_still_sets_epik() -> None:
    async with client(wrap()) as http:
        response = await http.get(f"/land?epik={EPIK}", headers=HTML)
    assert response.status_code == 302
    assert response.headers["location"] == "/"
    names = [cookie.split("=", 1)[0] for cookie in response.headers.get_list("set-cookie")]
    assert names == ["app_flash", "_epik"]


async def test_a_newer_epik_replaces_the_cookie() -> None:
    async with client(wrap()) as http:
        response = await http.get("/?epik=newer-click", headers={"cookie": "_epik=older-click"})
    assert cookies_named(response, "_epik") == ["_epik=newer-click; Max-Age=34560000; Path=/; SameSite=Lax"]


@pytest.mark.parametrize("bad", [
    "a%3Bb",                       # ;
    "a%2Cb",                       # ,
    "a%20b", "a+b",                # whitespace
    "a%0D%0ASet-Cookie:%20x=1",    # header injection
    "a%00b", "a%7Fb",              # control characters
    "a%22b", "a%5Cb",              # quote, backslash
    "%C3%A9t%C3%A9",               # non-ASCII
    "x" * 1025,                    # over 1 KB
    "",
])
async def test_implausible_epik_values_are_ignored_and_never_reflected(bad: str) -> None:
    async with client(wrap()) as http:
        response = await http.get(f"/?epik={bad}")
    assert response.status_code == 200
    assert cookies_named(response, "_epik") == []
    assert all("Set-Cookie: x" not in value for value in response.headers.get_list("set-cookie"))


async def test_longest_plausible_epik_is_kept() -> None:
    value = "A" * 1024
    async with client(wrap()) as http:
        response = await http.get(f"/?epik={value}")
    assert cookies_named(response, "_epik") == [f"_epik={value}; Max-Age=34560000; Path=/; SameSite=Lax"]


async def test_pass_through_request_is_untouched() -> None:
    sink = MemorySink()
    async with client(wrap(sink=sink)) as http:
        response = await http.get("/?page=2", headers={"accept": "application/json"})
        posted = await http.post("/", content=b"x")
    assert response.headers.get_list("set-cookie") == ["app_session=abc; HttpOnly; Path=/; SameSite=lax"]
    assert posted.headers.get_list("set-cookie") == ["app_session=abc; HttpOnly; Path=/; SameSite=lax"]
    assert sink.events == []


@pytest.mark.parametrize("cookie", [None, "_psid=" + "a" * 32, "_psid=old"])
async def test_page_loads_never_set_the_device_cookie(cookie: str | None) -> None:
    # The device id is minted with the first event and renewed by the collector (test_collector.py).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: 1_000_000_000.0)
        old = DeviceIds(SECRET).sign("b" * 32)
    headers = HTML if cookie is None else {**HTML, "cookie": cookie.replace("old", old)}
    async with client(wrap()) as http:
        page = await http.get("/", headers=headers)
        landing = await http.get(f"/?epik={EPIK}", headers=headers)
    assert cookies_named(page, "_psid") == cookies_named(landing, "_psid") == []


async def test_opt_in_mode_sets_no_cookie_before_consent() -> None:
    async with client(wrap(consent="opt-in")) as http:
        before = await http.get(f"/?epik={EPIK}", headers=HTML)
        after = await http.get(f"/?epik={EPIK}", headers={**HTML, "cookie": "_psc=1"})
    assert [c.split("=")[0] for c in before.headers.get_list("set-cookie")] == ["app_session"]
    assert [c.split("=")[0] for c in after.headers.get_list("set-cookie")] == ["app_session", "_epik"]


async def test_refusal_and_global_privacy_control_set_no_tracking_cookie() -> None:
    async with client(wrap(consent_cookie="cmp_ads")) as http:
        refused = await http.get(f"/?epik={EPIK}", headers={**HTML, "cookie": "cmp_ads=denied"})
        gpc = await http.get(f"/?epik={EPIK}", headers={**HTML, "sec-gpc": "1"})
        granted = await http.get(f"/?epik={EPIK}", headers={**HTML, "cookie": "cmp_ads=granted"})
    assert cookies_named(refused, "_epik") == cookies_named(refused, "_psid") == []
    assert cookies_named(gpc, "_epik") == cookies_named(gpc, "_psid") == []
    assert len(cookies_named(granted, "_epik")) == 1


async def test_cookie_domain_auto_uses_the_registrable_domain() -> None:
    async with client(wrap(cookie_domain="auto")) as http:
        shop = await http.get(f"/?epik={EPIK}", headers={"host": "shop.example.co.uk"})
        local = await http.get(f"/?epik={EPIK}", headers={"host": "localhost:8000"})
        ip = await http.get(f"/?epik={EPIK}", headers={"host": "192.0.2.10:8080"})
    assert cookies_named(shop, "_epik")[0].endswith("; Domain=example.co.uk")
    assert "Domain=" not in cookies_named(local, "_epik")[0]
    assert "Domain=" not in cookies_named(ip, "_epik")[0]


async def test_app_error_response_keeps_cookies_and_head_and_304_work() -> None:
    async with client(wrap()) as http:
        failed = await http.get(f"/error?epik={EPIK}")
        head = await http.head(f"/?epik={EPIK}")
        cached = await http.get(f"/cached?epik={EPIK}")
    assert failed.status_code == 500 and failed.text == "broken"
    assert len(cookies_named(failed, "_epik")) == 1
    assert head.status_code == 200 and head.content == b""
    assert len(cookies_named(head, "_epik")) == 1
    assert cached.status_code == 304 and cached.headers["etag"] == '"1"'
    assert len(cookies_named(cached, "_epik")) == 1


# ---------------------------------------------------------------- raw ASGI harness


async def _run(app: Any, scope: dict[str, Any], inbound: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbound.pop(0) if inbound else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _scope(path: str = "/", query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
            "headers": headers or [(b"host", b"testserver")], "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80)}


async def test_streaming_body_passes_chunk_by_chunk_with_cookies_on_the_start_message() -> None:
    seen_before_end: list[int] = []
    sent: list[dict[str, Any]] = []

    async def stream_app(scope: Any, receive: Any, send: Any) -> None:
        # No "headers" key at all: ASGI makes it optional.
        await send({"type": "http.response.start", "status": 200})
        for index in range(3):
            await send({"type": "http.response.body", "body": b"chunk%d" % index, "more_body": True})
            seen_before_end.append(len(sent))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await wrap(stream_app)(_scope(query=b"epik=" + EPIK.encode()), receive, send)
    assert [message["type"] for message in sent] == ["http.response.start"] + ["http.response.body"] * 4
    assert seen_before_end == [2, 3, 4]  # each chunk was forwarded before the app sent the next
    assert sent[0]["headers"] == [(b"set-cookie", f"_epik={EPIK}; Max-Age=34560000; Path=/; SameSite=Lax".encode())]


async def test_streaming_response_through_starlette() -> None:
    async def numbers(request: Any) -> StreamingResponse:
        async def body() -> Any:
            for index in range(5):
                yield f"{index}\n"
        return StreamingResponse(body(), media_type="text/plain")

    app = wrap(Starlette(routes=[Route("/numbers", numbers)]))
    async with client(app) as http:
        response = await http.get(f"/numbers?epik={EPIK}")
    assert response.text == "0\n1\n2\n3\n4\n"
    assert len(cookies_named(response, "_epik")) == 1


async def test_apps_start_message_is_not_mutated() -> None:
    original = {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(original)
        await send({"type": "http.response.body", "body": b"ok"})

    sent = await _run(wrap(app), _scope(query=b"epik=abc"), [])
    assert original["headers"] == [(b"x-a", b"1")]
    assert sent[0]["headers"][0] == (b"x-a", b"1")
    assert sent[0]["headers"][1][0] == b"set-cookie"


async def test_lifespan_passes_through_and_opens_and_closes_the_sink_once() -> None:
    events: list[str] = []
    sink = MemorySink()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                assert sink.opened == 1  # our resources are ready before the app's start-up runs
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    sent = await _run(wrap(app, sink=sink), {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                      [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert [message["type"] for message in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert (sink.opened, sink.closed) == (1, 1)


async def test_queue_failure_at_start_up_does_not_stop_the_site(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenSink(MemorySink):
        async def open(self) -> None:
            raise ConnectionError("redis is down")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})

    sent = await _run(wrap(app, sink=BrokenSink()), {"type": "lifespan", "asgi": {"version": "3.0"}},
                      [{"type": "lifespan.startup"}])
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert "could not open the event queue" in caplog.text


async def test_websocket_scope_passes_through() -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app = wrap(Starlette(routes=[WebSocketRoute("/ws", echo)]))
    scope = {**_scope("/ws", b"epik=abc"), "type": "websocket", "scheme": "ws", "subprotocols": []}
    sent = await _run(app, scope, [{"type": "websocket.connect"}])
    assert [message["type"] for message in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert "headers" not in sent[0] or all(name != b"set-cookie" for name, _ in sent[0]["headers"])
    assert "pinsignal" not in scope


async def test_user_agent_header_is_irrelevant_to_cookies() -> None:
    # Crawlers get cookies like anyone (it is their events that are dropped, at the collector).
    async with client(wrap()) as http:
        response = await http.get(f"/?epik={EPIK}", headers={"user-agent": "Googlebot/2.1"})
    assert len(cookies_named(response, "_epik")) == 1


@pytest.mark.parametrize(("query", "epik"), [
    ("epik=" + EPIK, EPIK), ("utm_source=pinterest&epik=" + EPIK, EPIK), ("epik=a", "a"),
    ("epik=" + "A" * 1024, "A" * 1024), ("epik=" + "A" * 1025, None), ("epik=", None), ("xepik=abc", None),
    ("q=epik=abc", None), ("epik=a&epik=b", "b"), ("epik=a&epik=b%3Bc", "a"), ("epik=a-b_c", "a-b_c"),
    ("epik=abc%3D", "abc="), ("epik=abc&x=1", "abc"), ("x=1&epik=abc&", "abc"), ("epik=ab=", "ab="),
    ("a=1&&epik=Zz9", "Zz9"),
])
@pytest.mark.parametrize("https", [False, True])
async def test_landing_cookie_carries_the_last_valid_epik_of_the_query(query: str, epik: str | None, https: bool
                                                                       ) -> None:
    async with client(wrap(), https=https) as http:
        response = await http.get("/?" + query, headers=HTML)
    secure = "; Secure" if https else ""
    expected = [] if epik is None else [f"_epik={epik}; Max-Age=34560000; Path=/; SameSite=Lax{secure}"]
    assert cookies_named(response, "_epik") == expected


@pytest.mark.parametrize(("path", "answered_by_app"), [
    ("/_ps/c.js", False), ("/_ps", True), ("/_psx", True), ("/_ps0", True), ("/x/_ps/c.js", True),
])
async def test_only_paths_under_the_collector_prefix_reach_the_collector(path: str, answered_by_app: bool) -> None:
    async with client(wrap()) as http:
        response = await http.get(path)
    # The app knows none of these paths (404), the collector serves its script (200).
    assert response.status_code == (404 if answered_by_app else 200)
