"""Faults the sandbox can be told to inject into its events endpoint.

Tests and the demo drive them over HTTP (``POST /_sandbox/faults``)::

    {"status": 503, "count": 2, "retry_after": 1}     # the next 2 calls answer 503 with Retry-After: 1
    {"delay": 3.0}                                     # every answer waits 3 s (until cleared)
    {"delay": 3.0, "delay_count": 1}                   # only the next answer waits
    {"calls_per_minute": 10}                           # a tighter rate limit

Status faults queue up in order: ``{"status": 500, "count": 1}`` then ``{"status": 429, "count": 1}``
makes the next call 500 and the one after 429. A faulted call is answered before authentication
and validation, and records nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["Delay", "FaultError", "FaultPlan", "StatusFault", "error_body"]

# Pinterest's own bodies (reference 8.2; SPEC examples)
_ERROR_MESSAGES: dict[int, tuple[int, str]] = {
    400: (4196, "The request was invalid."),
    401: (2, "Authentication failed."),
    403: (29, "You are not permitted to access that resource."),
    404: (2, "AdAccount not found."),
    429: (8, "This request exceeded a rate limit. This can happen if the client exceeds one\n"
              "of the published rate limits within a short time window."),
    503: (4197, "The endpoint has been ramped down and is currently not accepting any traffic."),
}


def error_body(status: int) -> dict[str, Any]:
    """Pinterest's ``Error`` body for ``status``; other 5xx get a generic one (the spec's ``default``)."""
    if status in _ERROR_MESSAGES:
        code, message = _ERROR_MESSAGES[status]
        return {"code": code, "message": message}
    if status >= 500:
        return {"code": status, "message": "Internal server error; please retry later."}
    return {"code": status, "message": f"The request failed with HTTP {status}."}


class FaultError(ValueError):
    """A fault request is malformed; the message says which field and value."""


@dataclass
class StatusFault:
    """Answer ``status`` for the next ``remaining`` calls."""

    status: int
    remaining: int
    retry_after: float | None = None
    ratelimit_reset: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "remaining": self.remaining, "retry_after": self.retry_after,
                "ratelimit_reset": self.ratelimit_reset}


@dataclass
class Delay:
    """Wait ``seconds`` before each answer; ``remaining`` None means until cleared."""

    seconds: float
    remaining: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "remaining": self.remaining}


class FaultPlan:
    """The queued status faults and the current delay. Not thread-safe: used on the event loop."""

    def __init__(self) -> None:
        self.statuses: deque[StatusFault] = deque()
        self.delay: Delay | None = None

    def clear(self) -> None:
        self.statuses.clear()
        self.delay = None

    def add(self, spec: dict[str, Any]) -> int | None:
        """Queue what ``spec`` asks for; returns a new calls-per-minute limit if it sets one.

        Raises :class:`FaultError` for an unknown key or a bad value, before changing anything.
        """
        known = {"status", "count", "retry_after", "ratelimit_reset", "delay", "delay_count", "calls_per_minute"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise FaultError(f"unknown fault field {unknown[0]!r}; use one of {', '.join(sorted(known))}.")
        status_fault = None
        if spec.get("status") is not None:
            status = _number(spec, "status", int, 100, 599)
            if 200 <= status < 300:
                raise FaultError(f"fault status must be an error status (4xx or 5xx), got {status}.")
            status_fault = StatusFault(
                status=status,
                remaining=_number(spec, "count", int, 1, 1_000_000, default=1),
                retry_after=_optional(spec, "retry_after", float, 0, 86_400),
                ratelimit_reset=_optional(spec, "ratelimit_reset", int, 0, 86_400),
            )
        elif any(spec.get(key) is not None for key in ("count", "retry_after", "ratelimit_reset")):
            raise FaultError("'count', 'retry_after' and 'ratelimit_reset' need a 'status' to apply to.")
        delay = None
        if spec.get("delay") is not None:
            delay = Delay(_number(spec, "delay", float, 0, 3600),
                          _optional(spec, "delay_count", int, 1, 1_000_000))
        calls: int | None = _optional(spec, "calls_per_minute", int, 1, 10**9)
        if status_fault is not None:
            self.statuses.append(status_fault)
        if delay is not None:
            self.delay = delay
        return calls

    def next_status(self) -> StatusFault | None:
        """The status fault for this call, if any (consumes one of its calls)."""
        if not self.statuses:
            return None
        fault = self.statuses[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.statuses.popleft()
        return fault

    def next_delay(self) -> float:
        """Seconds to wait before this call's answer (consumes one delayed call)."""
        delay = self.delay
        if delay is None:
            return 0.0
        if delay.remaining is not None:
            delay.remaining -= 1
            if delay.remaining <= 0:
                self.delay = None
        return delay.seconds

    def as_dict(self) -> dict[str, Any]:
        return {"statuses": [fault.as_dict() for fault in self.statuses],
                "delay": self.delay.as_dict() if self.delay else None}


def _number(spec: dict[str, Any], key: str, kind: type[Any], low: float, high: float,
            default: Any = None) -> Any:
    value = spec.get(key, default)
    # bool is an int in Python; true/false is never a valid count or status
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise FaultError(f"fault field {key!r} must be a {'whole ' if kind is int else ''}number, got {value!r}.")
    if not low <= value <= high:
        raise FaultError(f"fault field {key!r} must be between {low:g} and {high:g}, got {value!r}.")
    return kind(value)


def _optional(spec: dict[str, Any], key: str, kind: type[Any], low: float, high: float) -> Any:
    if spec.get(key) is None:
        return None
    return _number(spec, key, kind, low, high)
