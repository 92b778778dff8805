"""The fast lane: a request the middleware does nothing to, relayed to the upstream without ASGI.

Most requests through the proxy are plain page and asset loads: no ``epik=`` in the query, not
under the collector prefix, no body. For those, ``PinSignalMiddleware`` only passes the request on
and ``ProxyApp`` only forwards it, yet the ASGI path still builds a scope, a task, a chain of
coroutines, futures and message dicts, and then the server serialises the answer again: about as
much CPU as the whole upstream spends answering. Here the server protocol (``server.py``) hands
such a request straight to an ``_Exchange``, which writes the same request head the slow path
writes (``Forwarder.request_head``) on a pooled connection and writes the upstream's answer back
to the visitor as uvicorn would have serialised it: the same status line, the headers in order
(names lowercased, hop-by-hop ones left out, ``Set-Cookie`` never folded), the raw body, chunked
when the upstream gave no length, ``connection: close`` when the visitor asked for it.

Everything else takes the ASGI path, unchanged: landings, collector routes, uploads, upgrades,
``--inject``, ``--host-header upstream``, navigations under ``--server-pageviews``, a request
behind another one on the same connection (pipelining), and any request when the pool has no free
slot at once (it then waits in line there).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from pinsignal.asgi import PinSignalMiddleware

from .forward import IDEMPOTENT, Forwarder, error_answer
from .headers import RawHeaders
from .upstream import UpstreamClosed, UpstreamError, UpstreamPool, UpstreamProtocolError, UpstreamTimeout, _Connection

if TYPE_CHECKING:
    from .app import ProxyApp

__all__ = ["FastLane", "Visitor", "fast_lane_of"]


class Visitor(Protocol):
    """What an exchange needs of the server protocol it answers on (``server.ProxyHttpProtocol``)."""

    transport: asyncio.Transport

    @property
    def client(self) -> tuple[str, int] | None:
        """The visitor's address and port."""

    @property
    def scheme(self) -> str | None:
        """``http`` or ``https``, as the visitor reached the proxy."""

    def fast_done(self, exchange: _Exchange) -> None:
        """The answer is written (or the connection given up): the next request may start."""


_LANES: weakref.WeakKeyDictionary[Any, FastLane | None] = weakref.WeakKeyDictionary()


def fast_lane_of(app: Any) -> FastLane | None:
    """The fast lane for the app a server runs, when it is the proxy (bare, or exactly as ``create_app``
    wraps it); ``None`` for anything else, which then runs as plain ASGI.

    The lane relies on what ``PinSignalMiddleware`` does to a request that is not a landing and not
    under its prefix: nothing. Any other wrapper might do something, so it gets no lane.
    """
    try:
        return _LANES[app]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable: not one of ours
        return None
    from .app import ProxyApp

    lane = None
    if isinstance(app, ProxyApp):
        lane = FastLane(app, app.settings.collector_prefix)
    elif type(app) is PinSignalMiddleware:
        inner = app.app
        proxy = getattr(inner, "__self__", None)
        if isinstance(proxy, ProxyApp) and getattr(inner, "__func__", None) is ProxyApp.dispatch:
            lane = FastLane(proxy, app.config.collector_prefix)
    _LANES[app] = lane
    return lane


class FastLane:
    """Decides which requests skip ASGI, and starts their exchanges."""

    def __init__(self, proxy: ProxyApp, collector_prefix: str) -> None:
        settings = proxy.settings
        self._proxy = proxy
        # --inject may edit any HTML answer, --host-header upstream rewrites Location: ASGI path.
        self.enabled = not settings.inject and settings.host_header == "keep"
        self._pageviews = settings.server_pageviews
        self._prefix = (collector_prefix + "/").encode("ascii")
        self._bound: UpstreamPool | None = None

    def exchange(self, visitor: Visitor, method: bytes, url: bytes, headers: RawHeaders,
                 keep_alive: bool) -> _Exchange | None:
        """An exchange ready to ``start`` for this request (one without a body), or ``None`` for the ASGI path."""
        if not self.enabled or url[:1] != b"/":
            return None  # CONNECT's authority, OPTIONS *, an absolute URL: let uvicorn judge them
        path, _, query = url.partition(b"?")
        # The middleware compares the decoded path: with no escapes, it is the raw one. A non-ASCII
        # path is a 400 from uvicorn, which only the slow path gives. (``find``, not ``in``: on
        # bytes, ``in`` first tries its argument as an int and formats an error message.)
        if (path.startswith(self._prefix) or query.find(b"epik=") >= 0 or path.find(b"%") >= 0
                or url.find(b"#") >= 0 or not path.isascii()):
            return None
        if self._pageviews and method == b"GET" and _may_be_navigation(headers):
            return None
        forwarder = self._proxy.forwarder()
        pool = forwarder.pool
        if pool is not self._bound:
            pool.bind(asyncio.get_running_loop())  # once per pool: the loop is asked with a system call
            self._bound = pool
        text_method = method.decode("ascii")
        scope = {"headers": headers, "client": visitor.client, "scheme": visitor.scheme, "raw_path": path,
                 "query_string": query}
        head = forwarder.request_head(scope, text_method, False)[0]
        if not pool.try_slot():  # last: nothing after it may fail and leave the slot taken
            return None
        # Positional: keywords to a class call cost a dict per request.
        return _Exchange(visitor, forwarder, pool, head, method == b"HEAD", text_method in IDEMPOTENT, keep_alive)


def _may_be_navigation(headers: RawHeaders) -> bool:
    """Whether ``--server-pageviews`` could count this GET (a superset of ``PageviewPolicy``'s test)."""
    for name, value in headers:
        if name == b"sec-fetch-dest" and value.lower() == b"document":
            return True
        if name == b"accept" and value.lower().find(b"text/html") >= 0:
            return True
    return False


class _Exchange:
    """One request on the fast lane: the head written upstream, the answer relayed as it arrives.

    Also stands in for uvicorn's request cycle on the server protocol while it runs
    (``response_complete``, and ``keep_alive``, which a graceful shut-down clears).
    """

    __slots__ = (
        "_visitor", "_forwarder", "_pool", "_head", "_head_only", "_retry", "keep_alive", "response_complete",
        "_connection", "_reused", "_head_sent", "_chunked", "_paused", "_done", "_slot", "_task",
    )

    def __init__(self, visitor: Visitor, forwarder: Forwarder, pool: UpstreamPool, head: bytes, head_only: bool,
                 retry: bool, keep_alive: bool) -> None:
        self._visitor = visitor
        self._forwarder = forwarder
        self._pool = pool
        self._head = head
        self._head_only = head_only
        self._retry = retry
        self.keep_alive = keep_alive
        self.response_complete = False
        self._connection: _Connection | None = None
        self._reused = False
        self._head_sent = False
        self._chunked = False
        self._paused = False  # the visitor's socket is full: the upstream is not read meanwhile
        self._done = False
        self._slot = True  # a pool slot is held (taken by ``FastLane.exchange``)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Send the head on an idle pooled connection, or on a new one."""
        connection = self._pool.pop_idle()
        if connection is None:
            self._task = asyncio.ensure_future(self._connect())
        else:
            self._send(connection, reused=True)

    async def _connect(self) -> None:
        try:
            connection = await self._pool._connect()
        except UpstreamError as exc:
            self._fail(exc)
            return
        if self._done:  # the visitor left meanwhile (the slot went back then)
            connection.close()
            return
        self._send(connection, reused=False)

    def _send(self, connection: _Connection, *, reused: bool) -> None:
        self._connection = connection
        self._reused = reused
        connection.begin(self._head_only)
        connection.relay = self
        self._pool.watch(connection)
        self._pool.write_head(connection, self._head)

    # Relay: called by the connection

    def flush(self) -> None:
        """Write what the upstream sent so far: the head once it is ready, then body bytes, then the end."""
        connection = self._connection
        if self._done or connection is None:
            return
        if connection.error is not None:
            self._fail(connection.error)
            return
        if not connection.ready:
            if connection.closed:
                self._fail(UpstreamClosed("The upstream closed the connection without answering."))
            return
        out: list[bytes] = []
        if not self._head_sent:
            self._head_sent = True
            if connection.status not in STATUS_LINE:
                # uvicorn has no status line for it and drops the connection: so does the lane.
                self._fail(UpstreamProtocolError(f"The upstream answered with status {connection.status}."))
                return
            out.append(self._response_head(connection))
        chunks = connection.chunks
        if chunks:
            body = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            connection.buffered = 0
            if self._chunked:
                out += (b"%x\r\n" % len(body), body, b"\r\n")
            else:
                out.append(body)
        if connection.complete:
            if self._chunked:
                out.append(b"0\r\n\r\n")
            self._visitor.transport.write(b"".join(out))
            self._finish(connection)
            return
        if out:
            self._visitor.transport.write(b"".join(out))
        if not self._paused:
            connection.resume()

    def timed_out(self) -> None:
        self._fail(UpstreamTimeout("The upstream did not send anything within the timeout."))

    def _response_head(self, connection: _Connection) -> bytes:
        """The status line and headers exactly as uvicorn writes them for the slow path's answer."""
        status = connection.status
        parts = [STATUS_LINE[status]]
        no_body = status in (204, 304)
        length = False
        for name, value in connection.headers:
            name = name.lower()
            if name == b"content-length":
                if no_body:
                    continue  # as the slow path: the server in front would wait for that many bytes
                length = True
            parts += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        if not length and not self._head_only and not no_body:
            self._chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _finish(self, connection: _Connection) -> None:
        self._done = True
        self.response_complete = True
        self._detach(connection)
        self._slot = False
        self._pool._release(connection)  # back to the pool (or closed), and the slot with it
        self._visitor.fast_done(self)

    def _fail(self, error: UpstreamError) -> None:
        if self._done:
            return
        connection = self._connection
        if connection is not None:
            self._detach(connection)
            connection.close()
            self._connection = None
            if (isinstance(error, UpstreamClosed) and self._reused and self._retry and not connection.answered
                    and not self._head_sent):
                # A pooled connection the upstream closed just as it was taken: the request never
                # reached it, so trying once more, on a fresh connection, repeats nothing.
                self._reused = False
                self._retry = False
                self._task = asyncio.ensure_future(self._connect())
                return
        self._done = True
        self._give_back()
        status = self._forwarder.failed(error)
        if self._head_sent:
            # The answer has started: only a cut-off connection can tell the visitor it is incomplete.
            self._visitor.transport.close()
        else:
            headers, body = error_answer(status)
            parts = [STATUS_LINE[status]]
            for name, value in headers:
                parts += (name, b": ", value, b"\r\n")
            if not self.keep_alive:
                parts.append(b"connection: close\r\n")
            parts += (b"\r\n", b"" if self._head_only else body)
            self._visitor.transport.write(b"".join(parts))
            self.response_complete = True
        self._visitor.fast_done(self)

    def _detach(self, connection: _Connection) -> None:
        connection.relay = None
        self._pool._waiting.discard(connection)

    def _give_back(self) -> None:
        if self._slot:
            self._slot = False
            self._pool._release_slot()

    # Called by the server protocol

    def abandon(self) -> None:
        """The visitor went away: stop reading the upstream; the connection is closed, not reused."""
        if self._done:
            return
        self._done = True
        connection = self._connection
        if connection is not None:
            self._detach(connection)
            connection.close()
            self._connection = None
        self._give_back()

    def pause(self) -> None:
        """The visitor's socket is full: stop reading from the upstream (and stop its clock)."""
        self._paused = True
        connection = self._connection
        if connection is not None and not self._done and not connection.closed:
            if not connection._read_paused:
                connection._read_paused = True
                connection.transport.pause_reading()
            self._pool._waiting.discard(connection)

    def resume(self) -> None:
        self._paused = False
        connection = self._connection
        if connection is not None and not self._done and not connection.closed:
            connection.resume()
            self._pool.watch(connection)
