"""The exceptions pinsignal raises.

    PinSignalError
    ├── ConfigError            a setting is missing or malformed (one sentence, names the variable)
    ├── EnvelopeError          an incoming event is malformed (``reasons`` lists every problem)
    ├── PipelineLoadError      pipeline files are invalid (``errors`` are ``file:line: message``)
    └── QueueUnavailable       Redis could not take or give events; nothing was accepted, try again

Trouble reaching Pinterest is never raised: the worker retries it, pauses the account or
dead-letters the events (``pinsignal.retry.RetryPolicy``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ConfigError", "EnvelopeError", "PinSignalError", "PipelineLoadError", "QueueUnavailable"]


class PinSignalError(Exception):
    """Base class of every error pinsignal raises on purpose."""


class ConfigError(PinSignalError, ValueError):
    """A configuration value is missing or malformed; the message is one sentence naming it."""


class EnvelopeError(PinSignalError, ValueError):
    """An incoming event cannot be accepted; ``reasons`` holds one line per problem."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


class PipelineLoadError(PinSignalError, ValueError):
    """One or more pipeline files are invalid; ``errors`` are ``file:line: message`` lines."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class QueueUnavailable(PinSignalError):
    """Redis could not be reached, or refused the command (out of memory, read-only, loading).

    Nothing was accepted: answer so that the sender tries again (the collector answers ``503``
    with ``Retry-After``). The Redis error is the ``__cause__``.

        try:
            await queue.enqueue(events)
        except QueueUnavailable:
            ...  # answer 503; the sender's retry carries the same event ids and is deduplicated
    """
