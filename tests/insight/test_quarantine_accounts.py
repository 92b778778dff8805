"""``pinsignal quarantine replay`` with several ad accounts (DESIGN 8.3, 8.4): a replayed event goes to the
account the collector routed it to, recorded when it was quarantined, else where the collector's routing
sends it; the real middleware and a real Redis."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from starlette.applications import Starlette

from pinsignal import PinSignalMiddleware, keys
from pinsignal.cli import main
from pinsignal.config import Config, shipped_pipelines_dir
from support import DEFAULT_ACCOUNT, EU_ACCOUNT, OUTLET_ACCOUNT, WHOLESALE_ACCOUNT, routed_accounts_file

SECRET = "quarantine-accounts-secret-0123456789"
WRITE_KEY = "wholesale-key-0123456789abcdef"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
DEFAULT, EU, WHOLESALE, OUTLET = DEFAULT_ACCOUNT, EU_ACCOUNT, WHOLESALE_ACCOUNT, OUTLET_ACCOUNT
ALL = (DEFAULT, EU, WHOLESALE, OUTLET)


def _broken_pipelines(tmp_path: Path) -> Path:
    """The shipped checkout pipeline with its event_time read from a field no event has: every checkout is
    invalid, and quarantined."""
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (shipped_pipelines_dir() / "checkout.yaml").read_text()
    assert "source: timestamp" in text
    (broken / "checkout.yaml").write_text(text.replace("source: timestamp", "source: properties.when"))
    return broken


def _event(message_id: str, url: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": "order_completed", "message_id": message_id,
            "properties": {"revenue": 10, "currency": "USD", **properties},
            "traits": {"email": "Jo@Example.com"}, "context": {"page": {"url": url}}}


def _queued(redis_url: str) -> dict[str, list[str]]:
    """The event ids in each account's stream."""
    client = redis.Redis.from_url(redis_url)
    try:
        return {account: sorted(orjson.loads(fields[b"e"])["event_id"]
                                for _, fields in client.xrange(keys.stream(account))) for account in ALL}
    finally:
        client.close()


def _replay_environment(monkeypatch: pytest.MonkeyPatch, redis_url: str, tmp_path: Path) -> None:
    for name, value in {"REDIS_URL": redis_url, "PINSIGNAL_SECRET": SECRET, "PINTEREST_AD_ACCOUNT_ID": DEFAULT,
                        "PINSIGNAL_ACCOUNTS": str(routed_accounts_file(tmp_path))}.items():
        monkeypatch.setenv(name, value)


def test_a_replayed_event_goes_to_the_account_the_collector_routed_it_to(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(secret=SECRET, redis_url=redis_url, ad_account_id=DEFAULT, accounts=routed_accounts_file(tmp_path),
                    write_keys=(f"wholesale:{WRITE_KEY}",), pipelines=(_broken_pipelines(tmp_path),),
                    client_events_per_minute=0)

    async def collect() -> None:
        app = PinSignalMiddleware(Starlette(), config=config)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://shop.example") as client:
            browser = await client.post("/_ps/e", json={"batch": [
                _event("m-eu", "https://shop.example.eu/checkout"),
                _event("m-outlet", "https://shop.example/checkout", store="outlet"),
                _event("m-default", "https://shop.example/checkout")]},
                headers={"Sec-Fetch-Site": "same-origin", "User-Agent": BROWSER})
            assert browser.status_code == 202, browser.text
            assert len(browser.json()["rejected"]) == 3, browser.text
            # a write-key post: its account is known only from the key's name, at intake
            shopper = {"userAgent": BROWSER, "ip": "203.0.113.9", "page": {"url": "https://shop.example/checkout"}}
            server = await client.post("/_ps/v1/batch", json={"batch": [
                {**_event("m-wholesale", ""), "context": shopper}]}, headers={
                "Authorization": "Basic " + base64.b64encode(WRITE_KEY.encode() + b":").decode()})
            assert server.status_code == 200, server.text
        await app.intake.close()

    asyncio.run(collect())
    client = redis.Redis.from_url(redis_url)
    try:
        kept = [orjson.loads(raw) for raw in client.hvals(keys.QUARANTINE)]
    finally:
        client.close()
    assert {item["message_id"]: item["account"] for item in kept} == {
        "m-eu": EU, "m-outlet": OUTLET, "m-default": DEFAULT, "m-wholesale": WHOLESALE}
    assert _queued(redis_url) == {account: [] for account in ALL}

    _replay_environment(monkeypatch, redis_url, tmp_path)  # the shipped, working pipelines
    assert main(["quarantine", "replay", "--all"]) == 0
    out = capsys.readouterr().out
    assert "replayed 4 of 4" in out
    for account in ALL:
        assert f"account {account}: 1 queued" in out
    assert _queued(redis_url) == {DEFAULT: ["m-default"], EU: ["m-eu"], WHOLESALE: ["m-wholesale"],
                                  OUTLET: ["m-outlet"]}


def test_an_event_without_a_known_account_is_routed_as_the_collector_would(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import redis.asyncio as aioredis

    from pinsignal.quarantine import Quarantine, quarantine_item

    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    def item(message_id: str, url: str, account: str | None = None, **properties: Any) -> dict[str, Any]:
        envelope = {**_event(message_id, url, **properties), "timestamp": now}
        return quarantine_item(envelope, reason="invalid_event", errors=["checkout: was broken"], epik=None,
                               cookies={}, default_country="US", account=account)

    async def keep() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await Quarantine(client).add([
            item("old-eu", "https://shop.example.eu/checkout"),                  # kept before accounts were recorded
            item("old-outlet", "https://shop.example/checkout", store="outlet"),
            item("old-default", "https://shop.example/checkout"),
            item("gone-eu", "https://shop.example.eu/checkout", account="111"),  # an account no longer configured
            item("kept-wholesale", "https://shop.example.eu/checkout", account=WHOLESALE),  # recorded wins
        ])
        await client.aclose()

    asyncio.run(keep())
    _replay_environment(monkeypatch, redis_url, tmp_path)
    assert main(["quarantine", "replay", "--all"]) == 0
    assert "replayed 5 of 5" in capsys.readouterr().out
    assert _queued(redis_url) == {DEFAULT: ["old-default"], EU: ["gone-eu", "old-eu"], WHOLESALE: ["kept-wholesale"],
                                  OUTLET: ["old-outlet"]}
