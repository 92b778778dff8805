"""Planted raw emails, phones and names never reach Redis, logs, dead letters or metrics; the access
token never reaches a log line or an error message.

One whole installation (web process, Redis, worker, sandbox: the fault suite's ``Stack``) takes
events carrying planted personal data through every path: queued while the account is paused by
a 401, delivered, dead-lettered after 400s, rejected at the collector, remembered by ``identify``.
Then every Redis key and value, every log line, the metrics page and the CLI's output are searched.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fault_harness import ROOT, Stack, make_event

from pinsignal import keys
from support import free_port

pytestmark = pytest.mark.integration

EMAIL = "Planted.Zebulon@Example.COM"
PHONE = "+1 (415) 555-0199"
FIRST, LAST = "Zebulon", "Quaxworth"
# What must never appear, in any case or spelling a normaliser would produce
NEEDLES = ["planted.zebulon@example.com", "plantedzebulon", "4155550199", "415) 555-0199", "555-0199",
           "zebulon", "quaxworth"]
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"}


def planted(run: str, index: int, **overrides: Any) -> dict[str, Any]:
    event = make_event(run, index, traits={"email": EMAIL, "phone": PHONE, "first_name": FIRST, "last_name": LAST,
                                           "firstName": FIRST, "name": f"{FIRST} {LAST}"})
    event["user_id"] = EMAIL
    event["properties"]["note"] = f"for {FIRST} {LAST}, {EMAIL}"  # fields no pipeline maps are dropped
    event.update(overrides)
    return event


def everything_in_redis(client: redis.Redis) -> bytes:
    """Every key and every value of every type, as one blob."""
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                parts += [field, value]
        elif kind == b"list":
            parts += client.lrange(key, 0, -1)
        elif kind == b"set":
            parts += list(client.smembers(key))
        elif kind == b"zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            for entry_id, fields in client.xrange(key):
                parts.append(entry_id)
                for field, value in fields.items():
                    parts += [field, value]
    return b"\n".join(parts)


def assert_clean(where: str, blob: bytes | str) -> None:
    text = (blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob).lower()
    found = [needle for needle in NEEDLES if needle in text]
    assert not found, f"{where} holds planted personal data: {found}"


def post(http: httpx.Client, events: list[dict[str, Any]], **headers: str) -> httpx.Response:
    response = http.post("/_ps/e", json={"batch": events}, headers={**BROWSER, **headers})
    assert response.status_code == 202, response.text
    return response


def wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_no_raw_personal_data_or_token_anywhere(tmp_path: Path) -> None:
    token = "tok-" + secrets.token_hex(20)
    run = secrets.token_hex(3)
    metrics_port = free_port()
    with Stack(tmp_path, sandbox_args=("--token", token), env={"PINTEREST_ACCESS_TOKEN": token}) as stack, \
            httpx.Client(base_url=stack.web_url, trust_env=False, timeout=10) as http:
        client = stack.redis_client()
        stack.add_worker("--metrics-port", str(metrics_port))
        # 1. The account answers 401: events wait in Redis, hashed.
        stack.client.fault(status=401, count=100_000)
        identify = http.post("/_ps/e", json={"type": "identify", "user_id": EMAIL, "message_id": f"{run}-id",
                                             "traits": {"email": EMAIL, "phone": PHONE, "first_name": FIRST}},
                             headers=BROWSER)
        assert identify.status_code == 202, identify.text
        identity_cookie = identify.headers.get_list("set-cookie")
        assert identity_cookie and all(EMAIL.lower() not in c.lower() for c in identity_cookie)
        post(http, [planted(run, i) for i in range(20)])
        psu = [c.split(";", 1)[0] for c in identity_cookie if c.startswith("_psu=")]
        post(http, [make_event(run, 20, traits={})], cookie=psu[0])  # anonymous, lent the hashed keys
        rejected = post(http, [planted(run, 21, timestamp="not a time"), planted(run, 22, type="nope"),
                               {"type": "track", "event": "order_completed", "traits": {"email": [EMAIL]}}])
        assert len(rejected.json()["rejected"]) >= 2  # the list of emails may be hashed one by one
        wait_for(lambda: b"PAUSED" in "".join(p.text() for p in stack.workers).encode())
        queued = everything_in_redis(client)
        assert b"}:events" in queued and queued.count(b'"em":["') >= 20, "nothing queued to search"
        assert_clean("Redis (events queued while paused)", queued)
        # 2. Back to normal: delivered.
        stack.client.clear_faults()
        wait_for(lambda: stack.client.stats()["events_recorded"] >= 21)
        # 3. 400 for everything: split down to single events and dead-lettered.
        stack.client.fault(status=400, count=100_000)
        post(http, [planted(run, i) for i in range(100, 110)])
        wait_for(lambda: sum(client.zcard(keys.dlq_index(a.decode())) for a in client.smembers(keys.ACCOUNTS)) >= 10)
        stack.client.clear_faults()
        assert_clean("Redis (after delivery and dead letters)", everything_in_redis(client))
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", trust_env=False, timeout=10).text
        assert "pinsignal_events_delivered_total" in metrics
        assert_clean("the worker's metrics", metrics)
        cli = subprocess.run([sys.executable, "-m", "pinsignal", "dlq", "list"], env=stack.env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        status = subprocess.run([sys.executable, "-m", "pinsignal", "status"], env=stack.env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0 and status.returncode == 0, (cli.stderr, status.stderr)
        assert_clean("pinsignal dlq list", cli.stdout + cli.stderr)
        client.close()
        logs = stack.web.text() + "".join(proc.text() for proc in stack.workers)
        assert "RESUMED" in logs and "dead-lettered" in logs
        assert_clean("the web and worker logs", logs)
        for where, text in (("logs", logs), ("pinsignal dlq list", cli.stdout + cli.stderr),
                            ("pinsignal status", status.stdout + status.stderr), ("metrics", metrics)):
            assert token not in text, f"the access token appears in {where}"


def test_the_token_is_in_no_error_message_or_repr() -> None:
    from pinsignal.config import Config
    from pinsignal.errors import ConfigError
    from pinsignal.pinterest.client import PinterestClient

    token = "tok-" + secrets.token_hex(20)
    messages = [repr(Config(access_token=token, ad_account_id="549755885175"))]
    for bad in ({"api_url": "ftp://nope"}, {"ad_account_id": "acct-1"}, {"http_timeout": -1.0}):
        with pytest.raises(ConfigError) as caught:
            Config(access_token=token, **bad)  # type: ignore[arg-type]
        messages.append(str(caught.value))
    client = PinterestClient(Config(access_token=token, ad_account_id="549755885175", api_url="http://127.0.0.1:9"))
    messages.append(repr(client.http))
    asyncio.run(client.aclose())
    for message in messages:
        assert token not in message, message
