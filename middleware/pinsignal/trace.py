"""The trace: every stage of every event's life, hashed only, in one capped Redis stream.

Web processes write ``received``, ``refused``, ``quarantined``, ``queued`` and ``duplicate``;
workers write ``sent`` (each attempt, with Pinterest's answer), ``warning``, ``delivered``,
``failed`` and ``dead_lettered``. ``pinsignal tail``, ``pinsignal inspector`` and ``pinsignal
quality`` read it::

    writer = TraceWriter(redis, maxlen=20_000)   # one per process
    writer.add({"stage": "queued", "event_id": "o-1", ...})   # returns at once; flushed in the background
    await writer.close()

    for record in await read_recent(redis, count=500): ...

Recording must cost the collector next to nothing, so ``add`` only encodes the record and appends
it to a buffer; one Lua call per ``FLUSH_SECONDS`` (or per ``FLUSH_RECORDS`` records) appends
everything buffered with ``XADD ... MAXLEN ~ maxlen``, together with the counters that were
buffered beside it. The trace is best-effort: a Redis failure drops the buffer (logged at most
every 30 seconds) and never fails a request or a delivery.

A record is one JSON object (field ``r`` of the stream entry): ``at`` (Unix seconds), ``stage``,
and what the stage knows: ``message_id`` (the incoming event's id), ``event`` (its name),
``event_name``/``event_id`` (the Pinterest event's), ``pipeline``, ``account``, ``reason``,
``status``, ``warning``, ``kinds``, ``attempt``, ``latency``, ``keys`` (match keys carried),
``debug`` (the visitor's ``_psdebug`` code), ``envelope`` (hashed) and ``pinterest`` (the v5 event,
hashed by construction). Raw emails, phones, names and ids never reach it: see :class:`EnvelopeHasher`.

The collector writes one entry per request (:func:`encode_request`: every event's ``received``,
``refused``, ``quarantined``, ``queued`` and ``duplicate`` stages, each envelope hashed by
:class:`EnvelopeHasher` as soon as the request is done with it), a worker one per 64 events of a
batch; :func:`decode_records` splits an entry back into one record per stage of each event, and the
cap (``maxlen``) counts those records, not entries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson

from pinsignal import keys
from pinsignal.pinterest.fields import IDENTITY_TRAITS

__all__ = [
    "DEBUG_COOKIE",
    "EnvelopeHasher",
    "REFUSAL_REASONS",
    "STAGES",
    "TraceWriter",
    "decode_records",
    "follow",
    "encode_request",
    "format_record",
    "memory_usage",
    "read_all",
    "read_recent",
    "record_matches",
    "valid_debug_code",
]

logger = logging.getLogger("pinsignal.trace")

STAGES = ("received", "refused", "quarantined", "queued", "duplicate", "sent", "warning", "delivered", "failed",
          "dead_lettered")
"""Every stage, in the order an event meets them."""

REFUSAL_REASONS = ("bot", "consent", "invalid_envelope", "no_pipeline", "invalid_event", "source")
"""Why the collector refused an event (``refused:<reason>`` counters, ``pinsignal_events_refused_total``)."""

DEBUG_COOKIE = "_psdebug"
"""The inspector's "only my browser" cookie: a random code, copied into the trace of that browser's events."""
_DEBUG_RE = re.compile(r"^[A-Za-z0-9_-]{6,64}$")

FLUSH_SECONDS = 1.0  # how stale the live page may be; the longer, the fewer round trips per request
FLUSH_RECORDS = 1000

# KEYS[1] the trace stream, KEYS[2] the counters hash, KEYS[3] the warnings hash. ARGV[1] maxlen (in
# records, the rows readers get back: a request's record of 20 events counts as the 40 or so it expands
# to), ARGV[2] the entries, one JSON object a line (orjson never writes a raw newline: it escapes them in
# strings), ARGV[3] counters and ARGV[4] warnings, each as "field=amount" lines, ARGV[5] each entry's
# rows, space-separated. One argument per kind: redis-py copies its buffer per argument, which costs more
# than the records themselves.
#
# The cap is by rows, not entries, so that its memory does not depend on how many events a request or a
# worker batch packs into one entry: each entry carries ``c``, the running count of rows written to the
# stream, and once the oldest entry lies more than ``maxlen`` (plus a 5% slack, as ``MAXLEN ~`` has) rows
# behind the newest, the oldest entries are read a page at a time and cut with ``XTRIM MINID`` up to the
# first one within the newest ``maxlen`` rows. Each entry is read about once on its way out. An entry
# without ``c`` (written before the cap was by rows) counts as the oldest. ``MAXLEN ~ maxlen`` entries
# stays as a second bound: every entry holds at least one row, so it never cuts below ``maxlen`` rows.
_FLUSH_LUA = """
local maxlen = tonumber(ARGV[1])
local written = 0
local function total_of(entry)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == 'c' then return tonumber(f[i + 1]) or 0 end
  end
  return 0
end
if maxlen > 0 and #ARGV[2] > 0 then
  local blob = ARGV[2]
  local pos = 1
  local size = #blob
  local total = 0
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #newest > 0 then total = total_of(newest[1]) end
  for rows in string.gmatch(ARGV[5], '%d+') do
    local stop = string.find(blob, '\\n', pos, true) or (size + 1)
    total = total + tonumber(rows)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'c', total, 'r', string.sub(blob, pos, stop - 1))
    pos = stop + 1
    written = written + 1
  end
  local floor = total - maxlen
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #oldest > 0 and total_of(oldest[1]) <= floor - math.floor(maxlen / 20) then
    local start = '-'
    local cut = nil
    while cut == nil do
      local page = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 32)
      if #page == 0 then break end
      for _, entry in ipairs(page) do
        if total_of(entry) > floor then
          cut = entry[1]
          break
        end
      end
      start = '(' .. page[#page][1]
    end
    if cut ~= nil then redis.call('XTRIM', KEYS[1], 'MINID', cut) end
  end
end
for i = 3, 4 do
  for field, amount in string.gmatch(ARGV[i], '([^\\n]+)=(%d+)') do
    redis.call('HINCRBY', KEYS[i - 1], field, amount)
  end
end
return written
"""



def valid_debug_code(value: str | None) -> str | None:
    """The ``_psdebug`` code if it is one the inspector could have made, else ``None`` (never reflected)."""
    return value if value is not None and _DEBUG_RE.match(value) else None


def _digest(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return hashlib.sha256(text.encode()).hexdigest()


# trait -> the user_data key whose (normalised) hash stands for it: the field table's, with
# Segment's camelCase spellings
_TRAIT_KEYS = {**IDENTITY_TRAITS, "firstName": "fn", "lastName": "ln", "postal_code": "zp", "postalCode": "zp"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# the types of a trait's value kept as they are: a frozenset, as ``type(value) in`` a tuple compares the
# type with each member in turn
_PLAIN = frozenset((bool, int, float, type(None)))


def _hash_traits(traits: Mapping[str, Any], user_data: Mapping[str, Any]) -> dict[str, Any]:
    # Runs for every traced event: the common case (a trait a pipeline hashed) first, then type()
    # tests and dict lookups only, no ABC isinstance.
    hashed: dict[str, Any] = {}
    get_key = _TRAIT_KEYS.get
    get_known = user_data.get
    for name, value in traits.items():
        known = get_known(get_key(name))  # type: ignore[arg-type]  # None is simply not a key
        if type(known) is list and known:
            hashed[name] = known[0]  # the normalised hash the pipeline sent, not a second one
            continue
        kind = type(value)
        if kind in _PLAIN:
            hashed[name] = value
        elif kind is str and len(value) == 64 and _HEX64.match(value):
            hashed[name] = value
        elif kind is dict:
            hashed[name] = _hash_traits(value, {})
        else:
            hashed[name] = _digest(value)
    return hashed


def _hashed_traits(traits: Any, user_data: Mapping[str, Any]) -> Any:
    return _hash_traits(traits, user_data) if type(traits) is dict else _digest(traits)


class EnvelopeHasher:
    """Hashes the envelopes of one request for the trace, each as soon as the collector is done with it.

    ``hash(envelope, produced)`` writes the envelope as the trace keeps it, without a copy: its hashed
    fields replace its own top-level keys (the objects it held are never changed, so a Pinterest
    event or a quarantined copy that shares them is unaffected). ``produced`` is what the pipelines
    made of it: the first one's ``user_data`` gives the match keys' hashes. ``traits``,
    ``context.traits`` and ``user_id`` are hashed: a trait that a pipeline turned into a match key
    shows that key's normalised SHA-256 (taken from ``user_data``, so nothing is hashed twice), any
    other string trait is SHA-256 of the value as received; numbers and booleans stay. Of
    ``properties`` only the names stay (``["revenue", "currency", "products"]``): a shop may fill
    their values with anything ("a gift for Jane Doe"), and what the pipelines took from them is in
    the Pinterest event. Keeping their numbers cost the collector 3-12k instructions an event (a loop
    in Python, a dict, and orjson writing each float), a third of what the trace cost a Segment
    event. IP, user agent and page stay as the queued event has them.

    The hashed ``traits`` and the ``context`` become JSON at once (``orjson.Fragment``), so what the
    request holds while it waits for Redis is a flat dict per event, not the envelope's nested ones:
    envelopes held whole to the end of a request were what the garbage collector spent its time on
    under concurrent requests. The events of one request are mostly one visitor's, on one page: equal
    traits with equal match keys, and an equal ``context``, are hashed and encoded once a request and
    shared after that (a dict comparison in C against doing it again).
    """

    __slots__ = ("_context", "_context_json", "_traits", "_traits_json", "_user_data")

    def __init__(self) -> None:
        self._traits: Any = None
        self._user_data: Any = None
        self._traits_json: Any = None
        self._context: Any = None
        self._context_json: Any = None

    def hash(self, envelope: dict[str, Any], produced: Sequence[Any]) -> None:
        user_data = produced[0].event.get("user_data") if produced else None
        if type(user_data) is not dict:
            user_data = _NO_USER_DATA
        traits = envelope.get("traits")
        if traits:
            if traits != self._traits or user_data != self._user_data:
                self._traits_json = orjson.Fragment(orjson.dumps(_hashed_traits(traits, user_data)))
                self._traits, self._user_data = traits, user_data
            envelope["traits"] = self._traits_json
        user_id = envelope.get("user_id")
        if user_id is not None and not (type(user_id) is str and len(user_id) == 64 and _HEX64.match(user_id)):
            external = user_data.get("external_id")
            envelope["user_id"] = external[0] if type(external) is list and external else _digest(user_id)
        properties = envelope.get("properties")
        if properties:
            envelope["properties"] = list(properties) if type(properties) is dict else None  # the names
        context = envelope.get("context")
        if context and type(context) is dict:
            if "traits" in context:  # hashed with this event's match keys: not shared
                inner = context["traits"]
                # the envelope's traits are context.traits when the event had none of its own (analytics.js)
                hashed = self._traits_json if inner is traits and traits else _hashed_traits(inner, user_data)
                envelope["context"] = orjson.Fragment(orjson.dumps({**context, "traits": hashed}))
            else:
                if context != self._context:
                    self._context_json = orjson.Fragment(orjson.dumps(context))
                    self._context = context
                envelope["context"] = self._context_json


def encode_request(at: float, source: str, debug: str | None, events: list[Any],
                   queued: list[list[Any]] | None = None) -> bytes:
    """One trace entry for the collector's stages of every event of one request, as JSON.

    ``events``: per event, in order, its envelope (hashed: :class:`EnvelopeHasher`) when nothing but
    its ``received`` stage is known yet, ``[envelope, stage, ...]`` when more happened to it, or
    ``[message_id, event, None, stage, ...]`` for an event refused before it had an envelope;
    ``queued``: per Pinterest event queued, ``[message_id, "queued" or "duplicate", event_name,
    event_id, pipeline, account]``, which :func:`decode_records` puts after the other stages of the
    (newest) event with that message id.
    """
    record: dict[str, Any] = {"at": at, "source": source, "events": events}
    if debug:
        record["debug"] = debug
    if queued:
        record["queued"] = queued
    return orjson.dumps(record)


_NO_USER_DATA: Mapping[str, Any] = {}


class TraceWriter:
    """Buffers trace records and counters of one process; flushes them in one Lua call per interval.

    ``maxlen=0`` records nothing in the stream but still flushes the counters (refusals, warnings).
    """

    def __init__(self, redis: Any, maxlen: int, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.enabled = maxlen > 0
        self.flush_seconds = flush_seconds
        self._sha = hashlib.sha1(_FLUSH_LUA.encode()).hexdigest()
        self._connection: Any = None  # the flusher's own, made at first use
        self._records: list[bytes] = []
        self._rows: list[int] = []  # how many records each entry of _records expands to
        self._counters: Counter[str] = Counter()
        self._warnings: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed_at = 0.0
        self.dropped = 0

    def add(self, record: dict[str, Any], rows: int = 1) -> None:
        """Append one record (``at`` is added when missing); costs an ``orjson.dumps``.

        ``rows``: how many records readers split it into (a worker's batch record), for the cap.
        """
        if not self.enabled:
            return
        if "at" not in record:
            record["at"] = round(time.time(), 3)
        self.add_encoded(orjson.dumps(record), rows)

    def add_encoded(self, entry: bytes, rows: int) -> None:
        """Append one entry already encoded as JSON (:func:`encode_request`) that readers split into ``rows``."""
        if not self.enabled:
            return
        records = self._records
        records.append(entry)
        self._rows.append(rows)
        if self._timer is None and self._task is None:
            self._schedule()
        elif len(records) >= FLUSH_RECORDS and self._task is None:
            self._start()

    def count(self, field: str, amount: int = 1) -> None:
        """Add to a shared counter (``pinsignal:counters``), written with the next flush."""
        self._counters[field] += amount
        if self._timer is None and self._task is None:
            self._schedule()

    def warn(self, event_name: str, kind: str, amount: int = 1) -> None:
        """Count one of Pinterest's warnings (``pinsignal:warnings``), written with the next flush."""
        self._warnings[f"{event_name}|{kind}"] += amount
        if self._timer is None and self._task is None:
            self._schedule()

    # One round trip per interval at most (or per FLUSH_RECORDS records): a flush sends what was
    # buffered when it started; what arrives meanwhile waits for the next interval, so a busy
    # collector never sends a round trip per request.
    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.flush_seconds, self._start)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._task = asyncio.get_running_loop().create_task(self._flush_once())

    async def _flush_once(self) -> None:
        try:
            await self._write()
        finally:
            self._task = None
            if self._timer is None and (self._records or self._counters or self._warnings):
                if len(self._records) >= FLUSH_RECORDS:
                    self._start()
                else:
                    self._schedule()

    async def _write(self) -> None:
        records, self._records = self._records, []
        rows, self._rows = self._rows, []
        counters, self._counters = self._counters, Counter()
        warnings, self._warnings = self._warnings, Counter()
        if not (records or counters or warnings):
            return
        blob = b"\n".join(records)
        try:
            await self._send(blob, _lines(counters), _lines(warnings), " ".join(map(str, rows)))
        except Exception as exc:  # the trace never fails the caller
            if self._connection is not None:
                await self._connection.disconnect()
                self._connection = None  # the next flush finds the right node again (a cluster's failover)
            self.dropped += len(records)
            now = time.monotonic()
            if now - self._failed_at > 30:
                self._failed_at = now
                logger.warning("the trace could not be written (%s: %s); %d records dropped",
                               type(exc).__name__, exc, len(records))

    async def _send(self, blob: bytes, counters: str, warnings: str, rows: str) -> None:
        # Only the flusher sends, one call at a time: its own connection skips the pool's check-out
        # and the client's dispatch, which cost more than the call (as in pinsignal.queue).
        from redis.exceptions import NoScriptError

        from pinsignal.store import own_connection

        connection = self._connection
        if connection is None:
            connection = self._connection = await own_connection(self.redis, keys.TRACE)  # single or cluster
        args = (3, keys.TRACE, keys.COUNTERS, keys.WARNINGS, self.maxlen, blob, counters, warnings, rows)
        try:
            await connection.send_command("EVALSHA", self._sha, *args)
            await connection.read_response()
        except NoScriptError:  # a new or restarted Redis: load the script, send again
            await connection.send_command("SCRIPT", "LOAD", _FLUSH_LUA)
            await connection.read_response()
            await connection.send_command("EVALSHA", self._sha, *args)
            await connection.read_response()

    async def flush(self) -> None:
        """Write everything buffered now (tests, shut-down)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._task is not None:
            task = self._task
            await task
            if self._task is task:
                break
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._records or self._counters or self._warnings:
            await self._write()

    async def close(self) -> None:
        await self.flush()
        if self._connection is not None:
            await self._connection.disconnect()
            self._connection = None


def _lines(counter: Counter[str]) -> str:
    return "\n".join(f"{field}={amount}" for field, amount in counter.items() if amount > 0)


def decode_records(entry_id: bytes, fields: Mapping[bytes, bytes]) -> list[dict[str, Any]]:
    """The records of one stream entry (``id`` is the entry id), oldest first.

    The collector stores the stages of every event of a request in one entry (``events``: per event
    ``[message_id, event, envelope or null, stage, ...]``, see :func:`encode_request`); a worker
    stores the ``sent`` or ``delivered`` stage of up to 64 events of a batch in one record (``batch``:
    a list per event of what differs, named by ``fields``). Entries written before the per-request
    record kept an event's ``queued``/``duplicate`` stages inside its ``received`` record (``then``).
    They all come out here as records of their own.
    """
    raw = fields.get(b"r")
    if raw is None:
        return []
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(record, dict):
        return []
    ident = entry_id.decode()
    events = record.pop("events", None)  # the collector's record of one request
    if isinstance(events, list):
        return _request_records(record, _request_items(events, record.pop("queued", None)), ident)
    record["id"] = ident
    batch = record.pop("batch", None)  # a worker's stage of several events (insight.BATCH_RECORD)
    if isinstance(batch, list):
        names = record.pop("fields", None)  # what each item of the batch holds, in order
        if not isinstance(names, list):
            return []
        return [{**record, **dict(zip(names, item, strict=False)), "id": ident} for item in batch
                if isinstance(item, list)]
    then = record.pop("then", None)
    if not isinstance(then, list):
        return [record]
    shared = {key: record[key] for key in ("at", "message_id", "debug") if key in record}
    split = [record]
    for stage in then:
        if isinstance(stage, list) and len(stage) == len(_THEN):
            split.append({**shared, **dict(zip(_THEN, stage, strict=True)), "id": ident})
        elif isinstance(stage, dict):
            split.append({**shared, **stage, "id": ident})
    return split


# the fields of a queued or duplicate stage, in order (a request's record, and a received record's ``then``)
_THEN = ("stage", "event_name", "event_id", "pipeline", "account")


def _request_items(events: list[Any], queued: Any) -> list[list[Any]]:
    """A request entry's events as ``[message_id, event, envelope or None, stage, ...]`` each, with each
    queued (or duplicate) stage after the other stages of the newest event with its message id (one
    whose event is not there gets an item of its own)."""
    items: list[list[Any]] = []
    for item in events:
        envelope: dict[str, Any] | None = None
        if isinstance(item, dict):  # the envelope alone
            envelope, stages = item, []
        elif isinstance(item, list) and item and isinstance(item[0], dict):  # [envelope, stage, ...]
            envelope, stages = item[0], item[1:]
        if envelope is not None:
            items.append([envelope.get("message_id"), envelope.get("event") or envelope.get("type"), envelope,
                          *stages])
        elif isinstance(item, list) and len(item) >= 3:
            items.append(item)
        else:  # not an item: its place is kept (readers tell events without an id apart by it)
            items.append([None, None, None])
    if isinstance(queued, list):
        newest = {item[0]: item for item in items if isinstance(item[0], str)}
        for stage in queued:
            if not isinstance(stage, list) or len(stage) != len(_THEN) + 1 or not isinstance(stage[0], str):
                continue
            found = newest.get(stage[0])
            if found is None:
                found = newest[stage[0]] = [stage[0], None, None]
                items.append(found)
            found.append(stage[1:])
    return items


def _request_records(record: dict[str, Any], events: list[Any], ident: str) -> list[dict[str, Any]]:
    """The records of a request's entry: per event its ``received`` record (when it has an envelope),
    then its stages in the order they happened. An event refused before it had an id (no
    ``message_id``) carries ``item``, its place in the request, which the inspector tells it apart by."""
    at = record.get("at")
    source = record.get("source", "browser")
    debug = record.get("debug")
    extra = {"debug": debug, "id": ident} if debug else {"id": ident}
    split: list[dict[str, Any]] = []
    for index, item in enumerate(events):
        if not isinstance(item, list) or len(item) < 3:
            continue
        message_id, event, envelope = item[0], item[1], item[2]
        if message_id is None:  # refused before it had an id: its place in the request tells it apart
            extra = {**extra, "item": index}
        elif "item" in extra:
            extra = {key: value for key, value in extra.items() if key != "item"}
        if envelope is not None:
            split.append({"at": at, "stage": "received", "message_id": message_id, "event": event,
                          "source": source, "envelope": envelope, **extra})
        for stage in item[3:]:
            if not isinstance(stage, list) or not stage:
                continue
            name = stage[0]
            if name == "refused" and len(stage) >= 3:
                row = {"at": at, "stage": "refused", "message_id": message_id, "event": event, "reason": stage[1],
                       "message": stage[2]}
                if len(stage) > 3:
                    row["count"] = stage[3]
                split.append({**row, **extra})
            elif name == "quarantined" and len(stage) == 4:
                split.append({"at": at, "stage": "quarantined", "message_id": message_id, "event": stage[3],
                              "reason": stage[1], "quarantine_id": stage[2], **extra})
            elif len(stage) == len(_THEN):
                split.append({"at": at, "message_id": message_id, **dict(zip(_THEN, stage, strict=True)), **extra})
    return split


async def read_recent(redis: Any, count: int = 1000, *, before: str = "+") -> list[dict[str, Any]]:
    """The newest ``count`` records, oldest first (``id`` is the stream entry id).

    An entry holds one record or many (a request's, a worker batch's): entries are read, newest
    first, until they hold ``count`` records.
    """
    entries: list[list[dict[str, Any]]] = []
    found = 0
    while found < count:
        wanted = count - found  # every entry holds at least one record
        rows = await redis.xrevrange(keys.TRACE, max=before, min="-", count=wanted)
        for entry_id, fields in rows:
            split = decode_records(entry_id, fields)
            entries.append(split)
            found += len(split)
        if len(rows) < wanted:
            break
        before = "(" + rows[-1][0].decode()
    records = [record for split in reversed(entries) for record in split]
    return records[-count:] if len(records) > count else records


async def read_all(redis: Any, *, page: int = 2000) -> AsyncIterator[dict[str, Any]]:
    """Every record still in the stream, newest first, a page at a time."""
    before = "+"
    while True:
        rows = await redis.xrevrange(keys.TRACE, max=before, min="-", count=page)
        for entry_id, fields in rows:
            for record in reversed(decode_records(entry_id, fields)):
                yield record
        if len(rows) < page:
            return
        before = "(" + rows[-1][0].decode()


async def follow(redis: Any, *, last: str = "$", block_ms: int = 1000,
                 stop: asyncio.Event | None = None) -> AsyncIterator[dict[str, Any]]:
    """Records as they are written, from after entry ``last`` (``$``: from now on)."""
    if last == "$":
        newest = await redis.xrevrange(keys.TRACE, count=1)
        last = newest[0][0].decode() if newest else "0-0"
    while stop is None or not stop.is_set():
        reply = await redis.xread({keys.TRACE: last}, count=500, block=block_ms)
        for _, rows in reply or []:
            for entry_id, fields in rows:
                last = entry_id.decode()
                for record in decode_records(entry_id, fields):
                    yield record


def record_matches(record: Mapping[str, Any], *, event: str | None = None, stage: str | None = None,
                   event_id: str | None = None) -> bool:
    """Filters of ``tail`` and the inspector: event name (incoming or Pinterest's), stage, either id."""
    if event is not None and event not in (record.get("event"), record.get("event_name")):
        return False
    if stage is not None and record.get("stage") != stage:
        return False
    return event_id is None or event_id in (record.get("event_id"), record.get("message_id"))


def format_record(record: Mapping[str, Any]) -> str:
    """One line for ``pinsignal tail``."""
    stamp = time.strftime("%H:%M:%S", time.localtime(float(record.get("at", 0))))
    name = record.get("event_name") or record.get("event") or "?"
    ident = record.get("event_id") or record.get("message_id") or ""
    parts = [stamp, f"{record.get('stage', '?'):<13}", f"{name:<16}", str(ident)]
    for key in ("pipeline", "account", "status", "reason", "attempt"):
        if record.get(key) not in (None, ""):
            parts.append(f"{key}={record[key]}")
    if record.get("latency") is not None:
        parts.append(f"latency={float(record['latency']):.3f}s")
    if record.get("warning"):
        parts.append(f"warning={record['warning']!r}")
    if record.get("message"):
        parts.append(f"message={record['message']!r}")
    return "  ".join(parts)


async def memory_usage(redis: Any) -> int | None:
    """Bytes the trace stream takes in Redis (``MEMORY USAGE ... SAMPLES 0``), or None when absent."""
    used = await redis.memory_usage(keys.TRACE, samples=0)
    return int(used) if used is not None else None
