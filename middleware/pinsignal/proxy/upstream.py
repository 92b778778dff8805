"""The proxy's client to the upstream: aiohttp's client, with raw bytes in and out.

    pool = UpstreamPool("http://127.0.0.1:8080", timeout=30)
    response = await pool.request("GET", b"/page", [(b"host", b"shop.example")])
    try:
        while chunk := await response.read():
            ...
    finally:
        await response.aclose()

aiohttp keeps the connections: HTTP/1.1 keep-alive, a cap on the connections in use (more
requests wait for one), idle ones closed after ``keepalive_expiry``, and one more try of an
idempotent request whose pooled connection the upstream had closed (RFC 9112 section 9.3.1; never
when a body was already sent). This module is the exchange. The request goes out with the
caller's header pairs, in order, and nothing added (no ``User-Agent``, ``Accept`` or
``Content-Type`` of aiohttp's own, no cookie jar); the answer comes back as the status, the raw
header pairs in order (repeated ones separate, hop-by-hop ones left out) and the body as the
upstream's raw bytes, de-chunked, never decompressed, read only as fast as the caller takes it
(aiohttp pauses reading from the upstream meanwhile), so memory stays flat on large bodies.

aiohttp's errors are translated here, once: ``UpstreamTimeout`` (connecting, waiting for a free
connection, or a wait for the upstream's bytes took longer than ``timeout``; the proxy answers
504), and the other ``UpstreamError`` subclasses when the upstream cannot be used (502).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
from aiohttp.tracing import Trace
from multidict import CIMultiDict
from yarl import URL

from .headers import RawHeaders, strip_hop_by_hop

__all__ = [
    "UpstreamClosed", "UpstreamConnectError", "UpstreamError", "UpstreamPool", "UpstreamProtocolError",
    "UpstreamResponse", "UpstreamTimeout",
]

# aiohttp's defaults (8 KiB) would refuse a long Content-Security-Policy or Set-Cookie line.
_FIELD_LIMIT = 64 * 1024


class UpstreamError(Exception):
    """The upstream could not be used for this request (the proxy answers 502)."""


class UpstreamConnectError(UpstreamError):
    """No connection to the upstream: refused, unreachable, name not found, TLS verification failed."""


class UpstreamTimeout(UpstreamError):
    """Connecting, waiting for a free connection, or a wait for the upstream's bytes took too long (504)."""


class UpstreamClosed(UpstreamError):
    """The upstream closed or reset the connection before its answer was complete."""


class UpstreamProtocolError(UpstreamError):
    """The upstream's answer is not valid HTTP/1.1."""


def _translate(exc: aiohttp.ClientError | TimeoutError, where: str) -> UpstreamError:
    """The one place where aiohttp's errors become the proxy's."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(f"Connecting to {where}, or waiting for a free connection to it, timed out.")
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return UpstreamTimeout(f"{where} did not send anything within the timeout.")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"Cannot connect to {where}: {exc}.")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError(f"{where} sent a malformed answer: {exc.message}.")
    return UpstreamClosed(f"{where} closed the connection before its answer was complete: {exc}.")


class UpstreamResponse:
    """The upstream's answer: ``status``, raw ``headers`` in order, the body through ``read()``; then ``aclose()``."""

    __slots__ = ("status", "headers", "_response", "_where")

    def __init__(self, response: aiohttp.ClientResponse, where: str) -> None:
        self.status = response.status
        self.headers = strip_hop_by_hop(response.raw_headers)
        self._response = response
        self._where = where

    @property
    def length(self) -> int | None:
        """The body's length as the ``Content-Length`` states it, if it does."""
        for name, value in self.headers:
            if name.lower() == b"content-length" and value.isdigit():
                return int(value)
        return None

    async def read(self) -> bytes:
        """The next piece of the body as it arrived; ``b""`` at the end."""
        try:
            return await self._response.content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc, self._where) from exc

    async def aclose(self) -> None:
        """Give the connection back: to the pool when the answer was read to its end, else closed."""
        self._response.release()


class _CleanConnector(aiohttp.TCPConnector):
    """aiohttp's connector, but a pooled connection the upstream wrote to while it sat idle is closed,
    never reused.

    A response the upstream sends unasked (bytes after a complete answer, arriving once the
    connection is back in the pool) would otherwise be parsed and queued on that connection, and
    taken as the answer to the next visitor's request: a redirect or ``Set-Cookie`` of the
    upstream's choosing in someone else's response. ``should_close`` is aiohttp's own verdict on a
    connection: it holds when answers are queued or a body is unfinished; like nginx with idle
    upstream connections that turn readable, such a connection is closed and another one taken.
    Bytes in the same segment as the answer are caught by the same verdict when the answer is
    released.
    """

    async def connect(self, req: aiohttp.ClientRequest, traces: list[Trace],
                      timeout: aiohttp.ClientTimeout) -> aiohttp.connector.Connection:
        while True:
            connection = await super().connect(req, traces, timeout)
            protocol = connection.protocol
            if protocol is None or not protocol.should_close:
                return connection
            connection.close()


def _text(value: bytes) -> str:
    # aiohttp writes header values as UTF-8: bytes that are UTF-8 go out unchanged.
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to one upstream (``http(s)://host[:port]``).

    ``max_connections`` caps connections in use at once (more requests wait, then ``UpstreamTimeout``);
    idle ones are kept for ``keepalive_expiry`` seconds. ``timeout`` bounds connecting (waiting for a
    free connection included) and each wait for the upstream's bytes. HTTPS upstreams are verified
    against ``ssl_context`` (default: the system's CA store). The connections belong to the event
    loop of the first request.
    """

    def __init__(self, url: str, *, timeout: float = 30.0, max_connections: int = 256,
                 keepalive_expiry: float = 4.0, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"The upstream must be an http(s) URL like 'http://127.0.0.1:8080', got {url!r}.")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._where = f"The upstream {self.host}:{self.port}"
        self._tls = parts.scheme == "https"
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        # Made at the first request: aiohttp's connector belongs to the running event loop.
        context: ssl.SSLContext | bool = True
        if self._tls:
            context = self._ssl_context or ssl.create_default_context()
        connector = _CleanConnector(limit=self._max_connections, limit_per_host=0,
                                         keepalive_timeout=self._keepalive_expiry, ssl=context)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=self.timeout),
            max_line_size=_FIELD_LIMIT, max_field_size=_FIELD_LIMIT)
        return self._session

    async def request(self, method: str, target: bytes, headers: RawHeaders,
                      body: AsyncIterator[bytes] | None = None) -> UpstreamResponse:
        """Send the request (``headers`` as they are, ``body`` as it comes) and return the answer's head.

        ``target`` is the path and query as they go on the request line. A body goes up with the
        ``Content-Length`` among ``headers``, or chunked when there is none. Raises ``UpstreamError``
        subclasses, and whatever ``body`` raises.
        """
        if self._closed:
            raise UpstreamConnectError("The connection pool to the upstream is closed.")
        session = self._session or self._open()
        url = URL(self._origin + target.decode("latin-1"), encoded=True)  # the path as sent, escapes untouched
        fields = CIMultiDict([(_text(name), _text(value)) for name, value in headers])
        try:
            response = await session.request(method, url, headers=fields, data=body, allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc, self._where) from exc
        return UpstreamResponse(response, self._where)

    async def aclose(self) -> None:
        """Close the connections; answers still being read are cut off."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
