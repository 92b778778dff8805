"""The exceptions pinsignal raises.

    PinSignalError
    ├── ConfigError            a setting is missing or malformed (one sentence, names the variable)
    ├── EnvelopeError          an incoming event is malformed (``reasons`` lists every problem)
    ├── PipelineLoadError      pipeline files are invalid (``errors`` are ``file:line: message``)
    └── DeliveryError          the worker could not reach Pinterest (internal; retried)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ConfigError", "DeliveryError", "EnvelopeError", "PinSignalError", "PipelineLoadError"]


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


class DeliveryError(PinSignalError):
    """A delivery attempt failed in a way that may succeed later."""
