"""One way to connect (pinsignal.store): cluster mode detected or forced, and what a single Redis gets."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from delivery_helpers import make_event

from pinsignal import keys, store
from pinsignal.config import Config
from pinsignal.delivery import Delivery
from pinsignal.embedded import redis_server_binary
from pinsignal.errors import ConfigError, QueueUnavailable
from pinsignal.pinterest.client import PinterestClient
from pinsignal.queue import EventQueue
from pinsignal.retry import RetryPolicy
from support import free_port

ACCOUNT = "549755885175"


@pytest.fixture(scope="module")
def tcp_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A single Redis over TCP (the embedded one is a unix socket, which is never a cluster)."""
    port = free_port()
    folder = tmp_path_factory.mktemp("tcp-redis")
    process = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(10)


def test_a_single_redis_is_found_not_to_be_a_cluster(tcp_redis: str) -> None:
    assert store.cluster_mode(tcp_redis) is False
    client = store.client(tcp_redis)
    assert type(client) is aioredis.Redis and not store.is_cluster(client)


def test_pinsignal_redis_cluster_forces_the_mode_only_where_the_server_cannot_say(tcp_redis: str) -> None:
    assert store.cluster_mode(tcp_redis, False) is False
    assert isinstance(store.client(tcp_redis, cluster=False), aioredis.Redis)
    with pytest.raises(ConfigError, match=r"^PINSIGNAL_REDIS_CLUSTER is true but the Redis at REDIS_URL is not a "
                                          r"cluster \(INFO cluster: cluster_enabled:0\); unset"):
        store.cluster_mode(tcp_redis, True)
    # nothing listens there: the setting is taken as it is, and the first command finds out
    assert store.cluster_mode("redis://127.0.0.1:1/0", True) is True
    assert store.cluster_mode("redis://127.0.0.1:1/0", False) is False


def test_the_embedded_redis_is_never_a_cluster(redis_url: str) -> None:
    assert store.cluster_mode(redis_url) is False
    with pytest.raises(ConfigError, match="PINSIGNAL_REDIS_CLUSTER is true but REDIS_URL .* unix socket"):
        store.cluster_mode(redis_url, True)


def test_an_unreachable_redis_is_queue_unavailable_at_the_probe() -> None:
    with pytest.raises(QueueUnavailable, match="whether it is a cluster .* PINSIGNAL_REDIS_CLUSTER"):
        store.cluster_mode("redis://127.0.0.1:1/0")


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), ("1", True), ("", None)])
def test_the_setting_reads_like_every_flag(value: str, expected: bool | None) -> None:
    assert Config.from_env({"PINSIGNAL_REDIS_CLUSTER": value}).redis_cluster is expected


def test_a_bad_setting_fails_start_up_with_one_sentence() -> None:
    with pytest.raises(ConfigError, match=r"^PINSIGNAL_REDIS_CLUSTER must be true or false, got 'sometimes'\.$"):
        Config.from_env({"PINSIGNAL_REDIS_CLUSTER": "sometimes"})


@pytest.mark.anyio
async def test_a_single_redis_runs_transactions_on_its_one_client(tcp_redis: str) -> None:
    client = await store.connect(Config(redis_url=tcp_redis))
    try:
        assert store.node_client(client, keys.dlq(ACCOUNT)) is client
        async with store.transaction(client, keys.dlq(ACCOUNT)) as pipe:
            pipe.hset(keys.dlq(ACCOUNT), "x", "1")
            pipe.zadd(keys.dlq_index(ACCOUNT), {"x": 1})
            assert await pipe.execute() == [1, 1]
    finally:
        await client.flushall()
        await client.aclose()


def _config(redis_url: str, sandbox: Any) -> Config:
    return Config(redis_url=redis_url, ad_account_id=sandbox.account_id, access_token=sandbox.token,
                  api_url=sandbox.url, batch_max_wait=0.05)


@pytest.mark.anyio
async def test_delivery_reads_its_streams_one_at_a_time_as_on_a_cluster(redis_url: str, sandbox_server: Any,
                                                                       tmp_path: Path) -> None:
    """A cluster cannot XREADGROUP two slots at once: the default account's loops read its own stream and
    the unassigned one in turn, and settle each stream's acks in its own slot, dead letters in the account's."""
    config = _config(redis_url, sandbox_server)
    queue = await EventQueue.connect(Config(redis_url=redis_url))
    try:
        future = int(time.time()) + 3600  # Pinterest (the sandbox) refuses an event time in the future
        await queue.enqueue([make_event(n, prefix="own") for n in range(30)], account=sandbox_server.account_id)
        await queue.enqueue([make_event(n, prefix="unassigned") for n in range(30)]
                            + [make_event(99, prefix="bad", event_time=future)])
    finally:
        await queue.close()
    redis_async = aioredis.Redis.from_url(redis_url)
    http = PinterestClient(config, policy=RetryPolicy(backoff_base=0.1))
    delivery = Delivery(redis_async, config, http, consumer="test", reclaim_after=1.0)
    delivery._cluster = True  # what a cluster client makes it do
    await delivery.setup()
    tasks = [asyncio.create_task(delivery.run_loop()) for _ in range(2)]
    try:
        deadline = time.monotonic() + 30
        while len(sandbox_server.events()) < 60 or not await redis_async.zcard(keys.dlq_index(config.ad_account_id)):
            assert time.monotonic() < deadline, "not delivered"
            await asyncio.sleep(0.05)
        assert await redis_async.xlen(keys.stream(keys.UNASSIGNED_ACCOUNT)) == 0  # acked and deleted
        assert await redis_async.xlen(keys.stream(config.ad_account_id)) == 0
        assert await redis_async.hget(keys.account_counters(config.ad_account_id), "delivered") == b"60"
        assert await redis_async.hget(keys.dlq_reasons(config.ad_account_id), "rejected") == b"1"
    finally:
        delivery.stop.set()
        await asyncio.gather(*tasks)
        await delivery.close()
        await http.aclose()
        await redis_async.aclose()
