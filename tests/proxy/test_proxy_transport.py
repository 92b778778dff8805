"""The pooled HTTP/1.1 transport against a raw socket server that answers with hand-written bytes."""

from __future__ import annotations

import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator

import httpx
import proxy_upstream
import pytest

from pinsignal.proxy import ProxySettings, UpstreamTransport
from pinsignal.proxy.app import upstream_client
from support import ServerThread, need

pytestmark = pytest.mark.anyio

ANSWERS: dict[bytes, bytes] = {
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
                 b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"/eof": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    b"/early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                     b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    b"/garbage": b"NOT HTTP AT ALL\r\n\r\n",
    b"/short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
    b"/reason": b"HTTP/1.1 299 Quite Fine\r\nContent-Length: 0\r\n\r\n",
}


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        buffer = b""
        while True:  # keep-alive: answer requests until the client closes
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            path = head.split(b" ")[1]
            self.server.requests.append((path, self.client_address[1]))  # type: ignore[attr-defined]
            if path == b"/close-after":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                sock.close()  # a keep-alive connection the server drops while it sits in the pool
                return
            answer = ANSWERS.get(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            sock.sendall(answer)
            if b"HTTP/1.0" in answer[:9] or path in (b"/garbage", b"/short"):
                return


@pytest.fixture
def raw_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client_for(server: socketserver.ThreadingTCPServer) -> tuple[httpx.AsyncClient, str]:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return upstream_client(ProxySettings(upstream=url, timeout=5), UpstreamTransport()), url


async def fetch(client: httpx.AsyncClient, url: str) -> tuple[httpx.Response, bytes]:
    response = await client.send(httpx.Request("GET", url, headers={"host": "x"}), stream=True)
    try:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return response, body


async def test_chunked_body_is_dechunked_and_trailers_dropped(raw_server) -> None:
    client, url = client_for(raw_server)
    async with client:
        response, body = await fetch(client, url + "/chunked")
        assert body == b"hello world" and response.headers["x-a"] == "1"
        again, _ = await fetch(client, url + "/next")
    assert again.status_code == 200
    assert raw_server.requests[0][1] == raw_server.requests[1][1]  # same pooled connection


async def test_http10_body_runs_until_the_server_closes(raw_server) -> None:
    client, url = client_for(raw_server)
    async with client:
        _, body = await fetch(client, url + "/eof")
    assert body == b"until the end"


async def test_informational_answers_are_skipped_and_reason_kept(raw_server) -> None:
    client, url = client_for(raw_server)
    async with client:
        response, body = await fetch(client, url + "/early-hints")
        assert response.status_code == 201 and body == b"ok"
        reason, _ = await fetch(client, url + "/reason")
    assert reason.status_code == 299 and reason.reason_phrase == "Quite Fine"


async def test_protocol_errors_are_httpx_errors(raw_server) -> None:
    client, url = client_for(raw_server)
    async with client:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed status line"):
            await fetch(client, url + "/garbage")
        with pytest.raises(httpx.RemoteProtocolError, match="91 body bytes still to send"):
            await fetch(client, url + "/short")


async def test_a_pooled_connection_closed_by_the_server_is_retried_on_a_fresh_one(raw_server) -> None:
    client, url = client_for(raw_server)
    async with client:
        await fetch(client, url + "/close-after")
        response, body = await fetch(client, url + "/after")
    assert response.status_code == 200 and body == b"ok"
    ports = [port for _, port in raw_server.requests]
    assert len(set(ports)) == 2


async def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = upstream_client(ProxySettings(upstream=f"http://127.0.0.1:{port}"), UpstreamTransport())
    async with client:
        with pytest.raises(httpx.ConnectError):
            await fetch(client, f"http://127.0.0.1:{port}/")


async def test_https_upstream_is_verified_against_the_given_context(tmp_path) -> None:



    openssl = shutil.which("openssl")
    need(openssl, "the openssl command to make a throw-away certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([str(openssl), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=upstream", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    with ServerThread(proxy_upstream.app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
        url = f"https://127.0.0.1:{server.port}"
        trusting = UpstreamTransport(ssl_context=ssl.create_default_context(cafile=str(cert)))
        async with upstream_client(ProxySettings(upstream=url), trusting) as client:
            response, body = await fetch(client, url + "/page")
            assert response.status_code == 200 and body == proxy_upstream.PAGE
        async with upstream_client(ProxySettings(upstream=url), UpstreamTransport()) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await fetch(client, url + "/page")
