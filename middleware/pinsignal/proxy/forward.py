"""One HTTP exchange: the visitor's request streamed to the upstream, the answer streamed back.

Bytes pass through as they are: the request body is an async generator over ASGI ``receive``
chunks, the response body is ``aiter_raw()`` (never decompressed, never re-encoded); status and
every header are kept, in order, repeated ones separate. Only ``--inject`` touches a body, and only
an HTML page's.

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

import httpx
from starlette.types import Message, Receive, Scope, Send

from pinsignal.clientip import TrustedProxies

from .headers import RawHeaders, forwarded_request_headers, response_headers
from .inject import DECODABLE, Decoder, HeadInjector, is_html, script_tag
from .pageviews import Handoff, PageviewPolicy, page_event
from .settings import ProxySettings

__all__ = ["ClientDisconnected", "Forwarder"]

logger = logging.getLogger("pinsignal.proxy")

# Bodies up to this size are sent without a disconnect watcher: a vanished visitor costs at most
# this much upstream reading, and small pages skip the cost of a second task.
_WATCH_ABOVE = 256 * 1024
_URL_CACHE = 1024
_ERROR_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>{status} {title}</title></head>"
    "<body><h1>{status} {title}</h1><p>{text}</p></body></html>"
)


class ClientDisconnected(Exception):
    """The visitor went away while the request body was being forwarded."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to do with one response body."""

    injector: HeadInjector | None = None
    decoder: Decoder | None = None
    pageview: str | None = None


class Forwarder:
    """Forwards HTTP requests to ``settings.upstream`` through one shared ``httpx.AsyncClient``."""

    def __init__(self, settings: ProxySettings, client: httpx.AsyncClient, *, trusted: TrustedProxies,
                 policy: PageviewPolicy | None, handoff: Handoff | None, script_src: str | None = None) -> None:
        self._settings = settings
        self._client = client
        self._trusted = trusted
        self._policy = policy if settings.server_pageviews else None
        self._handoff = handoff
        self._base = httpx.URL(settings.upstream)
        self._base_path = self._base.raw_path.split(b"?", 1)[0].rstrip(b"/")
        self._upstream_host = self._base.netloc
        self._upstream_origin = f"{self._base.scheme}://{self._base.netloc.decode('ascii')}".encode()
        self._rewrite_location = settings.host_header == "upstream"
        self._script_src = script_src or f"{settings.collector_prefix}/c.js"
        self._failures = _FailureLog(settings.upstream)
        self._urls: dict[bytes, httpx.URL] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming: list[tuple[bytes, bytes]] = scope["headers"]
        pageview = self._policy.pageview_id(scope) if self._policy is not None else None
        navigation = pageview is not None or (self._settings.inject and _looks_like_navigation(scope))
        extra_drop = frozenset({b"accept-encoding"}) if navigation and self._settings.inject else frozenset()
        headers = forwarded_request_headers(
            incoming, client=scope.get("client"), scheme=scope.get("scheme", "http"),
            host_mode=self._settings.host_header, upstream_host=self._upstream_host,
            trusted=self._trusted, extra_drop=extra_drop)
        if extra_drop:
            headers.append((b"accept-encoding", b"identity"))  # so the page can be edited as it streams
        has_body = any(name in (b"content-length", b"transfer-encoding") for name, _ in incoming) and \
            (b"content-length", b"0") not in incoming
        if has_body and not any(name == b"content-length" for name, _ in incoming):
            headers.append((b"transfer-encoding", b"chunked"))  # a chunked upload stays a stream upstream
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        url = self._url(self._base_path + raw_path + (b"?" + query if query else b""))
        request = httpx.Request(scope["method"], url, headers=headers,
                                stream=_RequestBody(receive) if has_body else None)
        try:
            response = await self._client.send(request, stream=True, follow_redirects=False)
        except ClientDisconnected:
            return
        except httpx.TimeoutException as exc:
            self._failures.report("timed out", exc)
            await _error_page(send, 504, "Gateway Timeout", "The site did not answer in time. Please try again.")
            return
        except httpx.HTTPError as exc:
            self._failures.report("failed", exc)
            await _error_page(send, 502, "Bad Gateway", "The site cannot be reached right now. Please try again.")
            return
        try:
            await self._respond(scope, receive, send, response, pageview)
        finally:
            await response.aclose()

    async def _respond(self, scope: Scope, receive: Receive, send: Send, response: httpx.Response,
                       pageview: str | None) -> None:
        public_origin = None
        if self._rewrite_location:
            host = next((value for name, value in scope["headers"] if name == b"host"), None)
            if host:
                public_origin = b"%s://%s" % (self._scheme(scope).encode(), host)
        headers = response_headers(response.headers.raw, upstream_origin=self._upstream_origin,
                                   public_origin=public_origin)
        plan = self._plan(scope, response, headers, pageview)
        length = next((value for name, value in headers if name.lower() == b"content-length"), None)
        if plan.injector is not None:
            headers = _edited_headers(headers, decoded=plan.decoder is not None)
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        if length is not None and length.isdigit() and int(length) <= _WATCH_ABOVE:
            await _stream(send, response, plan)
        elif not await _stream_watching(receive, send, response, plan):
            return
        if plan.pageview is not None and self._handoff is not None:
            try:
                await self._handoff(scope, page_event(scope, plan.pageview, scheme=self._scheme(scope)))
            except Exception:
                logger.exception("server-side page view %s could not be recorded", plan.pageview)

    def _url(self, target: bytes) -> httpx.URL:
        # Parsing a URL costs more than the rest of the request line handling; sites repeat their
        # paths, so parsed ones are kept (bounded, cleared when full).
        url = self._urls.get(target)
        if url is None:
            url = self._base.copy_with(raw_path=target)
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            self._urls[target] = url
        return url

    def _scheme(self, scope: Scope) -> str:
        """The scheme the visitor used: ours, or what a trusted proxy in front says it was."""
        return self._trusted.resolve(scope)[1]

    def _plan(self, scope: Scope, response: httpx.Response, headers: RawHeaders, pageview: str | None) -> _Plan:
        status = response.status_code
        if scope["method"] == "HEAD" or status in (204, 304) or status < 200:
            return _Plan()
        content_type = encoding = None
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-type":
                content_type = value
            elif lowered == b"content-encoding":
                encoding = value.strip().lower()
        if not is_html(content_type):
            return _Plan()
        counted = pageview if 200 <= status < 300 else None
        if not self._settings.inject:
            return _Plan(pageview=counted)
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


async def _stream(send: Send, response: httpx.Response, plan: _Plan) -> None:
    decoder, injector = plan.decoder, plan.injector
    async for chunk in response.aiter_raw():
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


async def _stream_watching(receive: Receive, send: Send, response: httpx.Response, plan: _Plan) -> bool:
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


class _RequestBody(httpx.AsyncByteStream):
    """The visitor's request body, chunk by chunk as the server receives it; never buffered whole."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message: Message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


async def _error_page(send: Send, status: int, title: str, text: str) -> None:
    body = _ERROR_PAGE.format(status=status, title=title, text=text).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
