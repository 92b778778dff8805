"""track() and identify() from the app's own handlers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mw_support import BROWSER, HTML, SECRET, client, cookies_named, wrap
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pinsignal import MemorySink, event_id_for, identify, script_url, track
from pinsignal.cookies import IdentityCookie
from pinsignal.errors import QueueUnavailable
from pinsignal.pipeline.normalise import sha256_hex

pytestmark = pytest.mark.anyio


async def order(request: Request) -> Response:
    data = await request.json()
    if data.get("identify"):
        identify(request, user_id="u-42", traits={"email": "Jane.Doe@Example.com", "phone": "+1 415 555 0123"})
    result = await track(request, "order_completed", properties=data.get("properties"),
                         message_id=data.get("message_id"), user_id=data.get("user_id"))
    response = JSONResponse({"event_id": result.event_id, "queued": result.queued, "duplicate": result.duplicate,
                             "reasons": result.reasons})
    response.set_cookie("cart", "", max_age=0)
    return response


async def late_identify(request: Request) -> Response:
    async def body() -> Any:
        yield b"started"
        assert identify(request, traits={"email": "late@example.com"}) is False

    from starlette.responses import StreamingResponse
    return StreamingResponse(body())


async def page(request: Request) -> Response:
    return JSONResponse({"script": script_url(request)})


def app_with(sink: MemorySink, **changes: Any) -> Any:
    return wrap(Starlette(routes=[Route("/orders", order, methods=["POST"]), Route("/late", late_identify),
                                  Route("/page", page)]), sink=sink, **changes)


HEADERS = {"user-agent": BROWSER, "referer": "http://testserver/checkout"}


async def test_track_enriches_from_the_request_and_uses_a_deterministic_id(sink: MemorySink) -> None:
    body = {"properties": {"order_id": "o-1001", "revenue": 72.39}}
    async with client(app_with(sink), peer="203.0.113.9") as http:
        first = await http.post("/orders?epik=landing", json=body, headers={**HEADERS, "cookie": "_epik=old"})
        retry = await http.post("/orders", json={"properties": {**body["properties"], "revenue": 72.4}},
                                headers=HEADERS)
    assert first.status_code == 200
    expected = event_id_for("order_completed", {"order_id": "o-1001"})
    assert first.json() == {"event_id": expected, "queued": True, "duplicate": False, "reasons": []}
    assert retry.json()["event_id"] == expected and retry.json()["duplicate"] is True
    [queued] = sink.events
    envelope = queued["envelope"]
    assert envelope["message_id"] == expected
    assert envelope["context"]["ip"] == "203.0.113.9" and envelope["context"]["userAgent"] == BROWSER
    assert envelope["context"]["page"]["url"] == "http://testserver/checkout"
    assert queued["epik"] == "landing" and queued["cookies"] == {"_epik": "old"}
    cookies = first.headers.get_list("set-cookie")
    assert [cookie.split("=", 1)[0] for cookie in cookies] == ["cart", "_epik", "_psid"]  # the first event mints
    assert cookies[1] == "_epik=landing; Max-Age=34560000; Path=/; SameSite=Lax"


async def test_message_id_wins_and_request_url_is_the_fallback_page(sink: MemorySink) -> None:
    async with client(app_with(sink)) as http:
        response = await http.post("/orders", json={"message_id": "given-1", "properties": {}},
                                   headers={"user-agent": BROWSER})
    assert response.json()["event_id"] == "given-1"
    assert sink.events[0]["envelope"]["context"]["page"]["url"] == "http://testserver/orders"


def test_event_ids_are_stable_and_distinct() -> None:
    assert event_id_for("checkout", {"order_id": 7}) == event_id_for("checkout", {"order_id": "7", "revenue": 1})
    assert event_id_for("checkout", {"order_id": 7}) != event_id_for("checkout", {"order_id": 8})
    assert event_id_for("lead", {"form": "a"}, device_id="d1") == event_id_for("lead", {"form": "a"}, device_id="d1")
    assert event_id_for("lead", {"form": "a"}, device_id="d1") != event_id_for("lead", {"form": "a"}, device_id="d2")
    assert event_id_for("lead", {"b": 1, "a": 2}) == event_id_for("lead", {"a": 2, "b": 1})
    assert event_id_for("lead").startswith("ev-") and len(event_id_for("lead")) == 35


async def test_identify_sets_only_hashed_keys_and_the_same_request_uses_them(sink: MemorySink) -> None:
    async with client(app_with(sink), https=True) as http:
        response = await http.post("/orders", json={"identify": True, "properties": {"order_id": "o-1"}},
                                   headers=HEADERS)
    [cookie] = cookies_named(response, "_psu")
    assert cookie.endswith("; Max-Age=34560000; Path=/; SameSite=Lax; Secure; HttpOnly")
    assert "jane" not in cookie.lower() and "415" not in cookie and "u-42" not in cookie
    stored = IdentityCookie(SECRET).loads(cookie.split(";", 1)[0].removeprefix("_psu="))
    assert stored["email"] == sha256_hex("jane.doe@example.com")
    assert stored["phone"] == sha256_hex("14155550123")
    assert stored["user_id"] == sha256_hex("u-42")
    envelope = sink.events[0]["envelope"]
    assert envelope["traits"]["email"] == stored["email"] and envelope["user_id"] == stored["user_id"]


async def test_identify_merges_with_what_was_remembered(sink: MemorySink) -> None:
    earlier = IdentityCookie(SECRET).dumps({"zip": "a" * 64, "email": "b" * 64})
    async with client(app_with(sink)) as http:
        response = await http.post("/orders", json={"identify": True, "properties": {"order_id": "o-2"}},
                                   headers={**HEADERS, "cookie": f"_psu={earlier}"})
    stored = IdentityCookie(SECRET).loads(cookies_named(response, "_psu")[0].split(";", 1)[0][5:])
    assert stored["zip"] == "a" * 64 and stored["email"] == sha256_hex("jane.doe@example.com")


async def test_identify_and_track_respect_consent(sink: MemorySink) -> None:
    async with client(app_with(sink, consent="opt-in")) as http:
        response = await http.post("/orders", json={"identify": True, "properties": {"order_id": "o-3"}},
                                   headers=HEADERS)
    assert cookies_named(response, "_psu") == []
    assert response.json()["queued"] is False and "opt-in" in response.json()["reasons"][0]
    assert sink.events == [] and sink.counters["dropped_consent"] == 1


async def test_identify_after_the_response_started_sets_nothing(sink: MemorySink) -> None:
    async with client(app_with(sink)) as http:
        response = await http.get("/late", headers=HTML)
    assert response.text == "started" and cookies_named(response, "_psu") == []


async def test_script_url_for_templates(sink: MemorySink) -> None:
    app = app_with(sink)
    async with client(app) as http:
        response = await http.get("/page")
    assert response.json() == {"script": app.script_url}


async def test_without_the_middleware_the_error_says_what_to_do() -> None:
    async def bare(request: Request) -> Response:
        await track(request, "x")
        return Response()

    transport = httpx.ASGITransport(app=Starlette(routes=[Route("/", bare)]))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with pytest.raises(RuntimeError, match="add it with app.add_middleware"):
            await http.get("/")


async def test_regression_item8_track_fails_soft_when_redis_cannot_take_the_event_or_raises_when_told(
        caplog: pytest.LogCaptureFixture) -> None:
    class DownSink(MemorySink):
        async def enqueue(self, events: Any, **options: Any) -> Any:
            raise QueueUnavailable("Redis failed while queueing events (ConnectionError: down)")

    from pinsignal.tracking import UNQUEUED

    # The default: the app's own request goes on; nothing was queued, and it says why.
    before = UNQUEUED["queue_unavailable"]
    async with client(app_with(DownSink())) as http:
        response = await http.post("/orders", json={"properties": {"order_id": "o-1", "revenue": 1}},
                                   headers=HEADERS)
    assert response.status_code == 200
    answer = response.json()
    assert answer["queued"] is False and answer["duplicate"] is False
    assert answer["event_id"] == event_id_for("order_completed", {"order_id": "o-1"})
    assert answer["reasons"] == ["not queued: Redis failed while queueing events (ConnectionError: down)"]
    assert UNQUEUED["queue_unavailable"] == before + 1
    assert "not queued, the app's request goes on" in caplog.text
    # PINSIGNAL_TRACK_RAISES=true: the app decides.
    with pytest.raises(QueueUnavailable, match="queueing events"):
        async with client(app_with(DownSink(), track_raises=True)) as http:
            await http.post("/orders", json={"properties": {"order_id": "o-1", "revenue": 1}}, headers=HEADERS)
