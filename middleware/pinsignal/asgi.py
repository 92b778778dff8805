"""``PinSignalMiddleware``: pure ASGI, wrapped around a Starlette/FastAPI (or any ASGI) app.

    app.add_middleware(PinSignalMiddleware)                  # settings from the environment
    app.add_middleware(PinSignalMiddleware, config=Config(secret=..., consent="opt-in"))

What it does to a request:

* paths under the collector prefix (``/_ps/...``) are answered by the collector, never by the app;
* a query with ``epik=`` (a landing from a Pinterest ad) gets the ``_epik`` cookie, redirects included;
* everything else passes straight through: a prefix check, a bytes search in the query string,
  a dict store and a thin ``send`` wrapper.

The signed ``_psid`` device cookie is not set here: the collector (and ``track()``) mint it with
the visitor's first event and sign it again when it is over a week old, so it rolls for as long
as the visitor comes back, and a page load that never leads to an event leaves no device id.

Cookies are appended as separate ``Set-Cookie`` headers to the app's ``http.response.start``; the
app's own headers and cookies are untouched and bodies stream as they come. ``track()`` and
``identify()`` reach the middleware through ``scope["pinsignal"]`` and add their cookies to
``scope["pinsignal.cookies"]``. The queue is opened on
lifespan start-up (or at first use when the server runs no lifespan) and closed on shut-down;
a queue that cannot be reached at start-up is logged, never a reason for the site not to start.

Put it outermost: Starlette builds its own 500 responses outside user middleware, so an app that
raises gets a 500 without the cookies of that request (the app's own 500 responses keep them).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pinsignal.collector import Collector, Companion, Intake, QueueSink, Script, Sink, VisitorRequest
from pinsignal.config import Config
from pinsignal.cookies import epik_from_query

if TYPE_CHECKING:
    from pinsignal.pipeline import Engine

__all__ = ["COOKIES_KEY", "SCOPE_KEY", "SENT", "PinSignalMiddleware", "RequestHook"]

logger = logging.getLogger("pinsignal.asgi")

SCOPE_KEY = "pinsignal"  # the middleware, for track() and identify()
COOKIES_KEY = "pinsignal.cookies"  # Set-Cookie headers for the response, then SENT once it started
_VISITOR_KEY = "pinsignal.visitor"


class _Sent:
    """Marks ``scope[COOKIES_KEY]`` once the response has started: too late for another cookie."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<response started>"


SENT: Final = _Sent()

class RequestHook:
    """``track()`` and ``identify()``'s view of one request: the middleware, the response's cookies.

    Made on demand from what the middleware leaves in the scope, so a request that never calls
    them pays nothing for it.
    """

    __slots__ = ("owner", "scope")

    def __init__(self, owner: PinSignalMiddleware, scope: Scope) -> None:
        self.owner = owner
        self.scope = scope

    @classmethod
    def of(cls, scope: Scope) -> RequestHook | None:
        """The request's hook; ``None`` when no PinSignalMiddleware is around the app."""
        owner = scope.get(SCOPE_KEY)
        return cls(owner, scope) if isinstance(owner, PinSignalMiddleware) else None

    @property
    def intake(self) -> Intake:
        return self.owner.intake

    @property
    def started(self) -> bool:
        """Whether the response has started: too late for another cookie."""
        return self.scope.get(COOKIES_KEY) is SENT

    def visitor(self) -> VisitorRequest:
        """The request's :class:`VisitorRequest`, read once per request."""
        visitor = self.scope.get(_VISITOR_KEY)
        if visitor is None:
            visitor = self.scope[_VISITOR_KEY] = self.owner.intake.visitor(self.scope)
        assert isinstance(visitor, VisitorRequest)
        return visitor

    def set_cookies(self, cookies: list[str]) -> bool:
        """Add ``Set-Cookie`` values to the response, replacing earlier ones of the same name.

        ``False`` once the response has started.
        """
        pending = self.scope.get(COOKIES_KEY)
        if pending is SENT:
            return False
        if not isinstance(pending, list):
            pending = self.scope[COOKIES_KEY] = []
        for cookie in cookies:
            value = cookie.encode("latin-1")
            name = value.split(b"=", 1)[0]
            pending[:] = [header for header in pending if header[1].split(b"=", 1)[0] != name]
            pending.append((b"set-cookie", value))
        return True


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
        # The Tag companion's rules come from the pipelines this process runs (a stand-in engine
        # without pipelines gives no rules).
        self.companion = Companion(self.config, getattr(self.intake.engine, "pipelines", ()))
        self.collector = Collector(self.config, self.intake, self.script, self.companion)
        self._prefix = self.config.collector_prefix + "/"
        # A visit without cookies: the consent mode alone decides (Global Privacy Control aside).
        self._granted_without_cookies = self.intake.consent.verdict(gpc=False, cookies={}) == "granted"
        self._proxies = self.intake.proxies if self.config.trusted_proxies else None

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
        # Nothing stored in the scope may lead back to it: the server's send is a bound method of
        # an object holding the scope, and a cycle would leave every request to the garbage
        # collector (measured: 9k more instructions per request).
        scope[SCOPE_KEY] = self
        if b"epik=" in scope["query_string"]:
            self._landing(scope)

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookies = scope.get(COOKIES_KEY)
                scope[COOKIES_KEY] = SENT  # too late for more
                if isinstance(cookies, list) and cookies:
                    # A new message and list: the app may send the same one again.
                    message = {**message, "headers": [*message.get("headers", ()), *cookies]}
            await send(message)

        await self.app(scope, receive, send_with_cookies)

    def _landing(self, scope: Scope) -> None:
        """``_epik`` for an ad landing (any method; a redirect too), when consent allows it."""
        # Only what the cookie needs is read here; track() and the collector read the full
        # VisitorRequest.
        cookie = forwarded_proto = host = None
        gpc = False
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookie = value if cookie is None else cookie + b"; " + value
            elif name == b"host":
                host = value
            elif name == b"sec-gpc":
                gpc = value.strip() == b"1"
            elif name == b"x-forwarded-proto":
                forwarded_proto = value
        if cookie is None:
            if (gpc and self.intake.consent.gpc_refuses) or not self._granted_without_cookies:
                return
        elif self.intake.consent.verdict(gpc=gpc, cookies=cookie_parser(cookie.decode("latin-1"))) != "granted":
            return  # opt-in without consent, refused, or Global Privacy Control: no tracking cookie
        epik = epik_from_query(scope["query_string"])
        if epik is None:
            return
        if forwarded_proto is None or self._proxies is None:
            secure = scope["scheme"] == "https"
        else:
            secure = self._proxies.scheme(scope, forwarded_proto) == "https"
        cookie_header = self.intake.cookies.epik(epik, secure=secure, host=host)
        scope[COOKIES_KEY] = [(b"set-cookie", cookie_header.encode("latin-1"))]

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

