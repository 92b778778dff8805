"""``ProxyHttpProtocol``: uvicorn's httptools protocol, with the proxy's fast lane (``fastlane.py``).

    uvicorn.run(create_app(settings), http=ProxyHttpProtocol, server_header=False, date_header=False,
                proxy_headers=False)

``pinsignal proxy`` serves with it. A request the middleware provably does nothing to is relayed
to the upstream by the lane, straight from the parser's callbacks; every other request, and every
request of a server running anything but the proxy, goes through uvicorn's own code unchanged.
uvicorn's bookkeeping stays as it is: the keep-alive timer, pipelined requests waiting their turn,
graceful shut-down, flow control.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .fastlane import FastLane, _Exchange, fast_lane_of

__all__ = ["VERIFIED_UVICORN", "ProxyHttpProtocol", "http_protocol"]

logger = logging.getLogger("pinsignal.proxy")

# The uvicorn releases whose protocol internals the lane overrides were read and tested against
# (the parser callbacks, on_response_complete, the keep-alive handling). On any other release the
# proxy serves with uvicorn's own protocol: every request the ASGI way, correct and slower.
VERIFIED_UVICORN = ("0.54.",)


def http_protocol(version: str = uvicorn.__version__) -> type[HttpToolsProtocol] | str:
    """What ``pinsignal proxy`` gives uvicorn as ``http=``: the lane's protocol when ``version`` is verified."""
    if version.startswith(VERIFIED_UVICORN):
        return ProxyHttpProtocol
    logger.info("uvicorn %s is not one the proxy's fast lane was tested with (%s); serving every request "
                "through ASGI", version, ", ".join(release + "x" for release in VERIFIED_UVICORN))
    return "httptools"

# Request headers that send a request the ASGI way: a body, a 100-continue, an upgrade.
_ASGI_ONLY = frozenset({b"content-length", b"transfer-encoding", b"expect", b"upgrade"})


class ProxyHttpProtocol(HttpToolsProtocol):
    """HTTP/1.1 for the visitors, with plain pass-through requests relayed without ASGI."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # The access log, a root path and the concurrency limit's 503 are uvicorn's request
        # cycle's business: no lane with them.
        uvicorn_only = self.access_log or self.root_path or self.limit_concurrency is not None
        lane = None if uvicorn_only else fast_lane_of(self.app)
        self._lane: FastLane | None = lane if lane is not None and lane.enabled else None
        self._fast: _Exchange | None = None  # the fast lane's exchange in flight on this connection
        self._asgi_only = False  # this request has a header that sends it the ASGI way
        self._connection_header = False  # this request has a Connection header
        self._idle_since: float | None = None  # when the last answer ended, while no request is under way

    # Parser callbacks

    def on_message_begin(self) -> None:
        # The scope is built in on_headers_complete, and only for requests that need one.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._asgi_only = False
        self._connection_header = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _ASGI_ONLY:
            if name == b"expect" and value.lower() == b"100-continue":
                self.expect_100_continue = True
            if name != b"content-length" or value != b"0":
                self._asgi_only = True
        elif name == b"connection":
            self._connection_header = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        lane = self._lane
        if lane is not None and not self._asgi_only and (self.cycle is None or self.cycle.response_complete):
            parser = self.parser
            keep_alive = parser.should_keep_alive()
            if keep_alive and self._connection_header:
                # uvicorn closes HTTP/1.0 connections even when asked to keep them; the version is
                # only asked for then (``get_http_version`` formats a string each time).
                keep_alive = parser.get_http_version() != "1.0"
            exchange = lane.exchange(self, parser.get_method(), self.url, self.headers, keep_alive)
            if exchange is not None:
                self.cycle = cast(Any, exchange)  # stands in for uvicorn's cycle (shutdown, pipelining)
                self._fast = exchange
                exchange.start()
                return
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not isinstance(self.cycle, _Exchange):  # a fast-lane request has no body
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not isinstance(self.cycle, _Exchange):
            super().on_message_complete()

    # The fast lane's exchange

    def fast_done(self, exchange: _Exchange) -> None:
        """The exchange's answer is written, or given up (its connection then closed)."""
        if self._fast is exchange:
            self._fast = None
        if not exchange.keep_alive or not exchange.response_complete:
            self.transport.close()
        self.on_response_complete()

    # Keep-alive timeout: one timer per idle period, not one per request

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn cancels its timer here whenever bytes arrive and arms a new one after every
        # answer: a timer made and cancelled per request (about 3 µs with uvloop). Here the timer
        # stays, and checks when it fires whether the connection really was idle that long.
        self._idle_since = None

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive timer armed only when none is pending."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None or self.transport.is_closing():
            return  # a request is under way: its answer arms the timer again
        left = idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self.timeout_keep_alive_handler)
        else:
            self.transport.close()

    # Connection events

    def connection_lost(self, exc: Exception | None) -> None:
        timer, self.timeout_keep_alive_task = self.timeout_keep_alive_task, None
        if timer is not None:
            timer.cancel()
        fast, self._fast = self._fast, None
        if fast is not None:
            fast.abandon()
        if isinstance(self.cycle, _Exchange):
            self.cycle = None  # type: ignore[assignment]  # uvicorn would mark it disconnected
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._fast is not None:
            self._fast.pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._fast is not None:
            self._fast.resume()
