"""A hostile visitor: raw bytes on a socket to the real proxy under uvicorn.

Every malformed or abusive request gets a safe answer (a 4xx, or the connection closed), reaches
no other host, carries no header the visitor forged about their address, and takes no upstream
connection away from other visitors for long.
"""

from __future__ import annotations

import base64
import os
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from support import ServerThread

pytestmark = pytest.mark.integration


def exchange(port: int, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``request`` on a fresh connection and read until the server closes it or the first answer's head ends."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                piece = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not piece:
                break
            data += piece
        return data


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


class Recorder(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]


class Decoy(socketserver.ThreadingTCPServer):
    """Another host the proxy must never reach: counts every connection."""

    daemon_threads = True
    allow_reuse_address = True
    hits = 0


@pytest.fixture
def decoy() -> Iterator[Decoy]:
    server = Decoy(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def websocket_request(target: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {target} HTTP/1.1\r\nHost: shop.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


@pytest.mark.parametrize("target", ["admin://x/", "@127.0.0.1:{decoy}/ws", ":{decoy}/ws", "x@127.0.0.1:{decoy}/ws"])
def test_regression_item3_websocket_targets_never_reach_another_host(make_proxy, upstream, decoy, target) -> None:
    proxy: ServerThread = make_proxy()
    answer = exchange(proxy.port, websocket_request(target.format(decoy=decoy.server_address[1])))
    assert decoy.hits == 0
    assert status_of(answer) == 400, answer[:200]


def test_regression_item3_websocket_with_a_port_in_the_upstream_url_answers_400_not_500(make_proxy, upstream) -> None:
    assert ":" in upstream.url.split("//", 1)[1]
    proxy: ServerThread = make_proxy()
    answer = exchange(proxy.port, websocket_request("admin://x/"))
    assert status_of(answer) == 400, answer[:200]


def test_regression_item3_an_absolute_form_websocket_target_counts_for_its_path_only(make_proxy, decoy) -> None:
    proxy: ServerThread = make_proxy()
    answer = exchange(proxy.port, websocket_request(f"ws://127.0.0.1:{decoy.server_address[1]}/ws"))
    assert decoy.hits == 0
    assert status_of(answer) == 101, answer[:200]  # the upstream's /ws, not the host named in the target

