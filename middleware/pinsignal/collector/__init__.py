"""The collector mounted on the site's own origin: browser script, event intake, Segment routes.

See :mod:`pinsignal.collector.routes` for the routes and their answers.
"""

from __future__ import annotations

from .intake import Intake, IntakeResult, VisitorRequest
from .routes import MAX_BODY, MAX_EVENTS, Collector
from .script import Companion, Script
from .sink import MemorySink, QueueSink, Sink

__all__ = ["MAX_BODY", "MAX_EVENTS", "Collector", "Companion", "Intake", "IntakeResult", "MemorySink", "QueueSink",
           "Script", "Sink", "VisitorRequest"]
