"""The dead-letter store: events that can never be delivered as they are, and why.

Each dead letter keeps the (hashed) event, the reason (``rejected``: Pinterest failed the event in
a 200/422 answer; ``bad_request``: a 400 isolated to this event; ``expired``: older than Pinterest
accepts), Pinterest's message, the number of attempts and the times. Each ad account has its own,
under its hash tag (so the worker writes them in the MULTI that acks the events, on a Redis Cluster
too):

- ``pinsignal:{<account>}:dlq``          hash   id -> JSON record
- ``pinsignal:{<account>}:dlq:index``    zset   id scored by the time it died (for listing and purging)
- ``pinsignal:{<account>}:dlq:reasons``  hash   reason -> count (for ``status`` and metrics)

Without ``account=``, the readers go over every account of ``pinsignal:accounts``::

    letters = DeadLetters(redis)
    await letters.recent(reason="rejected")
    await letters.replay(reason="expired")          # back to each account's queue
    await letters.purge(older_than=30 * 86400, account="549755885175")

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
from redis.asyncio.client import Pipeline

from pinsignal import keys, store
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

    def __init__(self, redis: store.Client) -> None:
        self.redis = redis

    @staticmethod
    def add_to(pipe: Pipeline, letters: Iterable[DeadLetter]) -> None:
        """Queue the commands that store ``letters`` on ``pipe`` (the worker acks in the same MULTI, so
        they must be of the account whose keys the MULTI writes)."""
        for letter in letters:
            pipe.hset(keys.dlq(letter.account), letter.id, letter.to_json().decode())
            pipe.zadd(keys.dlq_index(letter.account), {letter.id: letter.dead_at})
            pipe.hincrby(keys.dlq_reasons(letter.account), letter.reason, 1)

    async def add(self, letters: Iterable[DeadLetter]) -> None:
        with unavailable("storing dead letters"):
            for account, each in _by_account(letters).items():
                await awaited(self.redis.sadd(keys.ACCOUNTS, account))  # what the readers go over
                async with store.transaction(self.redis, keys.dlq(account)) as pipe:
                    self.add_to(pipe, each)
                    await pipe.execute()

    async def accounts(self, account: str | None = None) -> list[str]:
        """``[account]``, or every account queued to (``pinsignal:accounts``), sorted."""
        if account is not None:
            return [account]
        with unavailable("reading the accounts"):
            return sorted(raw.decode() for raw in await awaited(self.redis.smembers(keys.ACCOUNTS)))

    async def counts_by_account(self) -> dict[str, dict[str, int]]:
        """Dead letters by account, then by reason (accounts and reasons with none are left out)."""
        counts: dict[str, dict[str, int]] = {}
        for account in await self.accounts():
            with unavailable("counting dead letters"):
                raw = await awaited(self.redis.hgetall(keys.dlq_reasons(account)))
            found = {key.decode(): int(value) for key, value in raw.items() if int(value) > 0}
            if found:
                counts[account] = found
        return counts

    async def counts(self) -> dict[str, int]:
        """Dead letters by reason, of every account (reasons with none are left out)."""
        total: Counter[str] = Counter()
        for found in (await self.counts_by_account()).values():
            total.update(found)
        return dict(total)

    async def total(self) -> int:
        count = 0
        for account in await self.accounts():
            with unavailable("counting dead letters"):
                count += int(await self.redis.zcard(keys.dlq_index(account)))
        return count

    async def _load(self, account: str, ids: list[bytes]) -> list[DeadLetter]:
        if not ids:
            return []
        raw = await awaited(self.redis.hmget(keys.dlq(account), ids))
        return [DeadLetter.from_json(item) for item in raw if item is not None]

    async def iterate(self, *, reason: str | None = None, older_than: float | None = None,
                      account: str | None = None) -> list[DeadLetter]:
        """Every dead letter (oldest first), optionally of one reason, one ad account, or dead before a time."""
        letters: list[DeadLetter] = []
        maximum: float | str = "+inf" if older_than is None else older_than
        for each in await self.accounts(account):
            offset = 0
            with unavailable("reading dead letters"):
                while True:
                    ids = await self.redis.zrangebyscore(keys.dlq_index(each), "-inf", maximum, start=offset,
                                                         num=_PAGE)
                    if not ids:
                        break
                    offset += len(ids)
                    letters += [letter for letter in await self._load(each, ids)
                                if reason is None or letter.reason == reason]
        letters.sort(key=lambda letter: letter.dead_at)
        return letters

    async def recent(self, *, reason: str | None = None, limit: int | None = None,
                     account: str | None = None) -> list[DeadLetter]:
        """The newest ``limit`` dead letters (all when ``None``), newest first."""
        letters = await self.iterate(reason=reason, account=account)
        letters.reverse()
        return letters if limit is None else letters[:limit]

    async def get(self, letter_id: str, account: str | None = None) -> DeadLetter | None:
        for each in await self.accounts(account):
            with unavailable("reading a dead letter"):
                raw = await awaited(self.redis.hget(keys.dlq(each), letter_id))
            if raw is not None:
                return DeadLetter.from_json(raw)
        return None

    @staticmethod
    def _remove(pipe: Pipeline, account: str, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        pipe.hdel(keys.dlq(account), *[letter.id for letter in letters])
        pipe.zrem(keys.dlq_index(account), *[letter.id for letter in letters])
        for reason, count in Counter(letter.reason for letter in letters).items():
            pipe.hincrby(keys.dlq_reasons(account), reason, -count)

    async def replay(self, *, reason: str | None = None, letter_id: str | None = None,
                     account: str | None = None) -> list[DeadLetter]:
        """Put dead letters back on their account's queue (bypassing the 48 h dedup) and forget them."""
        if letter_id is not None:
            found = await self.get(letter_id, account)
            letters = [found] if found is not None else []
        else:
            letters = await self.iterate(reason=reason, account=account)
        with unavailable("replaying dead letters"):
            for each, mine in _by_account(letters).items():
                for start in range(0, len(mine), _PAGE):
                    chunk = mine[start:start + _PAGE]
                    async with store.transaction(self.redis, keys.dlq(each)) as pipe:
                        for letter in chunk:
                            fields = {"e": orjson.dumps(letter.event), "m": entry_meta(letter.event),
                                      "t": repr(time.time())}
                            pipe.xadd(keys.stream(each), fields)
                        self._remove(pipe, each, chunk)
                        pipe.hincrby(keys.account_counters(each), "replayed", len(chunk))
                        await pipe.execute()
        return letters

    async def purge(self, *, older_than: float, reason: str | None = None, account: str | None = None) -> int:
        """Forget dead letters that died more than ``older_than`` seconds ago; returns how many."""
        letters = await self.iterate(reason=reason, older_than=time.time() - older_than, account=account)
        with unavailable("purging dead letters"):
            for each, mine in _by_account(letters).items():
                for start in range(0, len(mine), _PAGE):
                    async with store.transaction(self.redis, keys.dlq(each)) as pipe:
                        self._remove(pipe, each, mine[start:start + _PAGE])
                        await pipe.execute()
        return len(letters)


def _by_account(letters: Iterable[DeadLetter]) -> dict[str, list[DeadLetter]]:
    grouped: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        grouped.setdefault(letter.account, []).append(letter)
    return grouped
