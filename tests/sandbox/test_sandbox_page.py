"""The sandbox's root page: newest first, match keys, hashes shortened, everything escaped."""

from __future__ import annotations

from typing import Any

import pytest

from pinsignal.sandbox import SandboxClient
from pinsignal.sandbox.page import match_keys

pytestmark = pytest.mark.integration

EM = "0123456789abcdef" * 4
PH = "fedcba9876543210" * 4


def test_page_lists_events_newest_first_with_their_match_keys(sandbox_server: SandboxClient,
                                                             make_event: Any) -> None:
    sandbox_server.send([make_event(event_id="first-one", event_name="page_visit")])
    sandbox_server.send([make_event(event_id="second-one", user_data={"em": [EM], "ph": [PH, PH]})])
    response = sandbox_server.http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src" not in response.headers["content-security-policy"]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    page = response.text
    assert '<meta http-equiv="refresh"' in page
    assert page.index("second-one") < page.index("first-one")
    assert "em 01234567…" in page and "ph fedcba98… +1" in page
    assert EM not in page and PH not in page  # hashes are shortened
    assert "IP+UA" in page and "click_id dj0yJnU9b2" in page
    assert "events received: 2" in page


def test_page_escapes_everything_it_shows(sandbox_server: SandboxClient, make_event: Any) -> None:
    attack = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    event = make_event(event_id=attack, event_name="<b>custom_thing</b>",
                       user_data={"client_ip_address": "203.0.113.9", "client_user_agent": "UA",
                                  "click_id": "<svg onload=alert(3)>"})
    assert sandbox_server.send([event]).status_code == 200  # unknown names are accepted with a warning
    page = sandbox_server.http.get("/").text
    for raw in ("<script>", "<img", "<svg", "<b>custom"):
        assert raw not in page, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;" in page
    assert "&lt;b&gt;custom_thing&lt;/b&gt;" in page
    assert "click_id &lt;svg onloa…" in page


def test_empty_page(sandbox_server: SandboxClient) -> None:
    assert "Nothing received yet." in sandbox_server.http.get("/").text


@pytest.mark.parametrize(("user_data", "expected"), [
    ({"em": [EM]}, [f"em {EM[:8]}…"]),
    ({"external_id": [EM], "hashed_maids": [PH]}, [f"external_id {EM[:8]}…", f"hashed_maids {PH[:8]}…"]),
    ({"client_ip_address": "1.2.3.4"}, []),  # IP alone is not a match key pair
    ({"client_ip_address": "1.2.3.4", "client_user_agent": "UA", "click_id": ""}, ["IP+UA"]),
    ("not an object", []),
])
def test_match_keys(user_data: Any, expected: list[str]) -> None:
    assert match_keys({"user_data": user_data}) == expected


def test_page_shows_the_order_value(sandbox_server: SandboxClient, make_event: Any) -> None:
    sandbox_server.send([make_event(custom_data={"value": "9.99", "currency": "EUR"})])
    assert "<td>9.99 EUR</td>" in sandbox_server.http.get("/").text
