"""What incoming events produce, with no Redis and no request: the rules of ``pinsignal pipelines preview``.

    engine = Engine(load_pipelines(paths))
    events = read_events(Path("order.json").read_bytes(), name="order.json")
    for produced in preview(engine, events, name="order.json"):
        print(produced.pipeline, produced.valid, produced.errors)

A file holds one incoming event, a list of them, or ``{"batch": [...]}``. Each event is replayed as
received when it says it was sent (``sent_at``, else its timestamp), so clock-skew correction does
not move it. ``now`` is the moment validation treats as the present: ``"event"`` (the event's own
time, so an example written months ago still previews as valid), ``"clock"`` (the real clock, which
shows events that are too old) or a moment in epoch seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import orjson

from pinsignal.errors import EnvelopeError, PinSignalError
from pinsignal.events import parse_envelope, parse_time
from pinsignal.pipeline.engine import Engine
from pinsignal.pipeline.produced import Produced, RequestContext

__all__ = ["PreviewError", "preview", "read_events"]

_SENT_KEYS = ("sent_at", "sentAt", "timestamp", "original_timestamp", "originalTimestamp")


class PreviewError(PinSignalError, ValueError):
    """The events cannot be previewed; the message is one line that starts with where (``file[index]: ...``)."""


def read_events(raw: bytes, *, name: str) -> list[object]:
    """The incoming events in ``raw`` (JSON), unchecked; :class:`PreviewError` when there are none."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PreviewError(f"{name}: not valid JSON: {exc}") from None
    if isinstance(document, dict) and isinstance(document.get("batch"), list):
        document = document["batch"]
    events = document if isinstance(document, list) else [document]
    if not events:
        raise PreviewError(f"{name}: no events in the file")
    return events


def preview(engine: Engine, events: Sequence[object], request: RequestContext | None = None, *,
            now: Literal["event", "clock"] | float = "event", name: str = "events",
            source: Literal["browser", "server"] = "browser") -> list[Produced]:
    """Every Pinterest event that ``events`` produce, in order, each with its validation errors.

    ``source`` is who sent them, as the collector would set it (``trigger.source`` pipelines refuse
    the others: ``Produced.refused``).

    Raises :class:`PreviewError` for an event that is not a valid incoming event, naming it
    (``name``, or ``name[index]`` when there are several).
    """
    produced: list[Produced] = []
    for index, raw in enumerate(events):
        try:
            envelope = parse_envelope(raw, received_at=_sent_at(raw))
        except EnvelopeError as exc:
            where = name if len(events) == 1 else f"{name}[{index}]"
            raise PreviewError(f"{where}: not a valid event: {'; '.join(exc.reasons)}") from None
        envelope["source"] = source
        if now == "event":
            moment = parse_time(envelope["timestamp"])
        else:
            moment = time.time() if now == "clock" else now
        produced += engine.process(envelope, request, now=moment)
    return produced


def _sent_at(raw: object) -> float:
    """When the event says it was sent (or happened), else the clock."""
    if isinstance(raw, dict):
        for key in _SENT_KEYS:
            moment = parse_time(raw.get(key))
            if moment is not None:
                return moment
    return time.time()
