"""Every Redis name pinsignal uses, in one place.

Web processes, workers and the command line share one Redis (or one Redis Cluster); these are the
names they agree on. The values are stored data: changing one strands what is already queued,
deduplicated or dead-lettered, so ``tests/delivery/test_keys.py`` holds each to its value, and
``pinsignal.migrate`` moves a Redis written by an older layout to this one at start-up.

Redis Cluster runs a script or a MULTI only when every key it touches hashes to one slot. So every
key of one ad account carries the account as its hash tag (``{<account>}``: only the part in braces
is hashed), and the global keys that one script writes together share the tag ``{global}``
(quarantine's pair shares ``{quarantine}``). Keys written alone carry none, so they spread over the
cluster.

| name | type | holds |
|---|---|---|
| ``pinsignal:{<account>}:events`` | stream, group ``pinsignal`` | the account's queued and in-flight events |
| ``pinsignal:{<account>}:seen:<event_name>:<event_id>`` | string, 48 h | the dedup window |
| ``pinsignal:{<account>}:seen-count:<window>`` | string, 96 h | browser dedup entries made in a 48 h window (capped) |
| ``pinsignal:{<account>}:counters`` | hash | its ``enqueued``, ``duplicates``, ``delivered``, ``failed``, ... |
| ``pinsignal:{<account>}:dlq``, ``:dlq:index``, ``:dlq:reasons`` | hash, zset, hash | the account's dead letters |
| ``pinsignal:{<account>}:probe`` | string, ``probe_interval`` | which loop probes a paused account |
| ``pinsignal:{<account>}:ratelimit`` | hash | the account's token bucket |
| ``pinsignal:{<account>}:backoff`` | string, the back-off | set while every worker holds off |
| ``pinsignal:{<account>}:imported:<event_name>:<event_id>`` | string | a row imported |
| ``pinsignal:accounts`` | set | every account ever queued to (``status`` needs no SCAN) |
| ``pinsignal:{global}:counters`` | hash | counters of no account (``dropped_consent``, the trace's, visitors') |
| ``pinsignal:{global}:trace`` | stream, capped | every stage of every event's life, hashed only |
| ``pinsignal:{global}:warnings`` | hash | Pinterest's warnings by ``<event_name>|<kind>`` |
| ``pinsignal:{quarantine}:items``, ``:index`` | hash, zset | events refused after intake, hashed, expiring |
| ``pinsignal:paused`` | hash | paused accounts: HTTP status, Pinterest's message, since |
| ``pinsignal:arq`` (and arq's own keys under it) | arq | arq's queue and health check (single Redis only) |
| ``pinsignal:visitor:<token>`` | string, ``PINSIGNAL_REMEMBER_DAYS`` | a visitor's context, hashed, by key |
| ``pinsignal:import:<file>`` | hash | how far ``pinsignal import`` got in a file |
| ``pinsignal:migrating`` | string, 60 s | held by the one process moving an older layout's keys |

``<account>`` is a numeric ad account id or ``default`` (:data:`UNASSIGNED_ACCOUNT`).

::

    keys.stream("549755885175")      # 'pinsignal:{549755885175}:events'
    keys.account_of(b"pinsignal:{549755885175}:events")   # '549755885175'
"""

from __future__ import annotations

__all__ = [
    "ACCOUNTS",
    "ARQ_QUEUE",
    "COUNTERS",
    "GROUP",
    "MIGRATING",
    "OLD_COUNTERS",
    "OLD_DLQ",
    "OLD_DLQ_INDEX",
    "OLD_DLQ_REASONS",
    "OLD_GLOBALS",
    "OLD_PREFIX",
    "OLD_STREAMS",
    "PAUSED",
    "QUARANTINE",
    "QUARANTINE_INDEX",
    "TRACE",
    "UNASSIGNED_ACCOUNT",
    "WARNINGS",
    "account_counters",
    "account_of",
    "backoff",
    "browser_seen_count",
    "dlq",
    "dlq_index",
    "dlq_reasons",
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
ACCOUNTS = "pinsignal:accounts"  # set: every account queued to, written once per process and account
COUNTERS = "pinsignal:{global}:counters"  # counters of no one account; each account has its own too
TRACE = "pinsignal:{global}:trace"  # capped stream: one entry per stage of an event's life (pinsignal.trace)
WARNINGS = "pinsignal:{global}:warnings"  # hash: "<event_name>|<warning kind>" -> count (pinsignal.insight)
# The trace's script writes TRACE, COUNTERS and WARNINGS in one call: hence their shared tag.
QUARANTINE = "pinsignal:{quarantine}:items"  # quarantine id -> the refused event, hashed (pinsignal.quarantine)
QUARANTINE_INDEX = "pinsignal:{quarantine}:index"  # zset: quarantine id by time refused
PAUSED = "pinsignal:paused"
ARQ_QUEUE = "pinsignal:arq"
MIGRATING = "pinsignal:migrating"  # the lock of pinsignal.migrate

# The names before issue 17 (no hash tags), which only ``pinsignal.migrate`` reads, to move them; the
# per-account ones were ``pinsignal:<kind>:<account>[:<rest>]`` (kind ``events``, ``seen``, ``seen-count``,
# ``imported``, ``probe``, ``ratelimit``, ``backoff``).
OLD_PREFIX = "pinsignal:"
OLD_COUNTERS = "pinsignal:counters"
OLD_STREAMS = "pinsignal:streams"  # set of the old stream names
OLD_DLQ = "pinsignal:dlq"  # every account's dead letters in one hash, zset and hash
OLD_DLQ_INDEX = "pinsignal:dlq:index"
OLD_DLQ_REASONS = "pinsignal:dlq:reasons"
OLD_GLOBALS = {  # old name -> new name
    "pinsignal:trace": TRACE,
    "pinsignal:warnings": WARNINGS,
    "pinsignal:quarantine": QUARANTINE,
    "pinsignal:quarantine:index": QUARANTINE_INDEX,
}

# The account part of the stream a web process without ``PINTEREST_AD_ACCOUNT_ID`` queues into;
# the default account's worker reads it too and delivers it to that account.
UNASSIGNED_ACCOUNT = "default"


def _tagged(account: str) -> str:
    return f"pinsignal:{{{account}}}:"


def stream(account: str) -> str:
    """The stream of one ad account's queued events (or of :data:`UNASSIGNED_ACCOUNT`)."""
    return f"{_tagged(account)}events"


def account_of(stream_key: str | bytes) -> str:
    """The account a stream key belongs to (the inverse of :func:`stream`)."""
    text = stream_key.decode() if isinstance(stream_key, bytes) else stream_key
    return text.removeprefix("pinsignal:{").removesuffix("}:events")


def seen_prefix(account: str) -> str:
    """The dedup keys' prefix; the enqueue script appends ``<event_name>:<event_id>``."""
    return f"{_tagged(account)}seen:"


def seen(account: str, event_name: str, event_id: str) -> str:
    """The dedup key of one event (what :func:`seen_prefix` and the enqueue script build)."""
    return f"{seen_prefix(account)}{event_name}:{event_id}"


def browser_seen_count(account: str, window: int) -> str:
    """How many browser events' dedup entries one 48 h window made (``PINSIGNAL_BROWSER_DEDUP_MAX`` caps it)."""
    return f"{_tagged(account)}seen-count:{window}"


def account_counters(account: str) -> str:
    """One account's counters, written by the scripts and transactions that touch its stream."""
    return f"{_tagged(account)}counters"


def dlq(account: str) -> str:
    """One account's dead letters: id -> JSON record."""
    return f"{_tagged(account)}dlq"


def dlq_index(account: str) -> str:
    """One account's dead-letter ids scored by the time they died."""
    return f"{_tagged(account)}dlq:index"


def dlq_reasons(account: str) -> str:
    """One account's dead letters counted by reason."""
    return f"{_tagged(account)}dlq:reasons"


def probe(account: str) -> str:
    """Held by the one delivery loop, among all workers, whose turn it is to probe a paused account."""
    return f"{_tagged(account)}probe"


def ratelimit(account: str) -> str:
    """The token bucket every worker shares for one account."""
    return f"{_tagged(account)}ratelimit"


def backoff(account: str) -> str:
    """Exists while every worker holds off one account (after a 429, a 5xx, a timeout)."""
    return f"{_tagged(account)}backoff"


def imported_prefix(account: str) -> str:
    """Rows already imported (``pinsignal import``): ``<prefix><event_name>:<event_id>``, kept while
    Pinterest would still take the event, since it does not deduplicate offline events."""
    return f"{_tagged(account)}imported:"


def imported(account: str, event_name: str, event_id: str) -> str:
    return f"{imported_prefix(account)}{event_name}:{event_id}"


def visitor(token: str) -> str:
    """A visitor's context remembered by key (``pinsignal.visitors``); ``token`` is the key's HMAC."""
    return f"pinsignal:visitor:{token}"


def import_progress(file_id: str) -> str:
    """How far ``pinsignal import`` got in one file (byte offset, line), to resume an interrupted import."""
    return f"pinsignal:import:{file_id}"
