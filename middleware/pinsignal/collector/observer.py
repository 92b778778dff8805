"""What the intake tells the trace, the refusal counters and the quarantine, per request.

    observer = RedisObserver(config)          # one per Intake; MemoryObserver for MemorySink
    seen = observer.request(visitor_debug_code)
    seen.received(envelope, produced)         # after the pipelines ran
    seen.refused(message_id, event, "consent", "advertising consent was refused")
    seen.queued([(message_id, pipeline, event, account)], duplicates=[])
    await seen.done()                         # the request's trace entry; quarantines, if any (awaited)

Refusal reasons (``pinsignal_events_refused_total{reason}``): ``bot``, ``consent``,
``invalid_envelope``, ``no_pipeline``, ``invalid_event`` (what a pipeline made fails the v5
contract: quarantined). A request's records cost one ``orjson.dumps`` together and are written in
the background (:class:`pinsignal.trace.TraceWriter`); nothing here waits for Redis on the accepted path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pinsignal.config import Config
from pinsignal.trace import REFUSAL_REASONS, EnvelopeHasher, decode_records, encode_request

if TYPE_CHECKING:
    from pinsignal.pipeline import Produced
    from pinsignal.quarantine import Quarantine
    from pinsignal.trace import TraceWriter

__all__ = ["REFUSAL_REASONS", "MemoryObserver", "Observer", "RedisObserver", "RequestObserver"]

logger = logging.getLogger("pinsignal.collector")



class RequestObserver:
    """The records of one request's events; made by :meth:`Observer.request`.

    Every stage the collector sees (received, refused, quarantined, queued, duplicate) goes into one
    trace entry for the whole request, written by :meth:`done` (:func:`pinsignal.trace.encode_request`).
    Each event received is its envelope (``[envelope, stage, ...]`` once a refusal or quarantine
    follows), hashed in place, without a copy (:class:`pinsignal.trace.EnvelopeHasher`), when the next
    event is received, by which time the intake is done with it; an event refused before it had an
    envelope is ``[message_id, event, None, stage, ...]``. The queued stages, known only once the queue
    answered, are listed apart, and readers put them back: they split the entry into a record per stage.
    """

    __slots__ = ("_current", "_hasher", "_items", "_observer", "_produced", "_queued", "_rows", "at", "debug",
                 "quarantined", "source", "tracing")

    def __init__(self, observer: Observer, debug: str | None, source: str = "browser") -> None:
        self._observer = observer
        self.debug = debug
        self.source = source
        self.tracing = observer.tracing
        self.quarantined: list[dict[str, Any]] = []
        self.at = round(time.time(), 3)  # one time for the records of one request
        self._items: list[Any] = []  # per event, in order (see encode_request)
        self._current: dict[str, Any] | None = None  # the envelope received last, not hashed yet (_items[-1])
        self._produced: Sequence[Produced] = ()  # what the pipelines made of it
        self._queued: list[list[Any]] | None = None
        self._rows = 0  # the records readers split the entry into (the trace's cap counts them)
        self._hasher = EnvelopeHasher() if self.tracing else None

    def received(self, envelope: dict[str, Any], produced: Sequence[Produced]) -> None:
        if self.tracing:
            if self._current is not None:  # _seal() without its call: this runs for every event
                self._hasher.hash(self._current, self._produced)  # type: ignore[union-attr]
            self._items.append(envelope)
            self._current = envelope
            self._produced = produced
            self._rows += 1

    def _seal(self) -> None:
        """Hash the envelope received last: the intake is done with it."""
        self._hasher.hash(self._current, self._produced)  # type: ignore[union-attr,arg-type]
        self._current = None

    def _stage(self, message_id: object, event: object, stage: list[Any]) -> None:
        self._rows += 1
        current = self._current
        if current is not None:
            if message_id is not None and message_id == current.get("message_id"):
                last = self._items[-1]
                if type(last) is dict:
                    self._items[-1] = [last, stage]
                else:
                    last.append(stage)
                return
            self._seal()
        # refused before it was received (consent, envelope, crawler): an item of its own, in its place
        self._items.append([message_id if type(message_id) is str else None, event if type(event) is str else None,
                            None, stage])

    def refused(self, message_id: object, event: object, reason: str, message: str, *, count: int = 1) -> None:
        self._observer.count(f"refused:{reason}", count)
        if self.tracing:
            self._stage(message_id, event, ["refused", reason, message, count] if count > 1
                        else ["refused", reason, message])

    def unmatched(self, envelope: dict[str, Any], request: Any, config: Config, account: str | None = None) -> None:
        """No pipeline matched: counted, and quarantined only when ``quarantine_unmatched`` says so.

        ``identify`` calls are left out: they feed the ``_psu`` cookie, never a Pinterest event by themselves.
        ``account``: where the event was routed, kept with it for ``pinsignal quarantine replay``.
        """
        if envelope.get("type") == "identify":
            return
        self.refused(envelope.get("message_id"), envelope.get("event") or envelope.get("type"), "no_pipeline",
                     "no pipeline matches this event")
        if config.quarantine_unmatched:
            self._quarantine(envelope, "no_pipeline", ["no pipeline matches this event"], request, config, account)

    def invalid(self, envelope: dict[str, Any], errors: list[str], request: Any, config: Config,
                account: str | None = None) -> None:
        """A pipeline made an event that fails the v5 contract: counted, traced and quarantined."""
        self.refused(envelope.get("message_id"), envelope.get("event") or envelope.get("type"), "invalid_event",
                     "; ".join(errors))
        self._quarantine(envelope, "invalid_event", errors, request, config, account)

    def _quarantine(self, envelope: dict[str, Any], reason: str, errors: list[str], request: Any,
                    config: Config, account: str | None) -> None:
        if not self._observer.quarantining:
            return
        from pinsignal.quarantine import quarantine_item

        item = quarantine_item(envelope, reason=reason, errors=errors, epik=request.epik, cookies=request.cookies,
                               default_country=config.default_country, account=account)
        self.quarantined.append(item)
        if self.tracing:
            self._stage(envelope.get("message_id"), item["event"], ["quarantined", reason, item["id"], item["event"]])

    def queued(self, pending: Sequence[tuple[str, str, Mapping[str, Any], str]], duplicates: Collection[str]) -> None:
        """The ``queued`` (or ``duplicate``) stage of each ``(message_id, pipeline, event, account)`` enqueued;
        ``duplicates``: the event ids the queue already held."""
        if not self.tracing:
            return
        if duplicates:
            held = set(duplicates)
            stages = [[message_id, "duplicate" if str(event["event_id"]) in held else "queued", event["event_name"],
                       event["event_id"], pipeline, account] for message_id, pipeline, event, account in pending]
        else:
            stages = [[message_id, "queued", event["event_name"], event["event_id"], pipeline, account]
                      for message_id, pipeline, event, account in pending]
        if self._queued is None:
            self._queued = stages
        else:
            self._queued += stages
        self._rows += len(stages)

    async def done(self) -> None:
        """The end of the request: write its trace entry, keep the quarantined events."""
        self.flush()
        if self.quarantined:
            await self._observer.keep(self.quarantined)

    def flush(self) -> None:
        """Write the trace entry of what was seen so far (:meth:`done` does; for a request without quarantine)."""
        if self._current is not None:
            self._seal()
        if self._rows:
            self._observer.add_encoded(encode_request(self.at, self.source, self.debug, self._items, self._queued),
                                       self._rows)
            self._items, self._queued, self._rows = [], None, 0


class Observer:
    """Base: records nothing (``tracing`` false), counts nothing."""

    tracing = False
    quarantining = False

    def __init__(self, config: Config) -> None:
        self.config = config
        self.account = config.ad_account_id or "default"

    def request(self, debug: str | None = None, source: str = "browser") -> RequestObserver:
        return RequestObserver(self, debug, source)

    def add_encoded(self, entry: bytes, rows: int) -> None:
        pass

    def count(self, field: str, amount: int = 1) -> None:
        pass

    async def keep(self, items: list[dict[str, Any]]) -> None:
        pass

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass


class MemoryObserver(Observer):
    """Keeps records, counters and quarantined events in memory (unit tests, ``MemorySink``)."""

    tracing = True
    quarantining = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.records: list[dict[str, Any]] = []
        self.counters: Counter[str] = Counter()
        self.kept: list[dict[str, Any]] = []
        self._entries = 0

    def add_encoded(self, entry: bytes, rows: int) -> None:
        """Keeps the records a reader of the stream would get back (``id`` is a count of entries)."""
        self._entries += 1
        self.records.extend(decode_records(f"{self._entries}-0".encode(), {b"r": entry}))

    def count(self, field: str, amount: int = 1) -> None:
        self.counters[field] += amount

    async def keep(self, items: list[dict[str, Any]]) -> None:
        self.kept.extend(items)


class RedisObserver(Observer):
    """The real one: a :class:`~pinsignal.trace.TraceWriter` and a :class:`~pinsignal.quarantine.Quarantine`."""

    quarantining = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.tracing = config.trace_maxlen > 0
        self.quarantining = config.quarantine_max > 0
        self._writer: TraceWriter | None = None
        self._store: Quarantine | None = None
        self._redis: Any = None
        self._lock: asyncio.Lock | None = None
        self._pending: list[tuple[str, int]] = []
        self._records: list[tuple[bytes, int]] = []
        self._open_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if self._writer is not None:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._writer is not None:
                return
            from pinsignal import store
            from pinsignal.embedded import redis_url
            from pinsignal.quarantine import Quarantine
            from pinsignal.trace import TraceWriter

            url = await asyncio.to_thread(redis_url, self.config)
            self._redis = await store.connect_url(url, cluster=self.config.redis_cluster, socket_connect_timeout=5,
                                                  health_check_interval=30)
            self._store = Quarantine(self._redis, max_items=self.config.quarantine_max,
                                     days=self.config.quarantine_days)
            writer = TraceWriter(self._redis, self.config.trace_maxlen)
            for entry, rows in self._records:
                writer.add_encoded(entry, rows)
            for field, amount in self._pending:
                writer.count(field, amount)
            self._records, self._pending = [], []
            self._writer = writer
            self.add_encoded = writer.add_encoded  # type: ignore[method-assign]  # one call per entry, not two

    def add_encoded(self, entry: bytes, rows: int) -> None:
        writer = self._writer
        if writer is not None:
            writer.add_encoded(entry, rows)
        else:  # before the first open finished: kept until it does
            self._records.append((entry, rows))
            self._opening()

    def count(self, field: str, amount: int = 1) -> None:
        writer = self._writer
        if writer is not None:
            writer.count(field, amount)
        else:
            self._pending.append((field, amount))
            self._opening()

    def _opening(self) -> None:
        if self._open_task is None or self._open_task.done():
            self._open_task = asyncio.get_running_loop().create_task(self._open_quietly())

    async def _open_quietly(self) -> None:
        try:
            await self.open()
        except Exception as exc:  # the trace never fails a request
            logger.warning("the trace could not be opened (%s: %s)", type(exc).__name__, exc)

    async def keep(self, items: list[dict[str, Any]]) -> None:
        await self.open()
        assert self._store is not None
        from pinsignal.queue import unavailable

        with unavailable("quarantining refused events"):
            await self._store.add(items)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
