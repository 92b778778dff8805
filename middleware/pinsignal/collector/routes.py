"""The collector's HTTP routes, mounted under ``config.collector_prefix`` (default ``/_ps``).

| route | |
|---|---|
| ``GET c.js`` | the browser script (:mod:`pinsignal.collector.script`) |
| ``GET t.js`` | the Tag companion, loaded by ``c.js`` only with ``data-tag`` (:mod:`pinsignal.collector.companion`) |
| ``POST e`` | one event or ``{"batch": [...], "sent_at": ...}`` from the browser script |
| ``POST v1/*`` | Segment's HTTP Tracking API, answered as Segment does (:mod:`pinsignal.collector.segment`) |
| ``POST consent`` | ``{"advertising": true|false, "ldp": true|false, "epik": "..."}`` from ``pinsignal.consent()`` |
| ``POST remember`` | ``{"key": "..."}`` from ``pinsignal.remember(key)`` (:mod:`pinsignal.visitors`) |
| ``GET health`` | ``{"status": "ok"}`` for the web process's health check |

``POST e`` answers ``202`` with ``{"accepted": [message ids], "rejected": [{"index": i, "id": ...,
"reasons": [...]}]}`` (an event whose id is in ``accepted`` was queued, or matched no pipeline, or
was a duplicate of one already queued). Refusals of the whole request: ``413`` when the body is over
64 KiB (by ``Content-Length`` or counted while reading), ``400`` for malformed JSON, a non-object
body or more than 100 events, ``403`` for a cross-site post from an origin not in
``PINSIGNAL_ALLOWED_ORIGINS``, ``405`` for a wrong method, ``415`` for a body that is neither
``application/json`` nor ``text/plain``, ``429`` with ``Retry-After`` past the client address's
quota (:mod:`pinsignal.collector.quota`; every POST route), ``503`` when the queue cannot be
reached. Each error body is ``{"error": "one sentence"}`` (``/v1/*``'s are Segment's:
``{"success": false, "code", "message"}``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from pinsignal.config import Config
from pinsignal.cookies import DEVICE_COOKIE, EPIK_COOKIE, IDENTITY_COOKIE, valid_epik
from pinsignal.errors import QueueUnavailable
from pinsignal.ldp import consent_cookies
from pinsignal.sources import WriteKeys
from pinsignal.visitors import remember_post

from .bodies import shown, with_batch_defaults
from .intake import Intake, VisitorRequest
from .quota import ClientQuota
from .script import Companion, Script
from .segment import ROUTES as SEGMENT_ROUTES, SegmentAPI, SegmentRefusal, refuse

__all__ = ["MAX_BODY", "MAX_EVENTS", "Collector"]

logger = logging.getLogger("pinsignal.collector")

MAX_BODY = 64 * 1024  # what a browser lets keepalive/sendBeacon requests carry in flight anyway
MAX_EVENTS = 100
_JSON_TYPES = (b"application/json", b"text/plain")
_EVENT_ROUTES: dict[str, str | None] = {"/e": None}


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


class _Disconnected(Exception):
    pass


class Collector:
    """The ASGI app behind the collector prefix (called by the middleware, never mounted alone)."""

    def __init__(self, config: Config, intake: Intake, script: Script, companion: Companion | None = None) -> None:
        self._prefix_length = len(config.collector_prefix)
        self._intake = intake
        self._script = script
        self._companion = companion
        self._allowed_origins = frozenset(origin.lower() for origin in config.allowed_origins)
        self._quota = intake.quota
        self._segment = SegmentAPI(intake, WriteKeys.parse(config.write_keys))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][self._prefix_length:]
        method = scope["method"]
        if method == "POST" and self._quota is not None:
            wait = self._over_quota(scope, path)
            if wait:  # before the body is read: a flood costs as little as it can
                after = ClientQuota.retry_after(wait)
                message = f"too many posts from this address; try again in {after.decode()} s"
                if path in SEGMENT_ROUTES:
                    await refuse(send, SegmentRefusal(429, "too_many_requests", message, [(b"retry-after", after)]))
                else:
                    await _json(send, 429, {"error": message}, [(b"retry-after", after)])
                return
        try:
            if path == "/c.js":
                _require(method, b"GET, HEAD")
                await self._script(scope, receive, send)
            elif path == "/t.js" and self._companion is not None:
                _require(method, b"GET, HEAD")
                await self._companion(scope, receive, send)
            elif path == "/health":
                _require(method, b"GET, HEAD")
                await _json(send, 200, {"status": "ok"})
            elif path in SEGMENT_ROUTES:
                await self._segment_route(path, scope, receive, send)
            elif path in _EVENT_ROUTES or path == "/consent" or path == "/remember":
                visitor = self._intake.visitor(scope)
                if method == "OPTIONS":
                    await self._preflight(send, visitor, self._cors_headers(visitor))
                    return
                _require(method, b"POST")
                cors = self._cors_headers(visitor)
                payload = await self._read_json(receive, visitor, cors)
                if path == "/consent":
                    await self._consent(send, payload, visitor, cors)
                elif path == "/remember":
                    await self._remember(send, payload, visitor, cors)
                else:
                    await self._events(send, payload, _EVENT_ROUTES[path], visitor, cors)
            else:
                raise _Refusal(404, f"no collector route {scope['path']!r}")
        except _Refusal as refusal:
            await _json(send, refusal.status, {"error": str(refusal)}, refusal.headers)
        except _Disconnected:
            return

    # ------------------------------------------------------------------ events

    async def _segment_route(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        visitor = self._intake.visitor(scope)
        try:
            if scope["method"] == "OPTIONS":
                await self._preflight(send, visitor, self._segment_cors(visitor))
                return
            if scope["method"] != "POST":
                raise SegmentRefusal(405, "method_not_allowed", f"method {scope['method']} is not allowed here; "
                                     "use POST", [(b"allow", b"POST")])
            await self._segment(path, receive, send, visitor, self._segment_cors(visitor))
        except SegmentRefusal as refusal:
            await refuse(send, refusal)
        except _Refusal as refusal:  # the cross-site check
            await refuse(send, SegmentRefusal(refusal.status, "forbidden", str(refusal), refusal.headers))

    def _segment_cors(self, visitor: VisitorRequest) -> list[tuple[bytes, bytes]]:
        """A server library sends no ``Origin``: only a browser's post is held to the cross-site rule."""
        if visitor.origin is None and visitor.fetch_site is None:
            return []
        return self._cors_headers(visitor)

    async def _events(self, send: Send, payload: object, default_type: str | None, visitor: VisitorRequest,
                      cors: list[tuple[bytes, bytes]]) -> None:
        raws = _unbatch(payload, default_type)
        if self._quota is not None:
            self._quota.charge(visitor.ip, len(raws))
        await self._intake.open()
        try:
            outcome = await self._intake.accept(raws, visitor, received_at=time.time(), decoded=True)
        except QueueUnavailable as exc:
            logger.warning("could not queue %d event(s), answering 503: %s", len(raws), exc)
            raise _Refusal(503, "the event queue is unavailable; send the events again later",
                           [(b"retry-after", b"5")]) from None
        headers = cors + [(b"set-cookie", cookie.encode("latin-1")) for cookie in outcome.cookies]
        await _json(send, 202, outcome.body(), headers)

    async def _consent(self, send: Send, payload: object, visitor: VisitorRequest,
                       cors: list[tuple[bytes, bytes]]) -> None:
        if type(payload) is not dict or type(payload.get("advertising")) is not bool or (
                "ldp" in payload and type(payload["ldp"]) is not bool):
            raise _Refusal(400, "a consent body must be {\"advertising\": true or false} (and \"ldp\": true or "
                                f"false), got {shown(payload)}")
        granted: bool = payload["advertising"]
        intake, secure, host = self._intake, visitor.secure, visitor.host
        cookies: list[str] = []
        if intake.consent.writes_cookie:
            cookies.append(intake.cookies.consent(intake.consent.cookie_name, granted, secure=secure, host=host))
        refused_by_gpc = visitor.gpc and intake.consent.gpc_refuses
        cookies += consent_cookies(intake, payload, visitor, granted and not refused_by_gpc)
        if granted and not refused_by_gpc:
            epik = payload.get("epik")
            if type(epik) is str and valid_epik(epik):
                cookies.append(intake.cookies.epik(epik, secure=secure, host=host))
            device = intake.device_cookie(visitor.cookies.get(DEVICE_COOKIE), secure=secure, host=host)
            if device is not None:
                cookies.append(device)
        elif not granted:
            # Refusal withdraws what consent allowed: the tracking cookies go too.
            for name in (EPIK_COOKIE, DEVICE_COOKIE, IDENTITY_COOKIE):
                if name in visitor.cookies:
                    cookies.append(intake.cookies.expire(name, secure=secure, host=host))
        headers = cors + [(b"set-cookie", cookie.encode("latin-1")) for cookie in cookies]
        await _json(send, 200, {"advertising": granted and not refused_by_gpc}, headers)

    async def _remember(self, send: Send, payload: object, visitor: VisitorRequest,
                        cors: list[tuple[bytes, bytes]]) -> None:
        await self._intake.open()
        try:
            body = await remember_post(self._intake, payload, visitor)
        except ValueError as exc:
            raise _Refusal(400, str(exc), cors) from None
        except QueueUnavailable:
            raise _Refusal(503, "the visitor store is unavailable; try again later", [(b"retry-after", b"5")]) from None
        await _json(send, 200, body, cors)

    # ------------------------------------------------------------------ request checks

    def _over_quota(self, scope: Scope, path: str) -> float:
        """Seconds until this post's client may post again (issue 18, item 8); ``0.0``: go ahead."""
        assert self._quota is not None
        if path in SEGMENT_ROUTES:
            names = {name for name, _ in scope["headers"]}
            # A server library's post: the Segment route checks its key before reading the body (a
            # wrong one is 401). A browser's key is never read, so a browser's post is counted.
            if b"authorization" in names and b"origin" not in names and b"sec-fetch-site" not in names:
                return 0.0
        ip, _ = self._intake.proxies.resolve(scope)
        return self._quota.check(ip)

    def _cors_headers(self, visitor: VisitorRequest) -> list[tuple[bytes, bytes]]:
        """Refuse cross-site posts; CORS headers for an allowed other origin, else none."""
        origin = visitor.origin
        site = visitor.fetch_site
        if site in ("same-origin", "none") or (site is None and (origin is None or _same_origin(origin, visitor))):
            return []
        if origin is not None and origin.lower() in self._allowed_origins:
            return [(b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]
        raise _Refusal(403, f"cross-site posts are refused; origin {origin!r} is not in PINSIGNAL_ALLOWED_ORIGINS")

    async def _preflight(self, send: Send, visitor: VisitorRequest, cors: list[tuple[bytes, bytes]]) -> None:
        headers = cors + [(b"access-control-allow-methods", b"POST"),
                          (b"access-control-allow-headers", b"content-type, content-encoding, authorization"),
                          (b"access-control-max-age", b"86400")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _read_json(self, receive: Receive, visitor: VisitorRequest,
                         cors: list[tuple[bytes, bytes]]) -> object:
        content_type = (visitor.content_type or b"").split(b";", 1)[0].strip().lower()
        if content_type not in _JSON_TYPES:
            raise _Refusal(415, "events must be sent as application/json or text/plain, "
                                f"got {(visitor.content_type or b'no Content-Type').decode('latin-1')!r}", cors)
        if visitor.content_length is not None:
            try:
                declared = int(visitor.content_length)
            except ValueError:
                raise _Refusal(400, f"Content-Length {visitor.content_length.decode('latin-1')!r} "
                                    "is not a number", cors) from None
            if declared > MAX_BODY:
                raise _Refusal(413, f"the body is {declared} bytes; the limit is {MAX_BODY}", _closing(cors))
        body = await _read_body(receive)
        if body is None:
            raise _Refusal(413, f"the body is over the limit of {MAX_BODY} bytes", _closing(cors))
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _Refusal(400, f"the body is not valid JSON: {exc}", cors) from None


def _require(method: str, allowed: bytes) -> None:
    if method.encode("ascii") not in allowed.split(b", "):
        raise _Refusal(405, f"method {method} is not allowed here; use {allowed.decode()}", [(b"allow", allowed)])


def _same_origin(origin: str, visitor: VisitorRequest) -> bool:
    if visitor.host is None or "://" not in origin:
        return False
    return origin.split("://", 1)[1].lower() == visitor.host.decode("latin-1").lower()


def _closing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # The rest of an over-long body is never read; the connection cannot be reused.
    return [*headers, (b"connection", b"close")]


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or ``None`` as soon as more than ``MAX_BODY`` bytes have arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _unbatch(payload: object, default_type: str | None) -> list[object]:
    """The raw events of a body: one event, or a ``batch`` whose ``context`` and ``sent_at`` apply to each."""
    if type(payload) is not dict:
        raise _Refusal(400, "the body must be a JSON object (one event or {\"batch\": [...]}), "
                            f"got {shown(payload)}")
    if "batch" not in payload:
        events: list[object] = [payload]
        shared: dict[str, Any] = {}
    else:
        batch = payload["batch"]
        if type(batch) is not list:
            raise _Refusal(400, f"batch must be a list of events, got {shown(batch)}")
        events = batch
        shared = {key: payload[key] for key in ("sent_at", "sentAt", "context") if key in payload}
    if len(events) > MAX_EVENTS:
        raise _Refusal(400, f"at most {MAX_EVENTS} events per request, got {len(events)}")
    if not shared and default_type is None:
        return events
    return [with_batch_defaults(raw, shared, default_type) for raw in events]


async def _json(send: Send, status: int, body: object, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = orjson.dumps(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode("ascii")),
           (b"cache-control", b"no-store"), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
