"""A plain static file server (``python -m http.server``, HTTP/1.0, one connection per request) behind the proxy."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from proxy_support import PROXY_SERVER_OPTIONS
from test_proxy_inject import BROWSER, TAG

from pinsignal.proxy import ProxyApp, ProxySettings
from support import ServerThread, free_port, run_process

pytestmark = pytest.mark.integration

PAGE = b"<!doctype html>\n<html>\n<head>\n<title>Static</title>\n</head>\n<body>static</body>\n</html>\n"


@pytest.fixture(scope="module")
def static_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("www")
    (root / "index.html").write_bytes(PAGE)
    (root / "assets").mkdir()
    (root / "assets" / "blob.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 7))
    (root / "assets" / "app.js").write_text("console.log('</head>')\n")
    port = free_port()
    with run_process([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
                      str(root)], port=port):
        yield f"http://127.0.0.1:{port}", root


@pytest.fixture(scope="module")
def proxy(static_site: tuple[str, Path]) -> Iterator[ServerThread]:
    app = ProxyApp(ProxySettings(upstream=static_site[0], inject=True))
    with ServerThread(app, **PROXY_SERVER_OPTIONS) as server:
        yield server


def test_index_page_is_served_with_the_tag(proxy) -> None:
    response = httpx.get(proxy.url + "/", headers=BROWSER)
    assert response.status_code == 200
    assert response.content == PAGE.replace(b"</head>", TAG + b"</head>")


def test_files_come_through_byte_for_byte_with_their_headers(proxy, static_site) -> None:
    _, root = static_site
    expected = (root / "assets" / "blob.bin").read_bytes()
    response = httpx.get(proxy.url + "/assets/blob.bin", timeout=30)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert response.headers["content-length"] == str(len(expected))
    assert response.headers["server"].startswith("SimpleHTTP")  # the upstream's, and only one
    script = httpx.get(proxy.url + "/assets/app.js", headers={**BROWSER, "sec-fetch-dest": "script"})
    assert script.content == b"console.log('</head>')\n"


def test_directory_redirect_and_missing_file_pass_through(proxy) -> None:
    redirect = httpx.get(proxy.url + "/assets")
    assert redirect.status_code == 301 and redirect.headers["location"] == "/assets/"
    missing = httpx.get(proxy.url + "/nope.html")
    assert missing.status_code == 404


def test_many_requests_each_on_a_new_upstream_connection(proxy) -> None:
    with httpx.Client() as client:
        for _ in range(30):
            assert client.get(proxy.url + "/assets/app.js").status_code == 200
