"""A lean HTTP/1.1 client to the upstream, with a keep-alive pool, built for one job: proxying.

    pool = UpstreamPool("http://127.0.0.1:8080", timeout=30)
    response = await pool.request(b"GET /page HTTP/1.1\\r\\nHost: shop.example\\r\\n\\r\\n")
    try:
        while chunk := await response.read():
            ...
    finally:
        response.close()

A general-purpose client (httpx) builds a request object, a URL, a header multidict and a byte
stream per request and spends several times the upstream's own answering time on it; a proxy
already has the request line and headers as bytes and only needs them passed on. So the caller
writes the request head itself (one ``bytes``), and the answer comes back as a status, raw header
pairs in order (repeated ones separate; the connection-level ones, ``Connection``, ``Keep-Alive``,
``Transfer-Encoding``, ``Proxy-*`` and the like, kept apart as this client's business) and the
body as the upstream's raw bytes (de-chunked, never decompressed).

Each connection is an ``asyncio.Protocol`` fed to ``httptools``' response parser, the C parser
uvicorn uses. A small answer (``Content-Length`` up to ``_COLLECT``) is handed over once it is
all in. Idle connections wait in a LIFO stack; one that the upstream closed while idle is noticed
by its protocol and dropped, and a request whose pooled connection turns out dead before any
answer byte arrived is retried once on a fresh connection (when the caller allows it, and never
with a body). Flow control both ways: reading from the upstream pauses while ``_HIGH_WATER`` bytes
wait for a slow visitor, and request bodies wait for the socket to drain.

Errors are ``UpstreamError`` subclasses: ``UpstreamTimeout`` (connecting, or a wait for bytes, took
longer than ``timeout``: the proxy answers 504), the others mean the upstream cannot be used (502).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from .headers import HOP_BY_HOP, RawHeaders

__all__ = [
    "UpstreamClosed", "UpstreamConnectError", "UpstreamError", "UpstreamPool", "UpstreamProtocolError",
    "UpstreamResponse", "UpstreamTimeout",
]

# Reading from the upstream stops while this much body waits to be sent on, and resumes below the
# low mark: memory per exchange stays bounded whatever the body's size.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
_HEAD_LIMIT = 64 * 1024
# An answer with a Content-Length up to this is handed over whole: a small page usually arrives in
# two segments (head, then body), and waiting for both saves a round of wake-ups per request.
_COLLECT = 64 * 1024


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


class _Connection(asyncio.Protocol):
    """One connection to the upstream, and the state of the exchange running on it."""

    __slots__ = (
        "_pool", "_loop", "transport", "closed", "idle_since", "_parser", "_waiter", "_drain_waiter",
        "_write_paused", "_read_paused", "deadline", "chunks", "status", "headers", "hop_by_hop", "head_done",
        "ready", "complete", "keep_alive", "answered", "error", "buffered", "reusable", "_head_only",
        "_informational", "_framed", "_collect", "_head_size", "_spare",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._loop = pool._loop
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)  # set by connection_made
        self.closed = False
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self.deadline = 0.0
        self.chunks: collections.deque[bytes] = collections.deque()
        # The parser of the last exchange when it ended at a message boundary, for the next one:
        # making a parser costs more than the rest of ``begin``.
        self._spare: httptools.HttpResponseParser | None = None
        self.begin(False)
        self._parser = None

    def begin(self, head_only: bool) -> None:
        """Start a new exchange, on a parser at a message boundary (a ``HEAD`` answer leaves one mid-message)."""
        parser, self._spare = self._spare, None
        self._parser = parser or httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.hop_by_hop: list[tuple[bytes, bytes]] | None = None
        self.head_done = False
        self.ready = False  # the head is here, and the whole body too when it is small
        self.complete = False
        self.keep_alive = False
        self.answered = False  # a byte of the answer arrived: the request reached the upstream
        self.error: UpstreamError | None = None
        self.chunks.clear()
        self.buffered = 0
        self.reusable = True
        self._head_only = head_only
        self._informational = False
        self._framed = False
        self._collect = False
        self._head_size = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio classes

    def data_received(self, data: bytes) -> None:
        self.answered = True
        if self._waiter is not None:
            self.deadline = self._loop.time() + self._pool.timeout  # bytes came: the wait starts over
        parser = self._parser
        if parser is None or self.complete:
            # Bytes nobody asked for (or after a complete answer): the connection is out of step.
            self._abort(UpstreamProtocolError("The upstream sent bytes outside of an answer."))
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._abort(UpstreamProtocolError("The upstream switched protocols on a plain HTTP request."))
            return
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
            self._abort(UpstreamProtocolError(f"The upstream sent a malformed answer: {cause}."))
            return
        if not self.head_done:
            # llhttp keeps no limit of its own: an endless head would grow ``headers`` forever.
            self._head_size += len(data)
            if self._head_size > _HEAD_LIMIT:
                self._abort(UpstreamProtocolError("The upstream sent response headers over 64 KiB."))
                return

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None and not self.complete and self.error is None:
            if self.head_done and not self._framed:
                self.complete = self.ready = True  # no length, not chunked: the body runs until the upstream closes
            else:
                reason = f": {exc}" if exc else ""
                self.error = UpstreamClosed(f"The upstream closed the connection before its answer was complete"
                                            f"{reason}.")
        self._wake()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        # Sorted as they come: the connection-level fields are this client's business (framing,
        # keep-alive) and never reach the visitor; everything else is kept in order, as sent.
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered.startswith(b"proxy"):
            if self.hop_by_hop is None:
                self.hop_by_hop = []
            self.hop_by_hop.append((lowered, value))
            if lowered == b"transfer-encoding" and b"chunked" in value.lower():
                self._framed = True
            return
        if lowered == b"content-length":
            self._framed = True
            self._collect = value.isdigit() and int(value) <= _COLLECT
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if status < 200:
            # 100 Continue, 103 Early Hints: informational, the real answer follows on the same connection.
            self._informational = True
            self.headers = []
            self.hop_by_hop = None
            self._framed = self._collect = False
            return
        self.status = status
        self.head_done = True
        if self.hop_by_hop is not None:
            self._drop_named()
        if self._head_only or status in (204, 304):
            self._framed = True
            if self._head_only:
                # httptools cannot be told the request was HEAD; the next exchange gets a new parser.
                self.complete = True
                self.keep_alive = self._parser.should_keep_alive()
        elif self._collect:
            return  # a small body: wait for it too, on_message_complete makes the answer ready
        self.ready = True
        self._wake()

    def _drop_named(self) -> None:
        assert self.hop_by_hop is not None
        named: set[bytes] = set()
        for name, value in self.hop_by_hop:
            if name == b"connection":
                named.update(token.strip().lower() for token in value.split(b","))
        named -= HOP_BY_HOP
        if named:
            self.headers = [pair for pair in self.headers if pair[0].lower() not in named]

    def on_body(self, body: bytes) -> None:
        if self._head_only:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        if self.ready:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self.complete:
            return
        assert self._parser is not None
        self.complete = self.ready = True
        self.keep_alive = self._parser.should_keep_alive()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)  # an upload the upstream stopped reading: its answer is in, stop sending

    # used by the pool and the response

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _abort(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()

    def _time_out(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(UpstreamTimeout("The upstream did not send anything within the timeout."))

    async def wait(self) -> None:
        """Wait for the next event on this connection (bytes, end, error), at most ``timeout`` seconds.

        No timer per wait: the pool's sweep, a few times per ``timeout``, ends the waits that are
        past their deadline (a timer per request cost more than the rest of the wait).
        """
        pool = self._pool
        waiter = self._waiter = self._loop.create_future()
        self.deadline = self._loop.time() + pool.timeout
        pool._waiting.add(self)
        if pool._sweeper is None:
            pool._start_sweeping()
        try:
            await waiter
        finally:
            self._waiter = None
            pool._waiting.discard(self)

    async def send_body(self, body: AsyncIterator[bytes], chunked: bool) -> None:
        """Write the request body as it comes; stop early once the upstream's whole answer is in."""
        write = self.transport.write
        async for chunk in body:
            if self.complete or self.closed:
                # A complete answer before the upload's end (a 413, a redirect): the rest is not
                # wanted. An answer that is still running (an echo) keeps the upload going.
                break
            if chunked:
                self.transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                write(chunk)
            if self._write_paused:
                await self._drain()
        else:
            if chunked and not self.closed:
                write(b"0\r\n\r\n")
            return
        self.reusable = False  # the upload was cut short: the upstream still expects the rest of it

    async def _drain(self) -> None:
        while self._write_paused and not self.closed and not self.complete:
            self._drain_waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(self._pool.timeout):
                    await self._drain_waiter
            except TimeoutError:
                raise UpstreamTimeout("The upstream did not take the request body within the timeout.") from None
            finally:
                self._drain_waiter = None

    def resume(self) -> None:
        if self._read_paused and self.buffered < _LOW_WATER and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        transport = self.transport
        if transport is not None:  # None only if the connection never got made
            if transport.get_write_buffer_size():
                transport.abort()  # unsent bytes (an upload nobody reads) would hold a closed transport open
            else:
                transport.close()


class UpstreamResponse:
    """The upstream's answer: ``status``, raw ``headers`` in order, and the body through ``read()``.

    Call ``close()`` when done (it returns a fully read connection to the pool, or closes it).
    """

    __slots__ = ("status", "headers", "_connection", "_pool")

    def __init__(self, pool: UpstreamPool, connection: _Connection) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self.status = connection.status
        self.headers = connection.headers

    @property
    def length(self) -> int | None:
        """The body's length as the ``Content-Length`` states it, if it does."""
        for name, value in self.headers:
            if name.lower() == b"content-length" and value.isdigit():
                return int(value)
        return None

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived already (small pages usually come with their head)."""
        connection = self._connection
        return connection is not None and connection.complete and connection.error is None

    def finish(self) -> bytes:
        """The whole body, when it is ``complete``, and the connection back to the pool in one step."""
        connection, self._connection = self._connection, None
        if connection is None:
            return b""
        chunks = connection.chunks
        data = (chunks.popleft() if len(chunks) == 1 else b"".join(chunks)) if chunks else b""
        self._pool._release(connection)
        return data

    async def read(self) -> bytes:
        """The next piece of the body as it arrived (at most ``_HIGH_WATER`` bytes wait); ``b""`` at the end."""
        connection = self._connection
        if connection is None:
            return b""
        while True:
            chunks = connection.chunks
            if chunks:
                chunk = chunks.popleft()
                connection.buffered -= len(chunk)
                connection.resume()
                return chunk
            if connection.error is not None:
                raise connection.error
            if connection.complete:
                return b""
            if connection.closed:
                raise UpstreamClosed("The upstream closed the connection before its answer was complete.")
            await connection.wait()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Give the connection back: to the pool when the answer was read to its end, else closed."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool._release(connection)


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to one upstream (``http(s)://host[:port]``).

    ``max_connections`` caps connections in use at once (more requests wait, then ``UpstreamTimeout``);
    up to ``max_idle`` idle ones are kept for ``keepalive_expiry`` seconds. ``timeout`` bounds connecting,
    waiting for a free connection, and each wait for the upstream's bytes. HTTPS upstreams are
    verified against ``ssl_context`` (default: the system's CA store).
    """

    _loop: asyncio.AbstractEventLoop  # the loop of the first request: the connections belong to it

    def __init__(self, url: str, *, timeout: float = 30.0, max_connections: int = 256, max_idle: int = 64,
                 keepalive_expiry: float = 4.0, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"The upstream must be an http(s) URL like 'http://127.0.0.1:8080', got {url!r}.")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self._tls = parts.scheme == "https"
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._idle: list[_Connection] = []
        self._active = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._waiting: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._pending: list[tuple[_Connection, bytes]] = []
        self._closed = False

    async def request(self, method: str, target: bytes, headers: RawHeaders,
                      body: AsyncIterator[bytes] | None = None, *, retry: bool = True) -> UpstreamResponse:
        """Send ``head`` (request line and headers, ending in a blank line) and ``body``; return the answer.

        ``chunked`` frames the body in chunks (the head must say ``Transfer-Encoding: chunked``);
        ``retry`` allows one retry on a fresh connection when a pooled one is found dead (only without
        a body); ``head_only`` says the answer has no body whatever its headers say (``HEAD``).
        Raises ``UpstreamError`` subclasses, and whatever ``body`` raises.
        """
        head = b"%s %s HTTP/1.1\r\n%s\r\n" % (
            method.encode("ascii"), target, b"".join([b"%s: %s\r\n" % pair for pair in headers]))
        chunked = body is not None and not any(name.lower() == b"content-length" for name, _ in headers)
        head_only = method == "HEAD"
        try:
            loop = self._loop
        except AttributeError:  # the first request; asking asyncio each time costs a getpid() system call
            loop = self._loop = asyncio.get_running_loop()
        if self._closed:
            raise UpstreamConnectError("The connection pool to the upstream is closed.")
        if self._active < self._max_connections and not self._waiters:
            self._active += 1
        else:
            await self._acquire(loop)
        try:
            fresh = False
            while True:
                connection = None
                if not fresh:
                    connection = self.pop_idle()
                reused = connection is not None
                if connection is None:
                    connection = await self._connect()
                connection.begin(head_only)
                try:
                    self.write_head(connection, head, at_once=body is not None)
                    if body is not None:
                        await connection.send_body(body, chunked)
                    while not connection.ready:
                        if connection.error is not None:
                            raise connection.error
                        if connection.closed:
                            raise UpstreamClosed("The upstream closed the connection without answering.")
                        # ``connection.wait()`` written out: every request waits here once, and a
                        # coroutine less is one frame less to make and to resume through.
                        waiter = connection._waiter = loop.create_future()
                        connection.deadline = loop.time() + self.timeout
                        self._waiting.add(connection)
                        if self._sweeper is None:
                            self._start_sweeping()
                        try:
                            await waiter
                        finally:
                            connection._waiter = None
                            self._waiting.discard(connection)
                except UpstreamClosed:
                    connection.close()
                    # A pooled connection the upstream closed just as it was taken: the request never
                    # reached it, so trying once more, on a fresh connection, repeats nothing.
                    if reused and retry and body is None and not connection.answered:
                        fresh = True
                        continue
                    raise
                except BaseException:
                    connection.close()
                    raise
                return UpstreamResponse(self, connection)
        except BaseException:
            self._release_slot()
            raise

    def pop_idle(self) -> _Connection | None:
        """The most recently used idle connection still open and within its expiry, or ``None``."""
        idle, now = self._idle, self._loop.time()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self._expiry:
                return connection
            connection.close()
        return None

    def write_head(self, connection: _Connection, head: bytes, *, at_once: bool = False) -> None:
        """Write a request head now, or with the others of this event loop round."""
        if at_once or self._active == 1:
            # Alone in flight, there is nothing to batch with: waiting for the next
            # round of the event loop would only cost one (a few thousand instructions).
            connection.transport.write(head)
        else:
            # Heads are written together once this round of the event loop is done:
            # the upstream then wakes once for a batch of requests instead of once per
            # request, which costs it (and so the proxy's throughput) much less.
            pending = self._pending
            if not pending:
                self._loop.call_soon(self._flush)
            pending.append((connection, head))

    async def _acquire(self, loop: asyncio.AbstractEventLoop) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed a slot just as the wait ended: pass it on
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout("No free connection to the upstream within the timeout.") from None
            raise

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        # A connection closed meanwhile shows up to its waiting request, which retries or fails.
        for connection, head in pending:
            if not connection.closed:
                connection.transport.write(head)

    def _start_sweeping(self) -> None:
        # Deadlines are met to within a quarter of the timeout (at most a second late).
        self._sweeper = self._loop.call_later(min(self.timeout / 4, 1.0), self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._loop.time()
        for connection in list(self._waiting):
            if connection.deadline <= now:
                connection._time_out()
        if self._waiting:
            self._start_sweeping()

    def _release_slot(self) -> None:
        # A freed slot goes straight to the longest waiter, so a new arrival cannot take it first.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._active -= 1

    def _release(self, connection: _Connection) -> None:
        if self._waiters:
            self._release_slot()
        else:
            self._active -= 1
        # A complete answer may have unread bytes left: they are all here, so the connection is in step.
        if (connection.complete and connection.keep_alive and connection.reusable and connection.error is None
                and not connection.closed and not self._closed and len(self._idle) < self._max_idle):
            if not connection._head_only:
                connection._spare = connection._parser  # the whole answer went through it: it is between messages
            connection._parser = None
            connection.chunks.clear()
            connection.buffered = 0
            connection.resume()
            connection.idle_since = self._loop.time()
            self._idle.append(connection)
        else:
            connection.close()  # an answer not read to its end leaves the connection unusable

    async def _connect(self) -> _Connection:
        context: ssl.SSLContext | None = None
        if self._tls:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()  # loads the CA store: once, not per connection
            context = self._ssl_context
        try:
            async with asyncio.timeout(self.timeout):
                _, connection = await self._loop.create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=context,
                    server_hostname=self.host if context is not None else None)
        except TimeoutError:
            raise UpstreamTimeout(f"Connecting to {self.host}:{self.port} timed out.") from None
        except OSError as exc:
            raise UpstreamConnectError(f"Cannot connect to {self.host}:{self.port}: {exc}.") from exc
        return connection

    async def aclose(self) -> None:
        """Close the idle connections; connections in use close when their answer is done."""
        self._closed = True
        if self._sweeper is not None and not self._waiting:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
