"""The proxy's upstream client against a raw socket server that answers with hand-written bytes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import proxy_upstream
import pytest
from proxy_support import PROXY_SERVER_OPTIONS

from pinsignal.proxy import ProxyApp, ProxySettings
from pinsignal.proxy.upstream import (
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamResponse,
    UpstreamTimeout,
)
from support import ServerThread, need

pytestmark = pytest.mark.anyio

BIG = 8 * 1024 * 1024
ENDLESS = 256 * 1024 * 1024  # far more than socket buffers hold
ANSWERS: dict[bytes, bytes] = {
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
                 b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
    b"/cookies": b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-Other: x\r\nSet-Cookie: b=2\r\n"
                 b"set-cookie: c=3\r\nContent-Length: 0\r\n\r\n",
    b"/eof": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    b"/early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                     b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    b"/no-content": b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
    # A 304 may state the full page's length; no body follows all the same.
    b"/not-modified": b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 50\r\n\r\n",
    b"/garbage": b"NOT HTTP AT ALL\r\n\r\n",
    b"/short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
    b"/big": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG + b"b" * BIG,
}


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        buffer = b""
        served = 0
        while True:  # keep-alive: answer requests until the client closes
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            method, path = head.split(b" ")[:2]
            self.server.requests.append((method, path, self.client_address[1]))  # type: ignore[attr-defined]
            served += 1
            if path == b"/hang":
                time.sleep(2)
                return
            if path == b"/drop-next" and served > 1:
                return  # a kept-alive connection the server drops just as the next request arrives
            if path == b"/reset":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"r" * 1000)
                time.sleep(0.1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closing with linger 0 sends a reset
            if path == b"/endless":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % ENDLESS)
                piece = b"e" * 65536
                with contextlib.suppress(OSError):
                    for _ in range(ENDLESS // len(piece)):
                        sock.sendall(piece)
                        self.server.sent += len(piece)  # type: ignore[attr-defined]
                return
            if path == b"/refuse":
                # Answers at once without reading the upload, and keeps the connection open.
                sock.sendall(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
                             b"too big!")
                time.sleep(3)
                return
            if method == b"HEAD":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\n")
                continue
            answer = ANSWERS.get(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            sock.sendall(answer)
            if b"HTTP/1.0" in answer[:9] or path in (b"/garbage", b"/short"):
                return


class RawServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    requests: list[tuple[bytes, bytes, int]]
    sent: int


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    server = RawServer(("127.0.0.1", 0), Handler)
    server.requests = []
    server.sent = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server: RawServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


HOST = [(b"host", b"upstream")]


async def fetch(pool: UpstreamPool, path: str, method: str = "GET") -> tuple[UpstreamResponse, bytes]:
    response = await pool.request(method, path.encode(), HOST)
    try:
        body = b""
        while chunk := await response.read():
            body += chunk
    finally:
        await response.aclose()
    return response, body


async def test_connections_are_kept_alive_and_reused(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    for path in ("/length", "/chunked", "/length"):
        await fetch(pool, path)
    await pool.aclose()
    assert len({port for _, _, port in raw_server.requests}) == 1


async def test_content_length_and_chunked_bodies_arrive_whole_and_dechunked(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    response, body = await fetch(pool, "/length")
    assert (response.status, body) == (200, b"hello world")
    response, body = await fetch(pool, "/chunked")
    assert body == b"hello world"  # chunk framing, extensions and trailers are this hop's only
    assert (b"X-A", b"1") in response.headers and (b"Transfer-Encoding", b"chunked") not in response.headers
    await pool.aclose()


async def test_repeated_headers_stay_separate_and_in_order(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    response, _ = await fetch(pool, "/cookies")
    await pool.aclose()
    assert response.headers == [(b"Set-Cookie", b"a=1; Path=/"), (b"X-Other", b"x"), (b"Set-Cookie", b"b=2"),
                                (b"set-cookie", b"c=3"), (b"Content-Length", b"0")]


async def test_head_204_and_304_have_no_body_and_keep_the_connection(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    head, body = await fetch(pool, "/page", method="HEAD")
    assert (head.status, body) == (200, b"") and (b"Content-Length", b"5") in head.headers
    empty, body = await fetch(pool, "/no-content")
    assert (empty.status, body) == (204, b"")
    unchanged, body = await fetch(pool, "/not-modified")
    assert (unchanged.status, body) == (304, b"")
    after, body = await fetch(pool, "/length")
    assert body == b"hello world"
    await pool.aclose()
    assert len({port for _, _, port in raw_server.requests}) == 1


async def test_http10_body_runs_until_the_server_closes(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    _, body = await fetch(pool, "/eof")
    await pool.aclose()
    assert body == b"until the end"


async def test_informational_answers_are_skipped(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    response, body = await fetch(pool, "/early-hints")
    await pool.aclose()
    assert response.status == 201 and body == b"ok" and response.headers == [(b"Content-Length", b"2")]


async def test_malformed_and_cut_answers_are_upstream_errors(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    with pytest.raises(UpstreamProtocolError, match="malformed answer"):
        await fetch(pool, "/garbage")
    with pytest.raises(UpstreamClosed, match="before its answer was complete"):
        await fetch(pool, "/short")
    await pool.aclose()


async def test_a_reset_mid_body_is_an_error_after_the_bytes_that_came(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    response = await pool.request("GET", b"/reset", HOST)
    received = 0
    with pytest.raises(UpstreamClosed):
        while chunk := await response.read():
            received += len(chunk)
    await response.aclose()
    assert received == 1000
    _, body = await fetch(pool, "/length")  # the broken connection was not pooled
    await pool.aclose()
    assert body == b"hello world"


async def test_a_pooled_connection_dropped_by_the_server_is_retried_once_on_a_fresh_one(raw_server) -> None:
    # RFC 9112 section 9.3.1: an idempotent request, and only when no body was sent yet.
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    await fetch(pool, "/drop-next")
    response, body = await fetch(pool, "/drop-next")  # arrives at the dropping connection, then a fresh one
    assert response.status == 200 and body == b"ok"
    ports = [port for _, _, port in raw_server.requests]
    assert len(ports) == 3 and ports[0] == ports[1] != ports[2]
    # Not for requests that must not be repeated (a POST), nor for requests with a body.
    await fetch(pool, "/drop-next")
    with pytest.raises(UpstreamClosed):
        await fetch(pool, "/drop-next", method="POST")

    async def body_chunks() -> AsyncIterator[bytes]:
        yield b"x"

    await fetch(pool, "/drop-next")
    with pytest.raises(UpstreamClosed):
        await pool.request("PUT", b"/drop-next", [*HOST, (b"content-length", b"1")], body_chunks())
    await pool.aclose()


async def test_an_answer_before_the_upload_ends_stops_the_upload(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=2)
    sent = 0

    async def upload() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1024):  # 64 MB: far more than socket buffers hold while nobody reads
            sent += 65536
            yield b"u" * 65536

    started = time.monotonic()
    response = await pool.request("POST", b"/refuse", [*HOST, (b"content-length", b"67108864")], upload())
    assert response.status == 413 and await response.read() == b"too big!"
    await response.aclose()
    assert sent < 64 * 1024 * 1024 and time.monotonic() - started < 1.5  # not the 2 s write timeout
    await pool.aclose()


async def test_silence_is_a_timeout_and_refusal_a_connect_error(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=0.3)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await fetch(pool, "/hang")
    assert time.monotonic() - started < 1.5
    await pool.aclose()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = UpstreamPool(f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(UpstreamConnectError, match="Cannot connect"):
        await fetch(refused, "/")
    await refused.aclose()


async def test_requests_over_the_connection_limit_wait_then_time_out(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=0.3, max_connections=1)
    held = await pool.request("GET", b"/endless", HOST)  # its answer is not over: the connection stays taken
    with pytest.raises(UpstreamTimeout, match="free connection"):
        await pool.request("GET", b"/length", HOST)
    waiting = asyncio.ensure_future(fetch(pool, "/length"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await held.aclose()  # frees the one connection slot, which goes to the waiting request
    _, body = await waiting
    await pool.aclose()
    assert body == b"hello world"


async def test_a_slow_reader_pauses_the_upstream_instead_of_buffering(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    response = await pool.request("GET", b"/endless", HOST)
    await asyncio.sleep(0.5)  # the server could send hundreds of megabytes in this time; nobody reads
    assert raw_server.sent < 32 * 1024 * 1024  # socket buffers, and a few pieces in the client
    total = 0
    while total < BIG and (chunk := await response.read()):
        total += len(chunk)
    assert total >= BIG  # it reads on when asked
    await response.aclose()  # not read to its end: the connection is closed, the server stops
    await pool.aclose()


async def test_bodies_go_out_chunked_or_as_they_are(raw_server) -> None:
    with ServerThread(proxy_upstream.app) as upstream:
        pool = UpstreamPool(upstream.url, timeout=5)

        async def pieces() -> AsyncIterator[bytes]:
            for n in range(5):
                yield bytes([65 + n]) * (100_000 + n)

        response = await pool.request("POST", b"/echo", HOST, pieces())  # no length: it goes out chunked
        echoed = b""
        while chunk := await response.read():
            echoed += chunk
        await response.aclose()
        assert echoed == b"".join([bytes([65 + n]) * (100_000 + n) for n in range(5)])
        await pool.aclose()


async def test_https_upstream_is_verified_against_the_given_context(tmp_path) -> None:
    openssl = shutil.which("openssl")
    need(openssl, "the openssl command to make a throw-away certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([str(openssl), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=upstream", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    with ServerThread(proxy_upstream.app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
        url = f"https://127.0.0.1:{server.port}"
        trusting = UpstreamPool(url, ssl_context=ssl.create_default_context(cafile=str(cert)))
        response, body = await fetch(trusting, "/page")
        assert response.status == 200 and body == proxy_upstream.PAGE
        await trusting.aclose()
        untrusting = UpstreamPool(url)
        with pytest.raises(UpstreamConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await fetch(untrusting, "/page")
        await untrusting.aclose()


async def test_the_proxy_app_uses_a_given_pool(raw_server) -> None:
    pool = UpstreamPool(url_of(raw_server), timeout=5)
    app = ProxyApp(ProxySettings(upstream=url_of(raw_server)), upstream=pool)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/cookies", "raw_path": b"/cookies", "query_string": b"",
             "headers": [(b"host", b"shop.example")], "client": ("203.0.113.9", 5000), "scheme": "http"}
    await app(scope, receive, send)
    await app.aclose()
    assert sent[0]["status"] == 200
    assert [value for name, value in sent[0]["headers"] if name.lower() == b"set-cookie"] == [  # type: ignore[attr-defined]
        b"a=1; Path=/", b"b=2", b"c=3"]


def test_a_304_with_a_content_length_passes_through_the_proxy(raw_server) -> None:

    with ServerThread(ProxyApp(ProxySettings(upstream=url_of(raw_server))), **PROXY_SERVER_OPTIONS) as proxy:
        with httpx.Client() as client:
            unchanged = client.get(proxy.url + "/not-modified")
            after = client.get(proxy.url + "/length")  # the visitor's connection is still good
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == '"v1"'
    assert after.text == "hello world"
