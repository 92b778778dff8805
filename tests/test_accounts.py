"""Several ad accounts (DESIGN 8.4): the ``PINSIGNAL_ACCOUNTS`` file, routing, and the collector's use of it."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from pinsignal.accounts import Accounts
from pinsignal.config import Config
from pinsignal.errors import ConfigError

DEFAULT = "549755885175"
EU, WHOLESALE, OUTLET = "549755885176", "549755885177", "549755885178"
WRITE_KEY = "wholesale-key-0123456789abcdef"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"

GOOD = f"""\
accounts:
  - id: "{EU}"
    token_env: SHOP_TOKEN_EU
    match:
      hosts: ["shop.example.eu", "*.shop.example.eu"]
  - id: {WHOLESALE}
    token_env: SHOP_TOKEN_WHOLESALE
    match:
      sources: [wholesale]
  - id: "{OUTLET}"
    token_env: SHOP_TOKEN_OUTLET
    match:
      conditions:
        - field: properties.store
          operator: equals
          value: outlet
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def envelope(url: str | None = None, **properties: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"page": {"url": url}} if url else {}
    return {"type": "track", "event": "order_completed", "properties": properties, "context": context}


def test_routes_to_the_first_match_else_the_default(tmp_path: Path) -> None:
    routes = Accounts.load(write(tmp_path, GOOD), default=DEFAULT)
    assert routes.ids == [DEFAULT, EU, WHOLESALE, OUTLET]
    assert routes.route(envelope("https://shop.example.eu/checkout")) == EU
    assert routes.route(envelope("https://www.shop.example.eu/x", store="outlet")) == EU  # first match wins
    assert routes.route(envelope(), host=b"Shop.Example.EU:8443") == EU  # the request's Host without a page URL
    assert routes.route(envelope("https://shop.example/x")) == DEFAULT
    assert routes.route(envelope("https://shop.example/x"), source_name="wholesale") == WHOLESALE
    assert routes.route(envelope("https://shop.example/x"), source_name="other") == DEFAULT
    assert routes.route(envelope("https://shop.example/x", store="outlet")) == OUTLET
    assert routes.route(envelope("https://evil.example/?x=shop.example.eu")) == DEFAULT
    assert Accounts.load(write(tmp_path, GOOD)).route(envelope()) is None  # no default: the unassigned stream


def test_a_page_url_host_wins_over_the_request_host(tmp_path: Path) -> None:
    routes = Accounts.load(write(tmp_path, GOOD), default=DEFAULT)
    assert routes.route(envelope("https://shop.example/x"), host=b"shop.example.eu") == DEFAULT


def test_every_kind_given_in_one_match_must_hold(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
        accounts:
          - id: "{EU}"
            token_env: T
            match: {{hosts: [shop.example.eu], sources: [eu-backend]}}
        """)
    routes = Accounts.load(path, default=DEFAULT)
    assert routes.route(envelope("https://shop.example.eu/"), source_name="eu-backend") == EU
    assert routes.route(envelope("https://shop.example.eu/")) == DEFAULT
    assert routes.route(envelope("https://shop.example/"), source_name="eu-backend") == DEFAULT


@pytest.mark.parametrize(("text", "expected"), [
    ("accounts: 3\n", ":1: the file must be a mapping with an 'accounts' list"),
    ("accounts:\n  - id: 12ab\n    token_env: T\n    match: {hosts: [a]}\n",
     ":2: id must be the numeric ad account id"),
    ("accounts:\n  - id: '1'\n    token_env: pina_secret-token-value\n    match: {hosts: [a]}\n",
     ":3: token_env must name the environment variable"),
    ("accounts:\n  - id: '1'\n    token_env: T\n    match: {}\n", ":4: match must be a mapping with hosts"),
    ("accounts:\n  - id: '1'\n    token_env: T\n    match:\n      hostz: [a]\n",
     ":4: match must be a mapping with hosts, sources or conditions"),
    ("accounts:\n  - id: '1'\n    token_env: T\n    match:\n      hosts: [a]\n      colour: red\n",
     ":6: unknown match 'colour'"),
    ("accounts:\n  - id: '1'\n    token_env: T\n    match:\n      conditions:\n        - field: event\n"
     "          operator: equalz\n          value: x\n", ":7: unknown operator 'equalz'"),
    ("accounts:\n  - id: '1'\n    token_env: T\n    match: {hosts: [a]}\n"
     "  - id: '1'\n    token_env: U\n    match: {hosts: [b]}\n", ":5: ad account 1 is listed twice (first on line 2)"),
    ("accounts:\n  - id: '1'\n   token_env: T\n", ":3: invalid YAML"),
])
def test_a_bad_file_fails_with_file_line_message(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Config(accounts=path)
    assert f"{path}{expected}" in str(caught.value)
    assert "pina_secret" not in str(caught.value)  # a token pasted into token_env is not echoed


def test_the_environment_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert Config.from_env({"PINSIGNAL_ACCOUNTS": str(path)}).accounts == path
    with pytest.raises(ConfigError, match="nope.yaml:1: cannot read the file"):
        Config.from_env({"PINSIGNAL_ACCOUNTS": str(tmp_path / "nope.yaml")})


def test_a_missing_token_names_its_variable_not_a_value(tmp_path: Path) -> None:
    account = Accounts.load(write(tmp_path, GOOD)).accounts[0]
    with pytest.raises(ConfigError, match="SHOP_TOKEN_EU is not set; it holds the access token of ad account"):
        account.token({})
    assert account.token({"SHOP_TOKEN_EU": " pina_abc "}) == "pina_abc"
    assert "pina_abc" not in repr(account)  # the account holds the variable's name, never the token


@pytest.mark.anyio
async def test_the_collector_routes_each_event_to_its_account(tmp_path: Path) -> None:
    from starlette.applications import Starlette

    from pinsignal import PinSignalMiddleware
    from pinsignal.collector.sink import MemorySink

    sink = MemorySink()
    config = Config(secret="s" * 32, ad_account_id=DEFAULT, accounts=write(tmp_path, GOOD),
                    write_keys=(f"wholesale:{WRITE_KEY}",), client_events_per_minute=0)
    app = PinSignalMiddleware(Starlette(), config=config, sink=sink)

    def event(n: int, url: str, **properties: Any) -> dict[str, Any]:
        return {"type": "track", "event": "order_completed", "message_id": f"m-{n}",
                "properties": {"revenue": 10, "currency": "USD", **properties},
                "context": {"page": {"url": url}}}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://shop.example") as client:
        answer = await client.post("/_ps/e", json={"batch": [
            event(1, "https://shop.example.eu/checkout"), event(2, "https://shop.example/checkout"),
            event(3, "https://shop.example/checkout", store="outlet")]},
            headers={"Sec-Fetch-Site": "same-origin", "User-Agent": BROWSER})
        assert answer.status_code == 202, answer.text
        shopper = {"userAgent": BROWSER, "ip": "203.0.113.9", "page": {"url": "https://shop.example/checkout"}}
        server = await client.post("/_ps/v1/batch", json={"batch": [{**event(4, ""), "context": shopper}]},
                                   headers={"Authorization": "Basic " + base64.b64encode(
                                       WRITE_KEY.encode() + b":").decode()})
        assert server.status_code == 200, server.text
    routed = {event["event_id"]: account for event, account in zip(sink.events, sink.accounts, strict=True)}
    assert routed == {"m-1": EU, "m-2": DEFAULT, "m-3": OUTLET, "m-4": WHOLESALE}
