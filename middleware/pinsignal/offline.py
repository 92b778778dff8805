"""Offline conversions from a file (DESIGN 8.2): what ``pinsignal import FILE`` runs.

    summary = await import_file(ImportOptions(path=Path("sales.csv")), config)
    summary.read, summary.queued, summary.duplicates, summary.refused   # refused: [(line, reason), ...]

Each row (CSV with a header line, or JSON Lines) becomes an incoming event (DESIGN 3): its columns are
mapped to envelope paths (:data:`DEFAULT_MAP`, changed with ``--map column=path``), the event name is
the row's ``event`` or ``--event`` (default ``order_completed``), and the event goes through the same
pipelines as every other, which hash the match keys before anything is stored. The Pinterest events
are sent with ``action_source: "offline"``.

Pinterest does not deduplicate offline events, so pinsignal does: the event id comes from the order
id (the same as ``track()``'s for that order), and every row queued is marked in Redis
(``keys.imported``) for as long as Pinterest would still take the event. A second import of the same
rows queues nothing twice; an import stopped at any point (Ctrl-C, a crash, a kill) resumes after the
last chunk it finished (``keys.import_progress``), and a chunk redone finds its rows marked or
already queued. Marks are written after the events are queued, never before, so nothing is lost
either.

Each row goes to the ad account the collector would send its event to (DESIGN 8.4): the first
account of ``PINSIGNAL_ACCOUNTS`` whose ``match`` its envelope meets (:meth:`Accounts.route
<pinsignal.accounts.Accounts.route>`: its conditions, and a host from a column mapped to
``context.page.url``; an import has no request host and no write key), else the default account.
``ImportOptions(account=...)`` (``--account``) sends every row to one account instead. Marks are per
account (``keys.imported_prefix(account)``), and the summary counts each account's rows.

Rows are refused, with their line number and the reason, when they have no order id, no timestamp,
a bad value, no match key Pinterest accepts, or a time outside Pinterest's 7-day window.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import hashlib
import io
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from pinsignal import keys
from pinsignal.config import Config
from pinsignal.errors import ConfigError
from pinsignal.events import MAX_ID, MAX_STRING, parse_time, snake_event_name
from pinsignal.ldp import flag_ldp
from pinsignal.tracking import event_id_for

if TYPE_CHECKING:
    from pinsignal.accounts import Accounts
    from pinsignal.pipeline import Engine
    from pinsignal.queue import EventQueue

__all__ = ["DEFAULT_MAP", "ImportOptions", "ImportSummary", "import_file", "parse_map", "read_rows"]

Format = Literal["csv", "jsonl"]

# column -> envelope path (DESIGN 8.2's defaults)
DEFAULT_MAP: dict[str, str] = {
    "order_id": "properties.order_id",
    "email": "traits.email",
    "phone": "traits.phone",
    "user_id": "user_id",
    "first_name": "traits.first_name",
    "last_name": "traits.last_name",
    "city": "traits.city",
    "state": "traits.state",
    "zip": "traits.zip",
    "country": "traits.country",
    "value": "properties.revenue",
    "currency": "properties.currency",
    "timestamp": "timestamp",
    "event": "event",
    "content_ids": "properties.products",
    "ldp": "context.limited_data_processing",
}
_TOP = frozenset({"timestamp", "event", "user_id", "message_id"})
_SECTIONS = frozenset({"properties", "traits", "context"})
_NUMBERS = frozenset({"revenue", "value", "total", "subtotal", "price", "tax", "shipping", "discount"})
_INTEGERS = frozenset({"quantity"})
_TRUE = frozenset({"1", "true", "yes", "y", "on"})
_FALSE = frozenset({"", "0", "false", "no", "n", "off"})
CHUNK = 2000
_MIN_MARK = 3600  # a row's mark outlives Pinterest's window for its event by at least an hour
_WINDOW = 7 * 86400


@dataclass(frozen=True)
class ImportOptions:
    """What to import and how; ``fmt=None`` goes by the file's extension (``.jsonl``/``.ndjson``: JSON Lines)."""

    path: Path
    fmt: Format | None = None
    mapping: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MAP))
    event: str = "order_completed"
    restart: bool = False  # ignore a previous run's progress (rows already imported stay duplicates)
    account: str | None = None  # every row to this ad account instead of routing each (PINSIGNAL_ACCOUNTS)

    @property
    def format(self) -> Format:
        if self.fmt is not None:
            return self.fmt
        return "jsonl" if self.path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"


@dataclass
class ImportSummary:
    """Rows read, queued, duplicates (imported before, or already queued) and refused (line, reason);
    ``accounts``: queued and duplicates of each ad account the rows went to."""

    read: int = 0
    queued: int = 0
    duplicates: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    resumed_after: int = 0  # rows a previous, interrupted run had already finished
    unmapped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    accounts: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "queued": self.queued, "duplicates": self.duplicates,
                "refused": [{"line": line, "reason": reason} for line, reason in self.refused],
                "resumed_after": self.resumed_after, "unmapped": self.unmapped, "seconds": round(self.seconds, 3),
                "accounts": self.accounts}

    def count(self, account: str, queued: int, duplicates: int) -> None:
        self.queued += queued
        self.duplicates += duplicates
        counts = self.accounts.setdefault(account, {"queued": 0, "duplicates": 0})
        counts["queued"] += queued
        counts["duplicates"] += duplicates


def parse_map(items: list[str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``--map column=envelope.path`` options over :data:`DEFAULT_MAP`; ``ConfigError`` for a bad one."""
    mapping = dict(DEFAULT_MAP if base is None else base)
    for item in items:
        column, equals, path = item.partition("=")
        column, path = column.strip(), path.strip()
        if not equals or not column or not path:
            raise ConfigError(f"--map takes column=envelope.path (e.g. order_no=properties.order_id), got {item!r}.")
        head = path.split(".", 1)[0]
        if not (path in _TOP or (head in _SECTIONS and "." in path) or path == "-"):
            raise ConfigError(f"--map {item!r}: the path must be timestamp, event, user_id, message_id or start with "
                              "properties., traits. or context. (or '-' to ignore the column).")
        mapping[column] = path
    return mapping


def read_rows(path: Path, fmt: Format) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line number, row)`` for each data row; a row that cannot be read is the reason, as a string."""
    if fmt == "jsonl":
        with path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield number, f"not valid JSON: {exc}"
                    continue
                yield number, row if type(row) is dict else "a line must be a JSON object"
        return
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        names = [name.strip() for name in header]
        width = len(names)
        last = reader.line_num
        for values in reader:
            number, last = last + 1, reader.line_num
            if not values:
                continue
            if len(values) != width:
                yield number, f"{len(values)} fields where the header has {width}"
                continue
            yield number, dict(zip(names, values, strict=True))


class _RowError(Exception):
    pass


def _products(value: object) -> list[dict[str, Any]]:
    if type(value) is list:
        return [item if type(item) is dict else {"product_id": str(item)} for item in value]
    if type(value) is str:
        parts = value.replace("|", ",").replace(";", ",").split(",")
        return [{"product_id": part.strip()} for part in parts if part.strip()]
    raise _RowError(f"content_ids: expected product ids separated by ',' or '|', got {value!r}")


class _Builder:
    """Rows to envelopes, with the mapping compiled once: column -> (section, name, converter)."""

    def __init__(self, options: ImportOptions) -> None:
        self.event = snake_event_name(options.event)
        self.plan: dict[str, tuple[str, str, Callable[[object], object] | None]] = {}
        for column, path in options.mapping.items():
            if path == "-":
                continue
            section, _, name = path.partition(".")
            if not name:
                section, name = "", section
            self.plan[column] = (section, name, _converter(section, name))
        # a deeper path (context.page.url, which the pipelines and PINSIGNAL_ACCOUNTS' hosts read):
        # set under its dotted name by the loop, nested once the row is read
        self.nested = tuple(dict.fromkeys((section, tuple(name.split("."))) for section, name, _ in self.plan.values()
                                          if section and "." in name))

    def envelope(self, row: dict[str, Any]) -> dict[str, Any]:
        sections: dict[str, dict[str, Any]] = {"properties": {}, "traits": {}, "context": {}}
        out: dict[str, Any] = {"type": "track", "event": self.event, **sections}
        plan = self.plan
        for column, value in row.items():
            target = plan.get(column)
            if target is None or value is None:
                continue
            if type(value) is str:
                if not value:
                    continue
                if len(value) > MAX_STRING:
                    raise _RowError(f"{column}: longer than {MAX_STRING} characters")
            section, name, convert = target
            if convert is not None:
                value = convert(value)
            if section:
                sections[section][name] = value
            else:
                out[name] = value
        for section, parts in self.nested:
            _nest(sections[section], parts)
        event = out["event"]
        if event is not self.event:
            if type(event) is not str or not event.strip():
                raise _RowError(f"event: {event!r} is not an event name")
            event = out["event"] = snake_event_name(event)
        order_id = sections["properties"].get("order_id")
        if order_id is None or not str(order_id).strip():
            raise _RowError("no order id: an offline conversion needs one (Pinterest does not deduplicate them)")
        stamp = out.get("timestamp")
        if stamp is None:
            raise _RowError("no timestamp: when the sale happened is required")
        seconds = parse_time(stamp)
        if seconds is None:
            raise _RowError(f"timestamp: {stamp!r} is not an ISO-8601 time or epoch seconds")
        out["timestamp"] = int(seconds)  # epoch seconds: the pipelines' unix_seconds takes them as they are
        message_id = out.get("message_id")
        if message_id is None:
            out["message_id"] = event_id_for(event, {"order_id": order_id if type(order_id) is str else str(order_id)})
        elif type(message_id) is not str or not 0 < len(message_id) <= MAX_ID or "\n" in message_id:
            raise _RowError(f"message_id: {message_id!r} must be 1-{MAX_ID} characters on one line")
        return out


def _nest(section: dict[str, Any], parts: tuple[str, ...]) -> None:
    value = section.pop(".".join(parts), None)
    if value is None:
        return
    node = section
    for part in parts[:-1]:
        child = node.get(part)
        if type(child) is not dict:
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _converter(section: str, name: str) -> Callable[[object], object] | None:
    """What a column's text becomes in the envelope: numbers, products, a flag; ``None`` keeps it."""
    if section == "properties" and name == "products":
        return _products
    if section == "properties" and (name in _NUMBERS or name in _INTEGERS):
        return lambda value: _number(name, value)
    if section == "context" and name == "limited_data_processing":
        return _flag
    return None


def _number(name: str, value: object) -> object:
    if type(value) is not str:
        return value
    try:
        return int(value.strip()) if name in _INTEGERS else float(value.strip().replace(",", ""))
    except ValueError:
        raise _RowError(f"{name}: {value!r} is not a number") from None


def _flag(value: object) -> object:
    if type(value) is not str:
        return value
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _RowError(f"ldp: expected true or false, got {value!r}")


async def import_file(options: ImportOptions, config: Config, *, queue: EventQueue | None = None,
                      engine: Engine | None = None, progress: Callable[[int], None] | None = None,
                      routes: Accounts | None = None) -> ImportSummary:
    """Import ``options.path`` into the queue of ``config``; ``progress(rows)`` after each chunk.

    ``routes`` (default: ``config``'s ``PINSIGNAL_ACCOUNTS`` and ``PINTEREST_AD_ACCOUNT_ID``) sends
    each row to its ad account; a row no account matches goes to the queue's own.
    """
    from pinsignal.accounts import Accounts
    from pinsignal.pipeline import Engine, RequestContext
    from pinsignal.queue import EventQueue, awaited, unavailable

    if not options.path.is_file():
        raise ConfigError(f"no such file: {str(options.path)!r}.")
    routes = routes if routes is not None else Accounts.from_config(config)
    if options.account is not None:
        routes.require(options.account)
    started = time.perf_counter()
    engine = engine or Engine.from_config(config)
    own_queue = queue is None
    queue = queue or await EventQueue.connect(config)
    redis = queue.redis
    # a row's account: --account, else the first match of PINSIGNAL_ACCOUNTS (the collector's own
    # routing), else the queue's; with neither, no routing work per row (as in the collector)
    router = _Router(routes.route if options.account is None and routes.accounts else None,
                     options.account or queue.account)
    progress_key = keys.import_progress(_file_id(options.path, options.account))
    summary = ImportSummary()
    builder = _Builder(options)
    always_ldp = config.ldp == "always"
    request = RequestContext()
    scripts = _Scripts(redis)
    try:
        with unavailable("reading the import's progress"):
            saved = {} if options.restart else await awaited(redis.hgetall(progress_key))
        done = int(saved.get(b"rows") or 0)
        summary.resumed_after = done
        # the rows an interrupted run refused are reported again: that run never printed its summary
        summary.refused = [(int(line), str(reason)) for line, reason in orjson.loads(saved.get(b"refused") or b"[]")]
        rows = read_rows(options.path, options.format)
        header_checked = False
        sending: asyncio.Future[None] | None = None
        sent_through = 0
        chunk: list[tuple[int, dict[str, Any]]] = []
        count = 0
        for number, row in rows:
            count += 1
            summary.read += 1
            if count <= done:
                continue
            if isinstance(row, str):
                summary.refused.append((number, row))
                continue
            if not header_checked:
                header_checked = True
                summary.unmapped = [column for column in row if column not in options.mapping]
            chunk.append((number, row))
            if len(chunk) >= CHUNK:
                events = _prepare(chunk, builder, engine, request, summary, always_ldp, router)
                chunk = []
                # Redis takes one chunk while the next is hashed: the previous one's round trips
                # are awaited (and its progress saved) only now.
                if sending is not None:
                    await sending
                    await _save(redis, progress_key, sent_through, summary.refused)
                    if progress is not None:
                        progress(sent_through)
                sending = asyncio.ensure_future(_send(events, queue, summary, scripts))
                sent_through = count
        events = _prepare(chunk, builder, engine, request, summary, always_ldp, router)
        if sending is not None:
            await sending
        await _send(events, queue, summary, scripts)
        await _save(redis, progress_key, count, summary.refused)
        if progress is not None:
            progress(count)
    finally:
        if own_queue:
            await queue.close()
    summary.refused = sorted(set(summary.refused))  # a chunk redone after a stop refuses its rows again
    summary.seconds = time.perf_counter() - started
    return summary


class _Scripts:
    """The two Lua scripts of the import's marks, each one round trip for a whole chunk (one argument:
    redis-py's packing of many small arguments cost more than the work)."""

    def __init__(self, redis: Any) -> None:
        self.marked = redis.register_script(_MARKED_LUA)
        self.mark = redis.register_script(_MARK_LUA)


# KEYS[1] the account's stream, never touched: it routes the call to the master of the account's slot on a
# Redis Cluster, where the marks (the account's hash tag) live. ARGV[1] the marks' prefix, ARGV[2]
# "<event_name>:<event_id>" lines: the (1-based) numbers of those marked.
_MARKED_LUA = """
local out = {}
local prefix = ARGV[1]
local index = 0
for name in string.gmatch(ARGV[2], "[^\\n]+") do
  index = index + 1
  if redis.call('EXISTS', prefix .. name) == 1 then out[#out + 1] = index end
end
return out
"""
# KEYS[1] as above, ARGV[1] the prefix, ARGV[2] "<event_name>:<event_id>\\n<seconds>\\n" for each row queued.
_MARK_LUA = """
local prefix = ARGV[1]
for name, ttl in string.gmatch(ARGV[2], "([^\\n]+)\\n(%d+)\\n") do
  redis.call('SET', prefix .. name, '1', 'EX', ttl)
end
return 0
"""


@dataclass(frozen=True)
class _Router:
    """``route(envelope)`` (:meth:`Accounts.route <pinsignal.accounts.Accounts.route>`) or ``None``, and the
    account of a row it sends nowhere."""

    route: Callable[[dict[str, Any]], str | None] | None
    account: str


def _prepare(chunk: list[tuple[int, dict[str, Any]]], builder: _Builder, engine: Engine, request: Any,
             summary: ImportSummary, always_ldp: bool, router: _Router) -> dict[str, list[dict[str, Any]]]:
    """The Pinterest events of a chunk's rows (hashed, validated, offline) by ad account; refusals into
    ``summary``."""
    # Some 30 objects a row, kept until the chunk is queued and none in a reference cycle: the
    # collector, triggered by allocations, would walk them again and again for nothing (4% of a
    # row's instructions). It waits until the chunk is done; nothing else runs meanwhile (no await).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _events(chunk, builder, engine, request, summary, always_ldp, router)
    finally:
        if collecting:
            gc.enable()


def _events(chunk: list[tuple[int, dict[str, Any]]], builder: _Builder, engine: Engine, request: Any,
            summary: ImportSummary, always_ldp: bool, router: _Router) -> dict[str, list[dict[str, Any]]]:
    by_account: dict[str, list[dict[str, Any]]] = {}
    route, fallback = router.route, router.account
    for number, row in chunk:
        try:
            envelope = builder.envelope(row)
        except _RowError as exc:
            summary.refused.append((number, str(exc)))
            continue
        envelope["source"] = "server"
        made = engine.process(envelope, request)
        if not made:
            summary.refused.append((number, f"no pipeline takes the event {envelope['event']!r}; "
                                            "name another with --event or an event column"))
            continue
        reasons = [f"{produced.pipeline}: {error}" for produced in made for error in produced.errors]
        if reasons:
            summary.refused.append((number, "; ".join(reasons)))
            continue
        ldp = always_ldp or envelope["context"].get("limited_data_processing") is True
        account = fallback if route is None else route(envelope) or fallback
        events = by_account.get(account)
        if events is None:
            events = by_account[account] = []
        for produced in made:
            if not produced.event:
                continue
            event = produced.event
            event["action_source"] = "offline"
            if ldp:
                flag_ldp(event)
            events.append(event)
    return by_account


async def _send(by_account: dict[str, list[dict[str, Any]]], queue: EventQueue, summary: ImportSummary,
                scripts: _Scripts) -> None:
    """Queue each account's events not imported to it before, then mark them imported in that account."""
    if len(by_account) == 1:
        [(account, events)] = by_account.items()
        await _send_account(events, queue, account, summary, scripts)
    elif by_account:
        await asyncio.gather(*(_send_account(events, queue, account, summary, scripts)
                               for account, events in by_account.items()))


async def _send_account(events: list[dict[str, Any]], queue: EventQueue, account: str, summary: ImportSummary,
                        scripts: _Scripts) -> None:
    from pinsignal.queue import unavailable

    if not events:
        return
    names = [f"{event['event_name']}:{event['event_id']}" for event in events]
    prefix = keys.imported_prefix(account)
    with unavailable("reading which rows were imported"):
        marked = await scripts.marked(keys=[keys.stream(account)], args=[prefix, "\n".join(names)])
    if marked:
        skip = set(marked)
        fresh = [event for index, event in enumerate(events, 1) if index not in skip]
    else:
        fresh = events
    summary.count(account, 0, len(events) - len(fresh))
    if not fresh:
        return
    result = await queue.enqueue(fresh, account=account)
    summary.count(account, len(result.queued), len(result.duplicates))
    # Marked only once queued: a run stopped before this line queues them again, deduplicated.
    now = time.time()
    lines: list[str] = []
    for event in fresh:
        event_time = event.get("event_time")
        ttl = int((event_time if type(event_time) is int else now) + _WINDOW - now) + _MIN_MARK
        lines.append(f"{event['event_name']}:{event['event_id']}\n{max(ttl, _MIN_MARK)}\n")
    with unavailable("marking the rows imported"):
        await scripts.mark(keys=[keys.stream(account)], args=[prefix, "".join(lines)])


async def _save(redis: Any, progress_key: str, rows: int, refused: list[tuple[int, str]]) -> None:
    """How far the import got: rows finished and the rows refused so far (line numbers and reasons,
    which quote no hashed field's value)."""
    from pinsignal.queue import unavailable

    with unavailable("saving the import's progress"):
        await redis.hset(progress_key, mapping={"rows": str(rows), "refused": orjson.dumps(refused)})
        await redis.expire(progress_key, 30 * 86400)


def _file_id(path: Path, account: str | None = None) -> str:
    """Names an import's progress: the file's absolute path, size and first 64 KiB, and ``--account``
    (a run to another account is another import: it must not resume after rows sent elsewhere)."""
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8", "surrogateescape"))
    if account is not None:
        digest.update(b"\0account=" + account.encode())
    digest.update(str(resolved.stat().st_size).encode())
    with resolved.open("rb") as handle:
        digest.update(handle.read(65536))
    return digest.hexdigest()[:32]


def text_summary(summary: ImportSummary, *, limit: int = 50) -> str:
    """The summary a person reads: counts, then the refused rows (the first ``limit``)."""
    out = io.StringIO()
    if summary.resumed_after:
        out.write(f"resumed after row {summary.resumed_after} (an earlier run had finished the rows before it)\n")
    if summary.unmapped:
        out.write("columns not mapped (ignored): " + ", ".join(summary.unmapped) + "\n")
    rate = summary.read / summary.seconds if summary.seconds else 0.0
    out.write(f"rows read {summary.read}, queued {summary.queued}, duplicates {summary.duplicates}, "
              f"refused {len(summary.refused)} ({summary.seconds:.1f} s, {rate:,.0f} rows/s)\n")
    for account, counts in sorted(summary.accounts.items()):  # where the rows went (PINSIGNAL_ACCOUNTS)
        out.write(f"  account {account}: queued {counts['queued']}, duplicates {counts['duplicates']}\n")
    for line, reason in summary.refused[:limit]:
        out.write(f"  line {line}: {reason}\n")
    if len(summary.refused) > limit:
        out.write(f"  ... and {len(summary.refused) - limit} more refused rows (--json lists them all)\n")
    return out.getvalue()
