"""Segment's HTTP Tracking API on ``/v1/*``, as Segment's and RudderStack's clients really use it.

* ``v1/t`` ``v1/track``, ``v1/p`` ``v1/page``, ``v1/i`` ``v1/identify``: one event, at most 32 KiB;
* ``v1/s`` ``v1/screen``, ``v1/g`` ``v1/group``, ``v1/a`` ``v1/alias``: one event, acknowledged and
  not sent (Pinterest has no use for it);
* ``v1/b``, ``v1/batch``, ``v1/import``: ``{"batch": [...], "context": ..., "sentAt": ...}``, at
  most 500 KiB, 32 KiB per event and 1000 events.

Success is ``200 {"success": true}``: what analytics.js, analytics-node, analytics-python and
rudder-sdk-python all take as delivered (rudder-sdk-python takes nothing else). An event the
pipelines refuse does not fail the request (Segment's API does not say per event either): it is
refused with its reason in the trace and the counters, like every refusal. A request refused as a
whole gets ``{"success": false, "code": ..., "message": "one sentence"}``: ``400`` (JSON, encoding),
``401`` (a wrong write key), ``403`` (cross-site), ``413`` (a limit, a compression bomb), ``415``,
``503`` (the queue, with ``Retry-After``).

Bodies may be ``gzip`` or ``deflate`` encoded (rudder-sdk-python gzips by default); the limits hold
on the inflated size (:mod:`pinsignal.collector.bodies`). A write key (HTTP Basic user name, or
``writeKey`` in a body no browser sent) makes the request a server source (:mod:`pinsignal.sources`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Receive, Send

from pinsignal.errors import QueueUnavailable
from pinsignal.sources import Source, WriteKeys, basic_user

from .bodies import BodyRefused, decode_json, read_body, shown, with_batch_defaults

if TYPE_CHECKING:
    from .intake import Intake, VisitorRequest

__all__ = ["MAX_BATCH_BODY", "MAX_EVENT_BODY", "MAX_SEGMENT_EVENTS", "ROUTES", "SegmentAPI", "SegmentRefusal"]

logger = logging.getLogger("pinsignal.collector")

MAX_EVENT_BODY = 32 * 1024
"""Segment's limit per event (and per single-event request), decompressed."""
MAX_BATCH_BODY = 500 * 1024
"""Segment's limit per batch request, decompressed."""
MAX_SEGMENT_EVENTS = 1000
"""Events per batch request (Segment's libraries send at most 100; 500 KiB of small events would be thousands)."""

# route -> (the type its event has when it does not say, is it a batch route)
ROUTES: dict[str, tuple[str | None, bool]] = {
    "/v1/t": ("track", False), "/v1/track": ("track", False),
    "/v1/p": ("page", False), "/v1/page": ("page", False),
    "/v1/i": ("identify", False), "/v1/identify": ("identify", False),
    "/v1/s": ("screen", False), "/v1/screen": ("screen", False),
    "/v1/g": ("group", False), "/v1/group": ("group", False),
    "/v1/a": ("alias", False), "/v1/alias": ("alias", False),
    "/v1/b": (None, True), "/v1/batch": (None, True), "/v1/import": (None, True),
}
# Segment calls with no Pinterest meaning: acknowledged like Segment does, never sent.
_IGNORED_TYPES = frozenset({"screen", "group", "alias"})
_SUCCESS = orjson.dumps({"success": True})


class SegmentRefusal(Exception):
    """The whole request is refused: ``{"success": false, "code", "message"}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or []


class SegmentAPI:
    """The ``/v1/*`` routes; the collector hands them a request after its method and CORS checks."""

    def __init__(self, intake: Intake, write_keys: WriteKeys) -> None:
        self._intake = intake
        self._keys = write_keys

    def authenticate(self, visitor: VisitorRequest, body_key: object = None) -> str | None:
        """The write key's name for a server source, ``None`` for an anonymous (browser) post.

        A key is looked for in HTTP Basic's user name (checked before the body is read), then in the
        body's ``writeKey``, unless a browser sent the request (``Origin`` or ``Sec-Fetch-Site``):
        analytics.js puts its own, public, key in every body, and as HTTP Basic too when it
        batches; a key a page can read must never make its posts trusted, nor refuse them.
        """
        if visitor.origin is not None or visitor.fetch_site is not None:
            return None
        candidate = basic_user(visitor.authorization)
        if candidate is None and type(body_key) is str:
            candidate = body_key.encode("utf-8", "replace")
        if candidate is None:
            return None
        name = self._keys.check(candidate) if self._keys else None
        if name is None:
            if not self._keys:
                message = ("this request carries a write key, but none is configured; set PINSIGNAL_WRITE_KEYS "
                           "to the server's key (or send no key: the post is then a browser's)")
            else:
                message = "the write key is not one of PINSIGNAL_WRITE_KEYS; nothing was queued"
            raise SegmentRefusal(401, "unauthorized", message, [(b"www-authenticate", b'Basic realm="pinsignal"')])
        return name

    async def __call__(self, path: str, receive: Receive, send: Send, visitor: VisitorRequest,
                       cors: list[tuple[bytes, bytes]]) -> None:
        default_type, batched = ROUTES[path]
        limit = MAX_BATCH_BODY if batched else MAX_EVENT_BODY
        name = None
        if visitor.authorization is not None:  # a wrong key is refused before its body is read
            name = await self._authenticate(visitor, None, cors)
        try:
            body = await read_body(receive, visitor, limit=limit)
            payload = decode_json(body)
        except BodyRefused as refused:
            headers = [*cors, (b"connection", b"close")] if refused.closing else cors
            raise SegmentRefusal(refused.status, refused.code, str(refused), headers) from None
        if type(payload) is not dict:
            raise SegmentRefusal(400, "invalid_request", "the body must be a JSON object (one event, or "
                                 f"{{\"batch\": [...]}} on /v1/batch), got {shown(payload)}", cors)
        if name is None and "writeKey" in payload:
            name = await self._authenticate(visitor, payload["writeKey"], cors)
        source: Source = "browser" if name is None else "server"
        raws = _events(payload, default_type, batched, len(body), cors)
        kept = [raw for raw in raws if not _ignored(raw)]
        if source == "browser" and self._intake.quota is not None:  # per-client quota (issue 18, item 8)
            self._intake.quota.charge(visitor.ip, len(kept))
        await self._intake.open()
        if len(kept) < len(raws):
            await self._intake.sink.incr("ignored_segment_calls", len(raws) - len(kept))
        if kept:
            try:
                outcome = await self._intake.accept(kept, visitor, received_at=time.time(), decoded=True,
                                                    source=source, believe_context=name is not None,
                                                    source_name=name)
            except QueueUnavailable as exc:
                logger.warning("could not queue %d event(s), answering 503: %s", len(kept), exc)
                raise SegmentRefusal(503, "unavailable", "the event queue is unavailable; send the events again "
                                     "later", [*cors, (b"retry-after", b"5")]) from None
            cookies, unknown = outcome.cookies, outcome.unknown_visitor_keys
        else:
            cookies, unknown = [], []
        headers = [*cors, *((b"set-cookie", cookie.encode("latin-1")) for cookie in cookies)]
        # context.visitor_key that pinsignal did not know (or no longer): sent with what the events had
        await answer(send, 200, orjson.dumps({"success": True, "unknown_visitor_keys": unknown}) if unknown
                     else _SUCCESS, headers)

    async def _authenticate(self, visitor: VisitorRequest, body_key: object,
                                cors: list[tuple[bytes, bytes]]) -> str | None:
            try:
                return self.authenticate(visitor, body_key)
            except SegmentRefusal as refusal:
                refusal.headers = [*cors, *refusal.headers]
                await self._intake.open()
                seen = self._intake.observer.request(None, "server")
                seen.refused(None, None, "write_key", str(refusal))
                seen.flush()
                await self._intake.sink.incr("refused_write_key")
                raise


def _events(payload: dict[str, Any], default_type: str | None, batched: bool, size: int,
            cors: list[tuple[bytes, bytes]]) -> list[object]:
    """The raw events of a body, each with its route's type and the batch's ``context`` and ``sentAt``."""
    if not batched:
        events: list[object] = [payload]
        shared: dict[str, Any] = {}
    else:
        batch = payload.get("batch")
        if type(batch) is not list:
            raise SegmentRefusal(400, "invalid_request",
                                 f"a batch body is {{\"batch\": [events]}}; batch is {shown(batch)}", cors)
        if len(batch) > MAX_SEGMENT_EVENTS:
            raise SegmentRefusal(400, "invalid_request",  # as /_ps/e answers a batch past its count
                                 f"at most {MAX_SEGMENT_EVENTS} events per batch, got {len(batch)}", cors)
        if size > MAX_EVENT_BODY:  # a smaller body cannot hold an event over the limit
            for index, event in enumerate(batch):
                event_size = _size(event)
                if event_size > MAX_EVENT_BODY:
                    raise SegmentRefusal(413, "payload_too_large",
                                         f"event {index} of the batch is {event_size} bytes; Segment's limit is "
                                         f"{MAX_EVENT_BODY} bytes per event", cors)
        events = batch
        shared = {key: payload[key] for key in ("sentAt", "sent_at", "context") if key in payload}
    if not shared and default_type is None:
        return events
    return [with_batch_defaults(raw, shared, default_type) for raw in events]


def _ignored(raw: object) -> bool:
    """A screen, group or alias call (any ``type`` that is not a string is the envelope's to refuse)."""
    if type(raw) is not dict:
        return False
    kind = raw.get("type")
    return type(kind) is str and kind in _IGNORED_TYPES


def _size(event: object) -> int:
    try:
        return len(orjson.dumps(event))
    except TypeError:  # deeper than orjson writes: the envelope refuses it anyway
        return 0


async def answer(send: Send, status: int, data: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode("ascii")),
           (b"cache-control", b"no-store"), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


async def refuse(send: Send, refusal: SegmentRefusal) -> None:
    body = orjson.dumps({"success": False, "code": refusal.code, "message": str(refusal)})
    await answer(send, refusal.status, body, refusal.headers)
