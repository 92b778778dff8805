"""One HTTP exchange: the visitor's request streamed to the upstream, the answer streamed back.

Bytes pass through as they are: the request goes up with the visitor's header pairs in order
(hop-by-hop ones out, ``Host`` and ``X-Forwarded-*`` set), the request body is forwarded chunk
by chunk as ASGI ``receive`` delivers it, and the response body is the upstream's raw bytes (never
decompressed, never re-encoded); status and every header are kept, in order, repeated ones
separate. Only ``--inject`` touches a body, and only an HTML page's.

Failures: upstream unreachable -> 502, no answer within the timeout -> 504, both with a short
page. Once the answer has started, an upstream failure can only end the connection, so the visitor
sees a cut-off body rather than a complete-looking wrong one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import Message, Receive, Scope, Send

from pinsignal.clientip import TrustedProxies

from .guard import ClientSlots
from .headers import RawHeaders, forwarded_request_headers, map_location
from .inject import DECODABLE, Decoder, HeadInjector, is_html, script_tag
from .pageviews import Handoff, PageviewPolicy, is_navigation, page_event
from .settings import ProxySettings
from .upstream import UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout

__all__ = ["ClientDisconnected", "Forwarder", "error_answer"]

logger = logging.getLogger("pinsignal.proxy")

# Bodies up to this size are sent without a disconnect watcher: a vanished visitor costs at most
# this much upstream reading, and small pages skip the cost of a second task.
_WATCH_ABOVE = 256 * 1024
# With ``--inject``, a navigation asks for the page uncompressed, in place of the visitor's choice.
_ACCEPT_ENCODING = frozenset({b"accept-encoding"})
_ERROR_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>{status} {title}</title></head>"
    "<body><h1>{status} {title}</h1><p>{text}</p></body></html>"
)
_ERROR_TEXT = {
    429: ("Too Many Requests", "Too many requests from your address at once. Please try again in a moment."),
    502: ("Bad Gateway", "The site cannot be reached right now. Please try again."),
    504: ("Gateway Timeout", "The site did not answer in time. Please try again."),
}


class ClientDisconnected(Exception):
    """The visitor went away while the request body was being forwarded."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to do with one response body."""

    injector: HeadInjector | None = None
    decoder: Decoder | None = None
    pageview: str | None = None


_AS_IS = _Plan()


class Forwarder:
    """Forwards HTTP requests to ``settings.upstream`` through one shared ``UpstreamPool``."""

    def __init__(self, settings: ProxySettings, pool: UpstreamPool, *, trusted: TrustedProxies,
                 policy: PageviewPolicy | None, handoff: Handoff | None, script_src: str | None = None) -> None:
        self._settings = settings
        self._pool = pool
        self._trusted = trusted
        self._policy = policy if settings.server_pageviews else None
        self._handoff = handoff
        self._inject = settings.inject
        self._tag_companion = settings.tag_companion
        self._host_mode = settings.host_header
        base = urlsplit(settings.upstream)
        self._base_path = base.path.rstrip("/").encode("latin-1")
        self._upstream_host = base.netloc.encode("idna")
        self._upstream_origin = f"{base.scheme}://{base.netloc}".encode("idna")
        self._rewrite_location = settings.host_header == "upstream"
        self._script_src = script_src or f"{settings.collector_prefix}/c.js"
        self._failures = _FailureLog(settings.upstream)
        self._slots = ClientSlots(settings.max_per_client)
        self._slot_wait = settings.timeout

    def failed(self, exc: UpstreamError) -> int:
        """Log an upstream failure (rate-limited) and say which error page answers it: 504 or 502."""
        if isinstance(exc, UpstreamTimeout):
            self._failures.report("timed out", exc)
            return 504
        self._failures.report("failed", exc)
        return 502

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        pageview = self._policy.pageview_id(scope) if self._policy is not None else None
        # A page that will be edited must come uncompressed (or at least in gzip/deflate).
        identity = self._inject and (pageview is not None or is_navigation(scope))
        headers, has_body = self.request_headers(scope, identity)
        visitor = _Visitor(receive, has_body)
        # One visitor address holds at most max_per_client upstream connections; more requests wait.
        client = ClientSlots.key(self._trusted.resolve(scope)[0])
        if not await self._slots.acquire(client, self._slot_wait):
            await _error_page(send, 429)
            return
        try:
            try:
                response = await self._pool.request(method, self.target(scope), headers,
                                                    visitor.body() if has_body else None)
            except ClientDisconnected:
                return
            except UpstreamError as exc:
                if not visitor.disconnected:  # else the upload stopped because the visitor left: no one to answer
                    await _error_page(send, self.failed(exc))
                return
            try:
                await self._respond(scope, visitor, send, response, pageview)
            finally:
                await response.aclose()
        finally:
            self._slots.release(client)

    def request_headers(self, scope: Scope, identity: bool) -> tuple[RawHeaders, bool]:
        """The headers sent upstream, and whether a request body follows.

        Hop-by-hop fields are dropped, ``Host`` kept or rewritten, ``X-Forwarded-*`` set (all by
        ``forwarded_request_headers``). A body without a length goes on chunked (the client frames it).
        """
        length = encoding = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                encoding = value
        headers = forwarded_request_headers(
            scope["headers"], client=scope.get("client"), scheme=scope.get("scheme", "http"),
            host_mode=self._host_mode, upstream_host=self._upstream_host, trusted=self._trusted,
            extra_drop=_ACCEPT_ENCODING if identity else frozenset())
        has_body = (length is not None and length != b"0") or (length is None and encoding is not None)
        if identity:
            headers.append((b"accept-encoding", b"identity"))  # so the page can be edited as it streams
        return headers, has_body

    def target(self, scope: Scope) -> bytes:
        """The request target upstream: the base path, then the path as sent and the query."""
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        return b"%s%s?%s" % (self._base_path, raw_path, query) if query else self._base_path + raw_path

    async def _respond(self, scope: Scope, visitor: _Visitor, send: Send, response: UpstreamResponse,
                       pageview: str | None) -> None:
        headers = response.headers
        if response.status in (204, 304):
            # Never a body, but a 304 may state the page's length: the server in front would then
            # wait for that many bytes and fail the response.
            headers = [pair for pair in headers if pair[0].lower() != b"content-length"]
        if self._rewrite_location:
            host = next((value for name, value in scope["headers"] if name == b"host"), None)
            if host:
                public_origin = b"%s://%s" % (self._scheme(scope).encode(), host)
                headers = map_location(headers, upstream_origin=self._upstream_origin, public_origin=public_origin)
        plan = self._plan(scope, response.status, headers, pageview) if self._inject or pageview else _AS_IS
        if plan.injector is not None:
            headers = _edited_headers(headers, decoded=plan.decoder is not None)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        length = next((value for name, value in headers if name.lower() == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) <= _WATCH_ABOVE:
            await _stream(send, response, plan)
        elif not await _stream_watching(visitor, send, response, plan):
            return
        if plan.pageview is not None and self._handoff is not None:
            try:
                await self._handoff(scope, page_event(scope, plan.pageview, scheme=self._scheme(scope)))
            except Exception:
                logger.exception("server-side page view %s could not be recorded", plan.pageview)

    def _scheme(self, scope: Scope) -> str:
        """The scheme the visitor used: ours, or what a trusted proxy in front says it was."""
        return self._trusted.resolve(scope)[1]

    def _plan(self, scope: Scope, status: int, headers: RawHeaders, pageview: str | None) -> _Plan:
        if scope["method"] == "HEAD" or status in (204, 304) or status < 200:
            return _AS_IS
        content_type = encoding = None
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-type":
                content_type = value
            elif lowered == b"content-encoding":
                encoding = value.strip().lower()
        if not is_html(content_type):
            return _AS_IS
        counted = pageview if 200 <= status < 300 else None
        if not self._inject:
            return _Plan(pageview=counted) if counted else _AS_IS
        if encoding in (None, b"", b"identity"):
            decoder = None
        elif encoding in DECODABLE:
            decoder = Decoder(encoding)
        else:
            return _Plan(pageview=counted)  # br, zstd...: left as they are, without the tag
        return _Plan(HeadInjector(script_tag(self._script_src, counted, tag_companion=self._tag_companion)),
                     decoder, counted)


class _FailureLog:
    """Logs upstream failures at most once per ``interval`` seconds, with how many there were since.

    An upstream that is down fails every request; one line per request would bury everything else.
    """

    def __init__(self, upstream: str, interval: float = 10.0) -> None:
        self._upstream = upstream
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def report(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        logger.warning("upstream %s %s: %s%s", self._upstream, what, exc, more)
        self._next = now + self._interval
        self._suppressed = 0


def _edited_headers(headers: RawHeaders, *, decoded: bool) -> RawHeaders:
    out: RawHeaders = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length" or (decoded and lowered == b"content-encoding"):
            continue  # the body changes length (and, decoded, encoding): it goes out chunked
        if lowered == b"etag" and not value.startswith(b"W/"):
            value = b"W/" + value  # same page, different bytes: only a weak validator still holds
        out.append((name, value))
    return out


async def _stream(send: Send, response: UpstreamResponse, plan: _Plan) -> None:
    """Send the body as it arrives, each piece at once; the piece that completes a stated length
    goes with the end (a small page: one message)."""
    decoder, injector = plan.decoder, plan.injector
    left = response.length
    last = b""
    while chunk := await response.read():
        if left is not None:
            left -= len(chunk)
        if decoder is not None:
            chunk = decoder.feed(chunk)
        if injector is not None:
            chunk = injector.feed(chunk)
        if left is not None and left <= 0:
            last += chunk  # all in: the next read says so at once
        elif chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if decoder is not None:
        rest = decoder.finish()
        last += injector.feed(rest) if injector is not None else rest
    if injector is not None:
        last += injector.finish()
    await send({"type": "http.response.body", "body": last, "more_body": False})


async def _stream_watching(visitor: _Visitor, send: Send, response: UpstreamResponse, plan: _Plan) -> bool:
    """Stream the body while listening for ``http.disconnect``: a visitor who leaves stops the upstream read.

    Returns whether the whole body was sent.
    """
    body = asyncio.ensure_future(_stream(send, response, plan))
    watcher = asyncio.ensure_future(visitor.wait_disconnect())
    try:
        await asyncio.wait((body, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not body.done():
            body.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await body
    # Gone before the end, or an upload cut short by the visitor leaving failed the upstream read.
    if body.cancelled() or (visitor.disconnected and body.exception() is not None):
        logger.info("visitor disconnected; upstream read stopped")
        return False
    body.result()  # an upstream failure mid-body propagates, and the server cuts the connection
    return True


class _Visitor:
    """The visitor's side of ``receive``: the request body, then the wait for a disconnect.

    The client may still be sending the body upstream while the answer streams back, so the
    disconnect watch starts reading ``receive`` only once the body has all been read.
    """

    def __init__(self, receive: Receive, has_body: bool) -> None:
        self._receive = receive
        self._body_read = asyncio.Event()
        if not has_body:
            self._body_read.set()
        self.disconnected = False

    async def body(self) -> AsyncIterator[bytes]:
        """The request body, chunk by chunk as the server receives it; never buffered whole."""
        try:
            while True:
                message: Message = await self._receive()
                if message["type"] == "http.disconnect":
                    self.disconnected = True
                    raise ClientDisconnected()
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return
        finally:
            self._body_read.set()

    async def wait_disconnect(self) -> None:
        await self._body_read.wait()
        while not self.disconnected:
            if (await self._receive())["type"] == "http.disconnect":
                self.disconnected = True


def error_answer(status: int) -> tuple[RawHeaders, bytes]:
    """Headers and body of the proxy's own ``429``/``502``/``504`` page."""
    title, text = _ERROR_TEXT[status]
    body = _ERROR_PAGE.format(status=status, title=title, text=text).encode()
    return [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")], body


async def _error_page(send: Send, status: int) -> None:
    headers, body = error_answer(status)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
