"""What the intake tells the trace, the refusal counters and the quarantine, per request.

    observer = RedisObserver(config)          # one per Intake; MemoryObserver for MemorySink
    seen = observer.request(visitor_debug_code)
    seen.received(envelope, produced)         # after the pipelines ran
    seen.refused(message_id, event, "consent", "advertising consent was refused")
    seen.queued(message_id, pipeline, event, duplicate=False)
    await seen.done()                         # quarantines, if any (awaited: the answer says "kept")

Refusal reasons (``pinsignal_events_refused_total{reason}``): ``bot``, ``consent``,
``invalid_envelope``, ``no_pipeline``, ``invalid_event`` (what a pipeline made fails the v5
contract: quarantined). The records cost one ``orjson.dumps`` each and are written in the
background (:class:`pinsignal.trace.TraceWriter`); nothing here waits for Redis on the accepted path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pinsignal.config import Config
from pinsignal.trace import REFUSAL_REASONS, hashed_envelope

if TYPE_CHECKING:
    from pinsignal.pipeline import Produced
    from pinsignal.quarantine import Quarantine
    from pinsignal.trace import TraceWriter

__all__ = ["REFUSAL_REASONS", "MemoryObserver", "Observer", "RedisObserver", "RequestObserver"]

logger = logging.getLogger("pinsignal.collector")



class RequestObserver:
    """The records of one request's events; made by :meth:`Observer.request`."""

    __slots__ = ("_add", "_held", "_observer", "at", "debug", "quarantined", "tracing")

    def __init__(self, observer: Observer, debug: str | None) -> None:
        self._observer = observer
        self.debug = debug
        self.tracing = observer.tracing
        self._add = observer.add
        self.quarantined: list[dict[str, Any]] = []
        self.at = round(time.time(), 3)  # one time for the records of one request
        # received records wait for the request's enqueue: an event's "queued" (or "duplicate") rides
        # in its received record ("then"), one stream entry instead of two; readers split it again
        self._held: dict[object, dict[str, Any]] = {}

    def received(self, envelope: dict[str, Any], produced: Sequence[Produced]) -> None:
        if not self.tracing:
            return
        data = produced[0].event.get("user_data") if produced else None
        message_id = envelope.get("message_id")
        record: dict[str, Any] = {"at": self.at, "stage": "received", "message_id": message_id,
                                  "event": envelope.get("event") or envelope.get("type"),
                                  "source": envelope.get("source", "browser"),
                                  "envelope": hashed_envelope(envelope, data if type(data) is dict else None)}
        if self.debug:
            record["debug"] = self.debug
        held = self._held
        if message_id in held:  # the same id twice in one batch: keep the order
            self._add(held.pop(message_id))
        held[message_id] = record

    def _release(self, message_id: object) -> None:
        record = self._held.pop(message_id, None)
        if record is not None:
            self._add(record)

    def refused(self, message_id: object, event: object, reason: str, message: str, *, count: int = 1) -> None:
        self._observer.count(f"refused:{reason}", count)
        if not self.tracing:
            return
        self._release(message_id)
        record: dict[str, Any] = {"at": self.at, "stage": "refused",
                                  "message_id": message_id if type(message_id) is str else None,
                                  "event": event if type(event) is str else None, "reason": reason,
                                  "message": message}
        if count > 1:
            record["count"] = count
        if self.debug:
            record["debug"] = self.debug
        self._add(record)

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
            self._release(envelope.get("message_id"))
            record: dict[str, Any] = {"at": self.at, "stage": "quarantined", "message_id": envelope.get("message_id"),
                                      "event": item["event"], "reason": reason, "quarantine_id": item["id"]}
            if self.debug:
                record["debug"] = self.debug
            self._add(record)

    def queued(self, message_id: str, pipeline: str, event: Mapping[str, Any], account: str, *,
               duplicate: bool) -> None:
        if not self.tracing:
            return
        received = self._held.get(message_id)
        if received is not None:
            # compact: [stage, event_name, event_id, pipeline, account], split by decode_records
            stage = [("duplicate" if duplicate else "queued"), event["event_name"], event["event_id"], pipeline,
                     account]
            then = received.get("then")
            if then is None:
                received["then"] = [stage]
            else:
                then.append(stage)
            return
        record: dict[str, Any] = {"at": self.at, "message_id": message_id,
                                  "stage": "duplicate" if duplicate else "queued",
                                  "event_name": event.get("event_name"), "event_id": event.get("event_id"),
                                  "pipeline": pipeline, "account": account}
        if self.debug:
            record["debug"] = self.debug
        self._add(record)

    async def done(self) -> None:
        """The end of the request: write the held records, keep the quarantined events."""
        if self._held:
            add = self._add
            for record in self._held.values():
                add(record)
            self._held.clear()
        if self.quarantined:
            await self._observer.keep(self.quarantined)


class Observer:
    """Base: records nothing (``tracing`` false), counts nothing."""

    tracing = False
    quarantining = False

    def __init__(self, config: Config) -> None:
        self.config = config
        self.account = config.ad_account_id or "default"

    def request(self, debug: str | None = None) -> RequestObserver:
        return RequestObserver(self, debug)

    def add(self, record: dict[str, Any]) -> None:
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

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)

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
        self._records: list[dict[str, Any]] = []
        self._open_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if self._writer is not None:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._writer is not None:
                return
            import redis.asyncio as aioredis

            from pinsignal.embedded import redis_url
            from pinsignal.quarantine import Quarantine
            from pinsignal.trace import TraceWriter

            url = await asyncio.to_thread(redis_url, self.config)
            self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
            self._store = Quarantine(self._redis, max_items=self.config.quarantine_max,
                                     days=self.config.quarantine_days)
            writer = TraceWriter(self._redis, self.config.trace_maxlen)
            for record in self._records:
                writer.add(record)
            for field, amount in self._pending:
                writer.count(field, amount)
            self._records, self._pending = [], []
            self._writer = writer
            self.add = writer.add  # type: ignore[method-assign]  # the hot path: one call per record, not two

    def add(self, record: dict[str, Any]) -> None:
        writer = self._writer
        if writer is not None:
            writer.add(record)
        else:  # before the first open finished: kept until it does
            self._records.append(record)
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
