"""The trace, the refusal counters, the quarantine and the warnings, from a browser post to Pinterest's
answer: the real middleware, real Redis, the real delivery loops and the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from pinsignal import PinSignalMiddleware, keys
from pinsignal.config import Config
from pinsignal.delivery import Delivery
from pinsignal.insight import read_warnings
from pinsignal.pinterest.client import PinterestClient
from pinsignal.pipeline import Engine
from pinsignal.pipeline.loader import load_pipelines
from pinsignal.quarantine import Quarantine, replay
from pinsignal.queue import EventQueue
from pinsignal.retry import RetryPolicy
from pinsignal.trace import read_recent

SECRET = "trace-test-secret-0123456789"
EMAIL = " Jane.Doe@Example.com "
PHONE = "+1 (415) 555-0123"
DEBUG = "mybrowser123"
EXAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "pinterest-checkout.yaml"  # the repo's copy


def _config(redis_url: str, sandbox: Any, **changes: Any) -> Config:
    return Config(secret=SECRET, redis_url=redis_url, ad_account_id=sandbox.account_id, access_token=sandbox.token,
                  api_url=sandbox.url, batch_max_wait=0.05, http_timeout=5.0).with_(**changes)


def _event(message_id: str, name: str = "order_completed", user_id: str | None = "customer-42",
           **properties: Any) -> dict[str, Any]:
    event = {"type": "track", "event": name, "message_id": message_id,
             "properties": {"revenue": 72.39, "currency": "USD", **properties},
             "traits": {"email": EMAIL, "phone": PHONE}, "user_id": user_id,
             "context": {"page": {"url": "https://shop.example/checkout"}}}
    return {key: value for key, value in event.items() if value is not None}


async def _close(app: PinSignalMiddleware) -> None:
    await app.intake.close()  # flushes the buffered records
    await app.intake.sink.close()


async def _post(app: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.example") as client:
        response = await client.post("/_ps/e", content=orjson.dumps({"batch": events}), headers={
            "content-type": "text/plain", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0",
            "sec-fetch-site": "same-origin", "cookie": f"_psdebug={DEBUG}; _epik=dj0yJnU9Zm9v"})
    assert response.status_code == 202, response.text
    return dict(response.json())


async def _count(read: Any, n: int) -> bool:
    return len(await read()) >= n


async def _until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def delivering(config: Config) -> AsyncIterator[Delivery]:
    redis = aioredis.Redis.from_url(config.redis_url or "")
    client = PinterestClient(config, policy=RetryPolicy(backoff_base=0.1))
    delivery = Delivery(redis, config, client, consumer="test", reclaim_after=1.0)
    await delivery.setup()
    tasks = [asyncio.create_task(delivery.run_loop())]
    try:
        yield delivery
    finally:
        delivery.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        await delivery.trace.writer.close()
        await client.aclose()
        await redis.aclose()


def _stages(records: list[dict[str, Any]], ident: str) -> list[str]:
    return [r["stage"] for r in records if ident in (r.get("message_id"), r.get("event_id"))]


@pytest.mark.anyio
async def test_every_stage_from_post_to_pinterests_answer_is_traced_hashed_only(redis_url: str,
                                                                               sandbox_server: Any) -> None:
    config = _config(redis_url, sandbox_server)
    app = PinSignalMiddleware(Starlette(), config=config)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        answer = await _post(app, [_event("ok-1"), _event("bad-1", revenue=-5), _event("none-1", name="clicked"),
                                   _event("anon-1", user_id=None)])
        assert [r["id"] for r in answer["rejected"]] == ["bad-1"]
        await _close(app)
        collected = await read_recent(redis)
        assert _stages(collected, "ok-1") == ["received", "queued"]
        assert _stages(collected, "bad-1") == ["received", "refused", "quarantined"]
        assert _stages(collected, "none-1") == ["received", "refused"]
        refused = {r["message_id"]: r["reason"] for r in collected if r["stage"] == "refused"}
        assert refused == {"bad-1": "invalid_event", "none-1": "no_pipeline"}
        assert {r.get("debug") for r in collected} == {DEBUG}
        queued = next(r for r in collected if r["stage"] == "queued")
        assert (queued["event_name"], queued["event_id"], queued["pipeline"]) == ("checkout", "ok-1", "checkout")
        counters = await redis.hgetall(keys.COUNTERS)
        assert (counters[b"refused:invalid_event"], counters[b"refused:no_pipeline"]) == (b"1", b"1")

        async with delivering(config) as delivery:
            async def delivered() -> list[dict[str, Any]]:
                return [r for r in await read_recent(redis) if r["stage"] == "delivered"]
            await _until(lambda: _count(delivered, 2))
            metrics = delivery.metrics.render().decode()
        traced = await read_recent(redis)
        assert _stages(traced, "ok-1") == ["received", "queued", "sent", "delivered"]
        assert _stages(traced, "anon-1") == ["received", "queued", "sent", "warning", "delivered"]
        sent = next(r for r in traced if r["stage"] == "sent")
        assert (sent["status"], sent["answer"], sent["attempt"]) == (200, "processed", 1)
        assert sent["pinterest"]["user_data"]["em"] == [hashlib.sha256(b"jane.doe@example.com").hexdigest()]
        warning = next(r for r in traced if r["stage"] == "warning")
        assert warning["event_id"] == "anon-1" and warning["kinds"] == ["external_id_missing"]
        assert warning["warning"].startswith("external_id is missing")
        done = next(r for r in traced if r["stage"] == "delivered")
        assert done["latency"] >= 0 and done["keys"] == 0b11111  # em, ph, external_id, click_id, ip_ua
        assert await read_warnings(redis) == {"checkout": {"external_id_missing": 1}}
        assert 'pinsignal_event_warnings_total{event_name="checkout",warning="external_id_missing"} 1.0' in metrics
        assert 'pinsignal_event_match_keys_total{event_name="checkout",key="em"} 2.0' in metrics
        assert 'pinsignal_event_match_keys_total{event_name="checkout",key="external_id"} 1.0' in metrics

        # hashed only: no raw email, phone or user id anywhere in the trace or the quarantine
        raw = b"".join(fields[b"r"] for _, fields in await redis.xrange(keys.TRACE))
        raw += b"".join((await redis.hgetall(keys.QUARANTINE)).values())
        for secret in (b"Jane.Doe", b"jane.doe", b"555-0123", b"4155550123", b"customer-42"):
            assert secret not in raw
    finally:
        await redis.aclose()


@pytest.mark.anyio
async def test_quarantine_replay_runs_the_fixed_pipeline_and_keeps_the_event_id(redis_url: str, tmp_path: Path,
                                                                                sandbox_server: Any) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    text = EXAMPLE.read_text()
    (broken / "checkout.yaml").write_text(text.replace("source: timestamp", "source: properties.when"))
    config = _config(redis_url, sandbox_server, pipelines=(broken,))
    app = PinSignalMiddleware(Starlette(), config=config)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        answer = await _post(app, [_event("order-77")])
        assert answer["rejected"][0]["id"] == "order-77"
        await _close(app)
        store = Quarantine(redis)
        [item] = await store.list()
        assert (item["reason"], item["message_id"]) == ("invalid_event", "order-77")
        assert item["envelope"]["traits"]["email"] == hashlib.sha256(b"jane.doe@example.com").hexdigest()
        assert item["request"]["cookies"]["_epik"] == "dj0yJnU9Zm9v"

        fixed = Engine(load_pipelines([EXAMPLE]))
        queue = await EventQueue.connect(config)
        try:
            report = await replay(store, [item], fixed, queue)
        finally:
            await queue.close()
        assert report.queued == ["order-77"] and report.refused == {}
        assert await store.list() == []
        [(_, fields)] = await redis.xrange(keys.stream(sandbox_server.account_id))
        event = orjson.loads(fields[b"e"])
        assert event["event_id"] == "order-77"
        assert event["user_data"]["em"] == [hashlib.sha256(b"jane.doe@example.com").hexdigest()]
        assert event["user_data"]["click_id"] == "dj0yJnU9Zm9v"
    finally:
        await redis.aclose()


@pytest.mark.anyio
async def test_the_trace_stays_at_its_cap(redis_url: str) -> None:
    from pinsignal.trace import TraceWriter

    redis = aioredis.Redis.from_url(redis_url)
    try:
        writer = TraceWriter(redis, maxlen=500)
        for n in range(5000):
            writer.add({"stage": "received", "message_id": f"m-{n}"})
        await writer.close()
        length = await redis.xlen(keys.TRACE)
        assert 500 <= length < 700  # MAXLEN ~ trims whole macro nodes
        newest = await read_recent(redis, count=1)
        assert newest[0]["message_id"] == "m-4999"
    finally:
        await redis.aclose()
