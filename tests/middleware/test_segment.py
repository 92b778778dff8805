"""Segment's HTTP Tracking API on /_ps/v1/*, write keys and server sources, in process (DESIGN 8.1).

The real libraries against a real server are in ``tests/senders/``; here every answer, limit and
rule is pinned down one by one.
"""

from __future__ import annotations

import base64
import gzip
import time
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from mw_support import BROWSER, StubEngine, client, config, wrap

from pinsignal import MemorySink
from pinsignal.collector.bodies import BodyRefused, inflate
from pinsignal.collector.segment import MAX_BATCH_BODY, MAX_EVENT_BODY
from pinsignal.config import shipped_pipelines_dir
from pinsignal.errors import ConfigError
from pinsignal.pipeline import Engine
from pinsignal.sources import WriteKeys, basic_user

pytestmark = pytest.mark.anyio

KEY = "sk-backend-0123456789abcdef"
OTHER = "sk-crm-fedcba9876543210xyz"
KEYS = (f"backend:{KEY}", OTHER)
SHOPPER_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
SERVER_UA = "analytics-python/2.4.0"


def basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def order(message_id: str = "order-5001", revenue: float = 250.0, **context: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "messageId": message_id, "userId": "u-42",
            "timestamp": "2026-12-04T10:00:00Z",
            "properties": {"order_id": "5001", "revenue": revenue, "currency": "USD",
                           "products": [{"product_id": "sku-1", "price": 125, "quantity": 2}]},
            "context": {"ip": "203.0.113.9", "userAgent": SHOPPER_UA, "epik": "dj0yJnU9a2V5",
                        "page": {"url": "https://shop.example/checkout"}, "traits": {"email": "Jane@Example.com"},
                        **context}}


SERVER = {"content-type": "application/json", "user-agent": SERVER_UA}
FORGED = {"content-type": "application/json", "user-agent": BROWSER}  # a post made by hand: no Origin, no cookie
BROWSER_POST = {"content-type": "text/plain", "user-agent": BROWSER, "origin": "http://testserver",
                "sec-fetch-site": "same-origin"}


# ---------------------------------------------------------------- answers and routes


@pytest.mark.parametrize(("route", "kind"), [("t", "track"), ("track", "track"), ("p", "page"), ("page", "page"),
                                              ("i", "identify"), ("identify", "identify")])
async def test_single_routes_answer_200_success(route: str, kind: str) -> None:
    sink = MemorySink()
    async with client(wrap(sink=sink)) as http:
        response = await http.post(f"/_ps/v1/{route}", json={"messageId": "m-1", "userId": "u-1", "event": "X"},
                                   headers=BROWSER_POST)
    assert response.status_code == 200 and response.json() == {"success": True}
    assert response.headers["content-type"] == "application/json"
    assert sink.events[0]["envelope"]["type"] == kind


@pytest.mark.parametrize("route", ["s", "screen", "g", "group", "a", "alias"])
async def test_screen_group_alias_are_acknowledged_and_not_sent(route: str) -> None:
    sink = MemorySink()
    async with client(wrap(sink=sink)) as http:
        response = await http.post(f"/_ps/v1/{route}", json={"messageId": "m-1", "userId": "u-1"},
                                   headers=BROWSER_POST)
    assert response.status_code == 200 and response.json() == {"success": True}
    assert sink.events == [] and sink.counters["ignored_segment_calls"] == 1


@pytest.mark.parametrize("route", ["b", "batch", "import"])
async def test_batch_routes_take_the_batch_context_and_sent_at(route: str) -> None:
    sink = MemorySink()
    body = {"batch": [{"type": "track", "event": "A", "messageId": "m-1"},
                      {"type": "screen", "name": "Home", "messageId": "m-2"},
                      {"type": "track", "event": "B", "messageId": "m-3", "context": {"locale": "en-US"}}],
            "context": {"locale": "fr-FR"}, "sentAt": "2026-12-04T10:00:00Z", "writeKey": "public-ajs-key"}
    async with client(wrap(sink=sink)) as http:
        response = await http.post(f"/_ps/v1/{route}", content=orjson.dumps(body), headers=BROWSER_POST)
    assert response.status_code == 200 and response.json() == {"success": True}
    assert [event["event_id"] for event in sink.events] == ["m-1", "m-3"]
    assert [event["envelope"]["context"]["locale"] for event in sink.events] == ["fr-FR", "en-US"]
    assert all(event["envelope"]["source"] == "browser" for event in sink.events)


async def test_errors_are_json_with_code_and_message() -> None:
    async with client(wrap()) as http:
        bad_json = await http.post("/_ps/v1/batch", content=b"{nope", headers=SERVER | basic(KEY))
        not_object = await http.post("/_ps/v1/t", content=b"[1]", headers=BROWSER_POST)
        no_batch = await http.post("/_ps/v1/batch", json={"batch": "x"}, headers=BROWSER_POST)
        form = await http.post("/_ps/v1/t", content=b"a=1",
                               headers={**BROWSER_POST,
                                        "content-type": "application/x-www-form-urlencoded"})
        method = await http.get("/_ps/v1/t")
    for response, status, code in [(bad_json, 401, "unauthorized"), (not_object, 400, "invalid_request"),
                                   (no_batch, 400, "invalid_request"), (form, 415, "unsupported_media_type"),
                                   (method, 405, "method_not_allowed")]:
        assert response.status_code == status, response.text
        answer = response.json()
        assert answer["success"] is False and answer["code"] == code and answer["message"], answer
    assert method.headers["allow"] == "POST"


async def test_bad_json_from_a_browser_is_400_invalid_json() -> None:
    async with client(wrap()) as http:
        response = await http.post("/_ps/v1/batch", content=b"{nope", headers=BROWSER_POST)
    assert response.status_code == 400 and response.json()["code"] == "invalid_json"


async def test_e_keeps_its_202() -> None:
    async with client(wrap()) as http:
        response = await http.post("/_ps/e", json={"type": "track", "event": "x", "message_id": "m-1"},
                                   headers=BROWSER_POST)
    assert response.status_code == 202 and response.json() == {"accepted": ["m-1"], "rejected": []}


async def test_queue_down_is_503_with_code_and_retry_after() -> None:
    from pinsignal.errors import QueueUnavailable

    class DownSink(MemorySink):
        async def enqueue(self, events: Any, **options: Any) -> Any:
            raise QueueUnavailable("down")

    async with client(wrap(sink=DownSink())) as http:
        response = await http.post("/_ps/v1/t", json={"event": "x"}, headers=BROWSER_POST)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["code"] == "unavailable"


# ---------------------------------------------------------------- limits and encodings


def _batch_of(size: int) -> bytes:
    event = {"type": "track", "event": "x", "properties": {"pad": ""}}
    body = {"batch": [event]}
    pad = size - len(orjson.dumps(body))
    event["properties"]["pad"] = "a" * pad
    return orjson.dumps(body)


async def test_segment_limits_32_kib_per_event_500_kib_per_batch() -> None:
    sink = MemorySink()
    many = orjson.dumps({"batch": [{"type": "track", "event": "x", "messageId": f"m-{i}",
                                    "properties": {"pad": "p" * 6000}} for i in range(80)]})
    assert 64 * 1024 < len(many) < MAX_BATCH_BODY  # past /e's 64 KiB: the 100-order batches of the issue
    one_big = orjson.dumps({"batch": [{"type": "track", "event": "x", "properties": {"pad": "p" * MAX_EVENT_BODY}}]})
    async with client(wrap(sink=sink)) as http:
        fine = await http.post("/_ps/v1/batch", content=many, headers=BROWSER_POST)
        too_big_event = await http.post("/_ps/v1/batch", content=one_big, headers=BROWSER_POST)
        too_big_single = await http.post("/_ps/v1/t", content=orjson.dumps({"event": "x", "p": "a" * MAX_EVENT_BODY}),
                                         headers=BROWSER_POST)
        too_big_batch = await http.post("/_ps/v1/batch", content=b" " * (MAX_BATCH_BODY + 1), headers=BROWSER_POST)
    assert fine.status_code == 200 and len(sink.events) == 80
    for response in (too_big_event, too_big_single, too_big_batch):
        assert response.status_code == 413 and response.json()["code"] == "payload_too_large", response.text
    assert "event 0 of the batch" in too_big_event.json()["message"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies_are_inflated(encoding: str) -> None:
    sink = MemorySink()
    body = orjson.dumps({"batch": [{"type": "track", "event": "x", "messageId": "m-1"}]})
    if encoding == "gzip":
        data = gzip.compress(body)
    elif encoding == "deflate":
        data = zlib.compress(body)
    else:
        squeezer = zlib.compressobj(wbits=-15)
        data = squeezer.compress(body) + squeezer.flush()
    header = "deflate" if encoding.endswith("deflate") else encoding
    async with client(wrap(sink=sink)) as http:
        response = await http.post("/_ps/v1/batch", content=data,
                                   headers={**BROWSER_POST, "content-encoding": header})
    assert response.status_code == 200, response.text
    assert [event["event_id"] for event in sink.events] == ["m-1"]


async def test_a_compression_bomb_is_413_quickly_in_bounded_memory() -> None:
    import tracemalloc

    bomb = gzip.compress(b" " * (200 * 1024 * 1024), compresslevel=9)  # 200 MB of spaces in ~200 KB
    assert len(bomb) < MAX_BATCH_BODY
    tracemalloc.start()
    started = time.perf_counter()
    async with client(wrap()) as http:
        response = await http.post("/_ps/v1/batch", content=bomb, headers={**BROWSER_POST, "content-encoding": "gzip"})
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    assert "inflates to more than" in response.json()["message"]
    assert elapsed < 1.0, elapsed
    assert peak < 8 * MAX_BATCH_BODY, peak  # the limit's order, not the bomb's 200 MB


def test_inflate_refuses_at_the_limit_and_cut_or_corrupt_data() -> None:
    data = zlib.compress(b"x" * 1000)
    assert inflate(data, 15, 1000) == b"x" * 1000
    with pytest.raises(BodyRefused) as over:
        inflate(data, 15, 999)
    assert over.value.status == 413
    with pytest.raises(BodyRefused) as cut:
        inflate(data[:-4], 15, 10_000)
    assert cut.value.status == 400 and cut.value.code == "invalid_encoding"
    with pytest.raises(BodyRefused) as corrupt:
        inflate(b"\x1f\x8b\x08\x00garbage", 31, 10_000)
    assert corrupt.value.status == 400


async def test_unknown_content_encoding_is_415() -> None:
    async with client(wrap()) as http:
        response = await http.post("/_ps/v1/t", content=b"{}", headers={**BROWSER_POST, "content-encoding": "br"})
    assert response.status_code == 415 and response.json()["code"] == "unsupported_encoding"


# ---------------------------------------------------------------- CORS


async def test_cross_origin_analytics_js_gets_cors_and_preflight() -> None:
    allowed = {"origin": "https://www.shop.example", "sec-fetch-site": "cross-site"}
    async with client(wrap(allowed_origins=("https://www.shop.example",))) as http:
        preflight = await http.options("/_ps/v1/b", headers={**allowed, "access-control-request-method": "POST",
                                                             "access-control-request-headers": "content-type"})
        post = await http.post("/_ps/v1/t", json={"event": "x"}, headers={**BROWSER_POST, **allowed})
        refused = await http.post("/_ps/v1/t", json={"event": "x"},
                                  headers={**BROWSER_POST, "origin": "https://evil.example",
                                           "sec-fetch-site": "cross-site"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://www.shop.example"
    assert preflight.headers["access-control-allow-methods"] == "POST"
    assert "content-type" in preflight.headers["access-control-allow-headers"]
    assert post.status_code == 200 and post.headers["access-control-allow-origin"] == "https://www.shop.example"
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"


# ---------------------------------------------------------------- write keys


def test_write_keys_parse_names_and_refuse_weak_keys() -> None:
    keys = WriteKeys.parse(KEYS)
    assert keys.check(KEY) == "backend" and keys.check(OTHER) == "key-2"
    assert keys.check(KEY[:-1]) is None and keys.check("") is None
    with pytest.raises(ConfigError, match="at least 16"):
        WriteKeys.parse(("short",))
    with pytest.raises(ConfigError, match="twice"):
        WriteKeys.parse((f"a:{KEY}", f"a:{OTHER}"))
    with pytest.raises(ConfigError, match="PINSIGNAL_WRITE_KEYS") as error:
        config(write_keys=("name:tiny",))
    assert "tiny" not in str(error.value)  # a key never reaches a message
    assert KEY not in repr(config(write_keys=KEYS))


def test_basic_user() -> None:
    assert basic_user(b"Basic " + base64.b64encode(b"key:")) == b"key"
    assert basic_user(b"basic " + base64.b64encode(b"key")) == b"key"
    assert basic_user(b"Bearer abc") is None and basic_user(None) is None
    assert basic_user(b"Basic !!!") == b""


async def test_a_server_source_is_believed_about_its_visitor() -> None:
    sink, engine = MemorySink(), StubEngine()
    async with client(wrap(sink=sink, engine=engine, write_keys=KEYS)) as http:
        response = await http.post("/_ps/v1/batch", json={"batch": [order()]}, headers=SERVER | basic(KEY))
    assert response.status_code == 200 and response.json() == {"success": True}
    [queued] = sink.events
    envelope = queued["envelope"]
    assert envelope["source"] == "server"
    assert envelope["context"]["ip"] == "203.0.113.9" and envelope["context"]["userAgent"] == SHOPPER_UA
    assert envelope["context"]["page"]["url"] == "https://shop.example/checkout"
    assert queued["epik"] == "dj0yJnU9a2V5"  # context.epik is the click id's request value
    assert response.headers.get_list("set-cookie") == []


async def test_write_key_in_the_body_of_a_non_browser_post() -> None:
    sink = MemorySink()
    async with client(wrap(sink=sink, engine=StubEngine(), write_keys=KEYS)) as http:
        response = await http.post("/_ps/v1/batch", json={"batch": [order()], "writeKey": OTHER}, headers=SERVER)
    assert response.status_code == 200
    assert sink.events[0]["envelope"]["source"] == "server"


async def test_a_wrong_key_is_401_counted_and_queues_nothing() -> None:
    sink = MemorySink()
    app = wrap(sink=sink, engine=StubEngine(), write_keys=KEYS)
    async with client(app) as http:
        basic_wrong = await http.post("/_ps/v1/batch", json={"batch": [order()]}, headers=SERVER | basic("x" * 20))
        body_wrong = await http.post("/_ps/v1/batch", json={"batch": [order()], "writeKey": "nope"}, headers=SERVER)
        # a key in a browser's body is analytics.js's public key: never read, the post is a browser's
        browser = await http.post("/_ps/v1/batch", json={"batch": [order("b-1")], "writeKey": KEY},
                                  headers=BROWSER_POST)
    for response in (basic_wrong, body_wrong):
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "unauthorized" and "PINSIGNAL_WRITE_KEYS" in response.json()["message"]
        assert response.headers["www-authenticate"].startswith("Basic")
    assert sink.counters["refused_write_key"] == 2
    assert app.intake.observer.counters["refused:write_key"] == 2  # type: ignore[attr-defined]
    assert [event["envelope"]["source"] for event in sink.events] == ["browser"]
    assert browser.status_code == 200


async def test_a_key_when_none_is_configured_is_401_saying_what_to_set() -> None:
    async with client(wrap()) as http:
        response = await http.post("/_ps/v1/batch", json={"batch": [order()]}, headers=SERVER | basic(KEY))
    assert response.status_code == 401 and "none is configured" in response.json()["message"]


async def test_a_browser_is_never_believed_about_ip_user_agent_or_epik() -> None:
    sink = MemorySink()
    async with client(wrap(sink=sink, engine=StubEngine()), peer="198.51.100.7") as http:
        await http.post("/_ps/v1/t", json=order(), headers=BROWSER_POST)
    envelope = sink.events[0]["envelope"]
    assert envelope["source"] == "browser"
    assert envelope["context"]["ip"] == "198.51.100.7" and envelope["context"]["userAgent"] == BROWSER
    assert "epik" not in envelope["context"] and sink.events[0]["epik"] is None


async def test_a_body_cannot_claim_to_be_a_server() -> None:
    sink = MemorySink()
    async with client(wrap(sink=sink, engine=StubEngine())) as http:
        await http.post("/_ps/e", json={"type": "track", "event": "x", "source": "server"}, headers=BROWSER_POST)
    assert sink.events[0]["envelope"]["source"] == "browser"


async def test_crawlers_of_a_server_source_are_recognised_by_context_user_agent() -> None:
    sink = MemorySink()
    bot = order("m-bot", userAgent="Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
    async with client(wrap(sink=sink, engine=StubEngine(), write_keys=KEYS)) as http:
        # python-requests as the sender's own user agent is not a reason to drop the shopper's events
        response = await http.post("/_ps/v1/batch", json={"batch": [order("m-ok"), bot]},
                                   headers={**SERVER, "user-agent": "python-requests/2.32"} | basic(KEY))
    assert response.status_code == 200
    assert [event["event_id"] for event in sink.events] == ["m-ok"]
    assert sink.counters["dropped_bot"] == 1


# ---------------------------------------------------------------- trusted-only pipelines and dedup precedence


def _locked_pipelines(tmp_path: Path) -> Path:
    checkout = (shipped_pipelines_dir() / "checkout.yaml").read_text()
    locked = checkout.replace("trigger:\n  event: track\n", "trigger:\n  event: track\n  source: server\n", 1)
    assert locked != checkout
    (tmp_path / "checkout.yaml").write_text(locked)
    return tmp_path


async def test_a_server_only_pipeline_refuses_a_browser_checkout_with_the_reason(tmp_path: Path) -> None:
    sink = MemorySink()
    locked = (_locked_pipelines(tmp_path),)
    app = wrap(sink=sink, engine=Engine.from_config(config(pipelines=locked)), pipelines=locked, write_keys=KEYS)
    forged = {"type": "track", "event": "order_completed", "message_id": "order-5001",
              "properties": {"revenue": 0.01, "order_id": "5001"}}
    async with client(app) as http:
        curl = await http.post("/_ps/e", json=forged, headers=FORGED)
        server = await http.post("/_ps/v1/batch", json={"batch": [order()]}, headers=SERVER | basic(KEY))
    [rejection] = curl.json()["rejected"]
    assert "only from a server source" in rejection["reasons"][0] and "came from a browser" in rejection["reasons"][0]
    assert sink.counters["refused_source"] == 1
    assert app.intake.observer.counters["refused:source"] == 1  # type: ignore[attr-defined]
    assert server.status_code == 200
    [checkout] = sink.events
    assert checkout["event_name"] == "checkout" and checkout["custom_data"]["value"] == "250"


async def test_a_browser_event_never_suppresses_the_server_event_with_its_id() -> None:
    sink = MemorySink()
    app = wrap(sink=sink, engine=Engine.from_config(config()), write_keys=KEYS)
    forged = {"type": "track", "event": "order_completed", "message_id": "order-5001",
              "properties": {"revenue": 0.01, "order_id": "5001"}}
    async with client(app) as http:
        first = await http.post("/_ps/e", json=forged, headers=FORGED)
        real = await http.post("/_ps/v1/batch", json={"batch": [order()]}, headers=SERVER | basic(KEY))
        again = await http.post("/_ps/v1/batch", json={"batch": [order()]}, headers=SERVER | basic(KEY))
        late = await http.post("/_ps/e", json=forged, headers=FORGED)
    assert first.json()["accepted"] == ["order-5001"] and real.status_code == again.status_code == 200
    assert late.status_code == 202
    values = [event["custom_data"]["value"] for event in sink.events]
    assert values == ["0.01", "250"]  # the server's went out; its repeat and a later browser copy did not


async def test_memory_sink_precedence_rules() -> None:
    sink = MemorySink()
    event = {"event_name": "checkout", "event_id": "o-1"}
    assert (await sink.enqueue([event])).queued == ["o-1"]
    assert (await sink.enqueue([event])).duplicates == ["o-1"]
    assert (await sink.enqueue([event], trusted=True)).queued == ["o-1"]
    assert (await sink.enqueue([event], trusted=True)).duplicates == ["o-1"]
    assert (await sink.enqueue([event])).duplicates == ["o-1"]


async def test_analytics_js_batching_basic_key_is_a_browsers_and_never_refused() -> None:
    # analytics-next's batching sends its public key as HTTP Basic too (and so needs the preflight to
    # allow Authorization cross-origin): a browser's key is never read, whichever way it comes.
    sink = MemorySink()
    allowed = {"origin": "https://www.shop.example", "sec-fetch-site": "cross-site"}
    async with client(wrap(sink=sink, engine=StubEngine(), write_keys=KEYS,
                           allowed_origins=("https://www.shop.example",))) as http:
        preflight = await http.options("/_ps/v1/b", headers={**allowed, "access-control-request-method": "POST",
                                                             "access-control-request-headers": "authorization"})
        post = await http.post("/_ps/v1/b", json={"batch": [order("b-1")]},
                               headers={**BROWSER_POST, **allowed, **basic("public-ajs-key-0000")})
        with_server_key = await http.post("/_ps/v1/b", json={"batch": [order("b-2")]},
                                          headers={**BROWSER_POST, **basic(KEY)})
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert post.status_code == 200 and with_server_key.status_code == 200
    assert [event["envelope"]["source"] for event in sink.events] == ["browser", "browser"]


async def test_track_is_a_server_source_that_a_forged_browser_event_cannot_suppress() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from pinsignal import track

    async def orders(request: Request) -> JSONResponse:
        result = await track(request, "order_completed", message_id="order-5001",
                             properties={"order_id": "5001", "revenue": 250, "currency": "USD"})
        return JSONResponse({"queued": result.queued, "duplicate": result.duplicate})

    sink = MemorySink()
    app = wrap(Starlette(routes=[Route("/orders", orders, methods=["POST"])]), sink=sink,
               engine=Engine.from_config(config()))
    forged = {"type": "track", "event": "order_completed", "message_id": "order-5001",
              "properties": {"revenue": 0.01, "order_id": "5001"}}
    async with client(app) as http:
        await http.post("/_ps/e", json=forged, headers=FORGED)
        real = await http.post("/orders", headers={"user-agent": BROWSER})
    assert real.json() == {"queued": True, "duplicate": False}
    assert [event["custom_data"]["value"] for event in sink.events] == ["0.01", "250"]


@pytest.mark.parametrize("kind", [{"a": 1}, ["track"], None, 3])
async def test_a_type_that_is_not_a_string_is_refused_per_event_not_a_500(kind: object) -> None:
    # found by the collector fuzz: {"type": {...}} on /v1/a was looked up in a frozenset (TypeError, 500)
    sink = MemorySink()
    async with client(wrap(sink=sink)) as http:
        single = await http.post("/_ps/v1/a", json={"type": kind, "event": "x"}, headers=BROWSER_POST)
        batch = await http.post("/_ps/v1/b", json={"batch": [{"type": kind, "event": "x"}]}, headers=BROWSER_POST)
    assert single.status_code == batch.status_code == 200
    assert sink.events == [] and sink.counters["rejected_invalid"] == 2


async def test_more_than_1000_events_is_400_like_e() -> None:
    async with client(wrap()) as http:
        response = await http.post("/_ps/v1/batch", json={"batch": [{}] * 1001}, headers=BROWSER_POST)
    assert response.status_code == 400 and response.json()["code"] == "invalid_request"
    assert "at most 1000 events" in response.json()["message"]
