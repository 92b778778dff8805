"""One way to connect to Redis: a single server, or a Redis (or Valkey) Cluster.

Every pinsignal process connects here::

    redis = await store.connect(config)                 # redis.asyncio.Redis or store.Cluster
    redis = store.client(url, cluster=None)             # the same, from a URL (probes synchronously)
    store.is_cluster(redis)

Cluster mode is what the server says: one ``INFO cluster`` at connect, ``cluster_enabled:1`` meaning
a cluster. ``PINSIGNAL_REDIS_CLUSTER`` (``true``/``false``) forces it where the server cannot say (it is
down at start-up, or ``INFO`` is not allowed), and a server that says otherwise fails start-up with
one sentence. A unix socket (the embedded Redis) is never a cluster.

In a cluster, a script or a MULTI runs only when all its keys hash to one slot; ``pinsignal.keys``
tags every key of one account alike, so each of them runs on the master that owns the account's
slot. redis-py's cluster client sends single commands there itself, but has no MULTI, so
:func:`transaction` opens a plain client to that master (:meth:`Cluster.node_client`) and runs the
MULTI there; and :class:`Direct` gives a flusher task (the queue's, the trace's) a connection of
its own to that master, with the topology read again and the call retried after a ``MOVED``, an
``ASK`` or a lost connection (a failover).

Acknowledged means durable (DESIGN 8.4): in a cluster, :class:`Direct` follows a write it must
acknowledge with ``WAIT 1 <ms>`` on the same connection (``WAIT`` counts that connection's own
writes), and raises :class:`NotReplicated` when no replica has them in time, unless the master has
no replica at all in the topology (then the promise is its own append-only file's; see
docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError as RedisConnectionError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    TimeoutError as RedisTimeoutError,
    TryAgainError,
)

from pinsignal.config import Config
from pinsignal.errors import ConfigError, QueueUnavailable

__all__ = ["REPLICA_WAIT_MS", "Client", "Cluster", "Direct", "NotReplicated", "client", "cluster_mode", "connect",
           "connect_url",
           "is_cluster", "node_client", "own_connection", "transaction"]

logger = logging.getLogger("pinsignal.store")

T = TypeVar("T")
Client = aioredis.Redis | RedisCluster

# How long an acknowledged write waits for a replica before the caller hears the queue is unavailable.
REPLICA_WAIT_MS = 1000

# What a cluster answers while a slot moves or its master fails over: read the topology again, retry.
_REROUTE = (AskError, ClusterDownError, TryAgainError, ReadOnlyError, RedisConnectionError, RedisTimeoutError,
            OSError, RedisClusterException)


class NotReplicated(RedisError):
    """No replica acknowledged an acknowledged write within :data:`REPLICA_WAIT_MS`."""


def cluster_mode(url: str, forced: bool | None = None) -> bool:
    """Whether ``url`` is a Redis Cluster: one ``INFO cluster`` (``cluster_enabled:1``).

    ``forced`` (``PINSIGNAL_REDIS_CLUSTER``) is taken when the server cannot say (unreachable for now,
    or ``INFO`` not allowed); a server that says otherwise fails start-up with one sentence.
    """
    if url.startswith("unix:"):
        if forced:
            raise ConfigError(f"PINSIGNAL_REDIS_CLUSTER is true but REDIS_URL {url!r} is a unix socket; a Redis "
                              "Cluster is reached over TCP (redis:// or rediss://).")
        return False
    probe = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        enabled = str(cast(dict[str, Any], probe.info("cluster")).get("cluster_enabled", 0)) == "1"
    except redis.ResponseError:  # INFO renamed or not allowed (some managed services)
        if forced is None:
            logger.warning("Redis refused INFO cluster: taken for a single Redis (set PINSIGNAL_REDIS_CLUSTER=true "
                           "for a cluster)")
            return False
        return forced
    except (RedisError, OSError) as exc:
        if forced is not None:
            return forced
        raise QueueUnavailable(f"Redis failed while finding out whether it is a cluster ({type(exc).__name__}: "
                               f"{exc}); check that Redis is running, or set PINSIGNAL_REDIS_CLUSTER.") from exc
    finally:
        probe.close()
    if forced is not None and forced != enabled:
        raise ConfigError(f"PINSIGNAL_REDIS_CLUSTER is {str(forced).lower()} but the Redis at REDIS_URL "
                          f"{'is not' if forced else 'is'} a cluster (INFO cluster: cluster_enabled:"
                          f"{int(enabled)}); unset PINSIGNAL_REDIS_CLUSTER or point REDIS_URL at the right server.")
    return enabled


def client(url: str, *, cluster: bool | None = None, **options: Any) -> Client:
    """A client for ``url`` (``options`` as for ``redis.asyncio.Redis.from_url``); a :class:`Cluster`
    when ``cluster`` is true, or when it is ``None`` and the server is a cluster."""
    if cluster_mode(url, cluster):
        return cast(Client, Cluster.from_url(url, **options))
    return cast(Client, aioredis.Redis.from_url(url, **options))


async def connect(config: Config, **options: Any) -> Client:
    """A client for ``REDIS_URL`` (or the embedded Redis, started on demand), in the mode it needs."""
    from pinsignal.embedded import redis_url

    def made() -> Client:
        return client(redis_url(config), cluster=config.redis_cluster, **options)

    return await asyncio.to_thread(made)


async def connect_url(url: str, *, cluster: bool | None = None, **options: Any) -> Client:
    """:func:`client`, with its probe off the event loop."""
    return await asyncio.to_thread(lambda: client(url, cluster=cluster, **options))


def is_cluster(redis: Any) -> bool:
    return isinstance(redis, RedisCluster)


class Cluster(RedisCluster):
    """redis-py's cluster client, plus a plain client per master for what it cannot do (MULTI)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._masters: dict[str, aioredis.Redis] = {}

    def node_client(self, key: str) -> aioredis.Redis:
        """A plain client of the master that owns ``key``'s slot (one per master, kept)."""
        node = self.master_of(key)
        found = self._masters.get(node.name)
        if found is None:
            pool = aioredis.ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            found = self._masters[node.name] = aioredis.Redis(connection_pool=pool)
        return found

    def master_of(self, key: str) -> ClusterNode:
        """The master that owns ``key``'s slot, as the topology last read says."""
        node = self.get_node_from_key(key)
        if node is None:  # pragma: no cover - get_node_from_key raises for an uncovered slot
            raise RedisClusterException(f"no master owns the slot of {key!r}")
        return node

    async def refresh(self) -> None:
        """Read the topology again (after a MOVED, an ASK, a failover)."""
        await self.initialize()  # after redis-py closed the client on a lost node, this reads it
        await self.nodes_manager.initialize()

    async def aclose(self) -> None:
        masters, self._masters = self._masters, {}
        for each in masters.values():
            with contextlib.suppress(RedisError, OSError):
                await each.aclose()
        await super().aclose()


async def own_connection(redis: Client, key: str) -> Connection:
    """A new connection, outside any pool, to the Redis that holds ``key`` (in a cluster, the master of
    its slot at this moment): for a task that sends one call at a time and drops it on an error."""
    if isinstance(redis, Cluster):
        await redis.initialize()
        node = redis.master_of(key)
        return node.connection_class(**node.connection_kwargs)
    return cast(Connection, cast(Any, redis).connection_pool.make_connection())


def node_client(redis: Client, key: str) -> aioredis.Redis:
    """``redis`` itself on a single Redis; in a cluster, a plain client of the master owning ``key``."""
    if isinstance(redis, Cluster):
        return redis.node_client(key)
    return cast(aioredis.Redis, redis)


@contextlib.asynccontextmanager
async def transaction(redis: Client, key: str) -> AsyncIterator[Any]:
    """A MULTI pipeline for keys that share ``key``'s slot (its hash tag)::

        async with store.transaction(redis, keys.dlq(account)) as pipe:
            pipe.hset(...); await pipe.execute()

    In a cluster, an error that says the slot moved makes the next one read the topology again;
    the error is raised (nothing of an aborted MULTI ran)."""
    if isinstance(redis, Cluster):
        await redis.initialize()  # a no-op once the topology is known
    try:
        async with node_client(redis, key).pipeline(transaction=True) as pipe:
            yield pipe
    except _REROUTE:
        if isinstance(redis, Cluster):
            with contextlib.suppress(RedisError, OSError, RedisClusterException):
                await redis.refresh()
        raise


class Direct:
    """Connections of one's own for a task that sends one call at a time (a flusher).

    The pool's check-out and the client's dispatch cost more than a small call (see
    ``pinsignal.queue``), so the flusher keeps its own connection: to the one Redis (retried as the
    client's are), or in a cluster to each master it writes to (``attempts`` tries, the topology read
    again between them).

        direct = Direct(redis)
        flags = await direct.run(keys.stream(account), send, durable=True)   # send(connection) -> reply
    """

    def __init__(self, redis: Client, *, attempts: int = 8) -> None:
        self.redis = redis
        self.attempts = attempts  # in a cluster: tries before the error is raised (a failover takes seconds)
        self._single: Connection | None = None
        self._nodes: dict[str, Connection] = {}
        self._replicas: dict[str, tuple[float, bool]] = {}  # master -> (when asked, has a replica) (see _has_replica)

    async def run(self, key: str, call: Callable[[Connection], Awaitable[T]], *, durable: bool = False) -> T:
        """``call(connection)`` on the master of ``key``'s slot; ``durable``: then ``WAIT`` for a replica."""
        if not isinstance(self.redis, Cluster):
            connection = self._single
            if connection is None:
                connection = self._single = cast(Any, self.redis).connection_pool.make_connection()

            async def disconnect(error: BaseException) -> None:
                await connection.disconnect()

            return cast(T, await connection.retry.call_with_retry(lambda: call(connection), disconnect))
        return await self._run_cluster(self.redis, key, call, durable)

    async def _run_cluster(self, cluster: Cluster, key: str, call: Callable[[Connection], Awaitable[T]],
                           durable: bool) -> T:
        tries = 0
        while True:
            tries += 1
            name = ""
            try:
                await cluster.initialize()  # a no-op unless redis-py closed it after losing a node
                node = cluster.master_of(key)
                name = node.name
                connection = self._nodes.get(name)
                if connection is None:
                    connection = self._nodes[name] = node.connection_class(**node.connection_kwargs)
                reply = await call(connection)
                if durable and await self._has_replica(cluster, key, name, connection):
                    await connection.send_command("WAIT", 1, REPLICA_WAIT_MS)
                    if int(await connection.read_response()) < 1:
                        raise NotReplicated(f"no replica of the master {name} acknowledged the write within "
                                            f"{REPLICA_WAIT_MS} ms")
                return reply
            except _REROUTE as exc:
                await self._forget(name)
                if tries >= self.attempts:
                    raise
                logger.info("Redis Cluster: %s on %s; reading the topology again", type(exc).__name__, name or key)
                with contextlib.suppress(RedisError, OSError, RedisClusterException):
                    await cluster.refresh()
                await asyncio.sleep(min(1.0, 0.05 * 2 ** tries))

    async def _has_replica(self, cluster: Cluster, key: str, name: str, connection: Connection) -> bool:
        """Whether ``key``'s master has a replica to wait for. With none in redis-py's topology (which it
        reads again only after an error), the master itself is asked (``ROLE``, on the connection in hand,
        at most once a second): a replaced master that came back as the new one's replica is then
        waited for again, without reading the whole topology (which would reconnect every node)."""
        if cluster.get_node_from_key(key, replica=True) is not None:
            return True
        now = time.monotonic()
        checked_at, replicas = self._replicas.get(name, (0.0, False))
        if now - checked_at < 1.0:
            return replicas
        await connection.send_command("ROLE")
        role = await connection.read_response()
        kind = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
        replicas = kind in ("master", "primary") and len(role[2]) > 0  # ["master", offset, [replica, ...]]
        self._replicas[name] = (now, replicas)
        return replicas

    async def _forget(self, name: str) -> None:
        connection = self._nodes.pop(name, None)
        if connection is not None:
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect()

    async def aclose(self) -> None:
        if self._single is not None:
            await self._single.disconnect()
            self._single = None
        for name in list(self._nodes):
            await self._forget(name)

