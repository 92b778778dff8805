"""Shared helpers for the middleware tests: a small app with its own cookies, a stand-in engine, clients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from pinsignal import Config, MemorySink, PinSignalMiddleware
from pinsignal.pipeline import Produced, RequestContext

SECRET = "test-secret-0123456789abcdef"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
HTML = {"accept": "text/html,application/xhtml+xml", "sec-fetch-dest": "document", "user-agent": BROWSER}


class StubEngine:
    """Stands in for the pipeline engine where a test is about the web layer, not the pipelines.

    Every envelope becomes one event that records what the engine was given; ``invalid`` events
    (``properties.invalid``) come back with an error, as ``validate: true`` would report them.
    """

    cookie_names = frozenset({"_epik", "_psid"})

    def __init__(self) -> None:
        self.contexts: list[RequestContext] = []

    def process(self, envelope: Mapping[str, Any], context: RequestContext) -> list[Produced]:
        self.contexts.append(context)
        event = {"event_name": envelope.get("event") or envelope["type"], "event_id": envelope["message_id"],
                 "envelope": dict(envelope), "cookies": dict(context.cookies), "epik": context.epik}
        errors = ["value: must be a string"] if envelope["properties"].get("invalid") else []
        return [Produced("stub", event, errors)]


async def home(request: Request) -> Response:
    response = HTMLResponse("<!doctype html><p>home</p>")
    response.set_cookie("app_session", "abc", httponly=True)
    response.headers.append("x-app", "1")
    return response


async def land(request: Request) -> Response:
    response = RedirectResponse("/", status_code=302)
    response.set_cookie("app_flash", "hello")
    return response


async def error(request: Request) -> Response:
    return PlainTextResponse("broken", status_code=500)


async def not_modified(request: Request) -> Response:
    return Response(status_code=304, headers={"etag": '"1"'})


def plain_app() -> Starlette:
    return Starlette(routes=[Route("/", home, methods=["GET", "HEAD", "POST"]), Route("/land", land),
                             Route("/error", error), Route("/cached", not_modified)])


def config(**changes: Any) -> Config:
    return Config(secret=SECRET, **changes)


def wrap(app: Any = None, *, sink: MemorySink | None = None, engine: Any = None, **changes: Any
         ) -> PinSignalMiddleware:
    return PinSignalMiddleware(app if app is not None else plain_app(), config=config(**changes),
                               sink=sink if sink is not None else MemorySink(),
                               engine=engine if engine is not None else StubEngine())


def client(app: Any, *, https: bool = False, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver" if https else "http://testserver")


def cookies_named(response: httpx.Response, name: str) -> list[str]:
    return [value for value in response.headers.get_list("set-cookie") if value.startswith(name + "=")]
