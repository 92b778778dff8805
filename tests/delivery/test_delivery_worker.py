"""Real ``pinsignal worker`` processes against real Redis and the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from delivery_helpers import PLANTED_EMAIL, PLANTED_PHONE, cli, make_event, sha256, wait_until, worker_env, worker_logs

from pinsignal import keys
from pinsignal.config import Config
from pinsignal.embedded import EmbeddedRedis
from pinsignal.errors import QueueUnavailable
from pinsignal.queue import EventQueue
from support import free_port, stop_process


def _enqueue(url: str, account: str, events: list[dict[str, Any]]) -> None:
    async def main() -> None:
        queue = await EventQueue.connect(Config(redis_url=url, ad_account_id=account))
        try:
            for start in range(0, len(events), 500):
                await queue.enqueue(events[start:start + 500])
        finally:
            await queue.close()

    asyncio.run(main())


def _delivered_ids(sandbox: Any) -> Counter[str]:
    return Counter(item["event"]["event_id"] for item in sandbox.events())


def _all_delivered(sandbox: Any, expected: set[str]) -> bool:
    return expected <= set(_delivered_ids(sandbox))


def _pending(url: str, account: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.xpending(keys.stream(account), keys.GROUP)["pending"])
    except redis.ResponseError:
        return 0
    finally:
        client.close()


def _groups(url: str, account: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return len(client.xinfo_groups(keys.stream(account)))
    except redis.ResponseError:
        return 0
    finally:
        client.close()


def _dump_redis(url: str) -> bytes:
    """Every key and every value in Redis, whatever its type."""
    client = redis.Redis.from_url(url)
    parts: list[bytes] = []
    try:
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            parts.append(key)
            if kind == b"string":
                parts.append(client.get(key) or b"")
            elif kind == b"hash":
                parts += [b for pair in client.hgetall(key).items() for b in pair]
            elif kind == b"set":
                parts += list(client.smembers(key))
            elif kind == b"zset":
                parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == b"list":
                parts += client.lrange(key, 0, -1)
            elif kind == b"stream":
                parts += [b for _, fields in client.xrange(key) for pair in fields.items() for b in pair]
    finally:
        client.close()
    return b"\n".join(parts)


def test_status_and_dlq_say_in_one_line_that_redis_is_down(tmp_path: Path) -> None:
    env = {"REDIS_URL": f"unix://{tmp_path}/nothing.sock"}
    for command in (("status",), ("dlq", "list"), ("dlq", "replay", "--all"), ("dlq", "purge", "--older-than", "1d")):
        done = cli(env, *command)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.startswith(f"pinsignal {command[0]}: Redis failed while "), done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_worker_delivers_thousands_with_metrics_status_dlq_and_no_raw_pii(
        redis_url: str, sandbox_server: Any, start_worker: Any, tmp_path: Path) -> None:
    account = sandbox_server.account_id
    future = int(time.time()) + 7200
    events = [make_event(n, name=("checkout", "page_visit", "add_to_cart")[n % 3],
                         event_time=future if n % 1000 == 999 else None) for n in range(4000)]
    for event in events[:100]:
        event["user_data"]["em"] = [sha256(PLANTED_EMAIL)]
    _enqueue(redis_url, account, events)
    before = _dump_redis(redis_url)
    assert sha256(PLANTED_EMAIL).encode() in before            # the scan does see the queued events

    env = worker_env(redis_url, sandbox_server)
    port = free_port()
    worker = start_worker(env, "--metrics-port", str(port))
    expected = {f"ev-{n}" for n in range(4000) if n % 1000 != 999}
    wait_until(lambda: _all_delivered(sandbox_server, expected), timeout=60, what="4000 events delivered")

    def metrics() -> str:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    # dead letters are labelled with their account, as every other per-account metric is
    wait_until(lambda: f'pinsignal_dead_letters{{account="{account}",reason="rejected"}} 4.0' in metrics(),
               timeout=20, what="dead letters in metrics")
    text = metrics()
    assert 'event_name="checkout"}' in text and 'pinsignal_events_delivered_total{account="' in text
    delivered = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("pinsignal_events_delivered_total{"))
    assert delivered == 3996
    assert 'pinsignal_match_keys_total{key="em"} 3996.0' in text
    assert 'pinsignal_match_keys_total{key="ip_ua"} 3996.0' in text
    assert 'pinsignal_match_keys_total{key="click_id"} 0.0' in text
    assert 'pinsignal_queue_depth{account="549755885175"} 0.0' in text
    assert "pinsignal_batch_size_count" in text and "pinsignal_delivery_latency_seconds_bucket" in text
    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert (health.status_code, health.text.strip()) == (200, "ok")

    status = orjson.loads(cli(env, "status", "--json").stdout)
    assert status["counters"]["delivered"] == 3996 and status["dead_letters"] == {"rejected": 4}
    assert status["queued"] == 0
    text_status = cli(env, "status").stdout
    assert "account 549755885175: 0 queued, 0 in flight" in text_status and "rejected: 4" in text_status

    listed = [orjson.loads(line) for line in cli(env, "dlq", "list", "--json").stdout.splitlines()]
    assert sorted(item["event"]["event_id"] for item in listed) == ["ev-1999", "ev-2999", "ev-3999", "ev-999"]
    assert all("in the future" in item["message"] and item["attempts"] == 1 for item in listed)
    table = cli(env, "dlq", "list", "--reason", "rejected").stdout
    assert "ev-999" in table and "rejected" in table
    assert "no dead letters with reason 'expired'" in cli(env, "dlq", "list", "--reason", "expired").stdout
    assert cli(env, "dlq", "purge", "--older-than", "30d").stdout.strip() == "purged 0 dead letters older than 30d"
    bad = cli(env, "dlq", "purge", "--older-than", "soon")
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr
    replay = cli(env, "dlq", "replay", "--id", listed[0]["id"])
    assert replay.stdout.strip() == "replayed 1 dead letters onto the queue"
    wait_until(lambda: len(cli(env, "dlq", "list", "--json").stdout.splitlines()) == 4, timeout=30,
               what="the replayed event to be rejected again")   # still in the future: Pinterest refuses it again
    assert cli(env, "dlq", "replay", "--id", "nope").returncode == 1

    after = _dump_redis(redis_url)
    logs = worker_logs(tmp_path)
    for raw in (PLANTED_EMAIL, PLANTED_PHONE, "+1 415 555 0199", "415-555-0199"):
        assert raw.encode() not in before and raw.encode() not in after, raw
        assert raw not in logs, raw
    assert sandbox_server.token not in logs
    assert worker.poll() is None


def test_sigkilled_worker_batch_is_delivered_by_another_within_seconds(
        redis_url: str, sandbox_server: Any, start_worker: Any) -> None:
    account = sandbox_server.account_id
    sandbox_server.fault(delay=1.5)                            # every answer is slow: batches sit in flight
    _enqueue(redis_url, account, [make_event(n) for n in range(3000)])
    env = worker_env(redis_url, sandbox_server)
    first = start_worker(env, "--concurrency", "2")
    wait_until(lambda: _pending(redis_url, account) > 0, timeout=30, what="a batch in flight")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    assert _pending(redis_url, account) > 0                    # the dead worker's batch is still pending
    sandbox_server.clear_faults()
    killed_at = time.monotonic()
    start_worker(env)
    expected = {f"ev-{n}" for n in range(3000)}
    wait_until(lambda: _all_delivered(sandbox_server, expected), timeout=60, what="every event delivered")
    assert time.monotonic() - killed_at < 30
    wait_until(lambda: _pending(redis_url, account) == 0, timeout=20, what="nothing left pending")
    counts = _delivered_ids(sandbox_server)
    assert set(counts) == expected                             # duplicates, if any, carry the same event_id


def test_sigterm_finishes_or_returns_the_batch_in_hand(redis_url: str, sandbox_server: Any,
                                                       start_worker: Any) -> None:
    account = sandbox_server.account_id
    sandbox_server.fault(delay=1.0)
    _enqueue(redis_url, account, [make_event(n) for n in range(300)])
    env = worker_env(redis_url, sandbox_server, PINTEREST_TEST_MODE="false")
    worker = start_worker(env, "--concurrency", "3")
    wait_until(lambda: _pending(redis_url, account) > 0, timeout=30, what="a batch in flight")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert _pending(redis_url, account) == 0                   # nothing left for a reclaim
    sandbox_server.clear_faults()
    start_worker(env)
    expected = {f"ev-{n}" for n in range(300)}
    wait_until(lambda: _all_delivered(sandbox_server, expected), timeout=30, what="every event delivered")


def test_redis_restart_under_load_loses_nothing(sandbox_server: Any, start_worker: Any, tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    server.ensure_running()
    account = sandbox_server.account_id
    env = worker_env(server.url, sandbox_server)
    try:
        # The arq entry point this time, to prove ``arq pinsignal.worker.WorkerSettings`` works too.
        worker = start_worker(env, command=[sys.executable, "-m", "arq", "pinsignal.worker.WorkerSettings"])
        wait_until(lambda: _groups(server.url, account), timeout=30, what="the worker to be reading")
        accepted: list[str] = []

        async def produce() -> None:
            queue = await EventQueue.connect(Config(redis_url=server.url, ad_account_id=account))
            n = 0
            try:
                for round_ in range(60):
                    batch = [make_event(n + i) for i in range(40)]
                    n += 40
                    if round_ == 20:
                        await asyncio.to_thread(server.stop)           # graceful: the AOF is flushed
                        await asyncio.to_thread(server.ensure_running)
                    while True:
                        try:
                            result = await queue.enqueue(batch)
                            break
                        except QueueUnavailable:                        # a collector would answer 503; retry
                            await asyncio.sleep(0.05)
                    accepted.extend(result.queued + result.duplicates)
                    await asyncio.sleep(0.03)
            finally:
                await queue.close()

        asyncio.run(produce())
        assert len(accepted) == 2400
        wait_until(lambda: _all_delivered(sandbox_server, set(accepted)), timeout=60, what="every event delivered")
        assert set(_delivered_ids(sandbox_server)) == set(accepted)
        assert worker.poll() is None                                   # the restart did not end the worker
        stop_process(worker)
        assert "Traceback" not in worker.log_path.read_text()
    finally:
        server.stop()
