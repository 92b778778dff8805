"""Where accepted Pinterest events go: the one seam between the collector and delivery.

``QueueSink`` is the real one (``pinsignal.queue.EventQueue`` on Redis, opened once per process on
lifespan start-up or at first use, closed on lifespan shut-down). ``MemorySink`` keeps everything
in lists, for unit tests and for embedding without Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from pinsignal.config import Config
from pinsignal.queue import EnqueueResult

__all__ = ["MemorySink", "QueueSink", "Sink"]

logger = logging.getLogger("pinsignal.collector")


class Sink(Protocol):
    """What the collector and ``track()`` need from delivery."""

    async def open(self) -> None: ...

    async def enqueue(self, events: Sequence[dict[str, Any]], *, trusted: bool = False,
                      account: str | None = None) -> EnqueueResult:
        """``trusted``: server events, which a browser event with the same name and id never suppresses;
        ``account``: the ad account they are routed to (``pinsignal.accounts``), else the default."""
        ...

    async def incr(self, name: str, amount: int = 1) -> None: ...

    async def close(self) -> None: ...


class MemorySink:
    """Keeps events and counters in memory; ``events`` lists everything enqueued.

    Like the Redis queue, an ``(event_name, event_id)`` pair already queued is a duplicate, except
    for a server event (``trusted``) whose pair only a browser event held.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.accounts: list[str | None] = []  # the routed account of each of ``events``
        self.counters: Counter[str] = Counter()
        self.opened = 0
        self.closed = 0
        self._seen: dict[tuple[str | None, str, str], bool] = {}  # (account, name, id) -> held by a server event

    async def open(self) -> None:
        self.opened += 1

    async def enqueue(self, events: Sequence[dict[str, Any]], *, trusted: bool = False,
                      account: str | None = None) -> EnqueueResult:
        result = EnqueueResult()
        for event in events:
            event_id = str(event.get("event_id", ""))
            key = (account, str(event.get("event_name", "")), event_id)
            held = self._seen.get(key)
            if held is not None and (held or not trusted):
                result.duplicates.append(event_id)
                continue
            self._seen[key] = trusted
            self.events.append(event)
            self.accounts.append(account)
            result.queued.append(event_id)
        return result

    async def incr(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    async def close(self) -> None:
        self.closed += 1


class QueueSink:
    """The Redis queue of the delivery worker, connected once and shared by every request."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._queue: Any = None
        self._lock: asyncio.Lock | None = None

    async def open(self) -> None:
        if self._queue is not None:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._queue is None:
                from pinsignal.queue import EventQueue

                self._queue = await EventQueue.connect(self._config)

    async def enqueue(self, events: Sequence[dict[str, Any]], *, trusted: bool = False,
                      account: str | None = None) -> EnqueueResult:
        if self._queue is None:
            await self.open()
        result: EnqueueResult = await self._queue.enqueue(list(events), trusted=trusted, account=account)
        return result

    async def incr(self, name: str, amount: int = 1) -> None:
        if self._queue is None:
            await self.open()
        await self._queue.incr(name, amount)

    async def close(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            await queue.close()
