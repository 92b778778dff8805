"""pinsignal: server-side tracking for the Pinterest API for Conversions.

    from pinsignal import PinSignalMiddleware, identify, track

    app.add_middleware(PinSignalMiddleware)

The public names are imported on first use (PEP 562), so that ``import pinsignal.cli`` or
``pinsignal.errors`` does not pay for Starlette, Redis and the pipeline engine.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from pinsignal.asgi import PinSignalMiddleware
    from pinsignal.collector.sink import MemorySink, Sink
    from pinsignal.config import Config
    from pinsignal.errors import ConfigError, EnvelopeError, PinSignalError, PipelineLoadError, QueueUnavailable
    from pinsignal.tag import TagCall, tag_call
    from pinsignal.tracker import Tracker
    from pinsignal.tracking import TrackResult, event_id_for, identify, script_url, track
    from pinsignal.visitors import remember

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "EnvelopeError",
    "MemorySink",
    "PinSignalError",
    "PinSignalMiddleware",
    "PipelineLoadError",
    "QueueUnavailable",
    "Sink",
    "TagCall",
    "TrackResult",
    "Tracker",
    "event_id_for",
    "identify",
    "remember",
    "script_url",
    "tag_call",
    "track",
]

# public name -> the module that defines it
_HOMES = {
    "Config": "pinsignal.config",
    "ConfigError": "pinsignal.errors",
    "EnvelopeError": "pinsignal.errors",
    "MemorySink": "pinsignal.collector.sink",
    "PinSignalError": "pinsignal.errors",
    "PinSignalMiddleware": "pinsignal.asgi",
    "PipelineLoadError": "pinsignal.errors",
    "QueueUnavailable": "pinsignal.errors",
    "Sink": "pinsignal.collector.sink",
    "TagCall": "pinsignal.tag",
    "TrackResult": "pinsignal.tracking",
    "Tracker": "pinsignal.tracker",
    "event_id_for": "pinsignal.tracking",
    "identify": "pinsignal.tracking",
    "remember": "pinsignal.visitors",
    "script_url": "pinsignal.tracking",
    "tag_call": "pinsignal.tag",
    "track": "pinsignal.tracking",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pinsignal' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once; later reads are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
