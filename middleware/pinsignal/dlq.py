"""The dead-letter store: events that can never be delivered as they are, and why.

Each dead letter keeps the (hashed) event, the reason (``rejected``: Pinterest failed the event in
a 200/422 answer; ``bad_request``: a 400 isolated to this event; ``expired``: older than Pinterest
accepts), Pinterest's message, the number of attempts and the times. Layout in Redis:

- ``pinsignal:dlq``          hash   id -> JSON record
- ``pinsignal:dlq:index``    zset   id scored by the time it died (for listing and purging)
- ``pinsignal:dlq:reasons``  hash   reason -> count (for ``status`` and metrics)

::

    letters = DeadLetters(redis)
    await letters.recent(reason="rejected")
    await letters.replay(reason="expired")          # back to the account's queue
    await letters.purge(older_than=30 * 86400)

Redis trouble is raised as :class:`~pinsignal.errors.QueueUnavailable`.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from pinsignal import keys
from pinsignal.queue import awaited, entry_meta, unavailable

__all__ = ["DeadLetter", "DeadLetters", "Reason", "parse_duration"]

Reason = Literal["rejected", "bad_request", "expired"]
REASONS: tuple[Reason, ...] = ("rejected", "bad_request", "expired")

_PAGE = 500


@dataclass
class DeadLetter:
    """One event that was given up on; ``event`` is the hashed v5 event as queued."""

    id: str
    account: str
    event: dict[str, Any]
    reason: str
    message: str
    attempts: int
    enqueued_at: float
    dead_at: float

    @classmethod
    def new(cls, account: str, event: dict[str, Any], reason: Reason, message: str, attempts: int,
            enqueued_at: float) -> DeadLetter:
        return cls(secrets.token_hex(8), account, event, reason, message, attempts, enqueued_at, time.time())

    @property
    def event_name(self) -> str:
        return str(self.event.get("event_name", ""))

    @property
    def event_id(self) -> str:
        return str(self.event.get("event_id", ""))

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        return cls(**orjson.loads(raw))


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` or a number of seconds, as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; use a number with s, m, h, d or w, e.g. '30d'.")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit


class DeadLetters:
    """Read, add, replay and purge dead letters."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    @staticmethod
    def add_to(pipe: Pipeline, letters: Iterable[DeadLetter]) -> None:
        """Queue the commands that store ``letters`` on ``pipe`` (the worker acks in the same MULTI)."""
        for letter in letters:
            pipe.hset(keys.DLQ, letter.id, letter.to_json().decode())
            pipe.zadd(keys.DLQ_INDEX, {letter.id: letter.dead_at})
            pipe.hincrby(keys.DLQ_REASONS, letter.reason, 1)

    async def add(self, letters: Iterable[DeadLetter]) -> None:
        with unavailable("storing dead letters"):
            async with self.redis.pipeline(transaction=True) as pipe:
                self.add_to(pipe, letters)
                await pipe.execute()

    async def counts(self) -> dict[str, int]:
        """Dead letters by reason (reasons with none are left out)."""
        with unavailable("counting dead letters"):
            raw = await awaited(self.redis.hgetall(keys.DLQ_REASONS))
        return {key.decode(): int(value) for key, value in raw.items() if int(value) > 0}

    async def total(self) -> int:
        with unavailable("counting dead letters"):
            return int(await self.redis.zcard(keys.DLQ_INDEX))

    async def _load(self, ids: list[bytes]) -> list[DeadLetter]:
        if not ids:
            return []
        raw = await awaited(self.redis.hmget(keys.DLQ, ids))
        return [DeadLetter.from_json(item) for item in raw if item is not None]

    async def iterate(self, *, reason: str | None = None, older_than: float | None = None,
                      account: str | None = None) -> list[DeadLetter]:
        """Every dead letter (oldest first), optionally of one reason, one ad account, or dead before a time."""
        letters: list[DeadLetter] = []
        maximum: float | str = "+inf" if older_than is None else older_than
        offset = 0
        with unavailable("reading dead letters"):
            while True:
                ids = await self.redis.zrangebyscore(keys.DLQ_INDEX, "-inf", maximum, start=offset, num=_PAGE)
                if not ids:
                    return letters
                offset += len(ids)
                letters += [letter for letter in await self._load(ids) if (reason is None or letter.reason == reason)
                            and (account is None or letter.account == account)]

    async def recent(self, *, reason: str | None = None, limit: int | None = None,
                     account: str | None = None) -> list[DeadLetter]:
        """The newest ``limit`` dead letters (all when ``None``), newest first."""
        letters = await self.iterate(reason=reason, account=account)
        letters.reverse()
        return letters if limit is None else letters[:limit]

    async def get(self, letter_id: str) -> DeadLetter | None:
        with unavailable("reading a dead letter"):
            raw = await awaited(self.redis.hget(keys.DLQ, letter_id))
        return None if raw is None else DeadLetter.from_json(raw)

    @staticmethod
    def _remove(pipe: Pipeline, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        pipe.hdel(keys.DLQ, *[letter.id for letter in letters])
        pipe.zrem(keys.DLQ_INDEX, *[letter.id for letter in letters])
        for reason, count in Counter(letter.reason for letter in letters).items():
            pipe.hincrby(keys.DLQ_REASONS, reason, -count)

    async def replay(self, *, reason: str | None = None, letter_id: str | None = None,
                     account: str | None = None) -> list[DeadLetter]:
        """Put dead letters back on their account's queue (bypassing the 48 h dedup) and forget them."""
        if letter_id is not None:
            found = await self.get(letter_id)
            letters = [found] if found is not None else []
        else:
            letters = await self.iterate(reason=reason, account=account)
        with unavailable("replaying dead letters"):
            for start in range(0, len(letters), _PAGE):
                chunk = letters[start:start + _PAGE]
                async with self.redis.pipeline(transaction=True) as pipe:
                    for letter in chunk:
                        fields = {"e": orjson.dumps(letter.event), "m": entry_meta(letter.event),
                                  "t": repr(time.time())}
                        pipe.xadd(keys.stream(letter.account), fields)  # type: ignore[arg-type]
                        pipe.sadd(keys.STREAMS, keys.stream(letter.account))
                    self._remove(pipe, chunk)
                    pipe.hincrby(keys.COUNTERS, "replayed", len(chunk))
                    await pipe.execute()
        return letters

    async def purge(self, *, older_than: float, reason: str | None = None, account: str | None = None) -> int:
        """Forget dead letters that died more than ``older_than`` seconds ago; returns how many."""
        letters = await self.iterate(reason=reason, older_than=time.time() - older_than, account=account)
        with unavailable("purging dead letters"):
            for start in range(0, len(letters), _PAGE):
                async with self.redis.pipeline(transaction=True) as pipe:
                    self._remove(pipe, letters[start:start + _PAGE])
                    await pipe.execute()
        return len(letters)
