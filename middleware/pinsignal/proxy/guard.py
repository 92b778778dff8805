"""Limits on what a visitor can make the proxy hold: the request head, its time, an unread answer.

Two layers, because an ASGI app only sees a request once its whole head has arrived:

- ``guarded_protocol(settings)``: the HTTP protocol that ``pinsignal proxy`` gives uvicorn
  (``http=``), uvicorn's own httptools protocol wrapped, with three limits added at the connection:
  a head that takes longer than ``head_timeout`` seconds to arrive (counted from the connection,
  or from the first segment of a head that did not come whole) closes the connection; a head
  still unfinished past ``max_head_size`` bytes is answered ``431`` (checked after every segment
  read, so at most one segment more is held); an answer the visitor leaves unread (the write
  buffer stays above its high-water mark) for ``write_timeout`` seconds aborts the connection,
  which ends the exchange and gives the upstream connection back.
- ``head_problem(scope, max_head_size)``: what ``ProxyApp`` checks on every complete head, under
  any server: exactly one valid ``Host`` in HTTP/1.1 (RFC 9112 section 3.2; two are always
  refused), else ``400``; a head over ``max_head_size`` bytes, ``431``.

    uvicorn.run(app, http=guarded_protocol(settings), server_header=False, date_header=False)
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
from typing import Any, cast

import httptools
from starlette.types import Receive, Scope, Send

from .settings import ProxySettings

__all__ = ["ClientSlots", "GuardedHttpProtocol", "guarded_protocol", "head_problem", "refuse", "served_protocol"]

# RFC 9110 section 7.2 / RFC 3986: uri-host [":" port]; an IP literal in brackets, or a reg-name.
_HOST_RE = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?")
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_TEXT = {
    400: b"The request needs exactly one valid Host header.",
    431: b"The request head is too large.",
}
# After a refusal, how long the rest of an upload is read and dropped before the connection is
# closed: closing at once, with bytes unread, would reset the connection and lose the answer.
_LINGER = 2.0


def head_problem(scope: Scope, max_head_size: int) -> int | None:
    """``400`` for a missing (HTTP/1.1), repeated or malformed ``Host``, ``431`` past ``max_head_size``, else ``None``.

    The size counts what the server parsed (target, header names and values, separators), so it is
    within a few bytes of the head as sent.
    """
    host: bytes | None = None
    hosts = 0
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b"")) + 24  # request line, CRLFs
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
        if name == b"host":
            host = value
            hosts += 1
    if hosts > 1 or (host is None and scope.get("http_version", "1.1") not in ("1.0", "0.9")):
        return 400
    if host is not None and not _HOST_RE.fullmatch(host):
        return 400
    return 431 if size > max_head_size else None


async def refuse(send: Send, status: int, *, websocket: bool = False, scope: Scope | None = None) -> None:
    """Answer ``status`` with a one-line text body (for a WebSocket, as a denial response when the server can)."""
    body = _TEXT[status]
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if websocket:
        if "websocket.http.response" in ((scope or {}).get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


@functools.cache
def served_protocol(name: str = "httptools") -> type[asyncio.Protocol]:
    """The protocol class uvicorn serves HTTP/1.1 with for ``http=name``, as uvicorn's public ``Config``
    resolves it: the guard wraps that class and names none of uvicorn's modules."""
    import uvicorn

    config = uvicorn.Config(_no_app, http=name, lifespan="off", log_config=None, proxy_headers=False)
    config.load()
    return config.http_protocol_class


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover - never served
    raise RuntimeError("the placeholder app only lets uvicorn.Config resolve a protocol class")


class GuardedHttpProtocol(asyncio.Protocol):
    """uvicorn's HTTP protocol, wrapped, with a head-read timeout, a head-size limit and a write deadline.

    uvicorn builds one object per connection from this class (``http=``); each builds the protocol
    uvicorn would have served with and hands it the connection, the bytes and the flow-control
    calls of the asyncio ``Protocol`` interface. The guard reads the same bytes with its own
    httptools parser, to know where each head starts and ends; it overrides nothing of uvicorn's.
    The limits are class attributes; ``guarded_protocol(settings)`` makes a subclass with a
    settings' values.
    """

    head_timeout: float = 5.0
    max_head_size: int = 64 * 1024
    write_timeout: float = 30.0

    @classmethod
    def configure(cls, settings: ProxySettings) -> None:
        """Take ``settings``' limits (each ``--workers`` process does, since uvicorn imports this class by name)."""
        cls.head_timeout, cls.max_head_size = settings.head_timeout, settings.max_head_size
        cls.write_timeout = settings.write_timeout

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._inner = served_protocol()(*args, **kwargs)
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._guard_transport: asyncio.Transport | None = None
        self._guard_loop = asyncio.get_running_loop()
        self._head_open = True  # until the first head is complete, the connection waits for one
        self._idle = True  # no message under way: the next byte starts a head
        self._head_bytes = 0
        self._begun = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol, passed on to uvicorn's protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._inner.connection_made(stream)
        self._guard_transport = stream
        self._head_timer = self._guard_loop.call_later(self.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused request, read and dropped until the connection closes
        if self._parser is not None and not self._watch(data):
            return
        cast(Any, self._inner).data_received(data)

    def pause_writing(self) -> None:
        self._inner.pause_writing()
        if self._write_timer is None:
            self._write_timer = self._guard_loop.call_later(self.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        self._inner.resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    # the guard's own parser
    def _watch(self, data: bytes) -> bool:
        """Follow ``data`` through the guard's parser; ``False`` once the request is refused."""
        idle_before = self._idle
        self._begun = 0
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._stop_watching()  # a WebSocket: from here on the bytes are frames, not heads
            return True
        except httptools.HttpParserError:
            self._stop_watching()  # uvicorn's protocol reads the same bytes and answers 400
            return True
        if not self._head_open:
            return True
        # Still inside a head (most heads arrive whole in one segment and never get here): how much
        # of it is held so far. A segment that only continued the head counts whole; one that
        # started it counts whole if nothing came before it, else not at all (pipelined requests
        # first): at most one segment more than the limit is ever held.
        if self._begun == 0:
            self._head_bytes += len(data)
        elif self._begun == 1 and idle_before:
            self._head_bytes = len(data)
        if self._head_bytes > self.max_head_size:
            self._refuse(431)
            return False
        if self._head_timer is None:
            self._head_timer = self._guard_loop.call_later(self.head_timeout, self._head_timed_out)
        return True

    def _stop_watching(self) -> None:
        self._parser = None
        self._head_open = False
        self._cancel_timers()

    def on_message_begin(self) -> None:
        # The head timer is armed only for a head that does not arrive whole (in _watch).
        self._head_open, self._idle = True, False
        self._head_bytes = 0
        self._begun += 1

    def on_headers_complete(self) -> None:
        self._head_open = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def on_message_complete(self) -> None:
        self._idle = True

    # the limits
    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self._guard_transport
        if self._head_open and transport is not None and not transport.is_closing():
            transport.close()  # like uvicorn's keep-alive timeout: no answer, the connection ends

    def _write_timed_out(self) -> None:
        self._write_timer = None
        if self._guard_transport is not None:
            # abort, not close: close would wait for the visitor to read what is buffered.
            self._guard_transport.abort()

    def _refuse(self, status: int) -> None:
        transport = self._guard_transport
        if transport is None:
            return
        self._refused = True
        self._cancel_timers()
        body = _TEXT[status]
        transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                        b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body))
        self._guard_loop.call_later(_LINGER, transport.close)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = None


def guarded_protocol(settings: ProxySettings) -> type[GuardedHttpProtocol]:
    """The protocol class for uvicorn's ``http=`` option, with ``settings``' limits."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {
        "head_timeout": settings.head_timeout, "max_head_size": settings.max_head_size,
        "write_timeout": settings.write_timeout,
    })


class ClientSlots:
    """At most ``limit`` upstream exchanges at once per visitor address; more from the same address wait.

    A visitor who holds answers unread (or sends slowly) can then take ``limit`` of the upstream
    connections, not all of them. An IPv6 address counts by its /64, which one subscriber gets whole.

        slots = ClientSlots(32)
        if await slots.acquire(key, timeout=30):
            try: ...
            finally: slots.release(key)
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @staticmethod
    def key(address: str | None) -> str:
        """The address a visitor counts under: the IPv4 address, an IPv6 address's /64."""
        if address is None or ":" not in address:
            return address or "unknown"
        try:
            return ":".join(ipaddress.IPv6Address(address).exploded.split(":")[:4]) + "::/64"
        except ValueError:
            return address

    async def acquire(self, key: str, timeout: float) -> bool:
        """Take one of ``key``'s slots, waiting up to ``timeout`` seconds; ``False`` if none came free."""
        entry = self._slots.get(key)
        if entry is None:
            entry = self._slots[key] = (asyncio.Semaphore(self._limit), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            if not semaphore.locked():
                await semaphore.acquire()  # free: no wait, no timer
                return True
            await asyncio.wait_for(semaphore.acquire(), timeout)
            return True
        except TimeoutError:
            self._forget(key, users)
            return False
        except BaseException:
            self._forget(key, users)
            raise

    def release(self, key: str) -> None:
        """Give back a slot that ``acquire`` gave."""
        semaphore, users = self._slots[key]
        semaphore.release()
        self._forget(key, users)

    def _forget(self, key: str, users: list[int]) -> None:
        users[0] -= 1
        if not users[0]:
            del self._slots[key]

    def held(self, key: str) -> int:
        """How many requests from ``key`` hold or wait for a slot (for tests and logs)."""
        entry = self._slots.get(key)
        return entry[1][0] if entry else 0
