"""Pinterest's warnings, match keys per event name, refusals and queue age: what the worker adds to
the trace and to its metrics.

Pinterest answers every event with a ``warning_message`` ("external_id is missing. We highly
recommend this on all events.; click_id is missing"). :func:`warning_kinds` folds each part into a
small set of kinds (:data:`WARNING_KINDS`) so that metrics and ``pinsignal status`` stay readable:

    warning_kinds("external_id is missing. We highly ...; click_id is missing")
    # ['external_id_missing', 'click_id_missing']

:class:`DeliveryTrace` is what the delivery loop calls: after each answer (``attempt``) and once a
batch is settled (``settled``). It writes the worker's stages to the trace, counts warnings in
``pinsignal:warnings`` (for ``pinsignal status``) and in ``pinsignal_event_warnings_total``, and
match keys per event name in ``pinsignal_event_match_keys_total``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pinsignal import keys
from pinsignal.pinterest.fields import MATCH_KEYS
from pinsignal.trace import REFUSAL_REASONS

if TYPE_CHECKING:
    from pinsignal.delivery import Entry
    from pinsignal.pinterest.client import SendResult
    from pinsignal.trace import TraceWriter

__all__ = ["WARNING_KINDS", "DeliveryTrace", "InsightMetrics", "format_insight", "keys_of", "read_warnings",
           "refresh_insight", "warning_kinds"]

WARNING_KINDS = ("external_id_missing", "click_id_missing", "email_missing", "ip_ua_missing", "unknown_event_name",
                 "not_hashed", "other")
"""The kinds Pinterest's warnings are grouped into (label ``warning`` of the metric)."""

# (words that identify the kind, the kind); the first match wins
_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("non-standard name", "'unknown' event", "unknown event"), "unknown_event_name"),
    (("external_id",), "external_id_missing"),
    (("click_id", "epik"), "click_id_missing"),
    (("hash", "sha256", "sha-256"), "not_hashed"),
    (("client_ip_address", "client_user_agent", "ip address", "user agent"), "ip_ua_missing"),
    (("email", " em "), "email_missing"),
)


def warning_kinds(message: str) -> list[str]:
    """The kinds of warning in one ``warning_message`` (empty for none), each once, in order."""
    kinds: list[str] = []
    for part in message.split(";"):
        text = f" {part.strip().lower()} "
        if not text.strip():
            continue
        kind = next((kind for words, kind in _RULES if any(word in text for word in words)), "other")
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def keys_of(mask: int) -> list[str]:
    """The match keys of a metrics mask (bit i = ``MATCH_KEYS[i]``)."""
    return [key for bit, key in enumerate(MATCH_KEYS) if mask >> bit & 1]


class _Shared(Collector):
    def __init__(self, owner: InsightMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Any]:
        refused = CounterMetricFamily("pinsignal_events_refused", "Events refused after they reached pinsignal, "
                                      "by reason (every web process; read from Redis).", labels=["reason"])
        for reason in sorted(set(REFUSAL_REASONS) | set(self.owner.refused)):
            refused.add_metric([reason], self.owner.refused.get(reason, 0))
        yield refused
        oldest = GaugeMetricFamily("pinsignal_oldest_event_age_seconds", "Age of the oldest event waiting or in "
                                   "flight in the account's queue (0 when empty).", labels=["account"])
        for account, age in sorted(self.owner.oldest.items()):
            oldest.add_metric([account], age)
        yield oldest
        quarantined = GaugeMetricFamily("pinsignal_quarantined", "Events in the quarantine.")
        quarantined.add_metric([], self.owner.quarantined)
        yield quarantined
        visitors = CounterMetricFamily("pinsignal_visitor_keys", "Server events sent with a visitor_key, by whether "
                                       "the key was remembered (found=false: unknown or expired; the event went out "
                                       "with what it had). Every process; read from Redis.", labels=["found"])
        for found in ("true", "false"):
            visitors.add_metric([found], self.owner.visitor_keys.get(found, 0))
        yield visitors


class InsightMetrics:
    """The metrics of DESIGN 8.3, registered in the worker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.warnings = PromCounter("pinsignal_event_warnings", "Pinterest's per-event warnings, by kind.",
                                    ["event_name", "warning"], registry=registry)
        self.match_keys = PromCounter("pinsignal_event_match_keys", "Delivered events carrying each match key, "
                                      "by event name (divide by pinsignal_events_delivered_total for coverage).",
                                      ["event_name", "key"], registry=registry)
        self.refused: dict[str, int] = {}
        self.oldest: dict[str, float] = {}
        self.quarantined = 0
        self.visitor_keys: dict[str, int] = {}  # "true"/"false" -> count (pinsignal.visitors)
        registry.register(_Shared(self))


async def refresh_insight(redis: Any, insight: InsightMetrics, counters: Mapping[str, int],
                          streams: Sequence[str]) -> None:
    """Refusals (from ``counters``), the oldest queued event per stream and the quarantine size, from Redis."""
    insight.refused = {name.split(":", 1)[1]: value for name, value in counters.items()
                       if name.startswith("refused:")}
    insight.visitor_keys = {"true": counters.get("visitor_key_found", 0),
                            "false": counters.get("visitor_key_unknown", 0)}
    now = time.time()
    oldest: dict[str, float] = {}
    for stream in streams:
        first = await redis.xrange(stream, count=1)
        age = 0.0
        if first:
            entry_id, fields = first[0]
            stamp = fields.get(b"t")
            queued_at = float(stamp) if stamp else int(entry_id.split(b"-")[0]) / 1000
            age = max(0.0, now - queued_at)
        oldest[keys.account_of(stream)] = age
    insight.oldest = oldest
    insight.quarantined = int(await redis.zcard(keys.QUARANTINE_INDEX))


async def read_warnings(redis: Any) -> dict[str, dict[str, int]]:
    """``pinsignal:warnings`` as event name -> warning kind -> count (every worker, since ever)."""
    raw = await redis.hgetall(keys.WARNINGS)
    table: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        name, _, kind = field.decode().rpartition("|")
        table.setdefault(name, {})[kind] = int(value)
    return table


def format_insight(warnings: Mapping[str, Mapping[str, int]], refused: Mapping[str, int]) -> str:
    """The lines ``pinsignal status`` adds: Pinterest's warnings by event name and kind, refusals by reason."""
    lines = ["Pinterest's warnings (by event name and kind; see pinsignal quality for the fixes)"]
    if not warnings:
        lines.append("  none")
    for name, kinds in sorted(warnings.items()):
        shown = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items(), key=lambda item: -item[1]))
        lines.append(f"  {name}: {shown}")
    lines.append("refused after reaching pinsignal (by reason; invalid_event is quarantined)")
    if not refused:
        lines.append("  none")
    for reason, count in sorted(refused.items()):
        lines.append(f"  {reason}: {count}")
    return "\n".join(lines)


class DeliveryTrace:
    """The worker's side of the trace and of the warning and coverage metrics (one per ``Delivery``)."""

    def __init__(self, writer: TraceWriter, metrics: InsightMetrics | None, account: str) -> None:
        self.writer = writer
        self.metrics = metrics
        self.account = account

    def attempt(self, entries: Sequence[Entry], result: SendResult) -> None:
        """One answer from Pinterest (or a transport failure) for ``entries``, in request order."""
        writer = self.writer
        tracing = writer.enabled
        ok = result.action == "ok"
        statuses = result.events if ok else []
        warned: Counter[tuple[str, str]] = Counter()
        now = round(time.time(), 3)
        if tracing:
            # one "sent" record per BATCH_RECORD events (readers split it back, trace.decode_records);
            # the Pinterest event itself is kept for the first event of each (a sample: a copy of every
            # event was most of the worker's cost of the trace and most of its memory)
            sent: list[list[Any]] = []
            for index, entry in enumerate(entries):
                status = statuses[index] if statuses else None
                answer = ("failed" if status is not None and not status.processed else "processed") if ok \
                    else result.reason
                item: list[Any] = [entry.event_name, _event_id(entry), entry.attempts + 1, answer]
                if entry.attempts == 0 and index % BATCH_RECORD == 0:
                    item.append(orjson.Fragment(entry.raw))
                sent.append(item)
            shared: dict[str, Any] = {"at": now, "stage": "sent", "account": self.account, "status": result.status,
                                      "fields": _SENT}
            if not ok and result.message:
                shared["message"] = result.message
            _add_batches(writer, shared, sent)
        for index, entry in enumerate(entries):
            status = statuses[index] if statuses else None
            if status is None:
                if tracing and result.action == "split" and len(entries) == 1:
                    writer.add({"at": now, "stage": "failed", "event_name": entry.event_name,
                                "event_id": _event_id(entry), "status": result.status, "message": result.message})
                continue
            if status.warning_message:
                kinds = warning_kinds(status.warning_message)
                for kind in kinds:
                    warned[entry.event_name, kind] += 1
                if tracing:
                    writer.add({"at": now, "stage": "warning", "event_name": entry.event_name,
                                "event_id": _event_id(entry), "warning": status.warning_message, "kinds": kinds})
            if not status.processed and tracing:
                writer.add({"at": now, "stage": "failed", "event_name": entry.event_name,
                            "event_id": _event_id(entry), "status": result.status, "message": status.error_message})
        for (name, kind), count in warned.items():
            writer.warn(name, kind, count)
            if self.metrics is not None:
                self.metrics.warnings.labels(name, kind).inc(count)

    def settled(self, delivered: Sequence[Entry], dead: Sequence[tuple[Entry, str, str]]) -> None:
        """Delivered and dead-lettered entries of a batch, once Redis has them settled."""
        writer = self.writer
        now = time.time()
        stamp = round(now, 3)
        coverage: Counter[tuple[str, int]] = Counter()
        for entry in delivered:
            coverage[entry.event_name, entry.keys] += 1
        if writer.enabled and delivered:
            _add_batches(writer, {"at": stamp, "stage": "delivered", "account": self.account, "fields": _DELIVERED},
                         [[entry.event_name, _event_id(entry), entry.attempts + 1, now - entry.enqueued_at, entry.keys]
                          for entry in delivered])
        for entry, reason, message in dead:
            if writer.enabled:
                writer.add({"at": stamp, "stage": "dead_lettered", "event_name": entry.event_name,
                            "event_id": _event_id(entry), "account": self.account, "reason": reason,
                            "message": message})
        if self.metrics is not None:
            per_key: Counter[tuple[str, str]] = Counter()
            for (name, mask), count in coverage.items():
                for key in keys_of(mask):
                    per_key[name, key] += count
            for (name, key), count in per_key.items():
                self.metrics.match_keys.labels(name, key).inc(count)


BATCH_RECORD = 64
"""Events per worker trace record (``batch``): one stream entry holds at most this many events' stage."""


# what each item of a worker's batch record holds (the Pinterest event only in the sampled ones)
_SENT = ("event_name", "event_id", "attempt", "answer", "pinterest")
_DELIVERED = ("event_name", "event_id", "attempt", "latency", "keys")


def _add_batches(writer: TraceWriter, shared: dict[str, Any], items: list[list[Any]]) -> None:
    for start in range(0, len(items), BATCH_RECORD):
        chunk = items[start:start + BATCH_RECORD]
        writer.add({**shared, "batch": chunk}, len(chunk))


def _event_id(entry: Entry) -> str | None:
    # the enqueue script writes the id beside the event (field ``i``); an entry queued before it did is parsed
    if entry.event_id is not None:
        return entry.event_id
    event_id = entry.event.get("event_id")
    return str(event_id) if event_id is not None else None
