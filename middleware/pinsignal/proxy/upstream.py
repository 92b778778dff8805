"""A lean HTTP/1.1 transport for httpx, with a keep-alive pool, built for one job: proxying.

httpx's default transport (httpcore) scans every pooled connection for every request, which
costs the proxy most of its throughput under concurrency (encode/httpx#3215; measured here at
under 1,000 requests/s). This transport keeps idle connections in a LIFO stack per origin, parses
responses itself and hands the body to httpx as raw bytes (de-chunked, never decompressed), so
``response.aiter_raw()`` is the upstream's bytes. It plugs into ``httpx.AsyncClient(transport=...)``
and raises only httpx exceptions, so the client's API, timeouts and error types stay the same.

asyncio only (the proxy runs under uvicorn). Backpressure comes from ``asyncio.StreamReader``:
it stops reading the socket while its buffer is full, so a slow client slows the upstream read
instead of filling memory.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["UpstreamTransport"]

logger = logging.getLogger("pinsignal.proxy")

_READ_SIZE = 64 * 1024
_HEAD_LIMIT = 64 * 1024
_NO_BODY_STATUS = frozenset({204, 304})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

Origin = tuple[str, str, int]


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, expiry: float) -> bool:
        # A server that closed an idle keep-alive connection shows up as EOF on the reader.
        return (not self.writer.is_closing() and not self.reader.at_eof()
                and time.monotonic() - self.idle_since < expiry)

    def close(self) -> None:
        self.writer.close()


class UpstreamTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=UpstreamTransport())``: HTTP/1.1 to the upstream, connections reused.

    ``max_connections`` caps connections per origin (waiting requests get ``httpx.PoolTimeout``
    after the pool timeout); ``max_idle`` idle ones are kept for ``keepalive_expiry`` seconds.
    """

    def __init__(self, *, max_connections: int = 256, max_idle: int = 64, keepalive_expiry: float = 4.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._max_connections = max_connections
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots: dict[Origin, asyncio.Semaphore] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("The upstream transport is closed.", request=request)
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin: Origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        slot = self._slots.get(origin)
        if slot is None:
            slot = self._slots[origin] = asyncio.Semaphore(self._max_connections)
        if slot.locked():
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await slot.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("No free connection to the upstream in time.", request=request) from None
        else:
            await slot.acquire()  # free: returns at once, no timer needed
        try:
            return await self._exchange(request, origin, slot, timeouts)
        except BaseException:
            slot.release()
            raise

    async def _exchange(self, request: httpx.Request, origin: Origin, slot: asyncio.Semaphore,
                        timeouts: dict[str, float | None]) -> httpx.Response:
        head, chunked, has_body = _request_head(request)
        while True:
            connection, reused = self._checkout(origin), True
            if connection is None:
                connection, reused = await self._connect(request, origin, timeouts.get("connect")), False
            body_started = False
            try:
                connection.writer.write(head)
                if has_body:
                    body_started = True
                    await _write_body(connection.writer, request, chunked, timeouts.get("write"))
                else:
                    await _drain(connection.writer, request, timeouts.get("write"))
                status, reason, version, headers = await _read_head(connection.reader, request, timeouts.get("read"))
            except httpx.TransportError as exc:
                connection.close()
                # A pooled connection the server had just closed: try the next one (at worst a
                # fresh one, which is never retried) when no request body was consumed yet.
                if reused and not body_started and request.method in _IDEMPOTENT and \
                        isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            break
        stream = _ResponseStream(self, connection, origin, slot, request, status, headers, version,
                                 timeouts.get("read"))
        return httpx.Response(status, headers=headers, stream=stream,
                              extensions={"reason_phrase": reason, "http_version": version})

    def _checkout(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.usable(self._expiry):
                return connection
            connection.close()
        return None

    def _checkin(self, origin: Origin, connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if self._closed or len(idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def _connect(self, request: httpx.Request, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        context: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()  # loads the CA store: once, not per connection
            context = self._ssl_context
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, ssl=context, limit=_HEAD_LIMIT)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"Connecting to {host}:{port} timed out.", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"Cannot connect to {host}:{port}: {exc}.", request=request) from exc
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _request_head(request: httpx.Request) -> tuple[bytes, bool, bool]:
    """The request line and headers, whether the body is chunked, and whether there is a body."""
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    chunked = has_body = False
    for name, value in request.headers.raw:
        lines.append(b"%s: %s\r\n" % (name, value))
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            chunked = has_body = value.lower() == b"chunked"
        elif lowered == b"content-length":
            has_body = value.strip() != b"0"
    lines.append(b"\r\n")
    return b"".join(lines), chunked, has_body


async def _drain(writer: asyncio.StreamWriter, request: httpx.Request, timeout: float | None) -> None:
    if not writer.transport.get_write_buffer_size():
        return  # everything already went to the socket; a connection error shows on the next read
    try:
        async with asyncio.timeout(timeout):
            await writer.drain()
    except TimeoutError:
        raise httpx.WriteTimeout("Writing to the upstream timed out.", request=request) from None
    except OSError as exc:
        raise httpx.WriteError(f"Writing to the upstream failed: {exc}.", request=request) from exc


async def _write_body(writer: asyncio.StreamWriter, request: httpx.Request, chunked: bool,
                      timeout: float | None) -> None:
    stream = request.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    async for chunk in stream:
        if not chunk:
            continue
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        await _drain(writer, request, timeout)
    if chunked:
        writer.write(b"0\r\n\r\n")
    await _drain(writer, request, timeout)


async def _read_head(reader: asyncio.StreamReader, request: httpx.Request, timeout: float | None
                     ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    while True:
        try:
            async with asyncio.timeout(timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise httpx.ReadTimeout("The upstream did not answer in time.", request=request) from None
        except asyncio.IncompleteReadError as exc:
            raise httpx.RemoteProtocolError("The upstream closed the connection without answering.",
                                            request=request) from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError("The upstream sent response headers over 64 KiB.",
                                            request=request) from exc
        except OSError as exc:
            raise httpx.ReadError(f"Reading from the upstream failed: {exc}.", request=request) from exc
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(f"The upstream sent a malformed status line {lines[0][:80]!r}.",
                                            request=request)
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            continue  # 100 Continue, 103 Early Hints: informational, the real answer follows
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise httpx.RemoteProtocolError(f"The upstream sent a malformed header line {line[:80]!r}.",
                                                request=request)
            headers.append((name, value.strip()))
        return status, parts[2] if len(parts) > 2 else b"", parts[0], headers


class _ResponseStream(httpx.AsyncByteStream):
    """The response body: Content-Length, chunked (de-chunked here) or until the upstream closes."""

    def __init__(self, transport: UpstreamTransport, connection: _Connection, origin: Origin,
                 slot: asyncio.Semaphore, request: httpx.Request, status: int, headers: list[tuple[bytes, bytes]],
                 version: bytes, timeout: float | None) -> None:
        self._transport = transport
        self._connection: _Connection | None = connection
        self._origin = origin
        self._slot = slot
        self._request = request
        self._timeout = timeout
        length: int | None = None
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                length = int(value) if value.isdigit() else None
            elif lowered == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lowered == b"connection":
                tokens = {token.strip() for token in value.lower().split(b",")}
                keep_alive = b"keep-alive" in tokens if version == b"HTTP/1.0" else b"close" not in tokens
        if request.method == "HEAD" or status in _NO_BODY_STATUS:
            length, chunked = 0, False
        elif chunked:
            length = None
        self._length = length
        self._chunked = chunked
        self._keep_alive = keep_alive and (length is not None or chunked)
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        reader = connection.reader
        try:
            if self._chunked:
                async for chunk in self._chunks(reader):
                    yield chunk
            elif self._length is not None:
                remaining = self._length
                while remaining:
                    chunk = await self._read(reader.read(min(remaining, _READ_SIZE)))
                    if not chunk:
                        raise httpx.RemoteProtocolError(
                            f"The upstream closed the connection with {remaining} body bytes still to send.",
                            request=self._request)
                    remaining -= len(chunk)
                    yield chunk
            else:
                while chunk := await self._read(reader.read(_READ_SIZE)):
                    yield chunk
            self._done = True
        finally:
            await self.aclose()

    async def _chunks(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        while True:
            size_line = await self._read(reader.readline())
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"The upstream sent a malformed chunk size {size_line[:40]!r}.",
                                                request=self._request) from None
            if size == 0:
                while (await self._read(reader.readline())) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: hop-by-hop, dropped
                return
            while size:
                chunk = await self._read(reader.read(min(size, _READ_SIZE)))
                if not chunk:
                    raise httpx.RemoteProtocolError("The upstream closed the connection inside a chunk.",
                                                    request=self._request)
                size -= len(chunk)
                yield chunk
            await self._read(reader.readline())

    async def _read(self, operation: Any) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                data: bytes = await operation
                return data
        except TimeoutError:
            raise httpx.ReadTimeout("The upstream stopped sending the body.", request=self._request) from None
        except OSError as exc:
            raise httpx.ReadError(f"Reading from the upstream failed: {exc}.", request=self._request) from exc
        except ValueError as exc:  # a chunk-size or trailer line longer than the stream's limit
            raise httpx.RemoteProtocolError(f"The upstream sent an overlong line: {exc}.",
                                            request=self._request) from exc

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        self._slot.release()
        if self._done and self._keep_alive:
            self._transport._checkin(self._origin, connection)
        else:
            connection.close()  # a body not read to its end leaves the connection unusable
