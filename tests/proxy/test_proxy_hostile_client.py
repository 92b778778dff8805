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

import httpx
import pytest

from pinsignal.config import Config
from pinsignal.proxy import ProxyApp, ProxySettings
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



CLIENT_IP_FORGERIES = {
    "X-Real-IP": "6.6.6.6", "True-Client-IP": "6.6.6.6", "CF-Connecting-IP": "6.6.6.6", "X-Client-IP": "6.6.6.6",
    "Client-IP": "6.6.6.6", "X-Forwarded-Port": "6666", "X-Forwarded-Prefix": "/evil", "X-Forwarded-Server": "evil",
    "X-Forwarded-Scheme": "https", "X-Forwarded-Ssl": "on", "Front-End-Https": "on", "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin", "X-Cluster-Client-IP": "6.6.6.6", "Forwarded": "for=6.6.6.6;proto=https",
    "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
}


def arrived_headers(proxy_url: str) -> list[tuple[str, str]]:
    report = httpx.get(proxy_url + "/inspect", headers={"host": "shop.example", **CLIENT_IP_FORGERIES}).json()
    return [(name.lower(), value) for name, value in report["headers"]]


def test_regression_item4_client_ip_headers_from_an_untrusted_peer_are_dropped(make_proxy, upstream) -> None:
    untrusting = ProxyApp(ProxySettings(upstream=upstream.url), config=Config(trusted_proxies=("10.0.0.1",)))
    arrived = arrived_headers(make_proxy(untrusting).url)
    forged = {name.lower() for name in CLIENT_IP_FORGERIES} - {"x-forwarded-for", "x-forwarded-proto",
                                                                "x-forwarded-host"}
    assert [pair for pair in arrived if pair[0] in forged] == []
    assert [value for name, value in arrived if "6.6.6.6" in value or "evil" in value] == []
    # What the proxy itself says about the visitor:
    assert ("x-forwarded-for", "127.0.0.1") in arrived and ("x-forwarded-proto", "http") in arrived
    assert ("x-forwarded-host", "shop.example") in arrived


def test_client_ip_headers_from_a_trusted_proxy_pass_on(make_proxy) -> None:
    arrived = dict(arrived_headers(make_proxy().url))  # 127.0.0.1 is trusted by default
    assert arrived["x-real-ip"] == "6.6.6.6" and arrived["x-forwarded-port"] == "6666"
    assert arrived["x-forwarded-for"] == "6.6.6.6, 127.0.0.1"
