"""Every Redis name pinsignal uses, in one place.

Web processes, workers and the command line share one Redis; these are the names they agree on.
The values are stored data: changing one strands what is already queued, deduplicated or
dead-lettered, so ``tests/delivery/test_keys.py`` holds each to its value.

| name | type | holds |
|---|---|---|
| ``pinsignal:events:<account>`` | stream, group ``pinsignal`` | queued and in-flight events |
| ``pinsignal:streams`` | set | every event stream ever written (``status`` needs no SCAN) |
| ``pinsignal:seen:<account>:<event_name>:<event_id>`` | string, 48 h | the dedup window |
| ``pinsignal:seen-count:<account>:<window>`` | string, 96 h | browser dedup entries made in one 48 h window (capped) |
| ``pinsignal:counters`` | hash | ``enqueued``, ``duplicates``, ``delivered``, ``failed``, ... |
| ``pinsignal:dlq``, ``:dlq:index``, ``:dlq:reasons`` | hash, zset, hash | dead letters |
| ``pinsignal:paused`` | hash | paused accounts: HTTP status, Pinterest's message, since |
| ``pinsignal:probe:<account>`` | string, ``probe_interval`` | which loop probes a paused account |
| ``pinsignal:ratelimit:<account>`` | hash | the account's token bucket |
| ``pinsignal:backoff:<account>`` | string, the back-off | set while every worker holds off |
| ``pinsignal:arq`` (and arq's own keys under it) | arq | arq's queue and health check |
| ``pinsignal:trace`` | stream, capped | every stage of every event's life, hashed only |
| ``pinsignal:quarantine``, ``:quarantine:index`` | hash, zset | events refused after intake, hashed, expiring |
| ``pinsignal:warnings`` | hash | Pinterest's warnings by ``<event_name>|<kind>`` |
| ``pinsignal:visitor:<token>`` | string, ``PINSIGNAL_REMEMBER_DAYS`` | a visitor's context, hashed, by key |
| ``pinsignal:import:<file>`` | hash | how far ``pinsignal import`` got in a file |
| ``pinsignal:imported:<account>:<event_name>:<event_id>`` | string | a row imported |

::

    keys.stream("549755885175")      # 'pinsignal:events:549755885175'
    keys.account_of(b"pinsignal:events:549755885175")   # '549755885175'
"""

from __future__ import annotations

__all__ = [
    "ARQ_QUEUE",
    "COUNTERS",
    "DLQ",
    "DLQ_INDEX",
    "DLQ_REASONS",
    "GROUP",
    "PAUSED",
    "QUARANTINE",
    "QUARANTINE_INDEX",
    "STREAMS",
    "TRACE",
    "UNASSIGNED_ACCOUNT",
    "WARNINGS",
    "account_of",
    "backoff",
    "browser_seen_count",
    "import_progress",
    "imported",
    "imported_prefix",
    "probe",
    "ratelimit",
    "seen",
    "seen_prefix",
    "stream",
    "visitor",
]

GROUP = "pinsignal"  # the consumer group every worker reads the event streams through
COUNTERS = "pinsignal:counters"
STREAMS = "pinsignal:streams"
DLQ = "pinsignal:dlq"
DLQ_INDEX = "pinsignal:dlq:index"
DLQ_REASONS = "pinsignal:dlq:reasons"
PAUSED = "pinsignal:paused"
ARQ_QUEUE = "pinsignal:arq"
TRACE = "pinsignal:trace"  # capped stream: one entry per stage of an event's life (pinsignal.trace)
QUARANTINE = "pinsignal:quarantine"  # quarantine id -> the refused event, hashed (pinsignal.quarantine)
QUARANTINE_INDEX = "pinsignal:quarantine:index"  # zset: quarantine id by time refused
WARNINGS = "pinsignal:warnings"  # hash: "<event_name>|<warning kind>" -> count (pinsignal.insight)

# The account part of the stream a web process without ``PINTEREST_AD_ACCOUNT_ID`` queues into;
# every worker reads it too and delivers it to its own account.
UNASSIGNED_ACCOUNT = "default"

_STREAM_PREFIX = "pinsignal:events:"


def stream(account: str) -> str:
    """The stream of one ad account's queued events (or of :data:`UNASSIGNED_ACCOUNT`)."""
    return _STREAM_PREFIX + account


def account_of(stream_key: str | bytes) -> str:
    """The account a stream key belongs to (the inverse of :func:`stream`)."""
    text = stream_key.decode() if isinstance(stream_key, bytes) else stream_key
    return text.removeprefix(_STREAM_PREFIX)


def seen_prefix(account: str) -> str:
    """The dedup keys' prefix; the enqueue script appends ``<event_name>:<event_id>``."""
    return f"pinsignal:seen:{account}:"


def seen(account: str, event_name: str, event_id: str) -> str:
    """The dedup key of one event (what :func:`seen_prefix` and the enqueue script build)."""
    return f"{seen_prefix(account)}{event_name}:{event_id}"


def probe(account: str) -> str:
    """Held by the one delivery loop, among all workers, whose turn it is to probe a paused account."""
    return f"pinsignal:probe:{account}"


def ratelimit(account: str) -> str:
    """The token bucket every worker shares for one account."""
    return f"pinsignal:ratelimit:{account}"


def backoff(account: str) -> str:
    """Exists while every worker holds off one account (after a 429, a 5xx, a timeout)."""
    return f"pinsignal:backoff:{account}"


def browser_seen_count(account: str, window: int) -> str:
    """How many browser events' dedup entries one 48 h window made (``PINSIGNAL_BROWSER_DEDUP_MAX`` caps it)."""
    return f"pinsignal:seen-count:{account}:{window}"


def visitor(token: str) -> str:
    """A visitor's context remembered by key (``pinsignal.visitors``); ``token`` is the key's HMAC."""
    return f"pinsignal:visitor:{token}"


def import_progress(file_id: str) -> str:
    """How far ``pinsignal import`` got in one file (byte offset, line), to resume an interrupted import."""
    return f"pinsignal:import:{file_id}"


def imported_prefix(account: str) -> str:
    """Rows already imported (``pinsignal import``): ``<prefix><event_name>:<event_id>``, kept while
    Pinterest would still take the event, since it does not deduplicate offline events."""
    return f"pinsignal:imported:{account}:"


def imported(account: str, event_name: str, event_id: str) -> str:
    return f"{imported_prefix(account)}{event_name}:{event_id}"
