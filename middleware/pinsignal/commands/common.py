"""What several sub-commands share: their Redis client and their ``--older-than``.

    async with redis_client(config) as redis:       # single Redis or cluster (pinsignal.store), keys of an
        ...                                         # older version moved first; closed after
    seconds = older_than("30d")                     # ConfigError naming --older-than when malformed
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from pinsignal.config import Config


@asynccontextmanager
async def redis_client(config: Config) -> AsyncIterator[Any]:
    """A client of ``REDIS_URL`` (or the embedded Redis) for one command, closed when it is done.

    A Redis written by an older pinsignal has its keys moved to today's names first
    (:func:`pinsignal.migrate.migrate`, as a worker or web process does at start-up), so that
    ``status``, ``dlq`` and ``quarantine`` show what it holds even before either has run.
    """
    from pinsignal import store
    from pinsignal.errors import QueueUnavailable
    from pinsignal.migrate import migrate
    from pinsignal.queue import unavailable

    redis = await store.connect(config, socket_connect_timeout=5)
    try:
        # Redis down or failing: the command's own first read says so, in its words
        with suppress(QueueUnavailable), unavailable("moving an older pinsignal's keys"):
            await migrate(redis)
        yield redis
    finally:
        await redis.aclose()


def older_than(text: str) -> float:
    """``--older-than``'s seconds; a malformed value fails with one sentence naming the option."""
    from pinsignal.dlq import parse_duration
    from pinsignal.errors import ConfigError

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--older-than: {exc}") from None
