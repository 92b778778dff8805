"""The inspector's HTTP side: the page and its assets, the API over the trace, the live stream, the guard."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from pinsignal.config import Config
from pinsignal.errors import ConfigError
from pinsignal.inspector import create_app, is_loopback
from pinsignal.trace import TraceWriter
from support import ServerThread

TOKEN = "inspector-token-0123456789"
RECORDS = [
    {"stage": "received", "message_id": "m-1", "event": "order_completed",
     "envelope": {"event": "order_completed", "traits": {"email": "ab" * 32}}},
    {"stage": "queued", "message_id": "m-1", "event_name": "checkout", "event_id": "o-1", "pipeline": "checkout"},
    {"stage": "sent", "event_name": "checkout", "event_id": "o-1", "attempt": 1, "status": 503,
     "answer": "server_error"},
    {"stage": "sent", "event_name": "checkout", "event_id": "o-1", "attempt": 2, "status": 200, "answer": "processed",
     "pinterest": {"event_name": "checkout", "event_id": "o-1"}},
    {"stage": "warning", "event_name": "checkout", "event_id": "o-1", "warning": "click_id is missing",
     "kinds": ["click_id_missing"]},
    {"stage": "delivered", "event_name": "checkout", "event_id": "o-1", "latency": 0.4, "keys": 1},
    {"stage": "received", "message_id": "m-2", "event": "clicked"},
]


async def _write(redis: Any, records: list[dict[str, Any]]) -> None:
    writer = TraceWriter(redis, maxlen=1000)
    for record in records:
        writer.add(dict(record))
    await writer.close()


def _client(app: Any, host: str = "127.0.0.1:8420") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


@pytest.mark.anyio
async def test_page_and_api_over_the_trace(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await _write(redis, RECORDS)
        async with _client(create_app(Config(), redis)) as client:
            page = await client.get("/")
            assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
            assert '<script src="/inspector.js"' in page.text and "<script>" not in page.text
            assert (await client.get("/inspector.js")).headers["content-type"].startswith("text/javascript")
            recent = (await client.get("/api/recent", params={"limit": 3})).json()["records"]
            assert [r["stage"] for r in recent] == ["warning", "delivered", "received"]
            detail = (await client.get("/api/event/m-1")).json()
            assert [r["stage"] for r in detail["records"]] == ["received", "queued", "sent", "sent", "warning",
                                                               "delivered"]
            assert detail["envelope"]["traits"]["email"] == "ab" * 32
            assert detail["pipelines"] == [{"pipeline": "checkout", "event_name": "checkout", "event_id": "o-1",
                                            "duplicate": False}]
            assert detail["pinterest"] == [{"event_name": "checkout", "event_id": "o-1"}]
            assert [(a["attempt"], a["status"]) for a in detail["attempts"]] == [(1, 503), (2, 200)]
            assert detail["attempts"][1]["warning"] == "click_id is missing"
            summary = (await client.get("/api/summary")).json()
            assert summary["match_keys"][0] == "em" and "delivered" in summary["stages"]
    finally:
        await redis.aclose()


@pytest.mark.anyio
async def test_without_a_token_only_loopback_host_names_are_answered(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        app = create_app(Config(), redis)
        for host in ("127.0.0.1:8420", "localhost:8420", "[::1]:8420"):
            async with _client(app, host) as client:
                assert (await client.get("/api/summary")).status_code == 200, host
        async with _client(app, "evil.example:8420") as client:  # DNS rebinding: a page elsewhere, our address
            answer = await client.get("/api/recent")
            assert answer.status_code == 403 and "PINSIGNAL_ADMIN_TOKEN" in answer.text
    finally:
        await redis.aclose()


@pytest.mark.anyio
async def test_with_a_token_every_request_needs_it(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        app = create_app(Config(admin_token=TOKEN), redis)
        async with _client(app, "inspector.internal") as client:
            assert (await client.get("/")).status_code == 401
            assert (await client.get("/api/recent", headers={"authorization": "Bearer wrong"})).status_code == 401
            assert (await client.get("/api/recent", headers={"authorization": f"Bearer {TOKEN}"})).status_code == 200
            login = await client.get("/", params={"token": TOKEN})
            assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
            assert (await client.get("/api/summary")).status_code == 200  # the cookie from the redirect
    finally:
        await redis.aclose()


def test_binding_beyond_loopback_needs_the_token(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pinsignal.cli import main

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    monkeypatch.setenv("REDIS_URL", redis_url)
    with pytest.raises(ConfigError, match="PINSIGNAL_ADMIN_TOKEN"):
        from pinsignal.commands import inspector

        inspector.run(type("Args", (), {"host": "0.0.0.0", "port": 0})())
    assert main(["inspector", "--host", "0.0.0.0", "--port", "1"]) == 2


def test_new_records_arrive_on_the_live_stream(redis_url: str) -> None:
    ready = threading.Event()
    redis_app = create_app(Config(), redis_url=redis_url, heartbeat=0.5)
    with ServerThread(redis_app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        lines: list[str] = []

        def read() -> None:
            with client.stream("GET", "/api/stream") as stream:
                ready.set()
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        lines.append(line)
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert ready.wait(10)
        time.sleep(0.3)

        async def write() -> None:
            redis = aioredis.Redis.from_url(redis_url)
            await _write(redis, [{"stage": "delivered", "event_name": "lead", "event_id": "l-9"}])
            await redis.aclose()

        asyncio.run(write())
        reader.join(10)
        assert lines and orjson.loads(lines[0][6:])["event_id"] == "l-9"
