"""A hostile upstream: hand-written bytes from a raw socket server, through the real proxy under uvicorn.

Whatever the site sends, the visitor gets one answer per request, never a second answer's headers
merged in, never bytes meant for someone else, and no trailer promoted to a header.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from support import ServerThread, free_port, pinsignal_cmd, run_process

pytestmark = pytest.mark.integration

EVIL = (b"HTTP/1.1 302 Found\r\nLocation: https://evil.example/\r\nSet-Cookie: session=attacker; Path=/\r\n"
        b"Content-Length: 0\r\n\r\n")
# path -> what the upstream writes, in one sendall (one segment on loopback)
SCRIPTS: dict[bytes, bytes] = {
    b"/splice-204": b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n" + EVIL,
    b"/splice-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok" + EVIL,
    b"/splice-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + EVIL,
    b"/splice-304": b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n" + EVIL,
    b"/trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n"
                  b"Trailer: Set-Cookie, Location\r\n\r\n"
                  b"5\r\nhello\r\n0\r\nSet-Cookie: trailer=attacker; Path=/\r\nLocation: https://evil.example/\r\n"
                  b"X-Trailer: t\r\n\r\n",
}
# A complete answer, then (a moment later, on the idle connection) the attacker's answer, or its head unfinished.
LATE = {b"/late": EVIL, b"/late-partial": EVIL[:EVIL.index(b"Content-Length")]}


class Hostile(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            path = head.split(b" ")[1]
            self.server.requests.append((path, self.client_address[1]))  # type: ignore[attr-defined]
            if path in LATE:
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                time.sleep(0.2)
                sock.sendall(LATE[path])
                continue
            sock.sendall(SCRIPTS.get(path, b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ngenuine"))


class HostileServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    requests: list[tuple[bytes, int]]


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer(("127.0.0.1", 0), Hostile)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxied(hostile: HostileServer, make_proxy: Callable[..., ServerThread]) -> ServerThread:
    # One connection to the site at most: every request after the first one would reuse it.
    return make_proxy(upstream=f"http://127.0.0.1:{hostile.server_address[1]}", max_connections=1, timeout=5)


def assert_safe(response: httpx.Response) -> None:
    assert response.status_code != 302
    assert "location" not in response.headers
    assert response.headers.get_list("set-cookie") == []


@pytest.mark.parametrize("path", ["/splice-204", "/splice-length", "/splice-chunked", "/splice-304"])
def test_regression_item1_bytes_after_a_complete_answer_are_never_merged(proxied, path) -> None:
    with httpx.Client(base_url=proxied.url, timeout=10) as client:
        first = client.get(path)
        assert_safe(first)
        assert first.status_code in (200, 204, 304)
        # The same visitor, or the next one: the attacker's answer must never be the reply.
        for _ in range(3):
            following = client.get("/genuine")
            assert_safe(following)
            assert (following.status_code, following.text) == (200, "genuine")


def test_regression_item1_a_spliced_connection_is_never_reused(proxied, hostile) -> None:
    with httpx.Client(base_url=proxied.url, timeout=10) as client:
        client.get("/splice-204")
        client.get("/genuine")
    ports = [port for _, port in hostile.requests]
    assert len(ports) == 2 and ports[0] != ports[1], "the connection with stray bytes went back to the pool"


def test_regression_item1_bytes_on_an_idle_kept_alive_connection_never_reach_the_next_visitor(proxied) -> None:
    with httpx.Client(base_url=proxied.url, timeout=10) as client:
        assert client.get("/late").text == "ok"
        time.sleep(0.5)  # the attacker's bytes arrive while the connection waits in the pool
        for _ in range(3):
            following = client.get("/genuine")
            assert_safe(following)
            assert (following.status_code, following.text) == (200, "genuine")


def test_regression_item1_an_unfinished_head_on_an_idle_connection_never_splices(proxied) -> None:
    with httpx.Client(base_url=proxied.url, timeout=10) as client:
        assert client.get("/late-partial").text == "ok"
        time.sleep(0.5)
        # The next answer lands behind the attacker's half head: at worst a 502, never their headers.
        following = client.get("/genuine")
        assert_safe(following)
        assert following.status_code in (200, 502)
        assert client.get("/genuine").text == "genuine"


def test_regression_item2_chunked_trailers_never_become_headers(proxied) -> None:
    with httpx.Client(base_url=proxied.url, timeout=10) as client:
        response = client.get("/trailers")
        assert (response.status_code, response.text) == (200, "hello")
        assert_safe(response)
        assert "x-trailer" not in response.headers and "trailer" not in response.headers
        assert (client.get("/genuine").text) == "genuine"


@pytest.mark.slow
@pytest.mark.parametrize("parser", ["compiled", "pure-python"])
def test_pinsignal_proxy_with_either_aiohttp_parser_gives_the_same_safe_answers(hostile, redis_url, tmp_path,
                                                                                 parser) -> None:
    """The same hostile bytes through ``pinsignal proxy`` itself, with aiohttp's C parser and with its
    pure-Python one (``AIOHTTP_NO_EXTENSIONS``): one answer per request, never the attacker's."""
    port = free_port()
    env = {"PINSIGNAL_UPSTREAM": f"http://127.0.0.1:{hostile.server_address[1]}", "PINSIGNAL_PROXY_PORT": str(port),
           "PINSIGNAL_PROXY_MAX_CONNECTIONS": "1", "PINSIGNAL_SECRET": "proxy-hostile-secret-0123456789abcdef",
           "REDIS_URL": redis_url, "PINSIGNAL_DATA_DIR": str(tmp_path)}
    if parser == "pure-python":
        env["AIOHTTP_NO_EXTENSIONS"] = "1"
    answers = []
    with run_process(pinsignal_cmd("proxy"), port=port, env=env, timeout=60, log=tmp_path / "proxy.log"), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for path in [*(script.decode() for script in SCRIPTS), "/late"]:
            first = client.get(path)
            time.sleep(0.3)  # let a late answer arrive while the connection waits in the pool
            following = client.get("/genuine")
            for response in (first, following):
                assert_safe(response)
            answers.append((path, first.status_code, following.status_code, following.text))
    assert answers == [
        ("/splice-204", 204, 200, "genuine"), ("/splice-length", 200, 200, "genuine"),
        ("/splice-chunked", 200, 200, "genuine"), ("/splice-304", 304, 200, "genuine"),
        ("/trailers", 200, 200, "genuine"), ("/late", 200, 200, "genuine"),
    ]
    assert "Traceback" not in (tmp_path / "proxy.log").read_text()
