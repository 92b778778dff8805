"""``--inject``: the script tag lands before ``</head>``, streaming, also in compressed pages; nothing else changes."""

from __future__ import annotations

import gzip
import random
import zlib

import httpx
import proxy_upstream
import pytest

from pinsignal.proxy.inject import Decoder, HeadInjector, is_html, script_tag

TAG = b'<script src="/_ps/c.js" defer></script>'
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
BROWSER = {"accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8", "sec-fetch-dest": "document",
           "user-agent": CHROME}


def run(injector: HeadInjector, pieces: list[bytes]) -> bytes:
    return b"".join(injector.feed(piece) for piece in pieces) + injector.finish()


def split_randomly(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(0, min(12, len(data) - 1))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@pytest.mark.parametrize(("page", "expected"), [
    (b"<html><head><title>t</title></head><body>x</body></html>",
     b"<html><head><title>t</title><T></head><body>x</body></html>"),
    (b"<HTML><HEAD></HEAD ><BODY>", b"<HTML><HEAD><T></HEAD ><BODY>"),
    (b"<html><head>\n</head\n>", b"<html><head>\n<T></head\n>"),
    (b"<html><title>no head end</title><body class=x>hi", b"<html><title>no head end</title><T><body class=x>hi"),
    (b"<p>a fragment, no head, no body</p>", b"<p>a fragment, no head, no body</p>"),
    (b"<head></head><body></body><head></head>", b"<head><T></head><body></body><head></head>"),
    (b"<header>not the head</header></head>", b"<header>not the head</header><T></head>"),
    (b"<bodyguard></head>", b"<bodyguard><T></head>"),
])
def test_tag_goes_before_the_first_head_end_whatever_the_chunking(page: bytes, expected: bytes) -> None:
    rng = random.Random(page)
    for _ in range(300):
        assert run(HeadInjector(b"<T>"), split_randomly(page, rng)) == expected
    assert run(HeadInjector(b"<T>"), [bytes([b]) for b in page]) == expected


def test_a_page_without_a_head_in_its_first_megabyte_is_left_alone() -> None:
    body = b"<p>" + b"x" * (2 * 1024 * 1024) + b"</head>"
    assert run(HeadInjector(b"<T>"), [body[i:i + 65536] for i in range(0, len(body), 65536)]) == body


def test_script_tag_escapes_and_carries_the_page_view_id() -> None:
    assert script_tag("/_ps/c.js") == TAG
    assert script_tag("/t/c.js?v=1&x=<", "abc") == b'<script src="/t/c.js?v=1&amp;x=&lt;" defer data-pv="abc"></script>'
    assert script_tag("/_ps/c.js", tag_companion=True) == b'<script src="/_ps/c.js" defer data-tag></script>'
    assert is_html(b"text/html; charset=utf-8") and is_html(b"application/xhtml+xml")
    assert not is_html(b"application/json") and not is_html(None)


@pytest.mark.parametrize("encode", [
    lambda data: (b"gzip", gzip.compress(data)),
    lambda data: (b"deflate", zlib.compress(data)),
    lambda data: (b"deflate", _raw_deflate(data)),
])
def test_decoder_reads_gzip_zlib_and_raw_deflate_in_pieces(encode) -> None:
    page = proxy_upstream.PAGE * 50
    encoding, data = encode(page)
    decoder = Decoder(encoding)
    out = b"".join(decoder.feed(data[i:i + 7]) for i in range(0, len(data), 7)) + decoder.finish()
    assert out == page


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.integration
def test_plain_html_gets_the_tag_and_loses_its_length(make_proxy) -> None:
    response = httpx.get(make_proxy(inject=True).url + "/page", headers=BROWSER)
    assert response.content == proxy_upstream.PAGE.replace(b"</HEAD>", TAG + b"</HEAD>")
    assert "content-length" not in response.headers
    assert response.headers["etag"] == 'W/"page-v1"'
    assert response.headers.get_list("set-cookie") == ["upstream_session=abc; Path=/"]


@pytest.mark.integration
def test_tag_companion_mode_puts_data_tag_on_the_injected_tag(make_proxy) -> None:
    # A proxied site switches on Tag companion mode (docs/migration.md) without editing its pages.
    response = httpx.get(make_proxy(inject=True, tag_companion=True).url + "/page", headers=BROWSER)
    tag = b'<script src="/_ps/c.js" defer data-tag></script>'
    assert response.content == proxy_upstream.PAGE.replace(b"</HEAD>", tag + b"</HEAD>")


def test_tag_companion_mode_needs_the_injected_tag() -> None:
    from pinsignal.errors import ConfigError
    from pinsignal.proxy import ProxySettings

    with pytest.raises(ConfigError, match="PINSIGNAL_PROXY_INJECT"):
        ProxySettings.from_env({"PINSIGNAL_UPSTREAM": "http://127.0.0.1:8080", "PINSIGNAL_PROXY_TAG_COMPANION": "true"})
    settings = ProxySettings.from_env({"PINSIGNAL_UPSTREAM": "http://127.0.0.1:8080", "PINSIGNAL_PROXY_INJECT": "true",
                                       "PINSIGNAL_PROXY_TAG_COMPANION": "true"})
    assert settings.tag_companion and settings.to_env()["PINSIGNAL_PROXY_TAG_COMPANION"] == "true"


@pytest.mark.integration
def test_navigation_asks_the_upstream_for_identity(make_proxy) -> None:
    proxy = make_proxy(inject=True)
    report = httpx.get(proxy.url + "/inspect", headers={**BROWSER, "accept-encoding": "gzip, br"}).json()
    assert [v for k, v in report["headers"] if k == "accept-encoding"] == ["identity"]
    asset = httpx.get(proxy.url + "/inspect", headers={"accept": "*/*", "accept-encoding": "gzip, br"}).json()
    assert [v for k, v in asset["headers"] if k == "accept-encoding"] == ["gzip, br"]


@pytest.mark.integration
def test_gzip_html_from_a_stubborn_upstream_is_decoded_and_injected(make_proxy) -> None:
    with httpx.Client() as client, client.stream("GET", make_proxy(inject=True).url + "/gzip-page",
                                                 headers=BROWSER) as response:
        raw = b"".join(response.iter_raw())
    assert "content-encoding" not in response.headers and "content-length" not in response.headers
    expected = gzip.decompress(proxy_upstream.GZIP_PAGE).replace(b"</HEAD>", TAG + b"</HEAD>")
    assert raw == expected


@pytest.mark.integration
def test_non_html_is_untouched_byte_for_byte(make_proxy) -> None:
    proxy = make_proxy(inject=True)
    with httpx.Client() as client, client.stream("GET", proxy.url + "/binary", headers=BROWSER) as response:
        raw = b"".join(response.iter_raw())
    assert raw == proxy_upstream.BINARY
    assert response.headers["content-length"] == str(len(proxy_upstream.BINARY))
    echoed = httpx.post(proxy.url + "/echo", content=proxy_upstream.PAGE, headers={"content-type": "text/html"})
    assert echoed.content == proxy_upstream.PAGE
