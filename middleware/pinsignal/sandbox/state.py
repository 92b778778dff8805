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
from dataclasses import dataclass
from typing import Any, NamedTuple

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
        self.dedup_checks = 0
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

    def is_duplicate(self, account: str, event_name: str, event_id: str, now: float) -> bool:
        """Whether this key was seen within the dedup window; the first one seen wins."""
        dedup = self.dedup
        horizon = now - self.settings.dedup_hours * 3600.0
        self.dedup_checks += 1
        # expiry is checked now and then (lookups compare times anyway); the size cap always
        if len(dedup) >= self.settings.max_dedup_keys or not self.dedup_checks & 1023:
            while dedup:
                oldest = next(iter(dedup))
                if dedup[oldest] >= horizon and len(dedup) < self.settings.max_dedup_keys:
                    break
                del dedup[oldest]
        key = hash((account, event_name, event_id))
        seen = dedup.get(key)
        if seen is not None:
            if seen >= horizon:
                return True
            del dedup[key]  # re-inserted below, at the end, to keep the oldest-first order
        dedup[key] = now
        return False

    def record(self, account: str, now: float, request_id: str, duplicate: bool, event: bytes) -> None:
        self.seq += 1
        if len(self.records) == self.records.maxlen:
            self.counts["events_evicted"] += 1
        self.records.append(Record(self.seq, account, now, request_id, duplicate, event))

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
