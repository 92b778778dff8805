"""Every outcome of a send, with the real Delivery loops against the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from delivery_helpers import make_event

from pinsignal.config import Config
from pinsignal.delivery import Delivery
from pinsignal.dlq import DeadLetters
from pinsignal.pinterest.client import PinterestClient
from pinsignal.queue import EventQueue
from pinsignal.retry import RetryPolicy
from pinsignal.status import read_status


def _config(redis_url: str, sandbox: Any, **changes: Any) -> Config:
    return Config(redis_url=redis_url, ad_account_id=sandbox.account_id, access_token=sandbox.token,
                  api_url=sandbox.url, batch_max_wait=0.05, http_timeout=5.0).with_(**changes)


@contextlib.asynccontextmanager
async def delivering(config: Config, *, loops: int = 2, transport: httpx.AsyncBaseTransport | None = None,
                     probe_interval: float = 0.3) -> AsyncIterator[Delivery]:
    redis = aioredis.Redis.from_url(config.redis_url or "")
    client = PinterestClient(config, transport=transport, policy=RetryPolicy(backoff_base=0.1))
    delivery = Delivery(redis, config, client, consumer="test", reclaim_after=1.0, probe_interval=probe_interval)
    await delivery.setup()
    tasks = [asyncio.create_task(delivery.run_loop()) for _ in range(loops)]
    tasks.append(asyncio.create_task(delivery.heartbeat()))
    try:
        yield delivery
    finally:
        delivery.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        await delivery.close()
        await client.aclose()
        await redis.aclose()


async def _enqueue(config: Config, events: list[dict[str, Any]]) -> None:
    queue = await EventQueue.connect(config)
    try:
        assert len((await queue.enqueue(events)).queued) == len(events)
    finally:
        await queue.close()


async def _until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        await asyncio.sleep(0.05)


async def _settled(delivery: Delivery, total: int) -> bool:
    status = await read_status(delivery.redis)
    return status.counters.get("delivered", 0) + status.counters.get("failed", 0) >= total and status.queued == 0


@pytest.mark.anyio
async def test_per_event_failures_are_dead_lettered_with_pinterests_message(redis_url: str, sandbox_server: Any
                                                                          ) -> None:
    config = _config(redis_url, sandbox_server)
    future = int(time.time()) + 3600
    events = [make_event(n, event_time=future if n in (3, 7) else None) for n in range(10)]
    await _enqueue(config, events)
    async with delivering(config) as delivery:
        await _until(lambda: _settled(delivery, 10))
        letters = await DeadLetters(delivery.redis).recent()
    assert sorted(letter.event_id for letter in letters) == ["ev-3", "ev-7"]
    assert all(letter.reason == "rejected" and "in the future" in letter.message for letter in letters)
    assert sorted(e["event"]["event_id"] for e in sandbox_server.events()) == sorted(
        f"ev-{n}" for n in range(10) if n not in (3, 7))
    assert sandbox_server.stats()["requests"] == {"422": 1}


@pytest.mark.anyio
async def test_a_400_is_split_until_the_bad_events_are_isolated(redis_url: str, sandbox_server: Any) -> None:
    config = _config(redis_url, sandbox_server)
    events = [make_event(n, **({"not_a_field": 1} if n in (5, 21) else {})) for n in range(32)]
    await _enqueue(config, events)
    async with delivering(config, loops=1) as delivery:
        await _until(lambda: _settled(delivery, 32))
        letters = await DeadLetters(delivery.redis).recent()
        counters = (await read_status(delivery.redis)).counters
    assert sorted(letter.event_id for letter in letters) == ["ev-21", "ev-5"]
    assert {letter.reason for letter in letters} == {"bad_request"}
    assert all("not_a_field" in letter.message for letter in letters)
    delivered = sorted(e["event"]["event_id"] for e in sandbox_server.events())
    assert delivered == sorted(f"ev-{n}" for n in range(32) if n not in (5, 21))
    assert counters["delivered"] == 30 and counters["failed:bad_request"] == 2
    assert sandbox_server.stats()["requests"]["400"] <= 2 * 5 + 1     # about 2 log2(n) calls, not n


@pytest.mark.anyio
async def test_429_5xx_and_timeouts_back_off_and_retry_until_delivered(redis_url: str, sandbox_server: Any) -> None:
    config = _config(redis_url, sandbox_server, http_timeout=0.5)
    sandbox_server.fault(status=429, count=2, retry_after=0.3)  # the first one is timed out
    sandbox_server.fault(status=503, count=1)
    sandbox_server.fault(delay=2.0, delay_count=1)
    await _enqueue(config, [make_event(n) for n in range(50)])
    started = time.monotonic()
    async with delivering(config) as delivery:
        await _until(lambda: _settled(delivery, 50))
        counters = (await read_status(delivery.redis)).counters
        retried = {key: value for key, value in delivery.metrics.retried._metrics.items()}
    assert time.monotonic() - started >= 0.3                          # Retry-After was honoured
    ids = [e["event"]["event_id"] for e in sandbox_server.events()]
    assert set(ids) == {f"ev-{n}" for n in range(50)}                 # every event, possibly twice after the timeout
    assert counters["delivered"] == 50 and "failed" not in counters
    reasons = {labels[-1] for labels in retried}  # (account, event_name, reason)
    assert {"rate_limited", "server_error", "timeout"} <= reasons


@pytest.mark.anyio
async def test_connection_errors_are_retried(redis_url: str, sandbox_server: Any) -> None:
    calls = 0

    async def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise httpx.ConnectError("connection refused")
        async with httpx.AsyncClient() as real:
            return await real.send(request)

    class Transport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await flaky(request)
            await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=response.content)

    config = _config(redis_url, sandbox_server)
    await _enqueue(config, [make_event(n) for n in range(5)])
    async with delivering(config, transport=Transport(), loops=1) as delivery:
        await _until(lambda: _settled(delivery, 5))
    assert calls == 3
    assert len(sandbox_server.events()) == 5


@pytest.mark.anyio
async def test_expired_events_are_dead_lettered_without_being_sent(redis_url: str, sandbox_server: Any) -> None:
    config = _config(redis_url, sandbox_server)
    old = int(time.time()) - 8 * 86400
    await _enqueue(config, [make_event(1, event_time=old), make_event(2)])
    async with delivering(config) as delivery:
        await _until(lambda: _settled(delivery, 2))
        letters = await DeadLetters(delivery.redis).recent()
    assert [(letter.event_id, letter.reason) for letter in letters] == [("ev-1", "expired")]
    assert [e["event"]["event_id"] for e in sandbox_server.events()] == ["ev-2"]


@pytest.mark.anyio
async def test_401_pauses_the_account_loudly_once_then_a_probe_resumes_it(
        redis_url: str, sandbox_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pinsignal")
    config = _config(redis_url, sandbox_server)
    sandbox_server.fault(status=401, count=4)
    await _enqueue(config, [make_event(n) for n in range(40)])
    async with delivering(config, loops=3, probe_interval=0.4) as delivery:
        paused = await _until(lambda: _paused(delivery))
        assert paused["status"] == 401 and paused["message"] == "Authentication failed."
        status = await read_status(delivery.redis)
        assert status.queued + status.in_flight == 40                 # nothing dropped while paused
        await _until(lambda: _settled(delivery, 40))
        assert not (await read_status(delivery.redis)).paused
    assert sorted(e["event"]["event_id"] for e in sandbox_server.events()) == sorted(f"ev-{n}" for n in range(40))
    assert sandbox_server.stats()["requests"]["401"] == 4
    assert caplog.text.count("PAUSED") == 1 and caplog.text.count("RESUMED") == 1
    assert sandbox_server.token not in caplog.text


async def _paused(delivery: Delivery) -> dict[str, Any] | None:
    return (await read_status(delivery.redis)).paused.get(delivery.account)


@pytest.mark.anyio
async def test_test_mode_sends_batches_of_twenty_with_test_true(redis_url: str, sandbox_server: Any) -> None:
    config = _config(redis_url, sandbox_server, test_mode=True)
    await _enqueue(config, [make_event(n) for n in range(45)])
    async with delivering(config, loops=1) as delivery:
        await _until(lambda: _settled(delivery, 45))
    stats = sandbox_server.stats()
    assert stats["test_requests"] == 3 and stats["test_events"] == 45
    assert stats["events_recorded"] == 0
