"""The server protocol's fast lane: the same bytes as the ASGI path, for visitors and for the upstream.

Two proxies in front of one raw upstream that answers with hand-written bytes: one served the way
``pinsignal proxy`` serves (``ProxyHttpProtocol``, fast lane on), one with uvicorn's plain
protocol (every request through ASGI). The same raw request bytes must get the same raw answer
bytes from both, and the upstream must receive the same request heads from both.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httptools
import httpx
import pytest
from proxy_support import ASGI_SERVER_OPTIONS, PROXY_SERVER_OPTIONS

from pinsignal import MemorySink
from pinsignal.config import Config
from pinsignal.proxy import ProxyApp, ProxySettings, create_app, fastlane
from pinsignal.proxy.fastlane import fast_lane_of
from support import ServerThread, free_port

pytestmark = pytest.mark.integration

ANSWERS: dict[bytes, bytes] = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 11\r\n\r\nhello world",
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
                 b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"/empty-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"/cookies": b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-Other: x\r\nSet-Cookie: b=2\r\n"
                 b"set-cookie: c=3\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
    b"/named": b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\nok",
    b"/eof": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    b"/early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                     b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    b"/no-content": b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
    b"/not-modified": b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 50\r\n\r\n",
    b"/redirect": b"HTTP/1.1 302 Found\r\nLocation: /elsewhere?x=1\r\nContent-Length: 0\r\n\r\n",
    b"/teapot": b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 3\r\n\r\ntea",
    b"/garbage": b"NOT HTTP AT ALL\r\n\r\n",
    b"/short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
}
CLOSES = {b"/eof", b"/garbage", b"/short"}


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        buffer = b""
        served = 0
        while True:
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    size = int(value)
                    while len(buffer) < size:
                        buffer += sock.recv(65536)
                    head += b"\r\n\r\n" + buffer[:size]
                    buffer = buffer[size:]
            self.server.heads.append(head)  # type: ignore[attr-defined]
            served += 1
            method, path = head.split(b" ")[:2]
            path = path.split(b"?")[0]
            if path == b"/drop-next" and served > 1:
                return  # a kept-alive connection the server drops just as the next request arrives
            if path == b"/hang":
                time.sleep(2)
                return
            if path == b"/huge":
                self._huge(sock)
                continue
            if method == b"HEAD":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\n")
                continue
            sock.sendall(ANSWERS.get(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
            if path in CLOSES:
                return

    def _huge(self, sock: socket.socket) -> None:
        size = 256 * 1024 * 1024
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        piece = b"h" * 65536
        for _ in range(size // len(piece)):
            sock.sendall(piece)
            self.server.sent += len(piece)  # type: ignore[attr-defined]


class RawUpstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    heads: list[bytes]
    sent: int


@pytest.fixture
def raw_upstream() -> Iterator[RawUpstream]:
    server = RawUpstream(("127.0.0.1", 0), Handler)
    server.heads = []
    server.sent = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxies(raw_upstream: RawUpstream) -> Iterator[Callable[..., tuple[ServerThread, ServerThread]]]:
    """``proxies(**settings)``: (fast lane, ASGI only), each a ``ProxyApp`` in front of ``raw_upstream``."""
    with contextlib.ExitStack() as stack:
        def make(**settings: Any) -> tuple[ServerThread, ServerThread]:
            settings.setdefault("upstream", f"http://127.0.0.1:{raw_upstream.server_address[1]}")
            return (stack.enter_context(ServerThread(ProxyApp(ProxySettings(**settings)), **PROXY_SERVER_OPTIONS)),
                    stack.enter_context(ServerThread(ProxyApp(ProxySettings(**settings)), **ASGI_SERVER_OPTIONS)))
        yield make


@pytest.fixture
def lane_starts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the requests the fast lane takes."""
    started: list[int] = []
    start = fastlane._Exchange.start

    def counted(self: Any) -> None:
        started.append(1)
        start(self)

    monkeypatch.setattr(fastlane._Exchange, "start", counted)
    return started


def raw_exchange(port: int, data: bytes, answers: int, *, head: bool = False) -> bytes:
    """Send ``data`` on one connection; the raw bytes back once ``answers`` answers are complete
    (or the proxy closes, or, for ``HEAD``, after a quiet half second)."""
    complete = 0

    class Counter:
        def on_message_complete(self) -> None:
            nonlocal complete
            complete += 1

    parser = httptools.HttpResponseParser(Counter())
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.settimeout(0.5 if head else 5)
        while complete < answers:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            if not head:
                parser.feed_data(chunk)
    return received


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer from ``sock`` (not a HEAD's)."""
    done: list[int] = []

    class Done:
        def on_message_complete(self) -> None:
            done.append(1)

    parser = httptools.HttpResponseParser(Done())
    received = b""
    while not done:
        chunk = sock.recv(65536)
        assert chunk, "the proxy closed the connection mid-answer"
        received += chunk
        parser.feed_data(chunk)
    return received


def both(pair: tuple[ServerThread, ServerThread], data: bytes, answers: int = 1, **options: bool) -> bytes:
    fast, asgi = (raw_exchange(server.port, data, answers, **options) for server in pair)
    assert fast == asgi
    return fast


def get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: t\r\n{extra}\r\n".encode()


@pytest.mark.parametrize("path", [path.decode() for path in ANSWERS] + ["/other?q=1&r=%20"])
def test_each_answer_is_byte_identical_to_the_asgi_path(proxies, raw_upstream, lane_starts, path: str) -> None:
    pair = proxies()
    answer = both(pair, get(path))
    assert answer.startswith(b"HTTP/1.1 ")
    assert lane_starts, "the fast lane did not take the request"
    assert raw_upstream.heads[0] == raw_upstream.heads[-1]  # the upstream saw the same request from both


def test_the_answers_look_as_intended(proxies) -> None:
    pair = proxies()
    cookies = both(pair, get("/cookies"))
    assert cookies.count(b"set-cookie: ") == 3 and b"keep-alive" not in cookies.lower()
    named = both(pair, get("/named"))
    assert b"x-secret" not in named and b"x-kept: 2" in named
    assert both(pair, get("/chunked")).endswith(b"\r\n\r\nb\r\nhello world\r\n0\r\n\r\n")
    assert b"content-length" not in both(pair, get("/not-modified"))
    assert both(pair, get("/garbage")).startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert both(pair, get("/short")).startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert both(pair, get("/early-hints")).startswith(b"HTTP/1.1 201 Created\r\n")


def test_a_status_uvicorn_cannot_write_drops_the_connection_on_both_paths(proxies, raw_upstream) -> None:
    ANSWERS[b"/odd-status"] = b"HTTP/1.1 799 Odd\r\nContent-Length: 2\r\n\r\nok"
    try:
        assert both(proxies(), get("/odd-status")) == b""
    finally:
        del ANSWERS[b"/odd-status"]


def test_head_and_connection_close(proxies, lane_starts) -> None:
    pair = proxies()
    head = both(pair, get("/length", "HEAD"), head=True)
    assert head.endswith(b"content-length: 5\r\n\r\n")
    closed = both(pair, get("/length", extra="Connection: close\r\n"))
    assert b"connection: close\r\n" in closed and closed.endswith(b"hello world")
    assert len(lane_starts) == 2


@pytest.mark.parametrize("extra", ["", "Connection: keep-alive\r\n", "Connection: close\r\n"])
def test_http10_visitors_get_what_uvicorn_gives_them(proxies, lane_starts, extra: str) -> None:
    pair = proxies()
    answer = both(pair, b"GET /chunked HTTP/1.0\r\nHost: shop.example\r\n" + extra.encode() + b"\r\n")
    assert b"connection: close\r\n" in answer  # uvicorn keeps no HTTP/1.0 connection open
    assert lane_starts


def test_pipelined_requests_mix_both_paths_in_order(proxies, raw_upstream, lane_starts) -> None:
    pair = proxies()
    upload = b"POST /length HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3\r\n\r\nabc"
    chunked = b"PUT /chunked HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    data = get("/length") + get("/chunked") + upload + get("/cookies") + chunked + get("/teapot")
    answer = both(pair, data, answers=6)
    assert answer.count(b"HTTP/1.1 ") == 6
    assert answer.index(b"hello world") < answer.index(b"b\r\nhello world") < answer.rindex(b"tea")
    half = len(raw_upstream.heads) // 2
    assert raw_upstream.heads[:half] == raw_upstream.heads[half:]
    assert b"POST /length HTTP/1.1" in raw_upstream.heads[2] and raw_upstream.heads[2].endswith(b"abc")
    assert lane_starts  # the first request at least; those behind another one wait in uvicorn's line


def test_a_pooled_connection_dropped_by_the_upstream_is_retried_once_when_safe(proxies, lane_starts) -> None:
    pair = proxies()
    for server in pair:  # a first answer leaves a pooled connection behind, in each proxy
        assert raw_exchange(server.port, get("/length"), 1).endswith(b"hello world")
    assert both(pair, get("/drop-next")).endswith(b"\r\n\r\nok")  # retried on a fresh connection
    # Not safe to send twice: the upstream may have acted on it, so the visitor gets the 502.
    answer = both(pair, b"POST /drop-next HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert len(lane_starts) == 3


def test_keep_alive_requests_one_after_another_reuse_one_upstream_connection(proxies, lane_starts) -> None:
    fast, _ = proxies()
    with httpx.Client() as client:
        for _ in range(20):
            assert client.get(fast.url + "/length").text == "hello world"
    assert len(lane_starts) == 20


def test_forwarding_headers_are_written_as_the_asgi_path_writes_them(proxies, raw_upstream) -> None:
    pair = proxies()
    extra = ("X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nConnection: keep-alive, X-Drop\r\n"
             "X-Drop: 1\r\nProxy: evil\r\nTE: trailers\r\nCookie: a=1\r\nCookie: b=2\r\n")
    both(pair, get("/length", extra=extra))
    fast_head, asgi_head = raw_upstream.heads
    assert fast_head == asgi_head
    assert b"x-drop" not in fast_head.lower() and b"proxy:" not in fast_head.lower() and b"te:" not in fast_head
    # 127.0.0.1, the test's own address, is a trusted proxy by default: its chain is extended.
    assert b"x-forwarded-for: 6.6.6.6, 127.0.0.1\r\n" in fast_head and fast_head.count(b"cookie: ") == 2


def test_upstream_down_and_timeout_pages_are_identical(raw_upstream) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    settings = {"upstream": down}
    with ServerThread(ProxyApp(ProxySettings(**settings)), **PROXY_SERVER_OPTIONS) as fast, \
            ServerThread(ProxyApp(ProxySettings(**settings)), **ASGI_SERVER_OPTIONS) as asgi:
        answer = both((fast, asgi), get("/page"))
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    settings = {"upstream": f"http://127.0.0.1:{raw_upstream.server_address[1]}", "timeout": 0.3}
    with ServerThread(ProxyApp(ProxySettings(**settings)), **PROXY_SERVER_OPTIONS) as fast, \
            ServerThread(ProxyApp(ProxySettings(**settings)), **ASGI_SERVER_OPTIONS) as asgi:
        answer = both((fast, asgi), get("/hang"))
        assert answer.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
        assert both((fast, asgi), get("/length")).endswith(b"hello world")  # the visitor's connection still serves


def test_a_slow_visitor_pauses_the_upstream(proxies, raw_upstream, lane_starts) -> None:
    fast, _ = proxies()
    with socket.create_connection(("127.0.0.1", fast.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(get("/huge"))
        received = len(sock.recv(65536))
        time.sleep(1.0)
        held = raw_upstream.sent
        assert held < 32 * 1024 * 1024, f"the proxy read {held} bytes for a visitor who reads nothing"
        deadline = time.monotonic() + 60
        while received < 256 * 1024 * 1024 and time.monotonic() < deadline:
            chunk = sock.recv(1024 * 1024)
            if not chunk:
                break
            received += len(chunk)
    assert received > 256 * 1024 * 1024  # the head and every byte of the body
    assert lane_starts


def test_the_lane_only_runs_the_proxy_and_leaves_edited_answers_to_asgi(upstream) -> None:
    plain = ProxyApp(ProxySettings(upstream=upstream.url))
    assert fast_lane_of(plain) is not None and fast_lane_of(plain).enabled  # type: ignore[union-attr]
    assert not fast_lane_of(ProxyApp(ProxySettings(upstream=upstream.url, inject=True))).enabled  # type: ignore[union-attr]
    assert not fast_lane_of(ProxyApp(ProxySettings(upstream=upstream.url, host_header="upstream"))).enabled  # type: ignore[union-attr]
    fronted = create_app(ProxySettings(upstream=upstream.url), config=Config(secret="s" * 32), sink=MemorySink())
    assert fast_lane_of(fronted) is not None

    async def other(scope: Any, receive: Any, send: Any) -> None:
        await plain(scope, receive, send)

    assert fast_lane_of(other) is None


def test_behind_the_middleware_a_plain_request_gets_what_the_asgi_path_gives(raw_upstream, lane_starts) -> None:
    """The lane assumes the middleware leaves plain requests alone; should it ever add something to
    them (a header, a cookie), this fails and the lane must learn to do the same."""
    url = f"http://127.0.0.1:{raw_upstream.server_address[1]}"

    def fronted() -> Any:
        return create_app(ProxySettings(upstream=url), config=Config(secret="proxy-test-secret-0123456789"),
                          sink=MemorySink())

    with ServerThread(fronted(), **PROXY_SERVER_OPTIONS) as fast, \
            ServerThread(fronted(), **ASGI_SERVER_OPTIONS) as asgi:
        for request in (get("/cookies"), get("/chunked", extra="Cookie: _epik=x; _psid=y\r\n"),
                        get("/length?utm_source=pinterest")):
            both((fast, asgi), request)
    assert len(lane_starts) == 3


EPIK = "dj0yJnU9NTZ6eVhBd0Q2aG4xNm5GX0dQN0Z3TkZ3cGx6OTNJdk8mcD0yJm09MSZ0PUFBQUFBR1l4b0lr"


def test_the_middleware_still_answers_what_it_handles(upstream, lane_starts) -> None:
    sink = MemorySink()
    config = Config(secret="proxy-test-secret-0123456789", ad_account_id="549755885175")
    app = create_app(ProxySettings(upstream=upstream.url, server_pageviews=True), config=config, sink=sink)
    with ServerThread(app, **PROXY_SERVER_OPTIONS) as server, httpx.Client(base_url=server.url) as client:
        landing = client.get(f"/?epik={EPIK}")
        assert landing.status_code == 200 and "_epik" in landing.headers.get("set-cookie", "")
        script = client.get("/_ps/c.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert client.get("/%5Fps/c.js").content == script.content  # the middleware decodes the path
        assert not lane_starts
        page = client.get("/", headers={"sec-fetch-dest": "document", "user-agent": "Mozilla/5.0 Firefox/128.0"})
        assert page.status_code == 200 and not lane_starts  # a navigation: counted by the ASGI path
        deadline = time.monotonic() + 10
        while not sink.events and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(sink.events) == 1  # the page view
        asset = client.get("/", headers={"sec-fetch-dest": "image", "user-agent": "Mozilla/5.0 Firefox/128.0"})
        assert asset.status_code == 200 and len(lane_starts) == 1


@pytest.mark.parametrize("path", ["/length", "/_ps/c.js"])  # the fast lane's answers, and the ASGI path's
def test_idle_connections_close_after_the_keep_alive_timeout_and_busy_ones_stay(raw_upstream, path: str) -> None:
    url = f"http://127.0.0.1:{raw_upstream.server_address[1]}"
    app = create_app(ProxySettings(upstream=url), config=Config(secret="proxy-test-secret-0123456789"),
                     sink=MemorySink())
    with ServerThread(app, timeout_keep_alive=1, **PROXY_SERVER_OPTIONS) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for _ in range(4):  # a request every 0.6 s: never idle for the whole second
            sock.sendall(get(path))
            assert read_answer(sock).startswith(b"HTTP/1.1 200 OK\r\n")
            time.sleep(0.6)
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(65536) == b""  # closed by the proxy
        assert 0.2 < time.monotonic() - started < 1.5  # a second after the last answer (0.6 s of it slept)


def test_the_lane_is_served_only_on_a_uvicorn_it_was_tested_with(caplog: pytest.LogCaptureFixture) -> None:
    import uvicorn

    from pinsignal.proxy.server import ProxyHttpProtocol, http_protocol

    assert http_protocol() is ProxyHttpProtocol, f"the lane is untested on uvicorn {uvicorn.__version__}"
    with caplog.at_level("INFO", logger="pinsignal.proxy"):
        assert http_protocol("0.99.0") == "httptools"
    assert "uvicorn 0.99.0" in caplog.text
