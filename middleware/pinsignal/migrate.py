"""Moving a Redis written by an older pinsignal to today's key names (``pinsignal.keys``).

Until issue 17 the keys carried no hash tag (``pinsignal:events:<account>``, ``pinsignal:seen:...``,
one ``pinsignal:dlq`` for every account...). The worker and every web process call :func:`migrate`
at start-up; it does nothing unless one of the old global keys is still there, and on a Redis
Cluster, where an older pinsignal never ran. Otherwise the one process that takes the
``pinsignal:migrating`` lock moves every old key, and the others carry on meanwhile (what they
write goes under the new names; a duplicate sent meanwhile has its event id, which Pinterest
deduplicates):

- a key whose new name is free is renamed (``RENAMENX``): a stream keeps its consumer group and
  pending entries, a dedup or import mark keeps its time to live;
- an event stream whose new name exists (a worker of this version created it) has its entries
  copied across, each page added there and deleted here in one MULTI, so none is lost, then goes;
- dead letters are split by their account; counters and warnings are added to the new ones;
- a dedup mark, an import mark, a probe or a back-off whose new name exists is dropped (the new one
  holds the same fact); the set of streams becomes the set of accounts.

The old counters hash goes last: while it exists, the next start-up finishes the job (an interrupted
move is safe to repeat).

    moved = await migrate(redis)      # how many old keys were moved; 0 almost always
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from typing import Any

import orjson

from pinsignal import keys, store

__all__ = ["migrate"]

logger = logging.getLogger("pinsignal.migrate")

_OLD_COUNTERS, _OLD_STREAMS, _OLD_GLOBALS = keys.OLD_COUNTERS, keys.OLD_STREAMS, keys.OLD_GLOBALS
_OLD_DLQ, _OLD_DLQ_INDEX, _OLD_DLQ_REASONS = keys.OLD_DLQ, keys.OLD_DLQ_INDEX, keys.OLD_DLQ_REASONS
_OLD_EVENTS = keys.OLD_PREFIX + "events:"
# what an older pinsignal always wrote: one of them is there until a move has finished
_MARKERS = (_OLD_COUNTERS, _OLD_STREAMS, _OLD_DLQ_INDEX, *_OLD_GLOBALS)
_LOCK_MS = 60_000
_PAGE = 500


def _new_name(old: str) -> tuple[str, str] | None:
    """(kind, new name) of an old per-account key, or ``None`` for a key that keeps its name."""
    if "{" in old:
        return None
    rest = old.removeprefix(keys.OLD_PREFIX)
    kind, _, tail = rest.partition(":")
    if not tail:
        return None
    if kind == "events":
        return kind, keys.stream(tail)
    account, _, more = tail.partition(":")
    if kind == "seen" and more:
        return kind, keys.seen_prefix(account) + more
    if kind == "imported" and more:
        return kind, keys.imported_prefix(account) + more
    if kind == "seen-count" and more.isdigit():
        return kind, keys.browser_seen_count(account, int(more))
    if kind in ("probe", "ratelimit", "backoff") and not more:
        return kind, {"probe": keys.probe, "ratelimit": keys.ratelimit, "backoff": keys.backoff}[kind](account)
    return None


async def migrate(redis: Any) -> int:
    """Move an older layout's keys (see the module's docstring); returns how many were moved."""
    if store.is_cluster(redis) or not await redis.exists(*_MARKERS):
        return 0
    token = secrets.token_hex(8)
    if not await redis.set(keys.MIGRATING, token, nx=True, px=_LOCK_MS):
        return 0  # another process is moving them
    logger.warning("this Redis holds keys of an older pinsignal; moving them to the new names (issue 17)")
    try:
        moved = await _move(redis, token)
    finally:
        if (await redis.get(keys.MIGRATING)) == token.encode():
            await redis.delete(keys.MIGRATING)
    logger.warning("moved %d keys of an older pinsignal to the new names", moved)
    return moved


async def _move(redis: Any, token: str) -> int:
    moved = 0
    batch: list[tuple[str, str, str]] = []
    async for raw in redis.scan_iter(match=keys.OLD_PREFIX + "*", count=1000):
        old = raw.decode()
        target = _new_name(old)
        if target is None and old in _OLD_GLOBALS:
            target = ("global", _OLD_GLOBALS[old])
        if target is None:
            continue
        batch.append((old, *target))
        if len(batch) >= _PAGE:
            moved += await _rename(redis, batch)
            batch = []
            await redis.pexpire(keys.MIGRATING, _LOCK_MS)
    moved += await _rename(redis, batch)
    moved += await _dead_letters(redis)
    accounts = [name.decode().removeprefix(_OLD_EVENTS) for name in await redis.smembers(_OLD_STREAMS)]
    async with redis.pipeline(transaction=True) as pipe:
        if accounts:
            pipe.sadd(keys.ACCOUNTS, *accounts)
        pipe.delete(_OLD_STREAMS)
        await pipe.execute()
    moved += await _merge_hash(redis, _OLD_COUNTERS, keys.COUNTERS, add=True)
    return moved


async def _rename(redis: Any, batch: list[tuple[str, str, str]]) -> int:
    if not batch:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for old, _, new in batch:
            pipe.renamenx(old, new)
        done = await pipe.execute(raise_on_error=False)
    accounts = {keys.account_of(new) for (_, kind, new) in batch if kind == "events"}
    if accounts:
        await redis.sadd(keys.ACCOUNTS, *accounts)
    for (old, kind, new), renamed in zip(batch, done, strict=True):
        if renamed is True or renamed == 1 or isinstance(renamed, Exception):  # renamed, or gone meanwhile
            continue
        if kind == "events" or new == keys.TRACE:
            await _copy_stream(redis, old, new, stamp=kind == "events")
        elif new in (keys.WARNINGS, keys.QUARANTINE):
            await _merge_hash(redis, old, new, add=new == keys.WARNINGS)
        elif new == keys.QUARANTINE_INDEX:
            scored = await redis.zrange(old, 0, -1, withscores=True)
            async with redis.pipeline(transaction=True) as pipe:
                if scored:
                    pipe.zadd(new, dict(scored))
                pipe.delete(old)
                await pipe.execute()
        elif kind == "seen-count":
            count = int(await redis.get(old) or 0)
            async with redis.pipeline(transaction=True) as pipe:
                pipe.incrby(new, count)
                pipe.delete(old)
                await pipe.execute()
        else:  # a dedup or import mark, a probe, a bucket, a back-off: the new key says the same
            await redis.delete(old)
    return len(batch)


async def _copy_stream(redis: Any, old: str, new: str, *, stamp: bool) -> None:
    """Entries of ``old`` added to ``new`` (new ids) and deleted from ``old``, a page per MULTI."""
    while True:
        page = await redis.xrange(old, "-", "+", count=_PAGE)
        if not page:
            break
        async with redis.pipeline(transaction=True) as pipe:
            for entry_id, fields in page:
                if stamp and b"t" not in fields:  # keep the time it was queued (the id said it)
                    fields = {**fields, b"t": repr(int(entry_id.split(b"-")[0]) / 1000).encode()}
                pipe.xadd(new, fields)
            pipe.xdel(old, *[entry_id for entry_id, _ in page])
            await pipe.execute()
        await redis.pexpire(keys.MIGRATING, _LOCK_MS)
    await redis.delete(old)


async def _merge_hash(redis: Any, old: str, new: str, *, add: bool) -> int:
    values = await redis.hgetall(old)
    if not values:
        return 0
    async with redis.pipeline(transaction=True) as pipe:
        for field, value in values.items():
            if add:
                pipe.hincrby(new, field, int(value))
            else:
                pipe.hsetnx(new, field, value)
        pipe.delete(old)
        await pipe.execute()
    return 1


async def _dead_letters(redis: Any) -> int:
    """The one old dead-letter store, split into each account's."""
    moved = 0
    while True:
        ids = await redis.zrange(_OLD_DLQ_INDEX, 0, _PAGE - 1, withscores=True)
        if not ids:
            break
        records = await redis.hmget(_OLD_DLQ, [letter_id for letter_id, _ in ids])
        by_account: dict[str, list[tuple[bytes, float, bytes]]] = defaultdict(list)
        for (letter_id, dead_at), record in zip(ids, records, strict=True):
            if record is not None:
                by_account[str(orjson.loads(record).get("account") or keys.UNASSIGNED_ACCOUNT)].append(
                    (letter_id, dead_at, record))
        async with redis.pipeline(transaction=True) as pipe:
            for account, letters in by_account.items():
                pipe.hset(keys.dlq(account), mapping={letter_id: record for letter_id, _, record in letters})
                pipe.zadd(keys.dlq_index(account), {letter_id: dead_at for letter_id, dead_at, _ in letters})
                reasons: dict[str, int] = defaultdict(int)
                for _, _, record in letters:
                    reasons[str(orjson.loads(record).get("reason"))] += 1
                for reason, count in reasons.items():
                    pipe.hincrby(keys.dlq_reasons(account), reason, count)
                pipe.sadd(keys.ACCOUNTS, account)
            pipe.hdel(_OLD_DLQ, *[letter_id for letter_id, _ in ids])
            pipe.zrem(_OLD_DLQ_INDEX, *[letter_id for letter_id, _ in ids])
            await pipe.execute()
        moved += len(ids)
        await redis.pexpire(keys.MIGRATING, _LOCK_MS)
    await redis.delete(_OLD_DLQ, _OLD_DLQ_INDEX, _OLD_DLQ_REASONS)
    return moved
