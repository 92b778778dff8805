"""Real processes: a shop under uvicorn, the worker, Redis and the sandbox over HTTP (DESIGN 8.2).

- a landing, ``remember`` at checkout, then a payment webhook from another process, address and user
  agent: the sandbox gets the shopper's click id, IP and user agent;
- an import of 100,000 rows killed halfway and run again: every row delivered once;
- Limited Data Processing in each mode, from a browser post to the sandbox.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import free_port, pinsignal_cmd, run_process

SECRET = "visitors-e2e-secret-0123456789"
EPIK = "dj0yJnU9ZTJlLWxhbmRpbmcmcD0x"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
SHOPPER = "203.0.113.9"
PROVIDER_UA = "PayProvider-Webhooks/1.0"

SHOP = '''
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from pinsignal import PinSignalMiddleware, remember, track


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse("<p>landing</p>")


async def checkout(request: Request) -> JSONResponse:
    data = await request.json()
    return JSONResponse({"remembered": await remember(request, data["key"])})


async def webhook(request: Request) -> JSONResponse:
    data = await request.json()
    result = await track(request, "order_completed", visitor_key=data["key"], properties=data["properties"],
                         timestamp=data["created"])
    return JSONResponse({"queued": result.queued, "known": result.visitor_known, "reasons": result.reasons,
                         "event_id": result.event_id})


app = PinSignalMiddleware(Starlette(routes=[Route("/", page), Route("/checkout", checkout, methods=["POST"]),
                                            Route("/webhooks/payment", webhook, methods=["POST"])]))
'''

WEBHOOK = '''
import json, sys
import httpx
transport = httpx.HTTPTransport(local_address="127.0.0.2")
with httpx.Client(transport=transport, headers={"user-agent": sys.argv[2]}) as client:
    answer = client.post(sys.argv[1], json=json.loads(sys.argv[3]))
print(json.dumps({"status": answer.status_code, "body": answer.json()}))
'''


def _env(redis_url: str, sandbox: Any, **more: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "PINSIGNAL_SECRET": SECRET, "PINTEREST_AD_ACCOUNT_ID": sandbox.account_id,
            "PINTEREST_ACCESS_TOKEN": sandbox.token, "PINTEREST_API_URL": sandbox.url,
            "PINSIGNAL_BATCH_MAX_WAIT": "0.1", **more}


@pytest.fixture
def shop(tmp_path: Path, redis_url: str, sandbox_server: Any) -> Iterator[Any]:
    """Start the shop (uvicorn, its own process) with ``PINSIGNAL_*`` changes; yields its base URL."""
    (tmp_path / "visitors_shop.py").write_text(SHOP)
    import contextlib

    with contextlib.ExitStack() as stack:
        def start(**more: str) -> str:
            port = free_port()
            stack.enter_context(run_process(
                [sys.executable, "-m", "uvicorn", "visitors_shop:app", "--port", str(port), "--app-dir", str(tmp_path),
                 "--log-level", "warning"], port=port, env=_env(redis_url, sandbox_server, **more),
                log=tmp_path / f"shop-{port}.log"))
            return f"http://127.0.0.1:{port}"

        yield start


@pytest.fixture
def worker(tmp_path: Path, redis_url: str, sandbox_server: Any) -> Iterator[Any]:
    with run_process(pinsignal_cmd("worker"), env=_env(redis_url, sandbox_server),
                     log=tmp_path / "worker.log") as process:
        yield process


def test_a_webhook_from_another_process_sends_the_landings_click_id_ip_and_user_agent(
        shop: Any, worker: Any, sandbox_server: Any) -> None:
    url = shop()
    # the shopper, behind the site's trusted proxy (127.0.0.1), from 203.0.113.9
    shopper = {"user-agent": BROWSER, "x-forwarded-for": SHOPPER}
    with httpx.Client(base_url=url, headers=shopper) as browser:
        landing = browser.get(f"/?epik={EPIK}")
        assert any(c.startswith(f"_epik={EPIK}") for c in landing.headers.get_list("set-cookie"))
        kept = browser.post("/checkout", json={"key": "cs_test_a1"}, headers={"referer": f"{url}/cart"})
        assert kept.json() == {"remembered": True}
    created = int(time.time()) - 120
    body = {"key": "cs_test_a1", "created": created,
            "properties": {"order_id": "o-77", "revenue": 72.39, "currency": "USD"}}
    run = subprocess.run([sys.executable, "-c", WEBHOOK, f"{url}/webhooks/payment", PROVIDER_UA, json.dumps(body)],
                         capture_output=True, text=True, timeout=60, check=True)
    answer = json.loads(run.stdout)
    assert answer["status"] == 200 and answer["body"]["queued"] and answer["body"]["known"] is True, answer
    [record] = sandbox_server.wait_for_events(1)
    event = record["event"]
    assert event["event_name"] == "checkout" and event["event_id"] == answer["body"]["event_id"]
    assert event["event_time"] == created
    assert event["user_data"]["click_id"] == EPIK
    assert event["user_data"]["client_ip_address"] == SHOPPER
    assert event["user_data"]["client_user_agent"] == BROWSER
    assert event["event_source_url"] == f"{url}/cart"


def test_an_unknown_key_is_sent_with_what_the_webhook_has(shop: Any, worker: Any, sandbox_server: Any) -> None:
    url = shop()
    body = {"key": "never-seen", "created": int(time.time()) - 60,
            "properties": {"order_id": "o-78", "revenue": 10, "email": "buyer@example.com"}}
    run = subprocess.run([sys.executable, "-c", WEBHOOK, f"{url}/webhooks/payment", PROVIDER_UA, json.dumps(body)],
                         capture_output=True, text=True, timeout=60, check=True)
    answer = json.loads(run.stdout)
    assert answer["body"]["known"] is False and answer["body"]["queued"], answer
    [record] = sandbox_server.wait_for_events(1)
    user = record["event"]["user_data"]
    assert "client_ip_address" not in user and "client_user_agent" not in user and "em" in user


@pytest.mark.parametrize(("mode", "gpc", "flagged"), [
    ("off", False, None), ("off", True, "refused"), ("always", False, "LDP"), ("gpc", True, "LDP"),
    ("gpc", False, None),
])
def test_limited_data_processing_in_each_mode(shop: Any, worker: Any, sandbox_server: Any, mode: str, gpc: bool,
                                              flagged: str | None) -> None:
    url = shop(PINSIGNAL_LDP=mode)
    headers = {"user-agent": BROWSER, "x-forwarded-for": SHOPPER, **({"sec-gpc": "1"} if gpc else {})}
    event = {"type": "track", "event": "order_completed", "message_id": f"ldp-{mode}-{gpc}",
             "properties": {"order_id": f"o-{mode}-{gpc}", "revenue": 5}, "context": {"page": {"url": url}}}
    answer = httpx.post(f"{url}/_ps/e", json=event, headers=headers)
    assert answer.status_code == 202
    if flagged == "refused":
        assert answer.json()["rejected"], answer.json()
        time.sleep(1.0)
        assert sandbox_server.stats()["events_recorded"] == 0
        return
    [record] = sandbox_server.wait_for_events(1)
    assert record["event"].get("custom_data", {}).get("opt_out_type") == flagged


def _sales(path: Path, rows: int) -> None:
    now = int(time.time())
    with path.open("w") as handle:
        handle.write("order_id,email,value,currency,timestamp,ldp\n")
        for n in range(rows):
            handle.write(f"store-{n},customer{n}@example.com,{10 + n % 90}.5,USD,{now - 900 - n % 3600},"
                         f"{'true' if n % 10 == 0 else ''}\n")


def test_an_import_killed_halfway_and_run_again_delivers_every_row_once(
        tmp_path: Path, redis_url: str, sandbox_server: Any, worker: Any) -> None:
    rows = 100_000
    path = tmp_path / "sales.csv"
    _sales(path, rows)
    env = {**os.environ, **_env(redis_url, sandbox_server)}
    first = subprocess.Popen(pinsignal_cmd("import", str(path), "--json"), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    # killed once the worker has delivered part of it
    deadline = time.monotonic() + 120
    while sandbox_server.stats()["events_recorded"] < rows // 3:
        assert first.poll() is None, "the first import finished before it could be killed; use more rows"
        assert time.monotonic() < deadline, "the import did not get going"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    second = subprocess.run(pinsignal_cmd("import", str(path), "--json"), env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["read"] == rows and not summary["refused"], summary
    assert summary["resumed_after"] > 0 and summary["queued"] < rows, summary
    records = _all_events(sandbox_server, rows)
    ids = [record["event"]["event_id"] for record in records]
    assert len(ids) == rows and len(set(ids)) == rows  # every row once: no duplicate, none missing
    orders = {record["event"]["custom_data"]["order_id"] for record in records}
    assert orders == {f"store-{n}" for n in range(rows)}
    offline = {record["event"]["action_source"] for record in records}
    assert offline == {"offline"}
    flagged = sum(1 for record in records if record["event"]["custom_data"].get("opt_out_type") == "LDP")
    assert flagged == rows // 10
    # a third run: nothing new
    third = subprocess.run(pinsignal_cmd("import", str(path), "--restart", "--json"), env=env,
                           capture_output=True, text=True, timeout=300)
    again = json.loads(third.stdout.strip().splitlines()[-1])
    assert again["queued"] == 0 and again["duplicates"] == rows, again


def _all_events(sandbox: Any, rows: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 180
    while sandbox.stats()["events_recorded"] < rows:
        assert time.monotonic() < deadline, f"only {sandbox.stats()['events_recorded']} of {rows} delivered"
        time.sleep(0.2)
    time.sleep(1.0)  # anything delivered twice would arrive now
    records: list[dict[str, Any]] = []
    since = 0
    while True:
        page = sandbox.http.get("/_sandbox/events", params={"since": since, "limit": 20000}).json()
        batch = page["events"] if isinstance(page, dict) else page
        if not batch:
            return records
        records.extend(batch)
        since = batch[-1]["seq"]
