"""Server-side events and identity, from the app's own request handlers (DESIGN 2.1).

    from pinsignal import identify, track

    @app.post("/orders")
    async def create_order(request: Request):
        order = ...
        identify(request, user_id=user.id, traits={"email": user.email})
        await track(request, "order_completed", properties={"order_id": order.id, "revenue": order.total,
                                                             "currency": "USD"})

Both need :class:`~pinsignal.asgi.PinSignalMiddleware` around the app; they find it through the
request's scope. Server events go through the same pipelines, consent and crawler checks as
browser events, enriched from the request (IP, user agent, cookies, page URL).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import HTTPConnection

from pinsignal.asgi import RequestHook
from pinsignal.collector.intake import identity_keys
from pinsignal.cookies import DEVICE_COOKIE, IDENTITY_COOKIE
from pinsignal.errors import QueueUnavailable

__all__ = ["UNQUEUED", "TrackResult", "event_id_for", "identify", "script_url", "track"]

logger = logging.getLogger("pinsignal.tracking")

# Properties that name one business event: the same value means the same conversion.
_STABLE_KEYS = ("order_id", "orderId", "checkout_id", "checkoutId", "transaction_id", "transactionId",
                "lead_id", "leadId", "signup_id", "subscription_id")


@dataclass
class TrackResult:
    """What ``track()`` did: the ``event_id`` Pinterest dedups on, and whether anything was queued.

    ``skipped`` names why nothing went out (a reason sentence); ``duplicate`` means the same
    event id was already queued (a retry). ``events`` are the Pinterest events the pipelines made
    (match keys hashed): :func:`pinsignal.tag.tag_call` renders the Pinterest Tag's call for them.
    ``visitor_known`` is ``None`` without a ``visitor_key``, ``False`` when the key was unknown or
    expired (the event went out with what the call had).
    """

    event_id: str
    queued: bool = False
    duplicate: bool = False
    reasons: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    visitor_known: bool | None = None

    @property
    def skipped(self) -> bool:
        return not self.queued and not self.duplicate


def _hook(request: HTTPConnection) -> RequestHook:
    hook = RequestHook.of(request.scope)
    if hook is None:
        raise RuntimeError(
            "pinsignal found no PinSignalMiddleware around this app; add it with "
            "app.add_middleware(PinSignalMiddleware) before calling track() or identify()."
        )
    return hook


def event_id_for(event: str, properties: Mapping[str, Any] | None = None, *, user_id: object = None,
                 device_id: str | None = None) -> str:
    """A deterministic event id from stable inputs, so a retried business event is deduplicated.

    An order id (``order_id``, ``checkout_id``, ``transaction_id``...) alone names the event.
    Without one, the id covers the event name, the user, the device and the properties: the same
    call repeated is one event; pass ``message_id`` when the same content can really happen twice.
    """
    for key in _STABLE_KEYS:
        value = (properties or {}).get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            basis = f"{event}\x1forder\x1f{value}".encode()
            break
    else:
        content = orjson.dumps(dict(properties or {}), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                               default=str)
        basis = f"{event}\x1f{user_id or ''}\x1f{device_id or ''}\x1f".encode() + content
    return "ev-" + hashlib.sha256(basis).hexdigest()[:32]


async def track(request: HTTPConnection, event: str, *, properties: Mapping[str, Any] | None = None,
                traits: Mapping[str, Any] | None = None, user_id: str | None = None,
                message_id: str | None = None, visitor_key: str | None = None, timestamp: object = None,
                ldp: bool | None = None) -> TrackResult:
    """Send a server-side event through the pipelines, enriched from ``request``.

    ``visitor_key``: the request is not the visitor's (a payment webhook); the visitor's context
    comes from what :func:`~pinsignal.visitors.remember` kept under the key, never from ``request``
    (see :class:`~pinsignal.tracker.Tracker`). ``timestamp`` is when the event happened (an order's
    time; default now); ``ldp=True`` flags it for Limited Data Processing.

    ``event_id`` is ``message_id`` when given, else derived by :func:`event_id_for`. Raw traits
    are hashed by the pipelines before anything is queued.

    When Redis cannot take the event (unreachable, or refusing writes: ``OOM command not allowed``
    under ``maxmemory-policy noeviction``), ``track()`` does not break the app's own request: it
    returns ``queued=False`` with the reason, logs a warning and counts it in :data:`UNQUEUED`.
    With ``PINSIGNAL_TRACK_RAISES=true`` (``Config(track_raises=True)``) it raises
    :class:`~pinsignal.errors.QueueUnavailable` instead; either way nothing was accepted, and a
    retry with the same ``message_id`` is deduplicated.

        result = await track(request, "order_completed", properties={"order_id": "o-1", "revenue": 72.39})
        result.event_id, result.queued
    """
    hook = _hook(request)
    intake = hook.intake
    if visitor_key is not None:
        from pinsignal.tracker import track_for_visitor

        await intake.open()
        try:
            return await track_for_visitor(intake, event, visitor_key=visitor_key, properties=properties,
                                           traits=traits, user_id=user_id, message_id=message_id,
                                           timestamp=timestamp, ldp=ldp)
        except QueueUnavailable as exc:
            if intake.config.track_raises:
                raise
            # Without the visitor's context (Redis could not give it) the id has no device id in it;
            # an order id, the usual case of a webhook, names the event the same either way.
            return _unqueued(event, message_id or event_id_for(event, properties, user_id=user_id), exc)
    visitor = hook.visitor()
    if message_id is None:
        device_id, _ = intake.devices.read(visitor.cookies.get(DEVICE_COOKIE))
        message_id = event_id_for(event, properties, user_id=user_id, device_id=device_id)
    raw: dict[str, Any] = {"type": "track", "event": event, "message_id": message_id,
                           "properties": dict(properties or {}), "traits": dict(traits or {})}
    if user_id is not None:
        raw["user_id"] = user_id
    if visitor.referer is None:
        raw["context"] = {"page": {"url": str(request.url)}}
    if timestamp is not None:
        from pinsignal.tracker import event_timestamp

        raw["timestamp"] = event_timestamp(timestamp)
    if ldp:
        raw["context"] = {**raw.get("context", {}), "limited_data_processing": True}
    await intake.open()
    try:
        outcome = await intake.accept([raw], visitor, received_at=time.time(), source="server")
    except QueueUnavailable as exc:
        if intake.config.track_raises:
            raise
        return _unqueued(event, message_id, exc)
    hook.set_cookies(outcome.cookies)
    result = TrackResult(event_id=message_id, events=outcome.events)
    result.duplicate = bool(outcome.duplicates) and not outcome.queued
    result.queued = bool(outcome.queued)
    for rejection in outcome.rejected:
        result.reasons.extend(rejection["reasons"])
    if result.reasons:
        logger.warning("server event %r (%s) not sent: %s", event, message_id, "; ".join(result.reasons))
    return result


# track() calls that queued nothing because Redis failed, in this process, by cause. Redis is what
# failed, so the shared counters of ``pinsignal status`` cannot hold them: the log and this do.
UNQUEUED: Counter[str] = Counter()


def _unqueued(event: str, message_id: str, exc: QueueUnavailable) -> TrackResult:
    UNQUEUED["queue_unavailable"] += 1
    logger.warning("server event %r (%s) not queued, the app's request goes on (%d so far in this process): %s",
                   event, message_id, UNQUEUED["queue_unavailable"], exc)
    return TrackResult(event_id=message_id, reasons=[f"not queued: {exc}"])


def identify(request: HTTPConnection, user_id: str | None = None, traits: Mapping[str, Any] | None = None) -> bool:
    """Remember the visitor's hashed match keys in the signed ``_psu`` cookie of the current response.

    Only SHA-256 hashes go into the cookie (email, phone, names, city, state, zip, country,
    gender, birthday, and ``user_id`` as the external id); later events from this browser carry
    them. Returns ``False`` (and sets nothing) without consent or once the response has started.

        identify(request, user_id="u-42", traits={"email": "jane@example.com"})
    """
    hook = _hook(request)
    visitor = hook.visitor()
    intake = hook.intake
    if intake.consent.verdict(gpc=visitor.gpc, cookies=visitor.cookies) != "granted":
        return False
    if hook.started:
        logger.warning("identify() was called after the response started; the identity cookie is not set")
        return False
    hashed = identity_keys(user_id, traits, default_country=intake.config.default_country)
    if not hashed:
        return False
    merged = {**intake.identity.loads(visitor.cookies.get(IDENTITY_COOKIE)), **hashed}
    signed = intake.identity.dumps(merged)
    # Events tracked later in this same request already carry the new keys.
    visitor.cookies[IDENTITY_COOKIE] = signed
    return hook.set_cookies([intake.cookies.identity(signed, secure=visitor.secure, host=visitor.host)])


def script_url(request: HTTPConnection) -> str:
    """The versioned URL of the browser collector script (``/_ps/c.js?v=...``) for page templates."""
    hook = _hook(request)
    return hook.owner.script_url
