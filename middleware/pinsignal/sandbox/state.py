"""What the sandbox remembers: received events, the dedup store, counters and rate-limit windows.

Memory stays bounded under any load: the newest ``max_recorded`` events are kept (as compact JSON
bytes), the dedup store holds at most ``max_dedup_keys`` keys (oldest evicted first, and any past
the dedup window), and the counters count everything. All of it lives on the event loop's thread,
so no locks are needed.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from pinsignal.sandbox.faults import FaultPlan
from pinsignal.sandbox.settings import SandboxSettings

__all__ = ["RateWindow", "Record", "SandboxState"]


class Record(NamedTuple):
    """One event the sandbox recorded (test requests record nothing)."""

    seq: int
    ad_account_id: str
    received_at: float
    request_id: str
    duplicate: bool
    event: bytes  # the event exactly as received, re-encoded as compact JSON


@dataclass(slots=True)
class RateWindow:
    """A fixed 60-second window of calls for one ad account."""

    started: float
    calls: int


class SandboxState:
    """Received events, dedup keys, counters, rate-limit windows and injected faults."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.initial = settings
        self.settings = settings
        self.faults = FaultPlan()
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything and return to the start-up settings."""
        self.generation += 1
        self.settings = self.initial
        self.faults.clear()
        self.records: deque[Record] = deque(maxlen=self.settings.max_recorded)
        # hash((account, event_name, event_id)) -> first seen; dicts keep insertion order, so the
        # oldest key is always first and expiry/eviction only ever pops from the front
        self.dedup: dict[int, float] = {}
        self.windows: dict[str, RateWindow] = {}
        self.requests: Counter[int] = Counter()
        self.counts: Counter[str] = Counter()
        self.seq = 0

    # ------------------------------------------------------------------ rate limit

    def take_call(self, account: str, now: float) -> tuple[bool, int, int]:
        """Count one call for ``account``: (allowed, remaining, seconds until the window resets)."""
        limit = self.settings.calls_per_minute
        window = self.windows.get(account)
        if window is None or now - window.started >= 60.0:
            window = self.windows[account] = RateWindow(now, 0)
        reset = max(0, math.ceil(window.started + 60.0 - now))
        if window.calls >= limit:
            return False, 0, reset
        window.calls += 1
        return True, limit - window.calls, reset

    def peek_calls(self, account: str, now: float) -> tuple[int, int]:
        """(remaining, reset) for ``account`` without counting a call (for answers before auth)."""
        limit = self.settings.calls_per_minute
        window = self.windows.get(account)
        if window is None or now - window.started >= 60.0:
            return limit, 60
        return max(0, limit - window.calls), max(0, math.ceil(window.started + 60.0 - now))

    # ------------------------------------------------------------------ dedup and records

    def record_batch(self, account: str, now: float, request_id: str,
                     events: Iterable[dict[str, Any]]) -> tuple[int, int]:
        """Deduplicate and record processed events; returns (recorded, duplicates).

        The dedup key is ``(ad_account_id, event_name, event_id)``; the first one seen within the
        window wins, later ones are recorded flagged ``duplicate``. ``action_source: offline`` events
        are never deduplicated (Pinterest cannot deduplicate them). This loop runs for every event
        of every batch, so it keeps everything in local variables.
        """
        dedup = self.dedup
        horizon = now - self.settings.dedup_hours * 3600.0
        cap = self.settings.max_dedup_keys
        # expired keys sit at the front (dicts keep insertion order); once per batch is enough,
        # since lookups compare times anyway
        while dedup:
            oldest = next(iter(dedup))
            if dedup[oldest] >= horizon:
                break
            del dedup[oldest]
        records = self.records
        append = records.append
        maxlen = records.maxlen
        dumps = orjson.dumps
        seq = self.seq
        recorded = duplicates = evicted = 0
        for event in events:
            duplicate = False
            if event["action_source"] != "offline":
                key = hash((account, event["event_name"], event["event_id"]))
                seen = dedup.get(key)
                if seen is not None and seen >= horizon:
                    duplicate = True
                    duplicates += 1
                else:
                    if seen is not None:
                        del dedup[key]  # re-inserted at the end, keeping the oldest-first order
                    elif len(dedup) >= cap:
                        del dedup[next(iter(dedup))]
                    dedup[key] = now
            seq += 1
            recorded += 1
            if len(records) == maxlen:
                evicted += 1
            # orjson's output buffer keeps its over-allocation (about 4 KB per event): keep an exact copy
            append(Record(seq, account, now, request_id, duplicate, bytes(memoryview(dumps(event)))))
        self.seq = seq
        self.counts["events_evicted"] += evicted
        return recorded, duplicates

    # ------------------------------------------------------------------ reporting

    def stats(self) -> dict[str, Any]:
        """Counters for the test API (``GET /_sandbox/stats``)."""
        counts = self.counts
        return {
            "requests": {str(status): n for status, n in sorted(self.requests.items())},
            "requests_total": sum(self.requests.values()),
            "events_received": counts["events_received"],
            "events_processed": counts["events_processed"],
            "events_failed": counts["events_failed"],
            "events_recorded": counts["events_recorded"],
            "duplicates": counts["duplicates"],
            "test_requests": counts["test_requests"],
            "test_events": counts["test_events"],
            "faults_injected": counts["faults_injected"],
            "events_stored": len(self.records),
            "events_evicted": counts["events_evicted"],
            "dedup_keys": len(self.dedup),
            "settings": {
                "calls_per_minute": self.settings.calls_per_minute,
                "partial_failure": self.settings.partial_failure,
                "unknown_event_names": self.settings.unknown_event_names,
                "max_age_days": self.settings.max_age_days,
                "accounts": list(self.settings.accounts),
            },
            "faults": self.faults.as_dict(),
            "time": time.time(),
        }
