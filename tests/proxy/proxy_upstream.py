"""A real upstream site for the proxy tests, run under uvicorn: every behaviour a proxy must carry.

Endpoints: ``/page`` (HTML), ``/gzip-page`` (gzip HTML whatever the Accept-Encoding says),
``/cookies`` (three Set-Cookie), ``/echo`` (streams the request body back, chunked), ``/sink``
(counts the request body), ``/events`` (server-sent events, the second one on ``RELEASE``), ``/inspect``
(what arrived: method, target, headers, as JSON), ``/big?size=N`` (N streamed bytes, progress in
``STATE``), ``/binary`` (fixed bytes, not HTML), ``/slow?delay=S``, ``/redirect``, ``/ws`` (echo).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import threading
from typing import Any
from urllib.parse import parse_qs

PAGE = (b"<!DOCTYPE html><html><HEAD><meta charset=utf-8><title>Shop</title></HEAD>"
        b"<body><h1>Hello from the upstream</h1><a href=/page2>next</a></body></html>")
BINARY = bytes(range(256)) * 64 + b"</head>"  # looks like a marker, but is not a page
GZIP_PAGE = gzip.compress(PAGE.replace(b"Hello", b"Compressed hello"), mtime=0)
CHUNK = b"x" * (64 * 1024)

# Set by a test to let /events send its second event (proves the first one was not held back).
RELEASE = threading.Event()
# Progress of the /big streams, read by the disconnect test: path -> {"sent": bytes, "done": bool}
STATE: dict[str, dict[str, Any]] = {}
SEEN_PATHS: list[str] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
        return
    path = scope["path"]
    SEEN_PATHS.append(path)
    query = parse_qs(scope["query_string"].decode())
    if path in ("/page", "/page2", "/"):
        await _reply(send, 200, PAGE, [(b"content-type", b"text/html; charset=utf-8"),
                                       (b"etag", b'"page-v1"'), (b"set-cookie", b"upstream_session=abc; Path=/")])
    elif path == "/missing":
        await _reply(send, 404, PAGE, [(b"content-type", b"text/html")])
    elif path == "/gzip-page":
        await _reply(send, 200, GZIP_PAGE, [(b"content-type", b"text/html"), (b"content-encoding", b"gzip"),
                                            (b"vary", b"Accept-Encoding")])
    elif path == "/binary":
        await _reply(send, 200, BINARY, [(b"content-type", b"application/octet-stream")])
    elif path == "/cookies":
        await _reply(send, 200, b"ok", [(b"content-type", b"text/plain"),
                                        (b"set-cookie", b"a=1; Path=/; HttpOnly"),
                                        (b"set-cookie", b"b=2; Path=/; Expires=Wed, 09 Jun 2027 10:18:14 GMT"),
                                        (b"set-cookie", b"c=3; Path=/shop; SameSite=Lax")])
    elif path.startswith("/inspect"):
        await _drain(receive)
        report = {"method": scope["method"], "raw_path": scope["raw_path"].decode("latin-1"),
                  "query": scope["query_string"].decode("latin-1"), "peer_port": scope["client"][1],
                  "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]}
        await _reply(send, 200, json.dumps(report).encode(), [(b"content-type", b"application/json")])
    elif path == "/sink":
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await _reply(send, 200, str(total).encode(), [(b"content-type", b"text/plain")])
    elif path == "/events":
        await _events(send)
    elif path == "/echo":
        await _echo(scope, receive, send)
    elif path == "/big":
        await _big(scope, receive, send, int(query.get("size", ["1048576"])[0]))
    elif path == "/slow":
        await asyncio.sleep(float(query.get("delay", ["5"])[0]))
        await _reply(send, 200, b"finally", [(b"content-type", b"text/plain")])
    elif path == "/redirect":
        await _reply(send, 302, b"", [(b"location", b"/page")])
    else:
        await _reply(send, 404, b"not found", [(b"content-type", b"text/plain")])


async def _reply(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drain(receive: Any) -> None:
    while (await receive()).get("more_body"):
        pass


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    framing = [v.decode() for k, v in scope["headers"] if k in (b"content-length", b"transfer-encoding")]
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/octet-stream"), (b"x-request-framing", ",".join(framing).encode())]})
    while True:
        message = await receive()
        await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": True})
        if not message.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b""})


async def _events(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
    for _ in range(6000):  # up to a minute: longer than the test client's read timeout
        if RELEASE.is_set():
            break
        await asyncio.sleep(0.01)
    await send({"type": "http.response.body", "body": b"data: second\n\n", "more_body": False})


async def _big(scope: dict[str, Any], receive: Any, send: Any, size: int) -> None:
    key = scope["query_string"].decode()
    state = STATE[key] = {"sent": 0, "done": False, "disconnected": False}

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        state["disconnected"] = True

    watcher = asyncio.ensure_future(watch())
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]})
    try:
        while state["sent"] < size and not state["disconnected"]:
            piece = CHUNK[: size - state["sent"]]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            state["sent"] += len(piece)
            # uvicorn's send returns at once on a closed connection: yield so the watcher can see it.
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
        state["done"] = state["sent"] >= size
    finally:
        watcher.cancel()


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    if scope["path"] == "/ws-refuse":
        await send({"type": "websocket.close", "code": 1008})
        return
    subprotocols = scope.get("subprotocols") or []
    cookie = next((v.decode() for k, v in scope["headers"] if k == b"cookie"), "")
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None,
                "headers": [(b"set-cookie", b"ws_seen=1; Path=/")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text == "cookie?":
            await send({"type": "websocket.send", "text": cookie})
        elif text == "bye":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked to leave"})
            return
        elif text is not None:
            await send({"type": "websocket.send", "text": "echo:" + text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes", b"")[::-1]})


if __name__ == "__main__":  # run as its own process: python upstream_app.py PORT
    import sys

    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                server_header=False, date_header=False, workers=None if os.name else 1)
