"""``pinsignal tail``, ``quarantine``, ``quality`` and ``status`` on a real Redis (and the sandbox's EQS)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time
from typing import Any

import pytest
import redis

from pinsignal import keys
from pinsignal.cli import main
from pinsignal.insight import warning_kinds
from pinsignal.quality import quality_report, tally_records
from pinsignal.trace import TraceWriter, format_record, record_matches
from support import pinsignal_cmd


def _write(redis_url: str, records: list[dict[str, Any]], **counts: int) -> None:
    import redis.asyncio as aioredis

    async def write() -> None:
        client = aioredis.Redis.from_url(redis_url)
        writer = TraceWriter(client, maxlen=1000)
        for record in records:
            writer.add(dict(record))
        for field, amount in counts.items():
            writer.warn(*field.split("__"), amount) if "__" in field else writer.count(field, amount)
        await writer.close()
        await client.aclose()

    asyncio.run(write())


def _v5_event(n: int) -> dict[str, Any]:
    return {"event_name": "checkout", "action_source": "web", "event_time": int(time.time()), "event_id": f"o-{n}",
            "user_data": {"em": [hashlib.sha256(f"p{n}@example.com".encode()).hexdigest()],
                          "client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0"}}


DELIVERED = [{"stage": "delivered", "event_name": "checkout", "event_id": f"o-{n}", "latency": 0.2,
              "keys": 0b11101 if n % 4 else 0b11100} for n in range(8)]


@pytest.mark.parametrize(("message", "kinds"), [
    ("external_id is missing. We highly recommend this on all events.; click_id is missing",
     ["external_id_missing", "click_id_missing"]),
    ("This event has a non-standard name and is currently being labeled as an 'Unknown' event.",
     ["unknown_event_name"]),
    ("em is not hashed with SHA-256", ["not_hashed"]),
    ("client_user_agent is missing", ["ip_ua_missing"]),
    ("something new from Pinterest", ["other"]),
    ("", []),
])
def test_warnings_fold_into_a_few_kinds(message: str, kinds: list[str]) -> None:
    assert warning_kinds(message) == kinds


def test_quality_scores_coverage_and_names_the_biggest_fix() -> None:
    [row] = quality_report(tally_records(DELIVERED))
    assert row.delivered == 8
    assert row.share == {"em": 0.75, "ph": 0.0, "external_id": 1.0, "click_id": 1.0, "ip_ua": 1.0, "event_id": 1.0}
    assert row.score == round(3.5 * 0.75 + 2 + 1.5 + 1.5 + 0.5, 1) and row.verdict == "great"
    # ranked by weight times the share missing: all of ph (1.0) before a quarter of em (0.875)
    assert row.fixes[0].startswith("100% of checkouts lack ph")
    assert row.fixes[1].startswith("25% of checkouts lack em: call identify()")


def test_filters_and_lines_of_tail() -> None:
    record = {"at": 0, "stage": "queued", "event_name": "checkout", "event_id": "o-1", "message_id": "m-1",
              "pipeline": "checkout", "account": "1"}
    assert record_matches(record, event="checkout", stage="queued", event_id="m-1")
    assert not record_matches(record, event="lead") and not record_matches(record, stage="sent")
    assert "queued" in format_record(record) and "pipeline=checkout" in format_record(record)


def test_tail_prints_the_last_records_and_follows_new_ones(redis_url: str) -> None:
    _write(redis_url, [{"stage": "received", "message_id": "m-1", "event": "order_completed"},
                       {"stage": "queued", "message_id": "m-1", "event_name": "checkout", "event_id": "m-1"},
                       {"stage": "received", "message_id": "m-2", "event": "signed_up"}])
    process = subprocess.Popen(pinsignal_cmd("tail", "--json", "--last", "10", "--event", "checkout"),
                               env={**os.environ, "REDIS_URL": redis_url},
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert (first["stage"], first["event_id"]) == ("queued", "m-1")
        time.sleep(0.5)
        _write(redis_url, [{"stage": "delivered", "event_name": "checkout", "event_id": "m-1", "latency": 0.3},
                           {"stage": "delivered", "event_name": "lead", "event_id": "l-1"}])
        followed = json.loads(process.stdout.readline())
        assert (followed["stage"], followed["event_name"]) == ("delivered", "checkout")
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_quarantine_list_and_purge(redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    import redis.asyncio as aioredis

    from pinsignal.quarantine import Quarantine, quarantine_item

    async def keep() -> None:
        client = aioredis.Redis.from_url(redis_url)
        items = [quarantine_item({"type": "track", "event": "order_completed", "message_id": f"m-{n}",
                                  "traits": {"email": "a@b.example"}}, reason="invalid_event",
                                 errors=["checkout: event_time is missing"], epik=None, cookies={},
                                 default_country="US", at=time.time() - n * 3600) for n in range(3)]
        await Quarantine(client).add(items)
        await client.aclose()

    asyncio.run(keep())
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["quarantine", "list"]) == 0
    listed = capsys.readouterr().out
    assert listed.count("invalid_event") == 3 and "m-0" in listed and "a@b.example" not in listed
    assert main(["quarantine", "list", "--json", "--limit", "1"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["message_id"] == "m-0"
    assert main(["quarantine", "purge", "--older-than", "90m"]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert main(["quarantine", "replay", "--id", "nope"]) == 1


def test_quality_shows_coverage_and_pinterests_score_from_the_sandbox(redis_url: str, sandbox_server: Any,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _write(redis_url, DELIVERED)
    assert sandbox_server.send([_v5_event(n) for n in range(4)]).status_code == 200
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["quality"]) == 0
    text = capsys.readouterr().out
    assert "checkout" in text and "75%" in text and "set PINTEREST_READ_TOKEN" in text
    for name, value in {"PINTEREST_API_URL": sandbox_server.url, "PINTEREST_AD_ACCOUNT_ID": sandbox_server.account_id,
                        "PINTEREST_READ_TOKEN": sandbox_server.token}.items():
        monkeypatch.setenv(name, value)
    assert main(["quality", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"][0]["event_name"] == "checkout"
    [score] = report["pinterest_eqs"]["scores"]
    assert score["lookback_period"] == "14d" and score["overall_status"] in ("GOOD", "FAIR", "NEEDS_IMPROVEMENT")
    assert score["quality_components"]["hashed_email"]["checkout"]["coverage"] == 100.0
    monkeypatch.setenv("PINTEREST_READ_TOKEN", "not-the-token")
    assert main(["quality"]) == 0
    assert "HTTP 401" in capsys.readouterr().out


def test_status_shows_warnings_and_refusals(redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _write(redis_url, [], **{"checkout__click_id_missing": 3, "refused:no_pipeline": 2})
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert "Pinterest's warnings" in text and "checkout: click_id_missing 3" in text
    assert "refused" in text and "no_pipeline: 2" in text
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["warnings"] == {"checkout": {"click_id_missing": 3}} and data["refused"] == {"no_pipeline": 2}
    client = redis.Redis.from_url(redis_url)
    assert client.hget(keys.COUNTERS, "refused:no_pipeline") == b"2"
    client.close()


def test_quarantine_replay_command_queues_through_the_current_pipelines(redis_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import orjson
    import redis.asyncio as aioredis

    from pinsignal.quarantine import Quarantine, quarantine_item

    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    envelope = {"type": "track", "event": "order_completed", "message_id": "order-9", "timestamp": now,
                "properties": {"revenue": 20, "currency": "USD"}, "traits": {"email": "Jo@Example.com"},
                "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0"}}

    async def keep() -> None:
        client = aioredis.Redis.from_url(redis_url)
        item = quarantine_item(envelope, reason="invalid_event", errors=["checkout: was broken"], epik="dj0yJnU9",
                               cookies={}, default_country="US")
        await Quarantine(client).add([item])
        await client.aclose()

    asyncio.run(keep())
    for name, value in {"REDIS_URL": redis_url, "PINTEREST_AD_ACCOUNT_ID": "549755885175"}.items():
        monkeypatch.setenv(name, value)
    assert main(["quarantine", "replay", "--all"]) == 0
    assert "replayed 1 of 1" in capsys.readouterr().out
    client = redis.Redis.from_url(redis_url)
    try:
        [(_, fields)] = client.xrange(keys.stream("549755885175"))
        event = orjson.loads(fields[b"e"])
        assert (event["event_name"], event["event_id"]) == ("checkout", "order-9")
        assert event["user_data"]["em"] == [hashlib.sha256(b"jo@example.com").hexdigest()]
        assert event["user_data"]["click_id"] == "dj0yJnU9"
        assert client.hlen(keys.QUARANTINE) == 0
    finally:
        client.close()
