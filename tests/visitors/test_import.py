"""pinsignal import: mapping, refusals with line numbers, JSON Lines, duplicates, resume (real Redis, no worker)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from pinsignal import keys
from pinsignal.cli import main
from pinsignal.config import Config
from pinsignal.errors import ConfigError
from pinsignal.offline import ImportOptions, import_file, parse_map
from pinsignal.pipeline.normalise import sha256_hex

SECRET = "import-test-secret-0123456789"
NOW = int(time.time())


def _config(redis_url: str, **changes: Any) -> Config:
    return Config(secret=SECRET, redis_url=redis_url, ad_account_id="549755885175", **changes)


def _queued(redis_url: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.xrange(keys.stream("549755885175"))
    finally:
        client.close()
    return [json.loads(fields[b"e"]) for _, fields in entries]


def test_rows_become_offline_events_hashed_with_refusals_by_line(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "sales.csv"
    path.write_text(
        "order_id,email,phone,value,currency,timestamp,content_ids,note\n"
        f"s-1, Jane.Doe@Example.com ,+1 415 555 0123,72.39,USD,{NOW - 3600},sku-1|sku-2,hello\n"
        f",nobody@example.com,,10,USD,{NOW - 3600},,\n"                      # line 3: no order id
        f"s-3,a@example.com,,abc,USD,{NOW - 3600},,\n"                       # line 4: bad value
        f"s-4,b@example.com,,10,USD,{NOW - 30 * 86400},,\n"                  # line 5: too old
        f"s-5,,,10,USD,{NOW - 3600},,\n"                                     # line 6: no match key
        "s-6,c@example.com,,10,USD,,,\n"                                     # line 7: no timestamp
        "s-7,too,few\n"                                                      # line 8: short row
    )
    summary = asyncio.run(import_file(ImportOptions(path=path), _config(redis_url)))
    assert (summary.read, summary.queued, summary.duplicates) == (7, 1, 0)
    assert summary.unmapped == ["note"]
    lines = {line: reason for line, reason in summary.refused}
    assert sorted(lines) == [3, 4, 5, 6, 7, 8]
    assert "no order id" in lines[3]
    assert "'abc' is not a number" in lines[4]
    assert "days old" in lines[5]
    assert "no timestamp" in lines[7]
    assert "fields where the header has" in lines[8]
    [event] = _queued(redis_url)
    assert event["action_source"] == "offline" and event["event_name"] == "checkout"
    assert event["user_data"]["em"] == [sha256_hex("jane.doe@example.com")]
    assert event["user_data"]["ph"] == [sha256_hex("14155550123")]
    assert event["custom_data"]["content_ids"] == ["sku-1", "sku-2"] and event["custom_data"]["value"] == "72.39"
    assert event["event_time"] == NOW - 3600
    raw = redis.Redis.from_url(redis_url)
    try:
        stored = b"".join(raw.dump(key) or b"" for key in raw.keys("*"))
    finally:
        raw.close()
    assert b"Jane.Doe" not in stored and b"jane.doe" not in stored and b"555 0123" not in stored


def test_jsonl_with_a_map_an_event_column_and_ldp(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "leads.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in [
        {"ref": "L-1", "mail": "x@example.com", "at": NOW - 60, "kind": "Lead Generated", "ldp": True},
        {"ref": "L-2", "mail": "y@example.com", "at": f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(NOW - 60))}"},
    ]) + "\n\n")
    mapping = parse_map(["ref=properties.order_id", "mail=traits.email", "at=timestamp", "kind=event"])
    summary = asyncio.run(import_file(ImportOptions(path=path, mapping=mapping, event="signed_up"),
                                      _config(redis_url)))
    assert summary.queued == 2 and not summary.refused, summary.to_dict()
    events = {event["event_name"]: event for event in _queued(redis_url)}
    assert set(events) == {"lead", "signup"}
    assert events["lead"]["custom_data"]["opt_out_type"] == "LDP"
    assert "opt_out_type" not in events["signup"].get("custom_data", {})


def test_a_second_import_sends_nothing_twice_and_an_interrupted_one_resumes(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "sales.csv"
    path.write_text("order_id,email,timestamp\n" + "".join(
        f"r-{n},c{n}@example.com,{NOW - 600}\n" for n in range(5000)))
    config = _config(redis_url)
    first = asyncio.run(import_file(ImportOptions(path=path), config))
    assert first.queued == 5000
    again = asyncio.run(import_file(ImportOptions(path=path, restart=True), config))
    assert (again.queued, again.duplicates) == (0, 5000)
    # the queue's own 48-hour dedup is not what stops them: the import's marks are
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(keys.seen_prefix("*") + "*"):
            client.delete(key)
        client.hset(keys.import_progress(_file_id(path)), "rows", "2000")  # as if stopped after one chunk
    finally:
        client.close()
    resumed = asyncio.run(import_file(ImportOptions(path=path), config))
    assert resumed.resumed_after == 2000 and resumed.queued == 0 and resumed.duplicates == 3000
    assert len(_queued(redis_url)) == 5000


def _file_id(path: Path) -> str:
    from pinsignal.offline import _file_id as file_id

    return file_id(path)


def test_the_command_exits_1_with_the_refused_lines(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PINSIGNAL_SECRET", SECRET)
    path = tmp_path / "sales.csv"
    path.write_text(f"order_id,email,timestamp\nok-1,a@example.com,{NOW - 60}\n,b@example.com,{NOW - 60}\n")
    assert main(["import", str(path)]) == 1
    out = capsys.readouterr().out
    assert "rows read 2, queued 1, duplicates 0, refused 1" in out and "line 3: no order id" in out
    assert main(["import", str(path), "--restart", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["duplicates"] == 1 and summary["refused"] == [{"line": 3, "reason": summary["refused"][0]["reason"]}]


def test_a_bad_map_is_one_sentence() -> None:
    with pytest.raises(ConfigError, match="column=envelope.path"):
        parse_map(["order_no"])
    with pytest.raises(ConfigError, match="must be timestamp"):
        parse_map(["x=user_data.em"])


def test_a_resumed_import_reports_the_rows_the_stopped_run_refused(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "sales.csv"
    path.write_text("order_id,email,timestamp\n" + f",x@example.com,{NOW - 60}\n" + "".join(
        f"k-{n},k{n}@example.com,{NOW - 600}\n" for n in range(4500)))
    config = _config(redis_url)
    first = asyncio.run(import_file(ImportOptions(path=path), config))
    assert [line for line, _ in first.refused] == [2]
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(keys.import_progress(_file_id(path)), "rows", "4000")  # as if killed after two chunks
    finally:
        client.close()
    resumed = asyncio.run(import_file(ImportOptions(path=path), config))
    assert resumed.resumed_after == 4000 and resumed.duplicates == 501
    assert resumed.refused == first.refused  # line 2 was in the rows the stopped run had finished
