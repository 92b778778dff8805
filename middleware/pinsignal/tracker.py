"""``Tracker``: server events from anywhere, with the visitor's context restored by key (DESIGN 8.2).

    from pinsignal import Tracker

    async with Tracker() as tracker:                 # settings from the environment, like the middleware
        result = await tracker.track("order_completed", visitor_key=session_id,
                                     properties={"order_id": "o-1001", "revenue": 72.39, "currency": "USD"},
                                     traits={"email": customer_email}, timestamp=order.created_at)
        result.queued, result.event_id, result.visitor_known

A payment webhook, an arq or Celery job, a script: none of them is the shopper's request, so their
IP address, user agent and cookies are not the shopper's either. ``visitor_key`` restores what
:func:`~pinsignal.visitors.remember` kept (click id, hashed match keys, IP, user agent, page URL,
device id, consent and LDP verdicts); ``track(request, ..., visitor_key=key)`` does the same
inside a web request. A key that is unknown or expired still sends the event with what the call
has (``result.visitor_known`` is ``False``, and ``pinsignal_visitor_keys_total{found="false"}``
counts it). The event id comes from the order id (``order_id``, ``checkout_id``...), the event time
from ``timestamp`` (an aware ``datetime``, epoch seconds or ISO-8601; default now).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pinsignal.config import Config

if TYPE_CHECKING:
    from pinsignal.collector import Intake, Sink
    from pinsignal.pipeline import Engine
    from pinsignal.tracking import TrackResult
    from pinsignal.visitors import VisitorContext, Visitors

__all__ = ["Tracker", "track_for_visitor"]

# The reason sentences of a remembered verdict (the collector's, for the same refusals).
_CONSENT_REASONS = {
    "gpc": "the visitor's browser sent Sec-GPC: 1 (Global Privacy Control) when remembered; nothing is sent",
    "refused": "the visitor had refused advertising consent when remembered; nothing is sent",
    "not_given": "consent mode is opt-in and the visitor had not given consent when remembered; nothing is sent",
}


class Tracker:
    """Sends server events through the pipelines and the queue, outside any web request.

    ``config`` defaults to ``Config.from_env()`` (``PINSIGNAL_SECRET`` must be the web process's,
    which keys the remembered visitors). ``sink``, ``engine`` and ``visitors`` replace the Redis
    queue, the pipeline engine and the visitor store (tests, embedding). Close it with
    :meth:`close` or use it as ``async with``.
    """

    def __init__(self, config: Config | None = None, *, sink: Sink | None = None, engine: Engine | None = None,
                 visitors: Visitors | None = None) -> None:
        from pinsignal.collector import Intake, QueueSink

        self.config = config if config is not None else Config.from_env()
        self.intake: Intake = Intake(self.config, sink=sink if sink is not None else QueueSink(self.config),
                                     engine=engine)
        if visitors is not None:
            self.intake.visitors = visitors

    async def track(self, event: str, *, visitor_key: str | None = None,
                    properties: Mapping[str, Any] | None = None, traits: Mapping[str, Any] | None = None,
                    user_id: str | None = None, message_id: str | None = None, timestamp: object = None,
                    ldp: bool | None = None) -> TrackResult:
        """Send one server event; see the module's documentation. Raises only
        :class:`~pinsignal.errors.QueueUnavailable` (retry with the same order id or ``message_id``)."""
        await self.intake.open()
        return await track_for_visitor(self.intake, event, visitor_key=visitor_key, properties=properties,
                                       traits=traits, user_id=user_id, message_id=message_id, timestamp=timestamp,
                                       ldp=ldp)

    async def close(self) -> None:
        """Wait for queued round trips and close the connections."""
        await self.intake.close()

    async def __aenter__(self) -> Tracker:
        await self.intake.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def event_timestamp(value: object) -> object:
    """What the envelope takes for ``timestamp``: an aware ``datetime`` as ISO-8601 (naive is UTC)."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def track_for_visitor(intake: Intake, event: str, *, visitor_key: str | None,
                            properties: Mapping[str, Any] | None, traits: Mapping[str, Any] | None,
                            user_id: str | None, message_id: str | None, timestamp: object,
                            ldp: bool | None) -> TrackResult:
    """A server event for the visitor remembered under ``visitor_key`` (or for no visitor at all).

    The request this runs in (if any) is not the visitor's: its address, user agent and cookies are
    never used, and no cookie is set.
    """
    from pinsignal.collector.intake import VisitorRequest
    from pinsignal.tracking import TrackResult, event_id_for
    from pinsignal.visitors import lend_identity

    context: VisitorContext | None = None
    known: bool | None = None
    if visitor_key is not None:
        context = await intake.visitors.get(visitor_key)  # counted by the store
        known = context is not None
    if message_id is None:
        message_id = event_id_for(event, properties, user_id=user_id,
                                  device_id=context.device_id if context is not None else None)
    result = TrackResult(event_id=message_id, visitor_known=known)
    if context is not None and context.consent != "granted":
        result.reasons.append(_CONSENT_REASONS.get(context.consent, _CONSENT_REASONS["refused"]))
        await intake.sink.incr("dropped_consent")
        return result
    raw: dict[str, Any] = {"type": "track", "event": event, "message_id": message_id,
                           "properties": dict(properties or {}), "traits": dict(traits or {})}
    # The site calls this for its own server events: the visitor's remembered consent, else the site's word.
    event_context: dict[str, Any] = {"consent": {"advertising": True}}
    if timestamp is not None:
        raw["timestamp"] = event_timestamp(timestamp)
    visitor = VisitorRequest(ip=None, scheme="https")
    if context is not None:
        visitor.ip, visitor.user_agent, visitor.epik = context.ip, context.user_agent, context.click_id
        if context.page_url:
            event_context["page"] = {"url": context.page_url}
    if user_id is not None:
        raw["user_id"] = user_id
    if context is not None:
        lend_identity(raw, context)
    if ldp or (context is not None and context.ldp):
        event_context["limited_data_processing"] = True
    raw["context"] = event_context
    outcome = await intake.accept([raw], visitor, received_at=time.time(), source="server")
    result.events = outcome.events
    result.duplicate = bool(outcome.duplicates) and not outcome.queued
    result.queued = bool(outcome.queued)
    for rejection in outcome.rejected:
        result.reasons.extend(rejection["reasons"])
    return result
