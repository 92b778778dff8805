"""One HTTP exchange: the visitor's request streamed to the upstream, the answer streamed back.

Bytes pass through as they are: the request head is written from the visitor's headers in one
piece, the request body is forwarded chunk by chunk as ASGI ``receive`` delivers it, and the
response body is the upstream's raw bytes (never decompressed, never re-encoded); status and every
header are kept, in order, repeated ones separate. Only ``--inject`` touches a body, and only an
HTML page's.

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

from .headers import (
    REQUEST_SPECIAL,
    RawHeaders,
    forwarding_headers,
    response_headers,
    split_request_headers,
)
from .inject import DECODABLE, Decoder, HeadInjector, is_html, script_tag
from .pageviews import Handoff, PageviewPolicy, page_event
from .settings import ProxySettings
from .upstream import UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout

__all__ = ["IDEMPOTENT", "ClientDisconnected", "Forwarder", "error_answer"]

logger = logging.getLogger("pinsignal.proxy")

# Bodies up to this size are sent without a disconnect watcher: a vanished visitor costs at most
# this much upstream reading, and small pages skip the cost of a second task.
_WATCH_ABOVE = 256 * 1024
# Safe to send twice (RFC 9110 section 9.2.2): only these are retried on a pooled connection found dead.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Decided on, not passed on as they come: Content-Length is re-added after the others.
_SPECIAL = REQUEST_SPECIAL | {b"content-length"}
_SPECIAL_IDENTITY = _SPECIAL | {b"accept-encoding"}
_METHODS = {method: method.encode("ascii") + b" " for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                                               "PATCH")}
_ERROR_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>{status} {title}</title></head>"
    "<body><h1>{status} {title}</h1><p>{text}</p></body></html>"
)
_ERROR_TEXT = {
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
        self._as_is = not settings.inject and settings.host_header == "keep"  # no header or body is edited
        self._host_mode = settings.host_header
        self._keep_host = settings.host_header == "keep"
        base = urlsplit(settings.upstream)
        self._base_path = base.path.rstrip("/").encode("latin-1")
        self._upstream_host = base.netloc.encode("idna")
        self._upstream_origin = f"{base.scheme}://{base.netloc}".encode("idna")
        self._rewrite_location = settings.host_header == "upstream"
        self._script_src = script_src or f"{settings.collector_prefix}/c.js"
        self._failures = _FailureLog(settings.upstream)

    @property
    def pool(self) -> UpstreamPool:
        return self._pool

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
        identity = self._inject and (pageview is not None or _looks_like_navigation(scope))
        head, has_body, chunked = self.request_head(scope, method, identity)
        try:
            response = await self._pool.request(head, _request_body(receive) if has_body else None,
                                                chunked=chunked, retry=method in IDEMPOTENT,
                                                head_only=method == "HEAD")
        except ClientDisconnected:
            return
        except UpstreamError as exc:
            await _error_page(send, self.failed(exc))
            return
        if response.status in (204, 304):
            # Never a body, but a 304 may state the page's length: the server in front would then
            # wait for that many bytes and fail the response.
            response.headers = [pair for pair in response.headers if pair[0].lower() != b"content-length"]
        if self._as_is and pageview is None and response.complete:
            # The usual case, kept short: the whole answer is here and goes back unchanged; the
            # connection returns to the pool before the visitor is sent anything.
            body = response.finish()
            await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        try:
            await self._respond(scope, receive, send, response, pageview)
        finally:
            response.close()

    def request_head(self, scope: Scope, method: str, identity: bool) -> tuple[bytes, bool, bool]:
        """The request head for the upstream, whether a body follows, and whether it goes chunked.

        This runs for every request, so the usual case (no forwarding headers, no hop-by-hop ones
        beyond ``Connection: keep-alive``) is one loop and one join; anything else takes
        ``_head_in_full``, which decides every header.
        """
        special = _SPECIAL_IDENTITY if identity else _SPECIAL
        kept: RawHeaders = []
        host = length = encoding = connection = None
        for pair in scope["headers"]:
            name = pair[0]
            if name in special or name[:1] == b"p" and name.startswith(b"proxy"):
                if name == b"host":
                    host = pair[1]
                elif name == b"content-length":
                    length = pair[1]
                elif name == b"transfer-encoding":
                    encoding = pair[1]
                elif name == b"connection":
                    connection = pair[1]
                elif name != b"accept-encoding":
                    return self._head_in_full(scope, method, identity)
            else:
                kept.append(pair)
        if connection is not None and connection.lower() not in (b"keep-alive", b"close"):
            return self._head_in_full(scope, method, identity)  # it may name end-to-end fields to drop
        has_body = (length is not None and length != b"0") or (length is None and encoding is not None)
        chunked = has_body and length is None
        client = scope.get("client")
        parts = [self._request_line(scope, method), b"host: ",
                 (host or self._upstream_host) if self._keep_host else self._upstream_host, b"\r\n"]
        if kept:
            # The ASGI server parsed all of these from a valid HTTP request: no CR or LF can be in them.
            parts += (b"\r\n".join(map(b": ".join, kept)), b"\r\n")
        parts += (b"x-forwarded-for: ", client[0].encode("latin-1") if client else b"unknown",
                  b"\r\nx-forwarded-proto: ", b"https" if scope.get("scheme") in ("https", "wss") else b"http",
                  b"\r\n")
        if host:
            parts += (b"x-forwarded-host: ", host, b"\r\n")
        if length is not None:
            parts += (b"content-length: ", length, b"\r\n")
        elif chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        if identity:
            parts.append(b"accept-encoding: identity\r\n")
        parts.append(b"\r\n")
        return b"".join(parts), has_body, chunked

    def _head_in_full(self, scope: Scope, method: str, identity: bool) -> tuple[bytes, bool, bool]:
        kept, noted = split_request_headers(scope["headers"], _SPECIAL_IDENTITY if identity else _SPECIAL)
        host, extra = forwarding_headers(noted, client=scope.get("client"), scheme=scope.get("scheme", "http"),
                                         host_mode=self._host_mode, upstream_host=self._upstream_host,
                                         trusted=self._trusted)
        length = encoding = None
        for name, value in noted:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                encoding = value
        has_body = (length is not None and length != b"0") or (length is None and encoding is not None)
        chunked = has_body and length is None
        if length is not None:
            extra.append((b"content-length", length))
        elif chunked:
            extra.append((b"transfer-encoding", b"chunked"))  # a chunked upload stays a stream upstream
        if identity:
            extra.append((b"accept-encoding", b"identity"))  # so the page can be edited as it streams
        return b"".join((
            self._request_line(scope, method), b"host: ", host, b"\r\n",
            b"\r\n".join(map(b": ".join, kept + extra)), b"\r\n\r\n",
        )), has_body, chunked

    def _request_line(self, scope: Scope, method: str) -> bytes:
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        return b"%s%s%s%s%s HTTP/1.1\r\n" % (_METHODS.get(method) or method.encode("ascii") + b" ",
                                              self._base_path, raw_path, b"?" if query else b"", query)

    async def _respond(self, scope: Scope, receive: Receive, send: Send, response: UpstreamResponse,
                       pageview: str | None) -> None:
        if self._rewrite_location:
            host = next((value for name, value in scope["headers"] if name == b"host"), None)
            public_origin = b"%s://%s" % (self._scheme(scope).encode(), host) if host else None
            headers = response_headers(response.headers, upstream_origin=self._upstream_origin,
                                       public_origin=public_origin)
        else:
            headers = response.headers  # the client kept the connection-level fields apart already
        plan = self._plan(scope, response.status, headers, pageview) if self._inject or pageview else _AS_IS
        if plan.injector is not None:
            headers = _edited_headers(headers, decoded=plan.decoder is not None)
        start = {"type": "http.response.start", "status": response.status, "headers": headers}
        if plan is _AS_IS and response.complete:
            # The whole answer is here already (most small pages): the connection goes back to the
            # pool at once, and the visitor gets one body message.
            body = response.finish()
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})
        else:
            await send(start)
            length = next((value for name, value in headers if name.lower() == b"content-length"), None)
            if response.complete or (length is not None and length.isdigit() and int(length) <= _WATCH_ABOVE):
                await _stream(send, response, plan)
            elif not await _stream_watching(receive, send, response, plan):
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
        return _Plan(HeadInjector(script_tag(self._script_src, counted)), decoder, counted)


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


def _looks_like_navigation(scope: Scope) -> bool:
    if scope["method"] != "GET":
        return False
    for name, value in scope["headers"]:
        if name == b"sec-fetch-dest":
            return value.lower() in (b"document", b"iframe")
        if name == b"accept" and b"text/html" in value.lower():
            return True
    return False


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
    decoder, injector = plan.decoder, plan.injector
    while chunk := await response.read():
        if decoder is not None:
            chunk = decoder.feed(chunk)
        if injector is not None:
            chunk = injector.feed(chunk)
        if chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    tail = b""
    if decoder is not None:
        tail = decoder.finish()
        if injector is not None:
            tail = injector.feed(tail)
    if injector is not None:
        tail += injector.finish()
    await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _stream_watching(receive: Receive, send: Send, response: UpstreamResponse, plan: _Plan) -> bool:
    """Stream the body while listening for ``http.disconnect``: a visitor who leaves stops the upstream read.

    Returns whether the whole body was sent.
    """
    body = asyncio.ensure_future(_stream(send, response, plan))
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait((body, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not body.done():
            body.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await body
    if body.cancelled():
        logger.info("visitor disconnected; upstream read stopped")
        return False
    body.result()  # an upstream failure mid-body propagates, and the server cuts the connection
    return True


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    """The visitor's request body, chunk by chunk as the server receives it; never buffered whole."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def error_answer(status: int) -> tuple[RawHeaders, bytes]:
    """Headers and body of the proxy's own ``502``/``504`` page."""
    title, text = _ERROR_TEXT[status]
    body = _ERROR_PAGE.format(status=status, title=title, text=text).encode()
    return [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")], body


async def _error_page(send: Send, status: int) -> None:
    headers, body = error_answer(status)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
