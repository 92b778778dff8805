"""``PinSignalMiddleware``: pure ASGI, wrapped around a Starlette/FastAPI (or any ASGI) app.

    app.add_middleware(PinSignalMiddleware)                  # settings from the environment
    app.add_middleware(PinSignalMiddleware, config=Config(secret=..., consent="opt-in"))

What it does to a request:

* paths under the collector prefix (``/_ps/...``) are answered by the collector, never by the app;
* a query with ``epik=`` (a landing from a Pinterest ad) gets the ``_epik`` cookie, redirects included;
* a GET HTML navigation gets the signed ``_psid`` device cookie when it has none, a forged one, or
  one older than a week (rolling 400 days);
* everything else passes straight through: the cost is a type check, a prefix check, a bytes
  search in the query string and, for GETs, a look at two request headers.

Cookies are appended as separate ``Set-Cookie`` headers to the app's ``http.response.start``; the
app's own headers and cookies are untouched and bodies stream as they come. ``track()`` and
``identify()`` reach the middleware through ``scope["pinsignal"]``. The queue is opened on
lifespan start-up (or at first use when the server runs no lifespan) and closed on shut-down;
a queue that cannot be reached at start-up is logged, never a reason for the site not to start.

Put it outermost: Starlette builds its own 500 responses outside user middleware, so an app that
raises gets a 500 without the cookies of that request (the app's own 500 responses keep them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pinsignal.collector import Collector, Intake, QueueSink, Script, Sink, Visitor
from pinsignal.config import Config
from pinsignal.cookies import DEVICE_COOKIE, epik_from_query

if TYPE_CHECKING:
    from pinsignal.pipeline import Engine

__all__ = ["SCOPE_KEY", "PinSignalMiddleware", "RequestHook"]

logger = logging.getLogger("pinsignal.asgi")

SCOPE_KEY = "pinsignal"


class RequestHook:
    """Per-request link from the app's code (``track``, ``identify``) back to the middleware.

    It is also the app's ``send``: its ``send`` method adds the request's cookies to
    ``http.response.start``. A plain method handing back the server's awaitable, so a request costs
    no closure and no extra coroutine per message.
    """

    # No reference back to the scope: the scope holds the hook, and a cycle would leave every
    # request's scope to the garbage collector instead of freeing it on return.
    __slots__ = ("cached_visitor", "cookies", "downstream", "owner", "started")

    def __init__(self, owner: PinSignalMiddleware, send: Send) -> None:
        self.owner = owner
        self.downstream = send
        self.cookies: list[str] = []
        self.started = False
        self.cached_visitor: Visitor | None = None

    @property
    def intake(self) -> Intake:
        return self.owner.intake

    def visitor(self, scope: Scope) -> Visitor:
        if self.cached_visitor is None:
            self.cached_visitor = self.owner.intake.visitor(scope)
        return self.cached_visitor

    def send(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            self.started = True
            if self.cookies:
                headers = list(message.get("headers", ()))
                for cookie in self.cookies:  # a loop, not a comprehension: no extra function call in 3.11
                    headers.append((b"set-cookie", cookie.encode("latin-1")))
                message = {**message, "headers": headers}
        return self.downstream(message)


_new_hook = object.__new__


class PinSignalMiddleware:
    """Server-side Pinterest conversions for the wrapped app: cookies, collector routes, ``track()``.

    ``sink`` and ``engine`` replace the Redis queue and the pipeline engine (tests, embedding);
    by default they come from ``config`` (itself ``Config.from_env()`` when not given).
    """

    def __init__(self, app: ASGIApp, *, config: Config | None = None, sink: Sink | None = None,
                 engine: Engine | None = None) -> None:
        self.app = app
        self.config = config if config is not None else Config.from_env()
        self.intake = Intake(self.config, sink=sink if sink is not None else QueueSink(self.config), engine=engine)
        self.script = Script(self.config)
        self.collector = Collector(self.config, self.intake, self.script)
        self._prefix = self.config.collector_prefix + "/"
        # A first visit carries no cookie at all: the consent mode alone decides (GPC aside).
        self._granted_without_cookies = self.intake.consent.verdict(gpc=False, cookies={}) == "granted"

    @property
    def script_url(self) -> str:
        """The versioned URL of the browser script, for ``<script src=... async>``."""
        return self.script.url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if scope["path"].startswith(self._prefix):
            await self.collector(scope, receive, send)
            return
        # RequestHook(self, send) without the cost of a Python-level __init__ call on every request.
        hook = _new_hook(RequestHook)
        hook.owner = self
        hook.downstream = send
        hook.cookies = []
        hook.started = False
        hook.cached_visitor = None
        scope[SCOPE_KEY] = hook
        if scope["method"] == "GET":
            # A top-level page load: Sec-Fetch-Dest says so, or (older browsers) an HTML Accept does.
            accept = None
            for name, value in scope["headers"]:
                if name == b"sec-fetch-dest":
                    navigation = value == b"document"
                    break
                if name == b"accept":
                    accept = value
            else:
                navigation = accept is not None and b"text/html" in accept
            if navigation or b"epik=" in scope["query_string"]:
                self._visit_cookies(scope, hook, navigation)
        elif b"epik=" in scope["query_string"]:
            self._visit_cookies(scope, hook, False)
        await self.app(scope, receive, hook.send)

    def _visit_cookies(self, scope: Scope, hook: RequestHook, navigation: bool) -> None:
        # Only what these cookies need is read here (a landing must stay cheap); track() and the
        # collector read the full Visitor.
        host = cookie = forwarded_proto = None
        gpc = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"cookie":
                cookie = value if cookie is None else cookie + b"; " + value
            elif name == b"sec-gpc":
                gpc = value.strip() == b"1"
            elif name == b"x-forwarded-proto":
                forwarded_proto = value
        intake = self.intake
        if cookie is not None:
            cookies = cookie_parser(cookie.decode("latin-1"))
            if intake.consent.verdict(gpc=gpc, cookies=cookies) != "granted":
                return  # opt-in without consent, refused, or Global Privacy Control: no tracking cookie
        elif gpc or not self._granted_without_cookies:
            return
        else:
            cookies = {}
        if forwarded_proto is None:
            secure = scope.get("scheme", "http") == "https"
        else:
            secure = intake.proxies.scheme(scope, forwarded_proto) == "https"
        query = scope["query_string"]
        epik = epik_from_query(query) if b"epik=" in query else None
        if epik is not None:
            hook.cookies.append(intake.cookies.epik(epik, secure=secure, host=host))
        if navigation:
            signed = intake.devices.renewal(cookies.get(DEVICE_COOKIE))
            if signed is not None:
                hook.cookies.append(intake.cookies.device(signed, secure=secure, host=host))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_and_open() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.intake.open()
                except Exception:
                    # Tracking must never keep the site from starting; the queue is retried at first use.
                    logger.exception("could not open the event queue at start-up; retrying at first use")
            return message

        async def send_and_close(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.intake.close()
            await send(message)

        await self.app(scope, receive_and_open, send_and_close)

