"""The web process the fault and security suites run under uvicorn: a bare app wrapped by the middleware.

Everything comes from the environment (``REDIS_URL``, ``PINSIGNAL_*``), exactly as a site would run it:
``python -m uvicorn --app-dir tests/faults collector_app:app``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from pinsignal import PinSignalMiddleware


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("shop home")


app = PinSignalMiddleware(Starlette(routes=[Route("/", home)]))
