"""For ``bench_proxy.py --clients aiohttp,httpcore``: the proxy's upstream client on httpcore (what httpx uses).

The proxy ships ``pinsignal.proxy.upstream`` (aiohttp's client); this is the same interface on
httpcore's connection pool, kept so the comparison in ``docs/proxy.md`` can be run again.

    pool = UpstreamPool("http://127.0.0.1:8080", timeout=30)
    response = await pool.request("GET", b"/page", [(b"host", b"shop.example")])
    try:
        while chunk := await response.read():
            ...
    finally:
        await response.aclose()

httpcore keeps the connections (HTTP/1.1 keep-alive, a cap on connections in use, idle ones
dropped after ``keepalive_expiry`` or when the upstream closed them). This module is the exchange:
the request goes out with the caller's header pairs as they are, the answer comes back as the
status, the raw header pairs in order (repeated ones separate, hop-by-hop ones left out) and the
body as the upstream's raw bytes, de-chunked and never decompressed, read only as fast as the
caller asks for it (constant memory on large bodies).

httpcore's errors are translated here, once, into ``UpstreamError`` subclasses: ``UpstreamTimeout``
(connecting, waiting for a free connection, or a wait for bytes took longer than ``timeout``: the
proxy answers 504); the others mean the upstream cannot be used (502).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpcore

from pinsignal.proxy.headers import RawHeaders, strip_hop_by_hop
from pinsignal.proxy.upstream import (
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)

__all__ = ["UpstreamPool", "UpstreamResponse"]


def _translate(exc: httpcore.TimeoutException | httpcore.NetworkError | httpcore.ProtocolError,
               where: str) -> UpstreamError:
    if isinstance(exc, httpcore.PoolTimeout):
        return UpstreamTimeout("No free connection to the upstream within the timeout.")
    if isinstance(exc, httpcore.ConnectTimeout):
        return UpstreamTimeout(f"Connecting to {where} timed out.")
    if isinstance(exc, httpcore.TimeoutException):
        return UpstreamTimeout("The upstream did not send or take anything within the timeout.")
    if isinstance(exc, httpcore.ConnectError):
        return UpstreamConnectError(f"Cannot connect to {where}: {exc}.")
    if isinstance(exc, httpcore.NetworkError):
        return UpstreamClosed(f"The upstream closed the connection before its answer was complete: {exc}.")
    return UpstreamProtocolError(f"The upstream sent a malformed answer: {exc}.")


_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError)


class UpstreamResponse:
    """The upstream's answer: ``status``, raw ``headers`` in order, the body through ``read()``; then ``aclose()``."""

    __slots__ = ("status", "headers", "_response", "_chunks", "_where")

    def __init__(self, response: httpcore.Response, where: str) -> None:
        self.status = response.status
        self.headers = strip_hop_by_hop(response.headers)
        self._response = response
        self._chunks = aiter(response.stream)  # type: ignore[arg-type]  # an async stream for an async request
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
            return await anext(self._chunks, b"")
        except _ERRORS as exc:
            raise _translate(exc, self._where) from exc

    async def aclose(self) -> None:
        """Give the connection back: to the pool when the answer was read to its end, else closed."""
        await self._response.aclose()


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to one upstream (``http(s)://host[:port]``).

    ``max_connections`` caps connections in use at once (more requests wait, then ``UpstreamTimeout``);
    idle ones are kept for ``keepalive_expiry`` seconds. ``timeout`` bounds connecting,
    waiting for a free connection, and each wait for the upstream's bytes. HTTPS upstreams are
    verified against ``ssl_context`` (default: the system's CA store).
    """

    def __init__(self, url: str, *, timeout: float = 30.0, max_connections: int = 256,
                 keepalive_expiry: float = 4.0, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"The upstream must be an http(s) URL like 'http://127.0.0.1:8080', got {url!r}.")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self._scheme = parts.scheme.encode("ascii")
        self._host = self.host.encode("idna")
        self._where = f"{self.host}:{self.port}"
        self._extensions = {"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}}
        tls = parts.scheme == "https"
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=(ssl_context or ssl.create_default_context()) if tls else None,
            max_connections=max_connections, keepalive_expiry=keepalive_expiry)

    async def request(self, method: str, target: bytes, headers: RawHeaders,
                      body: AsyncIterator[bytes] | None = None) -> UpstreamResponse:
        """Send the request (``headers`` as they are, ``body`` as it comes) and return the answer's head.

        A body goes out with the ``Content-Length`` among ``headers``, else chunked. A request
        without a body is tried once more when the upstream closed the connection without answering
        (a pooled connection it dropped just as it was taken). Raises ``UpstreamError`` subclasses,
        and whatever ``body`` raises.
        """
        url = httpcore.URL(scheme=self._scheme, host=self._host, port=self.port, target=target)
        if body is not None and not any(name.lower() == b"content-length" for name, _ in headers):
            headers = [*headers, (b"transfer-encoding", b"chunked")]  # h11 frames the body by its headers
        tries = 2 if body is None else 1
        while True:
            tries -= 1
            request = httpcore.Request(method, url, headers=headers, content=body, extensions=self._extensions)
            try:
                response = await self._pool.handle_async_request(request)
            except (httpcore.RemoteProtocolError, httpcore.ReadError) as exc:
                if tries:
                    continue  # no byte of an answer came: the request is repeated once, and only a safe one
                raise _translate(exc, self._where) from exc
            except _ERRORS as exc:
                raise _translate(exc, self._where) from exc
            return UpstreamResponse(response, self._where)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._pool.aclose()
