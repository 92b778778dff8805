"""The collector routes under /_ps: script, event intake, limits, cross-site refusal, Segment shapes, consent."""

from __future__ import annotations

import gzip
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from mw_support import BROWSER, SECRET, StubEngine, client, cookies_named, wrap

from pinsignal import MemorySink
from pinsignal.cookies import DeviceIds, IdentityCookie
from pinsignal.errors import QueueUnavailable
from pinsignal.events import parse_time

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json", "user-agent": BROWSER}
BEACON = {"content-type": "text/plain;charset=UTF-8", "user-agent": BROWSER, "sec-fetch-site": "same-origin"}


def event(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "order_completed", "message_id": "m-1", "properties": {"revenue": 10}, **fields}


# ---------------------------------------------------------------- the script


async def test_script_is_small_cacheable_and_versioned() -> None:
    app = wrap()
    async with client(app) as http:
        zipped = await http.get("/_ps/c.js", headers={"accept-encoding": "gzip"})
        plain = await http.get("/_ps/c.js", headers={"accept-encoding": "identity"})
        versioned = await http.get(app.script_url)
        again = await http.get(app.script_url, headers={"if-none-match": zipped.headers["etag"]})
        head = await http.head("/_ps/c.js")
        post = await http.post("/_ps/c.js")
    assert zipped.status_code == 200
    assert zipped.headers["content-type"] == "text/javascript; charset=utf-8"
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) <= 1000
    assert gzip.decompress(app.script.gzipped) == plain.content == zipped.content  # httpx decoded it
    assert zipped.headers["cache-control"] == "public, max-age=300"
    assert app.script_url == f"/_ps/c.js?v={app.script.version}"
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert again.status_code == 304 and again.content == b""
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == zipped.headers["etag"]
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    source = plain.text
    assert "document.cookie=" not in source.replace(" ", "")  # reads consent, never writes a cookie
    assert "http://" not in source and "https://" not in source  # no third-party requests
    assert "__MODE__" not in source and "__CC__" not in source and "/*" not in source


async def test_script_carries_the_consent_mode_and_cookie() -> None:
    async with client(wrap(consent="opt-in", consent_cookie="cmp.ads")) as http:
        source = (await http.get("/_ps/c.js")).text
        zipped = await http.get("/_ps/c.js", headers={"accept-encoding": "gzip"})
    async with client(wrap()) as http:
        default = (await http.get("/_ps/c.js")).text
    assert "I=!0," in source and "cmp\\.ads=" in source
    assert "I=!1," in default and "__OPTIN__" not in default + source
    assert int(zipped.headers["content-length"]) <= 1000


# ---------------------------------------------------------------- events


async def test_single_event_is_enriched_from_the_request_and_queued(sink: MemorySink) -> None:
    raw = event(context={"ip": "6.6.6.6", "userAgent": "forged"})
    headers = {**BEACON, "referer": "http://testserver/checkout?epik=from-page", "cookie": "_epik=cookie-click"}
    async with client(wrap(sink=sink), peer="203.0.113.9") as http:
        response = await http.post("/_ps/e", content=orjson.dumps(raw), headers=headers)
    assert response.status_code == 202
    assert response.json() == {"accepted": ["m-1"], "rejected": []}
    [queued] = sink.events
    context = queued["envelope"]["context"]
    assert context["ip"] == "203.0.113.9" and context["userAgent"] == BROWSER
    assert context["page"]["url"] == "http://testserver/checkout?epik=from-page"
    assert queued["cookies"] == {"_epik": "cookie-click"}


async def test_page_url_from_the_body_wins_over_referer(sink: MemorySink) -> None:
    raw = event(context={"page": {"url": "http://testserver/p?epik=x", "title": "P"}})
    async with client(wrap(sink=sink)) as http:
        await http.post("/_ps/e", json=raw, headers={**JSON, "referer": "http://testserver/other"})
    assert sink.events[0]["envelope"]["context"]["page"] == {"url": "http://testserver/p?epik=x", "title": "P"}


async def test_batch_with_sent_at_is_corrected_for_clock_skew(sink: MemorySink) -> None:
    # The browser's clock runs an hour fast: timestamp - sent_at + received_at puts it right.
    fast = time.time() + 3600
    iso = datetime.fromtimestamp(fast, UTC).isoformat()
    body = {"batch": [event(message_id=f"m-{i}", timestamp=iso) for i in range(3)], "sent_at": iso}
    async with client(wrap(sink=sink)) as http:
        response = await http.post("/_ps/e", json=body, headers=JSON)
    assert response.json()["accepted"] == ["m-0", "m-1", "m-2"]
    for queued in sink.events:
        corrected = parse_time(queued["envelope"]["timestamp"])
        assert corrected is not None and abs(corrected - time.time()) < 30


async def test_device_cookie_gives_the_anonymous_id_and_only_verified_ids_reach_pipelines(
        sink: MemorySink, engine: StubEngine) -> None:
    signed = DeviceIds(SECRET).sign("d" * 32)
    async with client(wrap(sink=sink, engine=engine)) as http:
        await http.post("/_ps/e", json=event(), headers={**JSON, "cookie": f"_psid={signed}"})
        await http.post("/_ps/e", json=event(message_id="m-2"), headers={**JSON, "cookie": "_psid=forged.value.x"})
    assert sink.events[0]["envelope"]["anonymous_id"] == "d" * 32
    assert sink.events[0]["cookies"] == {"_psid": "d" * 32}
    # The forged value reaches no pipeline: they see the id minted in its place.
    minted = sink.events[1]["envelope"]["anonymous_id"]
    assert len(minted) == 32 and minted != "d" * 32 and sink.events[1]["cookies"] == {"_psid": minted}


async def test_first_event_mints_the_device_cookie_and_a_week_old_one_is_signed_again(sink: MemorySink) -> None:
    devices = DeviceIds(SECRET)
    fresh = devices.sign("a" * 32)
    eight_days_ago = time.time() - 8 * 24 * 3600  # over a week: signed again; within 400 days: still honoured
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: eight_days_ago)
        old = devices.sign("b" * 32)
    async with client(wrap(sink=sink), https=True) as http:
        first = await http.post("/_ps/e", json=event(message_id="m-1"), headers=JSON)
        kept = await http.post("/_ps/e", json=event(message_id="m-2"), headers={**JSON, "cookie": f"_psid={fresh}"})
        renewed = await http.post("/_ps/e", json=event(message_id="m-3"), headers={**JSON, "cookie": f"_psid={old}"})
    [minted] = cookies_named(first, "_psid")
    assert re.fullmatch(r"_psid=[0-9a-f]{32}\.[\w-]+\.[\w-]+; Max-Age=34560000; Path=/; SameSite=Lax; Secure; HttpOnly",
                        minted)
    device_id, _ = devices.read(minted.split(";", 1)[0].removeprefix("_psid="))
    assert device_id == sink.events[0]["envelope"]["anonymous_id"]
    assert cookies_named(kept, "_psid") == []
    [again] = cookies_named(renewed, "_psid")
    assert devices.read(again.split(";", 1)[0].removeprefix("_psid="))[0] == "b" * 32


@pytest.mark.parametrize("forged", [
    "a" * 32,
    "a" * 32 + ".awyrEQ.P5MWtZMu-OI3S3wiCLNRujymevs",
    DeviceIds("another-secret-0123456789").sign("c" * 32),
])
async def test_a_forged_device_cookie_is_replaced(sink: MemorySink, forged: str) -> None:
    async with client(wrap(sink=sink)) as http:
        response = await http.post("/_ps/e", json=event(), headers={**JSON, "cookie": f"_psid={forged}"})
    [cookie] = cookies_named(response, "_psid")
    device_id, _ = DeviceIds(SECRET).read(cookie.split(";", 1)[0].removeprefix("_psid="))
    assert device_id is not None and device_id != forged[:32]


@pytest.mark.parametrize("headers", [{"sec-gpc": "1"}, {"cookie": "_psc=0"}])
async def test_no_device_cookie_without_consent(sink: MemorySink, headers: dict[str, str]) -> None:
    async with client(wrap(sink=sink)) as http:
        response = await http.post("/_ps/e", json=event(), headers={**JSON, **headers})
    assert cookies_named(response, "_psid") == []


async def test_rejections_carry_index_id_and_reasons(sink: MemorySink) -> None:
    body = {"batch": [event(message_id="ok"), {"type": "shout", "message_id": "bad"}, "text",
                      event(message_id="inv", properties={"invalid": True})]}
    async with client(wrap(sink=sink)) as http:
        response = await http.post("/_ps/e", json=body, headers=JSON)
    answer = response.json()
    assert response.status_code == 202
    assert answer["accepted"] == ["ok"]
    assert [(r["index"], r["id"]) for r in answer["rejected"]] == [(1, "bad"), (2, None), (3, "inv")]
    assert "type" in answer["rejected"][1 - 1]["reasons"][0]
    assert answer["rejected"][1]["reasons"] == ["the event must be a JSON object"]
    assert answer["rejected"][2]["reasons"] == ["stub: value: must be a string"]
    assert sink.counters["rejected_invalid"] == 3


async def test_duplicates_are_accepted_once_queued(sink: MemorySink) -> None:
    async with client(wrap(sink=sink)) as http:
        first = await http.post("/_ps/e", json=event(), headers=JSON)
        second = await http.post("/_ps/e", json=event(), headers=JSON)
    assert first.json()["accepted"] == second.json()["accepted"] == ["m-1"]
    assert len(sink.events) == 1


# ---------------------------------------------------------------- limits and refusals


async def test_content_length_over_the_limit_is_413_before_reading() -> None:
    async with client(wrap()) as http:
        response = await http.post("/_ps/e", content=b"{" + b" " * 70_000 + b"}", headers=JSON)
    assert response.status_code == 413
    assert response.json() == {"error": "the body is 70002 bytes; the limit is 65536"}
    assert response.headers["connection"] == "close"


async def test_lying_content_length_is_caught_while_reading() -> None:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": b" " * 16_384, "more_body": True} for _ in range(5)]
    chunks.append({"type": "http.request", "body": b"{}", "more_body": False})

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/_ps/e", "query_string": b"", "scheme": "http",
             "client": ("127.0.0.1", 1), "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                                                     (b"content-length", b"2")]}
    await wrap()(scope, receive, send)
    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"]) == {"error": "the body is over the limit of 65536 bytes"}
    assert len(chunks) == 1  # it stopped reading at the fifth chunk, the first past the limit


async def test_body_of_exactly_the_limit_is_read() -> None:
    body = orjson.dumps(event())
    body = body[:-1] + b" " * (65536 - len(body)) + b"}"
    async with client(wrap()) as http:
        response = await http.post("/_ps/e", content=body, headers=JSON)
    assert response.status_code == 202


@pytest.mark.parametrize(("body", "headers", "status", "error"), [
    (b"{not json", JSON, 400, "the body is not valid JSON"),
    (b"[1, 2]", JSON, 400, "the body must be a JSON object"),
    (b'{"batch": {}}', JSON, 400, "batch must be a list of events"),
    (orjson.dumps({"batch": [event()] * 101}), JSON, 400, "at most 100 events per request, got 101"),
    (b"{}", {"content-type": "application/x-www-form-urlencoded"}, 415, "events must be sent as application/json"),
    (b"{}", {"content-type": "application/json", "content-length": "ten"}, 400, "Content-Length 'ten' is not a number"),
])
async def test_malformed_requests(body: bytes, headers: dict[str, str], status: int, error: str) -> None:
    async with client(wrap()) as http:
        response = await http.post("/_ps/e", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"].startswith(error)


async def test_wrong_method_and_unknown_route() -> None:
    async with client(wrap()) as http:
        get = await http.get("/_ps/e")
        unknown = await http.post("/_ps/nope", json={})
    assert get.status_code == 405 and get.headers["allow"] == "POST"
    assert unknown.status_code == 404


@pytest.mark.parametrize("headers", [
    {"sec-fetch-site": "cross-site", "origin": "https://evil.example"},
    {"sec-fetch-site": "same-site", "origin": "https://blog.testserver"},
    {"origin": "https://evil.example"},
    {"origin": "null"},
])
async def test_cross_site_posts_are_refused(headers: dict[str, str], sink: MemorySink) -> None:
    async with client(wrap(sink=sink)) as http:
        response = await http.post("/_ps/e", json=event(), headers={**JSON, **headers})
    assert response.status_code == 403
    assert "cross-site posts are refused" in response.json()["error"]
    assert sink.events == []


async def test_same_origin_and_allowed_origins_are_accepted() -> None:
    app = wrap(allowed_origins=("https://www.shop.example",))
    async with client(app) as http:
        same = await http.post("/_ps/e", json=event(), headers={**JSON, "origin": "http://testserver"})
        allowed = await http.post("/_ps/e", json=event(message_id="m-2"),
                                  headers={**JSON, "origin": "https://www.shop.example",
                                           "sec-fetch-site": "cross-site"})
        preflight = await http.options("/_ps/e", headers={"origin": "https://www.shop.example",
                                                          "sec-fetch-site": "cross-site"})
        server = await http.post("/_ps/e", json=event(message_id="m-3"), headers=JSON)  # no Origin: not a browser
    assert same.status_code == 202 and "access-control-allow-origin" not in same.headers
    assert allowed.status_code == 202
    assert allowed.headers["access-control-allow-origin"] == "https://www.shop.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-methods"] == "POST"
    assert server.status_code == 202


async def test_queue_down_is_503_never_202(caplog: pytest.LogCaptureFixture) -> None:
    class DownSink(MemorySink):
        async def enqueue(self, events: Any, **options: Any) -> Any:
            raise QueueUnavailable("Redis failed while queueing events (ConnectionError: down)")

    async with client(wrap(sink=DownSink())) as http:
        response = await http.post("/_ps/e", json=event(), headers=JSON)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "answering 503: Redis failed while queueing events" in caplog.text


async def test_a_bug_behind_the_queue_is_not_reported_as_an_outage() -> None:
    class BrokenSink(MemorySink):
        async def enqueue(self, events: Any, **options: Any) -> Any:
            raise TypeError("a bug, not Redis being down")

    with pytest.raises(TypeError, match="a bug"):
        async with client(wrap(sink=BrokenSink())) as http:
            await http.post("/_ps/e", json=event(), headers=JSON)


async def test_health() -> None:
    async with client(wrap()) as http:
        response = await http.get("/_ps/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


# ---------------------------------------------------------------- Segment shapes


async def test_segment_batch_route(sink: MemorySink) -> None:
    body = {"batch": [{"type": "track", "event": "Order Completed", "messageId": "s-1", "anonymousId": "a-1",
                       "properties": {"revenue": 5}},
                      {"type": "page", "messageId": "s-2", "name": "Home", "context": {"locale": "en-US"}}],
            "context": {"library": {"name": "analytics.js"}, "locale": "fr-FR"}, "writeKey": "abc",
            "sentAt": datetime.now(UTC).isoformat()}
    async with client(wrap(sink=sink)) as http:  # analytics.js: its public writeKey is in a browser's post
        response = await http.post("/_ps/v1/batch", content=orjson.dumps(body),
                                   headers={**BEACON, "content-type": "text/plain"})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert [queued["event_id"] for queued in sink.events] == ["s-1", "s-2"]
    first, second = (queued["envelope"] for queued in sink.events)
    assert first["event"] == "order_completed" and first["anonymous_id"] == "a-1"
    assert first["context"]["library"] == {"name": "analytics.js"}
    assert second["context"]["locale"] == "en-US"  # the event's own context wins over the batch's


@pytest.mark.parametrize(("route", "kind"), [("t", "track"), ("p", "page"), ("i", "identify"),
                                              ("track", "track"), ("page", "page"), ("identify", "identify")])
async def test_segment_single_routes_default_their_type(route: str, kind: str, sink: MemorySink) -> None:
    body = {"messageId": "s-1", "userId": "u-1", "event": "Signed Up", "traits": {}}
    async with client(wrap(sink=sink)) as http:
        response = await http.post(f"/_ps/v1/{route}", json=body, headers=JSON)
    assert response.status_code == 200 and response.json() == {"success": True}, response.text
    assert sink.events[0]["envelope"]["type"] == kind


# ---------------------------------------------------------------- consent and crawlers


async def test_gpc_and_refused_events_are_dropped_and_counted(sink: MemorySink) -> None:
    refused = event(message_id="m-2", context={"consent": {"advertising": False}})
    async with client(wrap(sink=sink)) as http:
        gpc = await http.post("/_ps/e", json=event(), headers={**JSON, "sec-gpc": "1"})
        declined = await http.post("/_ps/e", json={"batch": [refused, event(message_id="m-3")]}, headers=JSON)
    assert gpc.json()["accepted"] == [] and "Sec-GPC" in gpc.json()["rejected"][0]["reasons"][0]
    assert declined.json()["accepted"] == ["m-3"]
    assert declined.json()["rejected"][0]["reasons"] == [
        "advertising consent was refused; nothing is sent to Pinterest"]
    assert [queued["event_id"] for queued in sink.events] == ["m-3"]
    assert sink.counters["dropped_consent"] == 2


async def test_opt_in_needs_consent_from_the_event_or_the_cookie(sink: MemorySink) -> None:
    with_consent = event(message_id="m-2", context={"consent": {"advertising": True}})
    async with client(wrap(sink=sink, consent="opt-in")) as http:
        none = await http.post("/_ps/e", json=event(), headers=JSON)
        given = await http.post("/_ps/e", json=with_consent, headers=JSON)
        cookie = await http.post("/_ps/e", json=event(message_id="m-3"), headers={**JSON, "cookie": "_psc=1"})
    assert none.json()["accepted"] == [] and "opt-in" in none.json()["rejected"][0]["reasons"][0]
    assert given.json()["accepted"] == ["m-2"] and cookie.json()["accepted"] == ["m-3"]
    assert sink.counters["dropped_consent"] == 1


async def test_consent_route_sets_and_withdraws_cookies() -> None:
    async with client(wrap(consent="opt-in"), https=True) as http:
        granted = await http.post("/_ps/consent", json={"advertising": True, "epik": "landing-click"}, headers=BEACON)
        refused = await http.post("/_ps/consent", json={"advertising": False},
                                  headers={**BEACON, "cookie": "_epik=x; _psu=y; other=z"})
        bad = await http.post("/_ps/consent", json={"advertising": "yes"}, headers=BEACON)
        evil = await http.post("/_ps/consent", json={"advertising": True, "epik": "a;b"}, headers=BEACON)
    assert granted.json() == {"advertising": True}
    cookies = granted.headers.get_list("set-cookie")
    assert cookies[0] == "_psc=1; Max-Age=15552000; Path=/; SameSite=Lax; Secure"
    assert cookies[1] == "_epik=landing-click; Max-Age=34560000; Path=/; SameSite=Lax; Secure"
    assert cookies[2].startswith("_psid=") and cookies[2].endswith("; Secure; HttpOnly")
    assert refused.headers.get_list("set-cookie") == [
        "_psc=0; Max-Age=15552000; Path=/; SameSite=Lax; Secure",
        "_epik=; Max-Age=0; Path=/; SameSite=Lax; Secure",
        "_psu=; Max-Age=0; Path=/; SameSite=Lax; Secure",
    ]
    assert bad.status_code == 400
    assert cookies_named(evil, "_epik") == []


async def test_crawlers_produce_no_events_and_are_counted(sink: MemorySink) -> None:
    headers = {**JSON, "user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}
    async with client(wrap(sink=sink)) as http:
        response = await http.post("/_ps/e", json={"batch": [event(), event(message_id="m-2")]}, headers=headers)
    assert response.status_code == 202
    assert response.json()["accepted"] == [] and len(response.json()["rejected"]) == 2
    assert sink.events == [] and sink.counters["dropped_bot"] == 2


async def test_browser_identify_sets_the_hashed_identity_cookie(sink: MemorySink) -> None:
    body = {"type": "identify", "message_id": "i-1", "user_id": "u-42",
            "traits": {"email": " Jane.Doe@Example.com ", "firstName": "Jane"}}
    async with client(wrap(sink=sink), https=True) as http:
        response = await http.post("/_ps/e", json=body, headers=JSON)
        [cookie] = cookies_named(response, "_psu")
        value = cookie.split(";", 1)[0].removeprefix("_psu=")
        later = await http.post("/_ps/e", json=event(), headers={**JSON, "cookie": f"_psu={value}"})
    assert cookie.endswith("; Max-Age=34560000; Path=/; SameSite=Lax; Secure; HttpOnly")
    assert "jane" not in cookie.lower() and "u-42" not in cookie
    remembered = IdentityCookie(SECRET).loads(value)
    from pinsignal.pipeline.normalise import sha256_hex
    assert remembered == {"email": sha256_hex("jane.doe@example.com"), "first_name": sha256_hex("jane"),
                          "user_id": sha256_hex("u-42")}
    assert later.status_code == 202
    envelope = sink.events[-1]["envelope"]
    assert envelope["traits"]["email"] == remembered["email"]
    assert envelope["user_id"] == remembered["user_id"]
