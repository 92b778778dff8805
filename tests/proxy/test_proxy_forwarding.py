"""Forwarding through a real proxy to a real upstream: methods, targets, headers, bodies, cookies."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import httpx
import proxy_upstream
import pytest

from pinsignal.config import Config
from pinsignal.proxy import ProxyApp, ProxySettings

pytestmark = pytest.mark.integration


def inspect(proxy_url: str, target: str = "/inspect", **kwargs: object) -> dict[str, object]:
    response = httpx.request(str(kwargs.pop("method", "GET")), proxy_url + target, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200
    report: dict[str, object] = response.json()
    return report


def headers_named(report: dict[str, object], name: str) -> list[str]:
    return [value for key, value in report["headers"] if key == name]  # type: ignore[attr-defined, misc]


def test_method_path_and_query_arrive_exactly_as_sent(make_proxy) -> None:
    proxy = make_proxy()
    report = inspect(proxy.url, "/inspect/a%2Fb/caf%C3%A9;v=1?q=1&q=2&e=%20x&empty=", method="PATCH",
                     content=b"{}", headers={"content-type": "application/json"})
    assert report["method"] == "PATCH"
    assert report["raw_path"] == "/inspect/a%2Fb/caf%C3%A9;v=1"
    assert report["query"] == "q=1&q=2&e=%20x&empty="


def test_upstream_base_path_is_prefixed(make_proxy, upstream) -> None:
    proxy = make_proxy(upstream=upstream.url + "/inspect/")
    report = inspect(proxy.url, "/deeper?x=1")
    assert report["raw_path"] == "/inspect/deeper" and report["query"] == "x=1"


def test_several_set_cookie_headers_stay_separate_and_unchanged(make_proxy) -> None:
    proxy = make_proxy()
    response = httpx.get(proxy.url + "/cookies")
    assert response.headers.get_list("set-cookie") == [
        "a=1; Path=/; HttpOnly",
        "b=2; Path=/; Expires=Wed, 09 Jun 2027 10:18:14 GMT",
        "c=3; Path=/shop; SameSite=Lax",
    ]


def test_hop_by_hop_headers_are_stripped_and_others_kept(make_proxy) -> None:
    proxy = make_proxy()
    report = inspect(proxy.url, headers=[
        ("connection", "keep-alive, x-private-hop"), ("x-private-hop", "secret"), ("keep-alive", "timeout=5"),
        ("te", "trailers"), ("trailer", "x-t"), ("upgrade", "h2c"), ("proxy-authorization", "Basic eA=="),
        ("proxy", "http://evil.example:3128"),
        ("x-custom", "one"), ("x-custom", "two"), ("authorization", "Bearer visitor"), ("cookie", "sid=42"),
    ])
    names = [key for key, _ in report["headers"]]  # type: ignore[attr-defined, misc]
    for hop in ("x-private-hop", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization", "proxy"):
        assert hop not in names
    assert headers_named(report, "x-custom") == ["one", "two"]
    assert headers_named(report, "authorization") == ["Bearer visitor"]
    assert headers_named(report, "cookie") == ["sid=42"]


def test_host_is_kept_by_default_and_rewritten_on_request(make_proxy, upstream) -> None:
    kept = inspect(make_proxy().url, headers={"host": "shop.example"})
    assert headers_named(kept, "host") == ["shop.example"]
    assert headers_named(kept, "x-forwarded-host") == ["shop.example"]
    rewritten = inspect(make_proxy(host_header="upstream").url, headers={"host": "shop.example"})
    assert headers_named(rewritten, "host") == [upstream.url.split("://")[1]]
    assert headers_named(rewritten, "x-forwarded-host") == ["shop.example"]


def test_forwarded_headers_extend_a_trusted_chain_only(make_proxy, upstream) -> None:
    proxy = make_proxy()  # the test client connects from 127.0.0.1, trusted by default
    trusted = inspect(proxy.url, headers={"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"})
    assert headers_named(trusted, "x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]
    assert headers_named(trusted, "x-forwarded-proto") == ["https"]
    untrusting = ProxyApp(ProxySettings(upstream=upstream.url), config=Config(trusted_proxies=("10.0.0.1",)))
    spoofed = inspect(make_proxy(untrusting).url, headers={
        "x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "https", "x-forwarded-host": "evil.example",
        "forwarded": "for=6.6.6.6"})
    assert headers_named(spoofed, "x-forwarded-for") == ["127.0.0.1"]
    assert headers_named(spoofed, "x-forwarded-proto") == ["http"]
    assert headers_named(spoofed, "forwarded") == []
    assert headers_named(spoofed, "x-forwarded-host") == [headers_named(spoofed, "host")[0]]


def test_redirects_are_passed_back_not_followed(make_proxy) -> None:
    response = httpx.get(make_proxy().url + "/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/page"


def test_location_pointing_at_the_upstream_is_mapped_to_the_public_origin(upstream) -> None:
    from pinsignal.proxy.headers import map_location

    mapped = map_location([(b"Location", upstream.url.encode() + b"/cart?x=1"), (b"location", b"https://other/")],
                          upstream_origin=upstream.url.encode(), public_origin=b"https://shop.example")
    assert mapped == [(b"Location", b"https://shop.example/cart?x=1"), (b"location", b"https://other/")]


def test_no_cookie_jar_upstream_cookies_never_reach_another_visitor(make_proxy) -> None:
    proxy = make_proxy()
    with httpx.Client() as first:
        assert first.get(proxy.url + "/cookies").headers.get_list("set-cookie")
    # A different visitor, without cookies of its own: the upstream must see no Cookie at all.
    with httpx.Client() as second:
        report = second.get(proxy.url + "/inspect").json()
    assert headers_named(report, "cookie") == []


def test_chunked_upload_is_streamed_through_and_echoed(make_proxy) -> None:
    proxy = make_proxy()
    pieces = [os.urandom(65536 + n) for n in range(40)]  # ~2.6 MB in uneven pieces

    def body() -> Iterator[bytes]:
        yield from pieces

    response = httpx.post(proxy.url + "/echo", content=body(), timeout=30)
    assert response.status_code == 200
    assert response.headers["x-request-framing"] == "chunked"
    assert response.content == b"".join(pieces)


def test_an_upload_echoed_as_it_arrives_loses_no_piece(make_proxy) -> None:
    # The answer starts before the upload ends: the watch for the visitor leaving must not read
    # the rest of the upload from ``receive`` (it did once, and pieces went missing upstream
    # whenever the upload waited for the upstream's socket to drain).
    pieces = [bytes([65 + n % 26]) * (256 * 1024) for n in range(64)]  # 16 MB
    proxy = make_proxy()
    for _ in range(3):
        response = httpx.post(proxy.url + "/echo", content=iter(pieces), timeout=60)
        assert len(response.content) == 16 * 1024 * 1024 and response.content == b"".join(pieces)


def test_upload_with_content_length_keeps_it(make_proxy) -> None:
    payload = os.urandom(300_000)
    response = httpx.put(make_proxy().url + "/echo", content=payload, timeout=30)
    assert response.headers["x-request-framing"] == "300000"
    assert response.content == payload


def test_compressed_bodies_pass_through_byte_for_byte_without_inject(make_proxy) -> None:
    with httpx.Client() as client, client.stream("GET", make_proxy().url + "/gzip-page",
                                                 headers={"accept-encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert raw == proxy_upstream.GZIP_PAGE


def test_status_and_server_headers_come_from_the_upstream_once(make_proxy) -> None:
    response = httpx.get(make_proxy().url + "/missing")
    assert response.status_code == 404
    assert response.content == proxy_upstream.PAGE
    raw_names = [name.lower() for name, _ in response.headers.raw]
    assert raw_names.count(b"date") <= 1 and raw_names.count(b"server") <= 1


def test_keep_alive_connections_to_the_upstream_are_reused(make_proxy) -> None:
    proxy = make_proxy()
    with httpx.Client() as client:
        ports = {client.get(proxy.url + "/inspect").json()["peer_port"] for _ in range(6)}
    assert len(ports) == 1  # one pooled upstream connection served every sequential request


def test_raw_socket_head_request_gets_headers_and_no_body(make_proxy) -> None:
    proxy = make_proxy()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"HEAD /page HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b""


FORWARDED = [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"http")]
HEADS = [  # the visitor's headers (from an untrusted peer, 203.0.113.9), what goes upstream, and whether a body follows
    ([(b"host", b"shop.example")], [(b"host", b"shop.example"), *FORWARDED, (b"x-forwarded-host", b"shop.example")],
     False),
    ([], [(b"host", b"127.0.0.1:8080"), *FORWARDED], False),
    ([(b"host", b"s"), (b"connection", b"keep-alive"), (b"accept-encoding", b"gzip, br"), (b"cookie", b"a=1"),
      (b"cookie", b"b=2")],
     [(b"host", b"s"), (b"accept-encoding", b"gzip, br"), (b"cookie", b"a=1"), (b"cookie", b"b=2"), *FORWARDED,
      (b"x-forwarded-host", b"s")], False),
    ([(b"host", b"s"), (b"content-length", b"5"), (b"content-type", b"text/plain")],
     [(b"host", b"s"), (b"content-length", b"5"), (b"content-type", b"text/plain"), *FORWARDED,
      (b"x-forwarded-host", b"s")], True),
    ([(b"host", b"s"), (b"transfer-encoding", b"chunked")],
     [(b"host", b"s"), *FORWARDED, (b"x-forwarded-host", b"s")], True),
    ([(b"host", b"s"), (b"content-length", b"0"), (b"connection", b"close")],
     [(b"host", b"s"), (b"content-length", b"0"), *FORWARDED, (b"x-forwarded-host", b"s")], False),
    ([(b"host", b"s"), (b"pragma", b"no-cache"), (b"proxy-authorization", b"Basic x"), (b"proxy", b"http://evil")],
     [(b"host", b"s"), (b"pragma", b"no-cache"), *FORWARDED, (b"x-forwarded-host", b"s")], False),
    ([(b"host", b"s"), (b"connection", b"keep-alive, x-secret"), (b"x-secret", b"1"), (b"x-other", b"2")],
     [(b"host", b"s"), (b"x-other", b"2"), *FORWARDED, (b"x-forwarded-host", b"s")], False),
    ([(b"host", b"s"), (b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-proto", b"https"),
      (b"forwarded", b"for=10.0.0.1"), (b"te", b"trailers"), (b"expect", b"100-continue"), (b"upgrade", b"h2c")],
     [(b"host", b"s"), *FORWARDED, (b"x-forwarded-host", b"s")], False),
]


@pytest.mark.parametrize(("headers", "expected", "has_body"), HEADS)
def test_the_request_headers_sent_upstream(headers, expected, has_body) -> None:
    from pinsignal.clientip import TrustedProxies
    from pinsignal.proxy.forward import Forwarder
    from pinsignal.proxy.upstream import UpstreamPool

    settings = ProxySettings(upstream="http://127.0.0.1:8080/base")
    forwarder = Forwarder(settings, UpstreamPool(settings.upstream), trusted=TrustedProxies(["127.0.0.1"]),
                          policy=None, handoff=None)
    scope = {"type": "http", "method": "POST", "path": "/a b", "raw_path": b"/a%20b", "query_string": b"q=1",
             "headers": headers, "client": ("203.0.113.9", 5000), "scheme": "http"}
    assert forwarder.request_headers(scope, identity=False) == (expected, has_body)
    assert forwarder.target(scope) == b"/base/a%20b?q=1"
    identity, _ = forwarder.request_headers(scope, identity=True)
    assert [pair for pair in identity if pair[0] == b"accept-encoding"] == [(b"accept-encoding", b"identity")]
    upstream_host, _ = Forwarder(ProxySettings(upstream="http://127.0.0.1:8080", host_header="upstream"),
                                 UpstreamPool(settings.upstream), trusted=TrustedProxies([]), policy=None,
                                 handoff=None).request_headers(scope, identity=False)
    assert upstream_host[0] == (b"host", b"127.0.0.1:8080")
