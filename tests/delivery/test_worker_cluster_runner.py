"""On a Redis Cluster ``pinsignal worker`` runs without arq (arq has no cluster support): the same
start-up and shut-down hooks and the minute's sweep in ``pinsignal.worker.run_cluster``. Its loop is
the same on any Redis, so it is tested here on the single one; tests/cluster runs it on a cluster."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from delivery_helpers import make_event

from pinsignal import keys, worker
from pinsignal.config import Config
from pinsignal.errors import ConfigError
from pinsignal.queue import EventQueue


def _config(redis_url: str, sandbox: Any) -> Config:
    return Config(redis_url=redis_url, ad_account_id=sandbox.account_id, access_token=sandbox.token,
                  api_url=sandbox.url, batch_max_wait=0.05)


@pytest.mark.anyio
async def test_the_runner_delivers_sweeps_and_shuts_down_through_the_workers_hooks(
        redis_url: str, sandbox_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(redis_url, sandbox_server)
    queue = await EventQueue.connect(config)
    try:
        await queue.enqueue([make_event(n, prefix="runner") for n in range(50)])
    finally:
        await queue.close()
    settings = worker.worker_settings(config, concurrency=2, metrics_port=0)
    assert worker._CLUSTER not in settings  # a single Redis: arq's settings as they were
    sweeps: list[float] = []
    real_sweep = worker.sweep

    async def counted(ctx: dict[str, Any]) -> None:
        sweeps.append(time.monotonic())
        await real_sweep(ctx)

    monkeypatch.setattr(worker, "sweep", counted)
    monkeypatch.setattr(worker, "_SWEEP_SECONDS", 0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run_cluster(settings, stop))
    deadline = time.monotonic() + 30
    while len(sandbox_server.events()) < 50 or len(sweeps) < 2:
        assert time.monotonic() < deadline, "the runner did not deliver and sweep"
        assert not running.done(), running
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(running, 30)
    async with aioredis.Redis.from_url(redis_url) as client:
        assert await client.xlen(keys.stream(config.ad_account_id or "")) == 0
        assert await client.hget(keys.account_counters(config.ad_account_id or ""), "delivered") == b"50"


def test_arq_is_refused_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "worker_settings", lambda config: {worker._CLUSTER: True})
    with pytest.raises(ConfigError, match="arq cannot run on a Redis Cluster .* 'pinsignal worker'"):
        worker.WorkerSettings  # noqa: B018 - the module's __getattr__ builds it
