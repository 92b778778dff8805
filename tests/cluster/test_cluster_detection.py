"""Cluster mode is detected (``INFO cluster``), and ``PINSIGNAL_REDIS_CLUSTER=true|false`` forces it
(DESIGN 8.4): unset finds the cluster, ``true`` agrees with it; forcing the wrong mode, either way, fails
start-up with one sentence (the setting is checked against ``INFO cluster``, not trusted blindly)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cluster_stack import ACCOUNTS, DEFAULT, accounts_file
from fault_harness import TOKEN
from harness import RedisCluster, single_redis

from pinsignal.config import Config
from pinsignal.queue import EventQueue
from support import pinsignal_cmd

pytestmark = [pytest.mark.integration]


def run(command: str, redis_url: str, tmp_path: Path, **more: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url, "PINTEREST_AD_ACCOUNT_ID": DEFAULT, "PINTEREST_ACCESS_TOKEN": TOKEN,
           "PINSIGNAL_ACCOUNTS": str(accounts_file(tmp_path)), "SHOP_TOKEN_EU": TOKEN, "SHOP_TOKEN_WHOLESALE": TOKEN,
           "PINTEREST_API_URL": "http://127.0.0.1:9", **more}
    return subprocess.run(pinsignal_cmd(command), env=env, capture_output=True, text=True, timeout=60)


def one_sentence(done: subprocess.CompletedProcess[str], command: str) -> str:
    """The start-up failure: exit status 2 and one line on stderr, no traceback."""
    lines = [line for line in done.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"pinsignal {command}: "), done.stderr[-2000:]
    return lines[0]


def v5_event(n: int) -> dict[str, Any]:
    return {"event_name": "checkout", "action_source": "web", "event_time": int(time.time()), "event_id": f"st-{n}",
            "user_data": {"em": [hashlib.sha256(f"p{n}@example.com".encode()).hexdigest()]},
            "custom_data": {"currency": "USD", "value": "1"}}


def enqueue(url: str, per_account: dict[str, int]) -> None:
    async def main() -> None:
        queue = await EventQueue.connect(Config(redis_url=url))  # cluster mode detected, as in a web process
        try:
            for account, count in per_account.items():
                result = await queue.enqueue([v5_event(n) for n in range(count)], account=account)
                assert len(result.queued) == count
        finally:
            await queue.close()

    asyncio.run(main())


@pytest.mark.parametrize("setting", [None, "true"])
def test_status_reads_every_account_on_the_cluster(redis_cluster: RedisCluster, tmp_path: Path,
                                                   setting: str | None) -> None:
    queued = dict(zip(ACCOUNTS, (3, 2, 1), strict=True))
    enqueue(redis_cluster.url, queued)
    more = {"PINSIGNAL_REDIS_CLUSTER": setting} if setting else {}
    done = run("status", redis_cluster.url, tmp_path, **more)
    assert done.returncode == 0, done.stderr[-2000:]
    for account, count in queued.items():  # each read on the master that holds the account's slot
        assert f"account {account}: {count} queued, 0 in flight" in done.stdout, done.stdout


def test_cluster_forced_on_against_a_single_redis_fails_start_up_in_one_sentence(redis_url: str,
                                                                                  tmp_path: Path) -> None:
    with single_redis(tmp_path / "tcp") as tcp:
        for url in (redis_url, f"redis://127.0.0.1:{tcp.port}"):  # the embedded one's unix socket, then TCP
            for command in ("worker", "status"):
                line = one_sentence(run(command, url, tmp_path, PINSIGNAL_REDIS_CLUSTER="true"), command)
                assert "PINSIGNAL_REDIS_CLUSTER" in line, (url, line)


def test_cluster_forced_off_against_a_cluster_fails_start_up_in_one_sentence(redis_cluster: RedisCluster,
                                                                              tmp_path: Path) -> None:
    for command in ("worker", "status"):
        line = one_sentence(run(command, redis_cluster.url, tmp_path, PINSIGNAL_REDIS_CLUSTER="false"), command)
        assert "PINSIGNAL_REDIS_CLUSTER" in line, line
