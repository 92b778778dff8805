"""Quarantine: events refused after intake, kept hashed, capped and expiring, to run again later.

An event that parsed but that the pipelines turned into an invalid Pinterest event (a mapping
that makes ``value`` negative, a missing required field) is kept here with the reason, so that
once the pipeline is fixed ``pinsignal quarantine replay`` runs the *current* pipelines on it
again and queues what they make, under the original ``message_id`` (so the same event ids).

Events that no pipeline matches are only counted (``refused:no_pipeline``), unless
``PINSIGNAL_QUARANTINE_UNMATCHED`` is true: many sites send events on purpose that no Pinterest
event needs (Segment's ``Product Viewed`` beside ``product_viewed``, identify calls, internal
events), and keeping each of them would fill the quarantine with noise and hide the real refusals.

What is kept is hashed: identity traits and ``user_id`` become the normalised SHA-256 the
pipelines would have made (they pass 64-hex values through unchanged, so a replay gives the same
match keys); other string traits become plain SHA-256. The request's click id and the pipeline
cookies (verified device id, ``_epik``) are kept beside it. At most ``PINSIGNAL_QUARANTINE_MAX``
events are kept, none longer than ``PINSIGNAL_QUARANTINE_DAYS``.

Each kept event also records the ad account the collector routed it to (``account``, DESIGN 8.4; an
account id, not personal data). A replay queues the event to that account while it is still one of
this deployment's (``PINTEREST_AD_ACCOUNT_ID`` or an id of ``PINSIGNAL_ACCOUNTS``); an event kept
before accounts were recorded, or whose account is gone, is routed again by
:meth:`pinsignal.accounts.Accounts.route`, the collector's own routing, on its envelope.

    store = Quarantine(redis, max_items=10_000, days=7)
    await store.add([item, ...])
    items = await store.list(reason="invalid_event")
    report = await replay(store, items, engine, queue, routes=Accounts.from_config(config))
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from pinsignal import keys
from pinsignal.store import transaction

if TYPE_CHECKING:
    from pinsignal.accounts import Accounts

__all__ = ["Quarantine", "ReplayReport", "quarantine_item", "replay"]

# KEYS[1] hash, KEYS[2] index. ARGV[1] cutoff time, ARGV[2] cap, ARGV[3] seconds to keep the keys.
_TRIM_LUA = """
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local drop = {}
for _, id in ipairs(old) do drop[#drop + 1] = id end
local left = redis.call('ZCARD', KEYS[2]) - #old
local cap = tonumber(ARGV[2])
if left > cap then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], #old, #old + left - cap - 1)) do drop[#drop + 1] = id end
end
for i = 1, #drop, 500 do
  local chunk = {unpack(drop, i, math.min(i + 499, #drop))}
  redis.call('HDEL', KEYS[1], unpack(chunk))
  redis.call('ZREM', KEYS[2], unpack(chunk))
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return #drop
"""


def _plain(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return hashlib.sha256(text.strip().lower().encode()).hexdigest()


def quarantine_item(envelope: Mapping[str, Any], *, reason: str, errors: Sequence[str], epik: str | None,
                    cookies: Mapping[str, str], default_country: str, at: float | None = None,
                    account: str | None = None) -> dict[str, Any]:
    """What the quarantine keeps of one refused event: hashed envelope, reason, request context, and the
    ad account the collector routed it to (``account``), which a replay queues it to."""
    from pinsignal.collector.intake import identity_keys
    from pinsignal.pinterest.fields import IDENTITY_TRAITS

    traits = envelope.get("traits")
    traits = traits if isinstance(traits, Mapping) else {}
    hashed = identity_keys(envelope.get("user_id"), traits, default_country=default_country)
    kept: dict[str, Any] = {}
    for name, value in traits.items():
        if isinstance(value, bool | int | float) or value is None:
            kept[name] = value
        elif name not in IDENTITY_TRAITS and name != "address":
            kept[name] = _plain(value)
    kept.update({name: digest for name, digest in hashed.items() if name != "user_id"})
    copy = dict(envelope)
    copy["traits"] = kept
    if envelope.get("user_id") is not None:
        copy["user_id"] = hashed.get("user_id") or _plain(envelope["user_id"])
    context = copy.get("context")
    if isinstance(context, Mapping) and isinstance(context.get("traits"), Mapping):
        copy["context"] = {**context, "traits": {name: digest for name, digest in identity_keys(
            None, context["traits"], default_country=default_country).items()}}
    item = {
        "id": secrets.token_hex(8),
        "at": round(at if at is not None else time.time(), 3),
        "reason": reason,
        "errors": list(errors),
        "message_id": envelope.get("message_id"),
        "event": envelope.get("event") or envelope.get("type"),
        "envelope": copy,
        "request": {"epik": epik, "cookies": dict(cookies)},
    }
    if account is not None:
        item["account"] = account
    return item


class Quarantine:
    """The quarantine store (``pinsignal:{quarantine}:items`` hash + ``:index`` zset by time)."""

    def __init__(self, redis: Any, *, max_items: int = 10_000, days: float = 7.0) -> None:
        self.redis = redis
        self.max_items = max_items
        self.days = days
        self._trim = redis.register_script(_TRIM_LUA)

    async def add(self, items: Sequence[dict[str, Any]]) -> None:
        if not items or self.max_items <= 0:
            return
        async with transaction(self.redis, keys.QUARANTINE) as pipe:  # both keys share one slot
            pipe.hset(keys.QUARANTINE, mapping={item["id"]: orjson.dumps(item) for item in items})
            pipe.zadd(keys.QUARANTINE_INDEX, {item["id"]: item["at"] for item in items})
            await self._trim(keys=[keys.QUARANTINE, keys.QUARANTINE_INDEX],
                             args=[time.time() - self.days * 86400, self.max_items, int(self.days * 86400) + 60],
                             client=pipe)
            await pipe.execute()

    async def list(self, *, reason: str | None = None, limit: int | None = None,
                   ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Quarantined events, newest first, expired ones left out."""
        cutoff = time.time() - self.days * 86400
        if ids is None:
            ids = [raw.decode() for raw in await self.redis.zrevrangebyscore(keys.QUARANTINE_INDEX, "+inf",
                                                                             f"({cutoff}")]
        items: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            for raw in await self.redis.hmget(keys.QUARANTINE, chunk):
                if raw is None:
                    continue
                item = orjson.loads(raw)
                if item.get("at", 0) <= cutoff or (reason is not None and item.get("reason") != reason):
                    continue
                items.append(item)
                if limit is not None and len(items) >= limit:
                    return items
        return items

    async def remove(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with transaction(self.redis, keys.QUARANTINE) as pipe:
            pipe.hdel(keys.QUARANTINE, *ids)
            pipe.zrem(keys.QUARANTINE_INDEX, *ids)
            removed, _ = await pipe.execute()
        return int(removed)

    async def purge(self, *, older_than: float | None = None, reason: str | None = None) -> int:
        """Delete quarantined events (older than ``older_than`` seconds, of ``reason``); returns how many."""
        items = await self.list(reason=reason)
        if older_than is not None:
            cutoff = time.time() - older_than
            items = [item for item in items if item["at"] < cutoff]
        return await self.remove([item["id"] for item in items])

    async def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in await self.list():
            counts[item["reason"]] = counts.get(item["reason"], 0) + 1
        return counts


@dataclass
class ReplayReport:
    """What a replay did: ids queued again, duplicates, still refused (id -> reasons), and the Pinterest
    events queued to each ad account (account -> count)."""

    queued: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)
    accounts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"queued": self.queued, "duplicates": self.duplicates, "refused": self.refused,
                "accounts": self.accounts}


async def replay(store: Quarantine, items: Sequence[dict[str, Any]], engine: Any, queue: Any, *,
                 routes: Accounts | None = None) -> ReplayReport:
    """Run the current pipelines on quarantined events; queue what is valid and forget those events.

    ``engine`` is a :class:`pinsignal.pipeline.Engine`, ``queue`` anything with
    ``enqueue(events, account=...)`` (an :class:`~pinsignal.queue.EventQueue`). The envelope keeps its
    ``message_id``, so the Pinterest events get the event ids they would have had. An event still
    refused stays, with its new reasons.

    Each event goes to the account recorded when it was quarantined if ``routes`` (or the queue's
    own account) still knows it, else where ``routes.route`` sends its envelope, else to the queue's
    own account: where the collector would have queued it.
    """
    from pinsignal.pipeline import RequestContext

    report = ReplayReport()
    done: list[str] = []
    still: list[dict[str, Any]] = []
    by_account: dict[str, list[dict[str, Any]]] = {}
    fallback: str = queue.account
    known = {fallback, *(routes.ids if routes is not None else ())}
    for item in items:
        request = item.get("request") or {}
        context = RequestContext(epik=request.get("epik"), cookies=request.get("cookies") or {})
        envelope = dict(item["envelope"])
        produced = list(engine.process(envelope, context))
        errors = [f"{p.pipeline}: {error}" for p in produced for error in p.errors]
        if not produced:
            errors = ["no pipeline matches this event"]
        if errors:
            report.refused[item["id"]] = errors
            still.append({**item, "errors": errors})
            continue
        recorded = item.get("account")
        if isinstance(recorded, str) and recorded in known:
            account = recorded
        else:  # quarantined before accounts were recorded, or its account is gone: routed as the collector would
            account = (routes.route(envelope) if routes is not None else None) or fallback
        by_account.setdefault(account, []).extend(p.event for p in produced)
        done.append(item["id"])
    for account, events in by_account.items():
        result = await queue.enqueue(events, account=account)
        report.queued += result.queued
        report.duplicates += result.duplicates
        report.accounts[account] = len(result.queued)
    await store.remove(done)
    if still:
        await store.redis.hset(keys.QUARANTINE, mapping={item["id"]: orjson.dumps(item) for item in still})
    return report
