"""WebSocket pass-through: the visitor's socket and one upstream socket, messages relayed both ways.

The HTTP client speaks no WebSocket, so the upstream side is the ``websockets`` client (installed with
``uvicorn[standard]``). The handshake carries the visitor's headers (cookies, origin, user agent)
and ``X-Forwarded-*``; the upstream's chosen subprotocol and its ``Set-Cookie`` come back in the
accept. When the upstream refuses or cannot be reached, the visitor gets the upstream's status (or
502) where the server supports the ASGI denial-response extension, else a plain refusal (403).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from pinsignal.clientip import TrustedProxies

from .headers import forwarded_request_headers
from .settings import ProxySettings

__all__ = ["WebSocketRelay"]

logger = logging.getLogger("pinsignal.proxy")

# The handshake is negotiated afresh on each side; Host comes from the upstream URL.
_HANDSHAKE = frozenset({b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions",
                        b"sec-websocket-protocol", b"sec-websocket-accept", b"host"})
_MAX_MESSAGE = 16 * 1024 * 1024  # uvicorn's own default limit for the visitor's side


_ABSOLUTE_SCHEMES = frozenset({"http", "https", "ws", "wss"})


class WebSocketRelay:
    """Relays one ``websocket`` scope to the upstream's own scheme, host and port, with the request's
    path and query only."""

    def __init__(self, settings: ProxySettings, trusted: TrustedProxies) -> None:
        self._settings = settings
        self._trusted = trusted
        base = urlsplit(settings.upstream)
        # Host and port come from the upstream URL alone; nothing the visitor sends is put before
        # the path (a target such as ``admin://x/`` or ``@other:81/`` must not reach another host).
        self._origin = f"{'wss' if base.scheme == 'https' else 'ws'}://{base.netloc}"
        self._base_path = base.path.rstrip("/")
        self._upstream_host = base.netloc.encode()

    def target(self, scope: Scope) -> str | None:
        """The path and query sent upstream (base path first), or ``None`` for a target that is not a path.

        An absolute-form target (``ws://host/path``, RFC 9112 section 3.2.2) counts for its path only.
        """
        path: str = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query: str = scope.get("query_string", b"").decode("latin-1")
        if not path.startswith("/"):
            parts = urlsplit(path)
            if parts.scheme.lower() not in _ABSOLUTE_SCHEMES or not parts.netloc:
                return None
            path, query = parts.path or "/", parts.query or query
        if any(ord(char) <= 32 or ord(char) == 127 or char == "#" for char in path + query):
            return None
        return self._base_path + path + ("?" + query if query else "")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        path = self.target(scope)
        if path is None:
            await _refuse(scope, send, 400, b"The request target must be a path, like /socket.")
            return
        url = self._origin + path
        headers = forwarded_request_headers(
            scope["headers"], client=scope.get("client"), scheme=scope.get("scheme", "ws"),
            host_mode="upstream", upstream_host=self._upstream_host, trusted=self._trusted, extra_drop=_HANDSHAKE)
        additional = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers if name != b"host"]
        try:
            upstream = await connect(
                url, additional_headers=additional, subprotocols=scope.get("subprotocols") or None,
                user_agent_header=None, open_timeout=self._settings.timeout, ping_interval=None,
                max_size=_MAX_MESSAGE, compression=None, proxy=None)
        except InvalidStatus as exc:
            logger.info("upstream refused the WebSocket at %s with %s", path, exc.response.status_code)
            await _refuse(scope, send, exc.response.status_code, bytes(exc.response.body or b""))
            return
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            logger.warning("WebSocket to upstream %s failed: %s", self._settings.upstream, exc)
            await _refuse(scope, send, 502, b"The site cannot be reached right now.")
            return
        try:
            accept_headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                              for name, value in upstream.response.headers.raw_items()
                              if name.lower() == "set-cookie"] if upstream.response else []
            await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol, "headers": accept_headers})
            await _relay(receive, send, upstream)
        finally:
            await upstream.close()


async def _relay(receive: Receive, send: Send, upstream: ClientConnection) -> None:
    to_upstream = asyncio.ensure_future(_visitor_to_upstream(receive, upstream))
    to_visitor = asyncio.ensure_future(_upstream_to_visitor(send, upstream))
    try:
        await asyncio.wait((to_upstream, to_visitor), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_upstream, to_visitor):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                await task


async def _visitor_to_upstream(receive: Receive, upstream: ClientConnection) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            await upstream.send(text if text is not None else (message.get("bytes") or b""))
        elif message["type"] == "websocket.disconnect":
            await upstream.close(code=_sendable(message.get("code", 1000)), reason=message.get("reason") or "")
            return


async def _upstream_to_visitor(send: Send, upstream: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for data in upstream:
            if isinstance(data, str):
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
    await send({"type": "websocket.close", "code": _sendable(upstream.close_code or 1000),
                "reason": upstream.close_reason or ""})


def _sendable(code: int) -> int:
    # 1005, 1006 and 1015 describe a close without a frame; they must never be sent in one.
    return code if code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999 else 1000


async def _refuse(scope: Scope, send: Send, status: int, body: bytes) -> None:
    extensions: dict[str, Any] = scope.get("extensions") or {}
    if "websocket.http.response" in extensions:
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
    else:
        await send({"type": "websocket.close", "code": 1008})
