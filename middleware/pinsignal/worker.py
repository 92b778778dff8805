"""The arq delivery worker: ``pinsignal worker`` or ``arq pinsignal.worker.WorkerSettings``.

arq runs the process: Redis connection, signals, its health-check key, and a cron job that keeps
the shared figures fresh. The events themselves do not travel as one arq job each (arq tops out
near 200 jobs a second and finds a killed worker's job only after five minutes): they sit in a
Redis Stream per ad account, and the worker's start-up hook starts :class:`~pinsignal.delivery.
Delivery` loops that read them in batches through a consumer group. arq jobs are serialised with
orjson, never pickle.

    settings = worker_settings(Config.from_env(), concurrency=4, metrics_port=9108)
    arq.worker.run_worker(settings)

``WorkerSettings`` (for the ``arq`` command) is built from the environment on first access, so
importing this module starts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from arq.connections import RedisSettings
from arq.cron import cron
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from pinsignal import keys
from pinsignal.config import Config
from pinsignal.delivery import Delivery
from pinsignal.errors import ConfigError
from pinsignal.insight import refresh_insight
from pinsignal.metrics import Metrics, MetricsServer
from pinsignal.pinterest.client import PinterestClient
from pinsignal.retry import RetryPolicy
from pinsignal.status import read_status

__all__ = ["refresh_shared", "worker_settings"]  # and WorkerSettings, built on first access

logger = logging.getLogger("pinsignal.worker")

_STALL_SECONDS = 120.0  # a loop that made no progress this long makes /healthz fail


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _loads(raw: bytes) -> Any:
    return orjson.loads(raw)


async def refresh_shared(redis: aioredis.Redis, metrics: Metrics) -> None:
    """Copy queue depth, dead letters, duplicates and pauses from Redis into ``metrics.shared``."""
    status = await read_status(redis)
    shared = metrics.shared
    shared.queue_depth = {account.account: account.queued for account in status.accounts}
    shared.in_flight = {account.account: account.in_flight for account in status.accounts}
    shared.dead_letters = status.dead_letters
    shared.duplicates = {key.split(":", 1)[1]: value for key, value in status.counters.items()
                         if key.startswith("duplicates:")}
    shared.paused = {account: str(info.get("status")) for account, info in status.paused.items()}
    await refresh_insight(redis, metrics.insight, status.counters, [keys.stream(a.account) for a in status.accounts])


async def sweep(ctx: dict[str, Any]) -> None:
    """arq cron: refresh the shared metrics, and drop idle consumers that hold nothing."""
    delivery: Delivery = ctx["delivery"]
    await refresh_shared(delivery.redis, ctx["metrics"])
    for stream in delivery.streams:
        with contextlib.suppress(Exception):
            for consumer in await delivery.redis.xinfo_consumers(stream, keys.GROUP):
                if consumer["pending"] == 0 and consumer["idle"] > 3_600_000:
                    await delivery.redis.xgroup_delconsumer(stream, keys.GROUP, consumer["name"])


async def _refresh_forever(ctx: dict[str, Any]) -> None:
    delivery: Delivery = ctx["delivery"]
    while not delivery.stop.is_set():
        with contextlib.suppress(Exception):
            await refresh_shared(delivery.redis, ctx["metrics"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(delivery.stop.wait(), timeout=2.0)


def _health(delivery: Delivery, tasks: list[asyncio.Task[None]]) -> tuple[bool, str]:
    if any(task.done() for task in tasks):
        return False, "a delivery loop has stopped"
    if delivery.redis_down:
        return False, "Redis is unreachable"
    stalled = time.monotonic() - delivery.last_progress
    if stalled > _STALL_SECONDS:
        return False, f"no delivery progress for {stalled:.0f} s"
    return True, "ok"


def _redis_settings(url: str, policy: RetryPolicy) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    # arq's poll loop dies on the first connection error; a Redis restart must not end the worker.
    settings.retry_on_error = [RedisConnectionError, OSError]  # OSError: the socket is gone mid-restart
    settings.retry = Retry(ExponentialBackoff(cap=policy.worker_redis_retry_cap, base=policy.redis_retry_base),
                           policy.worker_redis_retries)
    return settings


def in_container(environ: Mapping[str, str] | None = None, root: Path = Path("/")) -> bool:
    """Whether this process runs in a container: Docker's ``/.dockerenv``, Podman's
    ``/run/.containerenv``, or the variable Kubernetes sets in every pod."""
    environ = os.environ if environ is None else environ
    return ("KUBERNETES_SERVICE_HOST" in environ or (root / ".dockerenv").exists()
            or (root / "run" / ".containerenv").exists())


def metrics_host(config: Config) -> str:
    """``PINSIGNAL_METRICS_HOST``, else loopback, or every interface inside a container (issue 18, item 13):
    outside one, the metrics and health page need not be open to the network."""
    if config.metrics_host is not None:
        return config.metrics_host
    return "0.0.0.0" if in_container() else "127.0.0.1"


def worker_settings(config: Config, *, concurrency: int = 4, metrics_port: int | None = None,
                    reclaim_after: float = 5.0, probe_interval: float = 5.0,
                    calls_per_minute: int | None = None, policy: RetryPolicy | None = None) -> dict[str, Any]:
    """arq ``Worker`` keyword arguments for delivering ``config``'s account, retrying by ``policy``."""
    if not config.can_deliver:
        raise ConfigError("the worker needs PINTEREST_AD_ACCOUNT_ID and PINTEREST_ACCESS_TOKEN to deliver events.")
    from pinsignal.embedded import redis_url

    url = redis_url(config)
    port = config.metrics_port if metrics_port is None else metrics_port
    policy = policy or RetryPolicy()

    async def startup(ctx: dict[str, Any]) -> None:
        from pinsignal.ratelimit import DEFAULT_CALLS_PER_MINUTE, TokenBucket

        redis = aioredis.Redis.from_url(url, socket_connect_timeout=5, max_connections=concurrency + 8)
        client = PinterestClient(config, max_connections=concurrency * 2, policy=policy)
        metrics = Metrics()
        consumer = f"{socket.gethostname()}-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        delivery = Delivery(redis, config, client, consumer=consumer, metrics=metrics,
                            bucket=TokenBucket(redis, calls_per_minute or DEFAULT_CALLS_PER_MINUTE),
                            reclaim_after=reclaim_after, probe_interval=probe_interval)
        await delivery.setup()
        tasks = [asyncio.create_task(delivery.run_loop(), name=f"deliver-{n}") for n in range(concurrency)]
        tasks.append(asyncio.create_task(delivery.heartbeat(), name="heartbeat"))
        tasks.append(asyncio.create_task(_refresh_forever(ctx), name="refresh"))
        ctx.update(delivery=delivery, metrics=metrics, client=client, tasks=tasks, delivery_redis=redis)
        if port is not None:
            ctx["metrics_server"] = await MetricsServer(metrics, port, metrics_host(config),
                                                        health=lambda: _health(delivery, tasks)).start()
        logger.info("delivering ad account %s to %s%s with %d loops (consumer %s)", config.ad_account_id,
                    config.api_url, " in TEST mode" if config.test_mode else "", concurrency, consumer)

    async def shutdown(ctx: dict[str, Any]) -> None:
        delivery: Delivery | None = ctx.get("delivery")
        if delivery is None:
            return
        delivery.stop.set()
        # A batch mid-request finishes (bounded by the HTTP timeout); a waiting one is given back.
        done, pending = await asyncio.wait(ctx["tasks"], timeout=config.http_timeout + 5)
        for task in pending:
            task.cancel()
        server: MetricsServer | None = ctx.get("metrics_server")
        if server is not None:
            await server.close()
        await delivery.close()
        await ctx["client"].aclose()
        await ctx["delivery_redis"].aclose()
        logger.info("worker stopped")

    return {
        "functions": [],
        "cron_jobs": [cron(sweep, name="pinsignal-sweep", run_at_startup=False, unique=True)],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": _redis_settings(url, policy),
        "queue_name": keys.ARQ_QUEUE,
        "job_serializer": _dumps,
        "job_deserializer": _loads,
        "keep_result": 0,
        "health_check_interval": 30,
        "poll_delay": 1.0,
        "max_jobs": 4,
    }


def __getattr__(name: str) -> Any:
    # ``arq pinsignal.worker.WorkerSettings``: settings come from the environment when asked for.
    if name == "WorkerSettings":
        return worker_settings(Config.from_env())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
