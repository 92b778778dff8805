"""``ProxyApp``: the ASGI app that forwards to the upstream, and ``create_app``, which puts the middleware in front.

    from pinsignal.proxy import ProxySettings, create_app
    app = create_app(ProxySettings(upstream="http://127.0.0.1:8080", inject=True))
    # uvicorn.run(app, server_header=False, date_header=False, proxy_headers=False)

The connection pool to the upstream is opened on lifespan start-up (or on the first request when
the server runs no lifespan) and closed on shut-down. There is no cookie jar anywhere: cookies
travel only in each request's own ``Cookie`` header, so one visitor's upstream cookies can never
be replayed for another (GHSA-7vwr-g6pm-9hc8).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from starlette.types import Receive, Scope, Send

from pinsignal.asgi import PinSignalMiddleware
from pinsignal.clientip import TrustedProxies
from pinsignal.collector import Sink
from pinsignal.config import Config
from pinsignal.pipeline import Engine

from .forward import Forwarder
from .guard import GuardedHttpProtocol, head_problem, refuse
from .pageviews import Handoff, PageviewPolicy
from .settings import ProxySettings
from .upstream import UpstreamPool
from .websocket import WebSocketRelay

__all__ = ["ProxyApp", "app_from_env", "create_app", "quiet_httpx", "upstream_pool"]

logger = logging.getLogger("pinsignal.proxy")


def upstream_pool(settings: ProxySettings) -> UpstreamPool:
    """The one shared pool of connections to the upstream, sized and timed by ``settings``."""
    return UpstreamPool(settings.upstream, timeout=settings.timeout, max_connections=settings.max_connections)


class ProxyApp:
    """Forwards every HTTP request and WebSocket to ``settings.upstream``.

    ``upstream`` replaces the connection pool (tests give one with their own TLS context or limits);
    ``handoff`` receives server-side page views (``--server-pageviews``).
    """

    def __init__(self, settings: ProxySettings, *, config: Config | None = None,
                 upstream: UpstreamPool | None = None, handoff: Handoff | None = None) -> None:
        config = config or Config(collector_prefix=settings.collector_prefix)
        self.settings = settings
        self.handoff = handoff
        self._given_pool = upstream
        self._trusted = TrustedProxies(config.trusted_proxies)
        self._policy = PageviewPolicy() if settings.server_pageviews else None
        self._websockets = WebSocketRelay(settings, self._trusted)
        self._max_head_size = settings.max_head_size
        self._pool: UpstreamPool | None = None
        self._forwarder: Forwarder | None = None
        # What ``--inject`` puts in pages; the middleware in front sets its versioned URL
        # (``/_ps/c.js?v=...``), which browsers may cache for good.
        self.script_src = f"{settings.collector_prefix}/c.js"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            problem = head_problem(scope, self._max_head_size)
            if problem is not None:
                await refuse(send, problem)
                return
            await (self._forwarder or self._open())(scope, receive, send)
        elif kind == "websocket":
            problem = head_problem(scope, self._max_head_size)
            if problem is not None:
                await receive()  # websocket.connect
                await refuse(send, problem, websocket=True, scope=scope)
                return
            await self._websockets(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def _open(self) -> Forwarder:
        if self._forwarder is None:
            self._pool = self._given_pool or upstream_pool(self.settings)
            self._forwarder = Forwarder(self.settings, self._pool, trusted=self._trusted, policy=self._policy,
                                        handoff=self._handoff, script_src=self.script_src)
        return self._forwarder

    async def _handoff(self, scope: Scope, event: dict[str, Any]) -> None:
        # Looked up at call time: the middleware in front sets ``handoff`` after wrapping this app.
        if self.handoff is not None:
            await self.handoff(scope, event)

    async def aclose(self) -> None:
        """Close the upstream connections (lifespan shut-down does this)."""
        pool, self._pool, self._forwarder = self._pool, None, None
        if pool is not None:
            await pool.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._open()
                logger.info("proxying to %s", self.settings.upstream)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: ProxySettings, *, config: Config | None = None,
               upstream: UpstreamPool | None = None, sink: Sink | None = None,
               engine: Engine | None = None) -> PinSignalMiddleware:
    """The proxy with ``PinSignalMiddleware`` in front: epik cookie, ``/_ps`` routes, page views.

    ``sink`` and ``engine`` go to the middleware (default: the Redis queue and the pipelines).
    """
    config = config or Config.from_env()
    settings = replace(settings, collector_prefix=config.collector_prefix)
    proxy = ProxyApp(settings, config=config, upstream=upstream)
    middleware = PinSignalMiddleware(proxy, config=config, sink=sink, engine=engine)
    proxy.handoff = _middleware_handoff(middleware)
    proxy.script_src = middleware.script_url
    return middleware


def _middleware_handoff(middleware: PinSignalMiddleware) -> Handoff:
    async def handoff(scope: Scope, event: dict[str, Any]) -> None:
        intake = middleware.intake
        await intake.open()  # at once when lifespan already opened it; servers without lifespan open here
        outcome = await intake.accept([event], intake.visitor(scope), received_at=time.time())
        for rejection in outcome.rejected:
            # Not an error: consent refused, or the pipelines rejected it; say why at debug level.
            logger.debug("server-side page view %s not sent: %s", event["message_id"], "; ".join(rejection["reasons"]))
    return handoff


def app_from_env() -> PinSignalMiddleware:
    """uvicorn factory (``pinsignal.proxy:app_from_env``): settings from ``PINSIGNAL_*``, one app per worker."""
    quiet_httpx()
    settings = ProxySettings.from_env()
    GuardedHttpProtocol.configure(settings)  # this process's connections, when uvicorn imports the class by name
    return create_app(settings)


def quiet_httpx() -> None:
    """Silence httpx's one INFO line per request: it would log every URL, query included (click ids,
    sometimes e-mail addresses). The proxy itself no longer forwards through httpx, but other parts
    of pinsignal in the same process (delivery to Pinterest) use it."""
    httpx_logger = logging.getLogger("httpx")
    if httpx_logger.level < logging.WARNING:
        httpx_logger.setLevel(logging.WARNING)
