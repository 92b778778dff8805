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

On a Redis Cluster arq cannot run: its ``ArqRedis`` is a plain single-server client, and it polls
and takes jobs with MULTI/WATCH over keys in different slots (python-arq/arq issues #358 and #385).
pinsignal uses arq only as a process runner (no event travels as an arq job), so in cluster mode
:func:`run` starts the same start-up hook (delivery loops, health and metrics server), runs the same
sweep every minute and the same shut-down hook on SIGINT/SIGTERM, in a small asyncio runner of its
own (:func:`run_cluster`). ``arq pinsignal.worker.WorkerSettings`` refuses a cluster.
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
from arq.connections import RedisSettings
from arq.cron import cron
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, RedisClusterException, RedisError

from pinsignal import keys, store
from pinsignal.accounts import Accounts
from pinsignal.config import Config
from pinsignal.delivery import Delivery
from pinsignal.errors import ConfigError, QueueUnavailable
from pinsignal.insight import refresh_insight
from pinsignal.metrics import Metrics, MetricsServer
from pinsignal.pinterest.client import PinterestClient
from pinsignal.retry import RetryPolicy
from pinsignal.status import read_status

__all__ = ["refresh_shared", "run", "run_cluster", "worker_settings"]  # and WorkerSettings, built on first access

logger = logging.getLogger("pinsignal.worker")

_STALL_SECONDS = 120.0  # a loop that made no progress this long makes /healthz fail
_SWEEP_SECONDS = 60.0  # arq's cron(sweep) runs once a minute: so does the cluster runner
_CLUSTER = "pinsignal_cluster"  # the settings' mark of cluster mode (never handed to arq)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _loads(raw: bytes) -> Any:
    return orjson.loads(raw)


async def refresh_shared(redis: store.Client, metrics: Metrics) -> None:
    """Copy queue depth, dead letters, duplicates and pauses from Redis into ``metrics.shared``."""
    status = await read_status(redis)
    shared = metrics.shared
    shared.queue_depth = {account.account: account.queued for account in status.accounts}
    shared.in_flight = {account.account: account.in_flight for account in status.accounts}
    shared.dead_letters = {(account.account, reason): count for account in status.accounts
                           for reason, count in account.dead_letters.items()}
    shared.duplicates = {key.split(":", 1)[1]: value for key, value in status.counters.items()
                         if key.startswith("duplicates:")}
    shared.paused = {account: str(info.get("status")) for account, info in status.paused.items()}
    await refresh_insight(redis, metrics.insight, status.counters, [keys.stream(a.account) for a in status.accounts])


async def sweep(ctx: dict[str, Any]) -> None:
    """arq cron: refresh the shared metrics, and drop idle consumers that hold nothing."""
    delivery: Delivery = ctx["delivery"]
    await refresh_shared(delivery.redis, ctx["metrics"])
    for stream in [stream for each in ctx["deliveries"] for stream in each.streams]:
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


def _health(deliveries: list[Delivery], tasks: list[asyncio.Task[None]]) -> tuple[bool, str]:
    if any(task.done() for task in tasks):
        return False, "a delivery loop has stopped"
    for delivery in deliveries:
        if delivery.redis_down:
            return False, "Redis is unreachable"
        stalled = time.monotonic() - delivery.last_progress
        if stalled > _STALL_SECONDS:
            return False, f"no delivery progress for {stalled:.0f} s (ad account {delivery.account})"
    return True, "ok"


def _redis_settings(url: str, policy: RetryPolicy) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    # arq's poll loop dies on the first connection error; a Redis restart must not end the worker.
    settings.retry_on_error = [RedisConnectionError, OSError]  # OSError: the socket is gone mid-restart
    settings.retry = Retry(ExponentialBackoff(cap=policy.worker_redis_retry_cap, base=policy.redis_retry_base),
                           policy.worker_redis_retries)
    return settings


def run(settings: Mapping[str, Any], policy: RetryPolicy | None = None) -> None:
    """Run arq's worker with ``settings`` until it is stopped, starting it again when Redis drops it.

    redis-py retries a command whose connection fails, but not the hello on a new connection: when a
    restarting Redis resets that, arq's poll loop ends the worker. The events stay in Redis (the ones
    this worker held are reclaimed under their own event ids), so a fresh worker carries on. After the
    policy's outage budget without a run that lasted, the error is raised.
    """
    from arq.worker import run_worker

    if settings.get(_CLUSTER):
        _run_cluster_forever(settings)
        return
    policy = policy or RetryPolicy()
    budget = policy.worker_redis_retries * policy.worker_redis_retry_cap
    down_since: float | None = None
    while True:
        started = time.monotonic()
        try:
            run_worker(dict(settings))
            return
        except (RedisError, OSError, QueueUnavailable) as exc:
            now = time.monotonic()
            if down_since is None or now - started > budget:  # after a run that lasted: a new outage
                down_since = now
            elif now - down_since > budget:
                raise
            logger.warning("Redis dropped the worker (%s: %s); starting it again", type(exc).__name__, exc)
            time.sleep(policy.redis_retry_base * 10)


def _run_cluster_forever(settings: Mapping[str, Any]) -> None:
    asyncio.run(run_cluster(settings))


async def run_cluster(settings: Mapping[str, Any], stop: asyncio.Event | None = None) -> None:
    """Run :func:`worker_settings`'s hooks without arq (Redis Cluster): start-up, the sweep once a
    minute, shut-down on SIGINT/SIGTERM (or when ``stop`` is set)."""
    import signal

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(number, stop.set)
            handled.append(number)
    ctx: dict[str, Any] = {}
    try:
        await settings["on_startup"](ctx)
        logger.info("running on a Redis Cluster: delivery without arq (see pinsignal.worker)")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_SWEEP_SECONDS)
            if not stop.is_set():
                try:
                    await sweep(ctx)
                except (RedisError, OSError, RedisClusterException, QueueUnavailable) as exc:
                    logger.warning("the sweep failed (%s: %s); it runs again in a minute", type(exc).__name__, exc)
    finally:
        await settings["on_shutdown"](ctx)
        for number in handled:
            loop.remove_signal_handler(number)


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
    """arq ``Worker`` keyword arguments for delivering ``config``'s account (and those of
    ``PINSIGNAL_ACCOUNTS``, each with ``concurrency`` loops), retrying by ``policy``."""
    if not config.can_deliver:
        raise ConfigError("the worker needs PINTEREST_AD_ACCOUNT_ID and PINTEREST_ACCESS_TOKEN to deliver events.")
    from pinsignal.embedded import redis_url

    url = redis_url(config)
    cluster = store.cluster_mode(url, config.redis_cluster)  # one probe: arq, or our own runner
    port = config.metrics_port if metrics_port is None else metrics_port
    policy = policy or RetryPolicy()

    # several ad accounts (DESIGN 8.4): the default one, then PINSIGNAL_ACCOUNTS's, each with its own token
    # (read here, so a missing one fails start-up), client, rate limit, pause and dead letters
    routed = Accounts.load(config.accounts, default=config.ad_account_id)
    configs = [config] + [config.with_(ad_account_id=account.id, access_token=account.token(os.environ))
                          for account in routed.accounts if account.id != config.ad_account_id]

    async def startup(ctx: dict[str, Any]) -> None:
        from pinsignal.migrate import migrate
        from pinsignal.ratelimit import DEFAULT_CALLS_PER_MINUTE, TokenBucket

        redis = store.client(url, cluster=cluster, socket_connect_timeout=5,
                             max_connections=(concurrency + 2) * len(configs) + 6)
        await migrate(redis)  # an older version's keys, moved to today's names (single Redis only)
        metrics = Metrics()
        consumer = f"{socket.gethostname()}-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        bucket = TokenBucket(redis, calls_per_minute or DEFAULT_CALLS_PER_MINUTE)
        clients = [PinterestClient(each, max_connections=concurrency * 2, policy=policy) for each in configs]
        deliveries = [Delivery(redis, each, client, consumer=consumer, metrics=metrics, bucket=bucket,
                               reclaim_after=reclaim_after, probe_interval=probe_interval, unassigned=index == 0)
                      for index, (each, client) in enumerate(zip(configs, clients, strict=True))]
        for delivery in deliveries:
            await delivery.setup()
        tasks = [asyncio.create_task(delivery.run_loop(), name=f"deliver-{delivery.account}-{n}")
                 for delivery in deliveries for n in range(concurrency)]
        tasks += [asyncio.create_task(delivery.heartbeat(), name=f"heartbeat-{delivery.account}")
                  for delivery in deliveries]
        ctx.update(delivery=deliveries[0], deliveries=deliveries, metrics=metrics, clients=clients,
                   delivery_redis=redis)
        tasks.append(asyncio.create_task(_refresh_forever(ctx), name="refresh"))
        ctx["tasks"] = tasks
        if port is not None:
            ctx["metrics_server"] = await MetricsServer(metrics, port, metrics_host(config),
                                                        health=lambda: _health(deliveries, tasks)).start()
        logger.info("delivering ad account%s %s to %s%s with %d loops each (consumer %s)",
                    "s" if len(deliveries) > 1 else "", ", ".join(d.account for d in deliveries),
                    config.api_url, " in TEST mode" if config.test_mode else "", concurrency, consumer)

    async def shutdown(ctx: dict[str, Any]) -> None:
        deliveries: list[Delivery] | None = ctx.get("deliveries")
        if not deliveries:
            return
        for delivery in deliveries:
            delivery.stop.set()
        # A batch mid-request finishes (bounded by the HTTP timeout); a waiting one is given back.
        done, pending = await asyncio.wait(ctx["tasks"], timeout=config.http_timeout + 5)
        for task in pending:
            task.cancel()
        server: MetricsServer | None = ctx.get("metrics_server")
        if server is not None:
            await server.close()
        for delivery in deliveries:
            await delivery.close()
        for client in ctx["clients"]:
            await client.aclose()
        await ctx["delivery_redis"].aclose()
        logger.info("worker stopped")

    return {
        **({_CLUSTER: True} if cluster else {}),
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
        settings = worker_settings(Config.from_env())
        if settings.get(_CLUSTER):
            raise ConfigError("arq cannot run on a Redis Cluster (python-arq/arq#358); start the worker with "
                              "'pinsignal worker', which runs the delivery without arq there.")
        return settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
