"""When the upstream is down, slow, or the visitor leaves: short error pages and no wasted reading."""

from __future__ import annotations

import socket
import time

import httpx
import proxy_upstream
import pytest

from support import free_port

pytestmark = pytest.mark.integration


def test_upstream_down_is_a_502_page(make_proxy) -> None:
    proxy = make_proxy(upstream=f"http://127.0.0.1:{free_port()}")
    response = httpx.get(proxy.url + "/page")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in response.text


def test_slow_upstream_is_a_504_page_within_the_timeout(make_proxy) -> None:
    proxy = make_proxy(timeout=0.5)
    started = time.monotonic()
    response = httpx.get(proxy.url + "/slow?delay=10", timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert "504 Gateway Timeout" in response.text
    assert elapsed < 8  # the timeout, not the upstream's ten seconds, decided


def test_a_fast_enough_upstream_is_not_cut_off(make_proxy) -> None:
    response = httpx.get(make_proxy(timeout=5).url + "/slow?delay=0.2", timeout=30)
    assert response.status_code == 200 and response.text == "finally"


def test_visitor_disconnect_mid_download_stops_the_upstream_read(make_proxy) -> None:
    proxy = make_proxy()
    size = 2 * 1024**3  # far more than socket buffers can hold: only a stopped read ends early
    key = f"size={size}&visitor=leaves"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"GET /big?{key} HTTP/1.1\r\nHost: shop.example\r\n\r\n".encode())
        received = 0
        while received < 4 * 1024 * 1024:
            received += len(sock.recv(65536))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not proxy_upstream.STATE[key]["disconnected"]:
        time.sleep(0.05)
    state = proxy_upstream.STATE[key]
    assert state["disconnected"], "the proxy kept the upstream download going"
    assert not state["done"]
    assert state["sent"] < size // 4


def test_large_body_streams_through_intact(make_proxy) -> None:
    size = 64 * 1024 * 1024 + 12345
    total = 0
    url = make_proxy().url + f"/big?size={size}&n=2"
    with httpx.Client(timeout=60) as client, client.stream("GET", url) as response:
        assert response.headers["content-length"] == str(size)
        for chunk in response.iter_raw():
            total += len(chunk)
    assert total == size


def test_failures_are_logged_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    from pinsignal.proxy.forward import _FailureLog

    log = _FailureLog("http://site.example", interval=60)
    with caplog.at_level("WARNING", logger="pinsignal.proxy"):
        for _ in range(5):
            log.report("failed", OSError("refused"))
    assert [record.getMessage() for record in caplog.records] == ["upstream http://site.example failed: refused"]
    log._next = 0.0  # the interval has passed
    with caplog.at_level("WARNING", logger="pinsignal.proxy"):
        log.report("failed", OSError("refused"))
    assert caplog.records[-1].getMessage().endswith("refused (4 more since the last report)")


def test_server_sent_events_arrive_as_they_are_sent(make_proxy) -> None:
    proxy_upstream.RELEASE.clear()
    # A proxy that held the body back would make the first read time out (10 s) long before the
    # upstream, which waits for RELEASE, ends the stream.
    with httpx.Client(timeout=10) as client, client.stream("GET", make_proxy().url + "/events") as response:
        lines = response.iter_lines()
        assert next(lines) == "data: first"
        proxy_upstream.RELEASE.set()
        assert [line for line in lines if line] == ["data: second"]
