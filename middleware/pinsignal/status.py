"""What the delivery pipeline is doing right now, read from Redis (shared by every process).

    snapshot = await read_status(redis)
    print(format_status(snapshot))

Used by ``pinsignal status`` and by the worker's metrics (queue and dead-letter depth). Each account
of ``pinsignal:accounts`` has its own queue, counters and dead letters; the totals add them up with
the counters of no account (``pinsignal:{global}:counters``).
Paused accounts live in the ``pinsignal:paused`` hash (account -> JSON: status, message, since),
written by the worker on 401/403 and removed when a probe succeeds. Redis trouble is raised as
:class:`~pinsignal.errors.QueueUnavailable`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from redis.exceptions import ResponseError

from pinsignal import keys, store
from pinsignal.dlq import DeadLetters
from pinsignal.queue import awaited, unavailable

__all__ = ["AccountStatus", "Status", "format_status", "read_paused", "read_status"]


@dataclass
class AccountStatus:
    """One ad account's queue: ``queued`` waits for a worker, ``in_flight`` is read but not done."""

    account: str
    queued: int
    in_flight: int
    consumers: int
    paused: dict[str, Any] | None = None
    dead_letters: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)


@dataclass
class Status:
    accounts: list[AccountStatus] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    paused: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def queued(self) -> int:
        return sum(account.queued for account in self.accounts)

    @property
    def in_flight(self) -> int:
        return sum(account.in_flight for account in self.accounts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["queued"] = self.queued
        data["in_flight"] = self.in_flight
        return data


async def read_paused(redis: store.Client) -> dict[str, dict[str, Any]]:
    """Paused accounts: account -> ``status``, ``reason``, ``message``, ``since``."""
    with unavailable("reading the paused accounts"):
        raw = await awaited(redis.hgetall(keys.PAUSED))
    return {key.decode(): orjson.loads(value) for key, value in raw.items()}


async def read_status(redis: store.Client, accounts: list[str] | None = None) -> Status:
    """One consistent-enough snapshot (several reads, no transaction: figures can move meanwhile) of
    every account queued to, and of ``accounts`` (the configured ones) even before anything was."""
    status = Status()
    status.paused = await read_paused(redis)
    with unavailable("reading the queue's status"):
        found = {key.decode() for key in await awaited(redis.smembers(keys.ACCOUNTS))}
        dead = await DeadLetters(redis).counts_by_account()
        totals: dict[str, int] = {}
        for account in sorted(found | set(accounts or ())):
            stream = keys.stream(account)
            length = int(await redis.xlen(stream))
            pending = 0
            consumers = 0
            try:
                summary = await redis.xpending(stream, keys.GROUP)
                pending = int(summary["pending"])
                consumers = len(summary.get("consumers") or [])
            except ResponseError:  # no consumer group yet: no worker has read this stream
                pass
            counters = _numbers(await awaited(redis.hgetall(keys.account_counters(account))))
            for name, value in counters.items():
                totals[name] = totals.get(name, 0) + value
            # Delivered entries are deleted, so the stream holds exactly what is waiting or in flight.
            status.accounts.append(AccountStatus(account, max(0, length - pending), pending, consumers,
                                                 status.paused.get(account), dead.get(account, {}), counters))
        for name, value in _numbers(await awaited(redis.hgetall(keys.COUNTERS))).items():
            totals[name] = totals.get(name, 0) + value
    for letters in dead.values():
        for reason, count in letters.items():
            status.dead_letters[reason] = status.dead_letters.get(reason, 0) + count
    status.counters = dict(sorted(totals.items()))
    return status


def _numbers(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {key.decode(): int(value) for key, value in sorted(raw.items())}


def _ago(since: float) -> str:
    seconds = max(0, int(time.time() - since))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def format_status(status: Status) -> str:
    """A short human-readable report."""
    lines = ["queue"]
    if not status.accounts:
        lines.append("  (nothing queued yet)")
    for account in status.accounts:
        line = f"  account {account.account}: {account.queued} queued, {account.in_flight} in flight"
        if account.dead_letters:
            line += f", {sum(account.dead_letters.values())} dead letters"
        if account.paused:
            line += f"  PAUSED ({account.paused.get('status')}: {account.paused.get('message')})"
        lines.append(line)
    lines.append("paused accounts")
    if not status.paused:
        lines.append("  none")
    for paused_account, info in sorted(status.paused.items()):
        lines.append(f"  {paused_account}: HTTP {info.get('status')} {info.get('message', '')!s} "
                     f"(since {_ago(float(info.get('since', 0)))}); resumes by itself when a probe succeeds")
    lines.append("dead letters")
    if not status.dead_letters:
        lines.append("  none")
    for reason, count in sorted(status.dead_letters.items()):
        lines.append(f"  {reason}: {count}")
    for account in status.accounts:
        if account.dead_letters:
            each = ", ".join(f"{reason} {count}" for reason, count in sorted(account.dead_letters.items()))
            lines.append(f"  account {account.account}: {each}")
    lines.append("counters")
    shown = {k: v for k, v in status.counters.items() if ":" not in k}
    if not shown:
        lines.append("  none yet")
    for name, value in shown.items():
        lines.append(f"  {name}: {value}")
    return "\n".join(lines)
