"""pinsignal: server-side tracking for the Pinterest API for Conversions.

    from pinsignal import PinSignalMiddleware, identify, track

    app.add_middleware(PinSignalMiddleware)
"""

from __future__ import annotations

from pinsignal.asgi import PinSignalMiddleware
from pinsignal.collector.sink import MemorySink, Sink
from pinsignal.config import Config
from pinsignal.errors import ConfigError, DeliveryError, EnvelopeError, PinSignalError, PipelineLoadError
from pinsignal.tracking import TrackResult, event_id_for, identify, script_url, track

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "DeliveryError",
    "EnvelopeError",
    "MemorySink",
    "PinSignalError",
    "PinSignalMiddleware",
    "PipelineLoadError",
    "Sink",
    "TrackResult",
    "event_id_for",
    "identify",
    "script_url",
    "track",
]
