"""WebSocket upgrades pass through the proxy: messages both ways, subprotocol, cookies, close codes."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from support import free_port

pytestmark = pytest.mark.integration


def ws_url(proxy, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{proxy.port}{path}"


def test_text_and_binary_messages_are_relayed_both_ways(make_proxy) -> None:
    with connect(ws_url(make_proxy()), open_timeout=10) as socket:
        socket.send("hello")
        assert socket.recv(timeout=10) == "echo:hello"
        socket.send(b"\x00\x01\x02\xff")
        assert socket.recv(timeout=10) == b"\xff\x02\x01\x00"
        big = "x" * 1_000_000
        socket.send(big)
        assert socket.recv(timeout=10) == "echo:" + big


def test_subprotocol_cookies_and_upstream_set_cookie_cross_the_handshake(make_proxy) -> None:
    with connect(ws_url(make_proxy()), subprotocols=["chat.v2"], additional_headers={"Cookie": "sid=42"},
                 open_timeout=10) as socket:
        assert socket.subprotocol == "chat.v2"
        assert socket.response is not None
        assert socket.response.headers.get_all("set-cookie") == ["ws_seen=1; Path=/"]
        socket.send("cookie?")
        assert socket.recv(timeout=10) == "sid=42"


def test_upstream_close_code_reaches_the_visitor(make_proxy) -> None:
    with connect(ws_url(make_proxy()), open_timeout=10) as socket:
        socket.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4001 and closed.value.rcvd.reason == "asked to leave"


def test_refused_or_unreachable_upstream_refuses_the_visitor(make_proxy) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(make_proxy(), "/ws-refuse"), open_timeout=10)
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as down:
        connect(ws_url(make_proxy(upstream=f"http://127.0.0.1:{free_port()}")), open_timeout=10)
    assert down.value.response.status_code == 502  # uvicorn supports the ASGI denial-response extension
