"""The minimal integration. Run: ``PINSIGNAL_SECRET=... uvicorn examples.starlette_app.app:app``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from pinsignal import PinSignalMiddleware, track


async def home(request: Request) -> HTMLResponse:
    # The collector script sends the page view; pinsignal.track(...) sends anything else.
    return HTMLResponse('<script src="/_ps/c.js" defer></script><h1>Hello</h1>')


async def order(request: Request) -> JSONResponse:
    data = await request.json()
    await track(request, "order_completed", message_id=f"order-{data['order_id']}",
                properties={"order_id": data["order_id"], "revenue": data["total"], "currency": "USD"},
                traits={"email": data["email"]})
    return JSONResponse({"ok": True})


app = Starlette(routes=[Route("/", home), Route("/orders", order, methods=["POST"])],
                middleware=[Middleware(PinSignalMiddleware)])
