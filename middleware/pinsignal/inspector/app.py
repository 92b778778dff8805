"""The inspector: a Starlette app over the trace stream, for one operator's browser.

    app = create_app(config, redis)      # pinsignal inspector serves it with uvicorn
    # GET /                     the page (HTML; its script and style are /inspector.js, /inspector.css)
    # GET /api/recent?limit=N   the newest N trace records, oldest first
    # GET /api/stream?last=ID   server-sent events: every record written after entry ID, as it comes
    # GET /api/event/{id}       every record of one event (message id or event id), grouped for the detail view
    # GET /api/summary          warnings by event name and kind, refusals, quarantine, match keys' names

Everything is read from Redis; nothing is written but the page's own cookies. With
``PINSIGNAL_ADMIN_TOKEN`` set every request needs the token (``Authorization: Bearer``, or the
``_psadmin`` cookie the page sets after ``/?token=...``); without it the app answers only requests
addressed to a loopback host name, so a web page elsewhere cannot read it through DNS rebinding.
The page runs no inline script (a strict Content-Security-Policy) and writes every value as text.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pinsignal.config import Config
from pinsignal.pinterest.fields import MATCH_KEYS
from pinsignal.trace import DEBUG_COOKIE, STAGES, decode_records, read_all, read_recent

__all__ = ["ADMIN_COOKIE", "create_app", "is_loopback"]

logger = logging.getLogger("pinsignal.inspector")

ADMIN_COOKIE = "_psadmin"
_HERE = Path(__file__).resolve().parent
_SECURITY = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (the only hosts the inspector binds to without a token)."""
    if host.strip("[]") in _LOOPBACK_NAMES or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(request_host: str) -> str:
    if request_host.startswith("["):
        return request_host[1:].partition("]")[0]
    return request_host.rpartition(":")[0] if request_host.count(":") == 1 else request_host


class _Guard:
    """Pure ASGI: the token when one is set, else loopback Host headers only."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.token is None:
            if not is_loopback(_host_name(request.headers.get("host", ""))):
                await _plain(403, "The inspector answers loopback addresses only; set PINSIGNAL_ADMIN_TOKEN "
                                  "to open it from elsewhere.")(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        given = request.query_params.get("token") if request.url.path == "/" else None
        if given is not None and hmac.compare_digest(given.encode(), self.token):
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(ADMIN_COOKIE, given, httponly=True, samesite="strict",
                                secure=scope.get("scheme") == "https", path="/")
            await response(scope, receive, send)
            return
        offered = request.cookies.get(ADMIN_COOKIE, "")
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            offered = bearer.strip()
        if not hmac.compare_digest(offered.encode(), self.token):
            await _plain(401, "The inspector needs PINSIGNAL_ADMIN_TOKEN: open /?token=<the token> once, or send "
                              "Authorization: Bearer <the token>.")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _plain(status: int, text: str) -> Response:
    return Response(text + "\n", status_code=status, media_type="text/plain; charset=utf-8", headers=_SECURITY)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json",
                    headers={"cache-control": "no-store", "x-content-type-options": "nosniff"})


def _asset(name: str, media_type: str) -> Response:
    return Response((_HERE / name).read_bytes(), media_type=media_type, headers=_SECURITY)


async def event_detail(redis: Any, ident: str, *, scan: int = 100_000) -> dict[str, Any]:
    """Every trace record of one event, found by message id or Pinterest event id, oldest first.

    The collector's records carry the ``message_id``; the worker's carry ``event_name``/``event_id``;
    the ``queued`` record links the two. At most ``scan`` records (newest first) are read.
    """
    ids = {ident}
    found: list[dict[str, Any]] = []
    seen = 0
    async for record in read_all(redis):
        seen += 1
        if record.get("message_id") in ids or record.get("event_id") in ids:
            found.append(record)
            if record.get("stage") in ("queued", "duplicate"):
                ids.update(str(value) for value in (record.get("message_id"), record.get("event_id")) if value)
        if seen >= scan:
            break
    # a second look for the worker's records of an event first found by its message id (they are newer)
    if len(ids) > 1:
        found = []
        async for record in read_all(redis):
            if record.get("message_id") in ids or record.get("event_id") in ids:
                found.append(record)
    found.reverse()
    detail: dict[str, Any] = {"id": ident, "records": found, "envelope": None, "pipelines": [], "pinterest": [],
                              "attempts": []}
    for record in found:
        stage = record.get("stage")
        if stage == "received" and detail["envelope"] is None:
            detail["envelope"] = record.get("envelope")
        elif stage in ("queued", "duplicate") and record.get("pipeline"):
            detail["pipelines"].append({"pipeline": record["pipeline"], "event_name": record.get("event_name"),
                                        "event_id": record.get("event_id"), "duplicate": stage == "duplicate"})
        elif stage == "sent":
            if record.get("pinterest") is not None:
                detail["pinterest"].append(record["pinterest"])
            detail["attempts"].append({key: record.get(key) for key in ("at", "attempt", "event_name", "status",
                                                                         "answer", "message")})
        elif stage == "warning" and detail["attempts"]:
            detail["attempts"][-1]["warning"] = record.get("warning")
            detail["attempts"][-1]["kinds"] = record.get("kinds")
        elif stage == "failed" and detail["attempts"]:
            detail["attempts"][-1]["error"] = record.get("message")
    return detail


async def summary(redis: Any) -> dict[str, Any]:
    """Warnings (event name -> kind -> count), refusals by reason, quarantined events, the key names."""
    from pinsignal import keys
    from pinsignal.insight import read_warnings

    counters = {key.decode(): int(value) for key, value in (await redis.hgetall(keys.COUNTERS)).items()}
    return {
        "warnings": await read_warnings(redis),
        "refused": {name.split(":", 1)[1]: value for name, value in counters.items() if name.startswith("refused:")},
        "quarantined": int(await redis.zcard(keys.QUARANTINE_INDEX)),
        "match_keys": list(MATCH_KEYS),
        "stages": list(STAGES),
        "debug_cookie": DEBUG_COOKIE,
    }


class _Redis:
    """The app's Redis client: the caller's, or one made at first use from ``url`` and closed on shut-down."""

    def __init__(self, client: Any, url: str | None, cluster: bool | None = None) -> None:
        self.client = client
        self.url = url
        self.cluster = cluster  # PINSIGNAL_REDIS_CLUSTER; None: the server is asked once
        self.owned = client is None

    def get(self) -> Any:
        if self.client is None:
            from pinsignal import store

            self.client = store.client(self.url or "", cluster=self.cluster, socket_connect_timeout=5,
                                       max_connections=64)
        return self.client

    async def close(self) -> None:
        if self.owned and self.client is not None:
            await self.client.aclose()
            self.client = None


def create_app(config: Config, redis: Any = None, *, redis_url: str | None = None,
               heartbeat: float = 15.0) -> ASGIApp:
    """The inspector over ``redis`` (a ``redis.asyncio.Redis`` the caller closes), or over a client
    made from ``redis_url`` at first use and closed by the app's lifespan shut-down."""
    holder = _Redis(redis, redis_url, config.redis_cluster)

    async def page(request: Request) -> Response:
        return _asset("page.html", "text/html; charset=utf-8")

    async def script(request: Request) -> Response:
        return _asset("inspector.js", "text/javascript; charset=utf-8")

    async def style(request: Request) -> Response:
        return _asset("inspector.css", "text/css; charset=utf-8")

    async def recent(request: Request) -> Response:
        try:
            limit = max(1, min(20_000, int(request.query_params.get("limit", "3000"))))
        except ValueError:
            return _json({"message": "limit must be a whole number."}, 400)
        return _json({"records": await read_recent(holder.get(), count=limit)})

    async def stream(request: Request) -> Response:
        last = request.query_params.get("last") or request.headers.get("last-event-id") or "$"
        from pinsignal import keys

        redis = holder.get()

        async def events() -> AsyncIterator[bytes]:
            position = last
            if position == "$":
                newest = await redis.xrevrange(keys.TRACE, count=1)
                position = newest[0][0].decode() if newest else "0-0"
            yield b"retry: 2000\n\n"
            while True:  # ends when the client goes: Starlette cancels this on http.disconnect
                reply = await redis.xread({keys.TRACE: position}, count=500, block=int(heartbeat * 1000))
                if not reply:
                    yield b": keep-alive\n\n"
                    continue
                chunks: list[bytes] = []
                for _, rows in reply:
                    for entry_id, fields in rows:
                        position = entry_id.decode()
                        for record in decode_records(entry_id, fields):
                            chunks.append(b"id: " + entry_id + b"\ndata: " + orjson.dumps(record) + b"\n\n")
                yield b"".join(chunks)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def detail(request: Request) -> Response:
        return _json(await event_detail(holder.get(), request.path_params["ident"]))

    async def summary_route(request: Request) -> Response:
        return _json(await summary(holder.get()))

    routes = [
        Route("/", page), Route("/inspector.js", script), Route("/inspector.css", style),
        Route("/api/recent", recent), Route("/api/stream", stream), Route("/api/event/{ident:path}", detail),
        Route("/api/summary", summary_route),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await holder.close()

    return _Guard(Starlette(routes=routes, lifespan=lifespan), config.admin_token)

