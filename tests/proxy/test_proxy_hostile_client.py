"""A hostile visitor: raw bytes on a socket to the real proxy under uvicorn.

Every malformed or abusive request gets a safe answer (a 4xx, or the connection closed), reaches
no other host, carries no header the visitor forged about their address, and takes no upstream
connection away from other visitors for long.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import httpx
import proxy_upstream
import pytest

from pinsignal.config import Config
from pinsignal.proxy import ProxyApp, ProxySettings
from support import ServerThread, free_port, pinsignal_cmd, run_process

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


# --- item 5: limits on the request head ---------------------------------------------------------

def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (reading and dropping anything it sent), or ``None``."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return None


def test_regression_item5_an_idle_connection_is_closed_at_the_head_timeout(make_proxy) -> None:
    proxy: ServerThread = make_proxy(head_timeout=1)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        waited = closed_within(sock, 8)
    assert waited is not None and 0.8 < waited < 4


def test_regression_item5_a_head_sent_a_byte_at_a_time_is_cut_at_the_head_timeout(make_proxy) -> None:
    proxy: ServerThread = make_proxy(head_timeout=1)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"GET /page HTTP/1.1\r\nHost: shop.example\r\n")
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while time.monotonic() - started < 8:
                sock.sendall(b"X")  # a header that never ends, one byte every 0.2 s
                time.sleep(0.2)
        elapsed = time.monotonic() - started
    assert elapsed < 4, "the slow head kept its connection"


def test_regression_item5_a_kept_alive_connection_that_starts_a_head_and_stalls_is_cut(make_proxy) -> None:
    proxy: ServerThread = make_proxy(head_timeout=1)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"GET /page HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        assert b"200 OK" in sock.recv(65536)
        sock.sendall(b"GET /page HTTP/1.1\r\n")  # then nothing
        waited = closed_within(sock, 8)
    assert waited is not None and waited < 4


def send_and_read(port: int, head: bytes, *, piece: int = 1024 * 1024) -> bytes:
    """Send ``head`` (in pieces, ignoring a server that stops reading), then read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        with contextlib.suppress(OSError):
            for start in range(0, len(head), piece):
                sock.sendall(head[start:start + piece])
        answer = b""
        with contextlib.suppress(OSError):
            while piece_read := sock.recv(65536):
                answer += piece_read
                if b"\r\n\r\n" in answer:
                    break
        return answer


def test_regression_item5_a_32_mib_header_is_a_431_and_never_reaches_the_upstream(make_proxy) -> None:
    proxy: ServerThread = make_proxy()
    head = b"GET /page-huge HTTP/1.1\r\nHost: shop.example\r\nX-Huge: " + b"a" * (32 * 1024 * 1024) + b"\r\n\r\n"
    answer = send_and_read(proxy.port, head)
    assert status_of(answer) == 431, answer[:200]
    assert "/page-huge" not in proxy_upstream.SEEN_PATHS


@pytest.mark.parametrize(("extra", "status"), [(1000, 200), (3000, 431)])
def test_regression_item5_the_limit_holds_for_a_whole_head_in_one_segment(make_proxy, extra, status) -> None:
    proxy: ServerThread = make_proxy(max_head_size=4096)
    head = b"GET /page HTTP/1.1\r\nHost: shop.example\r\nX-Pad: " + b"p" * extra + b"\r\n" + b"X-More: 1\r\n" * 100
    answer = exchange(proxy.port, head + b"\r\n")
    assert status_of(answer) == status, answer[:200]


# --- item 6: clients that never read --------------------------------------------------------------

def never_reading(port: int, count: int, address: str) -> list[socket.socket]:
    """``count`` visitors (``address`` by a trusted X-Forwarded-For) asking for a large download, reading none of it."""
    sockets = []
    for index in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET /big?size={1 << 30}&starve={address}-{index} HTTP/1.1\r\nHost: shop.example\r\n"
                     f"X-Forwarded-For: {address}\r\n\r\n".encode())
        sockets.append(sock)
    return sockets


def wait_until_upstream_streams(address: str, count: int) -> None:
    """Until ``count`` of the never-reading visitors from ``address`` have their download under way at the site."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if sum(f"starve={address}-" in key for key in list(proxy_upstream.STATE)) >= count:
            time.sleep(0.3)  # and the rest of them are waiting in the proxy
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} downloads for {address} started at the site")


def test_regression_item6_clients_that_never_read_lose_their_upstream_connections_at_the_write_deadline(
        make_proxy) -> None:
    proxy: ServerThread = make_proxy(max_connections=4, timeout=4, write_timeout=1, max_per_client=32)
    stalled = never_reading(proxy.port, 4, "198.51.100.7")
    try:
        wait_until_upstream_streams("198.51.100.7", 4)  # they take every connection to the site
        started = time.monotonic()
        response = httpx.get(proxy.url + "/page", headers={"x-forwarded-for": "203.0.113.1"}, timeout=20)
        assert response.status_code == 200 and time.monotonic() - started < 4
        # And they were cut off, not left holding a socket with a full buffer.
        for sock in stalled:
            assert closed_within(sock, 10) is not None
    finally:
        for sock in stalled:
            sock.close()


def test_regression_item6_one_address_holds_at_most_max_per_client_upstream_connections(make_proxy) -> None:
    proxy: ServerThread = make_proxy(max_connections=4, timeout=3, write_timeout=60, max_per_client=2)
    stalled = never_reading(proxy.port, 6, "198.51.100.8")
    try:
        wait_until_upstream_streams("198.51.100.8", 2)
        for visitor in ("203.0.113.1", "203.0.113.2"):
            response = httpx.get(proxy.url + "/page", headers={"x-forwarded-for": visitor}, timeout=20)
            assert response.status_code == 200
        # A further request from the starving address waits for one of its own two slots, then 429.
        late = httpx.get(proxy.url + "/page", headers={"x-forwarded-for": "198.51.100.8"}, timeout=20)
        assert late.status_code == 429
    finally:
        for sock in stalled:
            sock.close()


# --- item 7: Host, and the head limit on every segment ---------------------------------------------

@pytest.mark.parametrize(("head", "status"), [
    (b"GET /page HTTP/1.1\r\n\r\n", 400),
    (b"GET /page HTTP/1.1\r\nHost: shop.example\r\nHost: evil.example\r\n\r\n", 400),
    (b"GET /page HTTP/1.1\r\nHost: shop.example\r\nhost: shop.example\r\n\r\n", 400),
    (b"GET /page HTTP/1.1\r\nHost: evil.example/path\r\n\r\n", 400),
    (b"GET /page HTTP/1.1\r\nHost: a@evil.example\r\n\r\n", 400),
    (b"GET /page HTTP/1.1\r\nHost: shop.example:8000\r\n\r\n", 200),
    (b"GET /page HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", 200),
    (b"GET /page HTTP/1.0\r\n\r\n", 200),  # HTTP/1.0 may leave Host out
])
def test_regression_item7_requests_without_exactly_one_valid_host_get_400(make_proxy, head, status) -> None:
    answer = exchange(make_proxy().port, head)
    assert status_of(answer) == status, answer[:200]


def test_regression_item7_a_websocket_with_two_hosts_gets_400(make_proxy) -> None:
    request = websocket_request("/ws").replace(b"Host: shop.example\r\n", b"Host: a.example\r\nHost: b.example\r\n")
    assert status_of(exchange(make_proxy().port, request)) == 400


def test_regression_item7_the_head_limit_is_checked_on_every_segment(make_proxy) -> None:
    limit = 16 * 1024
    proxy: ServerThread = make_proxy(max_head_size=limit)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET /page HTTP/1.1\r\nHost: shop.example\r\n")
        sent = 0
        answer = b""
        while sent < 4 * 1024 * 1024 and not answer:
            with contextlib.suppress(OSError):
                sock.sendall(b"X-Pad: " + b"p" * 1000 + b"\r\n")  # one header line per segment, never the end
            sent += 1009
            time.sleep(0.002)
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = sock.recv(65536)
    assert status_of(answer) == 431, answer[:200]
    assert sent <= limit + 4 * 1009, f"answered only after {sent} bytes"


# --- the same inputs against `pinsignal proxy` itself: one process (the protocol class passed
# with its limits) and two workers (the class imported by name, limits from the environment) ----

@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_pinsignal_proxy_itself_holds_the_head_limits(upstream, redis_url, tmp_path, decoy, workers) -> None:
    port = free_port()
    env = {"PINSIGNAL_UPSTREAM": upstream.url, "PINSIGNAL_PROXY_PORT": str(port), "PINSIGNAL_PROXY_WORKERS": workers,
           "PINSIGNAL_PROXY_HEAD_TIMEOUT": "1", "PINSIGNAL_PROXY_MAX_HEAD_SIZE": "4096",
           "PINSIGNAL_SECRET": "proxy-hostile-secret-0123456789abcdef", "REDIS_URL": redis_url,
           "PINSIGNAL_DATA_DIR": str(tmp_path)}
    with run_process(pinsignal_cmd("proxy"), port=port, env=env, timeout=60, log=tmp_path / "proxy.log"):
        for _ in range(int(workers) * 2):  # several connections, so that every worker answers some
            assert status_of(exchange(port, b"GET /page HTTP/1.1\r\nHost: shop.example\r\n\r\n")) == 200
            assert status_of(exchange(port, b"GET /page HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")) == 400
            assert status_of(exchange(port, b"GET /page HTTP/1.1\r\n\r\n")) == 400
            big = b"GET /page HTTP/1.1\r\nHost: shop.example\r\nX-Huge: " + b"a" * (1024 * 1024) + b"\r\n\r\n"
            assert status_of(send_and_read(port, big, piece=8192)) == 431
            assert status_of(exchange(port, websocket_request("admin://x/"))) == 400
            with socket.create_connection(("127.0.0.1", port)) as sock:
                waited = closed_within(sock, 8)
            assert waited is not None and waited < 4
    assert decoy.hits == 0
    assert "Traceback" not in (tmp_path / "proxy.log").read_text()
