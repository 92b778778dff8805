"""Several ad accounts (DESIGN 8.4): one ``pinsignal worker`` delivers each with its own token, stream,
pause and dead letters; a bad token pauses only its own account."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from delivery_helpers import make_event, wait_until, worker_env, worker_logs

from pinsignal import keys
from pinsignal.config import Config
from pinsignal.queue import EventQueue
from support import pinsignal_cmd

EU, OUTLET = "549755885176", "549755885178"


def _enqueue(url: str, routed: dict[str | None, list[dict[str, Any]]]) -> None:
    async def main() -> None:
        queue = await EventQueue.connect(Config(redis_url=url))
        try:
            await asyncio.gather(*(queue.enqueue(events, account=account) for account, events in routed.items()))
        finally:
            await queue.close()

    asyncio.run(main())


def _accounts_file(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(f"""\
accounts:
  - id: "{EU}"
    token_env: SHOP_TOKEN_EU
    match: {{hosts: [shop.example.eu]}}
  - id: "{OUTLET}"
    token_env: SHOP_TOKEN_OUTLET
    match: {{hosts: [outlet.shop.example]}}
""")
    return path


def test_one_worker_delivers_every_account_and_a_bad_token_pauses_only_its_own(
        redis_url: str, sandbox_server: Any, start_worker: Any, tmp_path: Path) -> None:
    default = sandbox_server.account_id
    events = {default: [make_event(n, prefix="d") for n in range(300)],
              EU: [make_event(n, prefix="eu") for n in range(300)],
              OUTLET: [make_event(n, prefix="o") for n in range(300)]}
    _enqueue(redis_url, {account: list(batch) for account, batch in events.items()})
    port_env = worker_env(redis_url, sandbox_server, PINSIGNAL_ACCOUNTS=str(_accounts_file(tmp_path)),
                          SHOP_TOKEN_EU=sandbox_server.token, SHOP_TOKEN_OUTLET="pina_not-a-valid-token-123")
    start_worker(port_env, "--metrics-port", "0")

    def by_account() -> Counter[str]:
        return Counter(item["ad_account_id"] for item in sandbox_server.events())

    wait_until(lambda: by_account()[default] >= 300 and by_account()[EU] >= 300, timeout=30,
               what="the default and EU accounts delivered")
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: client.hexists(keys.PAUSED, OUTLET), timeout=10, what="the outlet account paused")
        assert not client.hexists(keys.PAUSED, default) and not client.hexists(keys.PAUSED, EU)
        assert by_account()[OUTLET] == 0
        # nothing of the paused account is dropped: its events wait in its own stream
        assert client.xlen(keys.stream(OUTLET)) == 300
        assert {item["event"]["event_id"] for item in sandbox_server.events() if item["ad_account_id"] == EU} == {
            f"eu-{n}" for n in range(300)}
    finally:
        client.close()
    logs = worker_logs(tmp_path)
    assert "pina_not-a-valid-token-123" not in logs and sandbox_server.token not in logs
    assert f"ad account {OUTLET}: delivery to this account is PAUSED" in logs or f"for ad account {OUTLET}" in logs
    status = subprocess.run(pinsignal_cmd("status"), env={**os.environ, **port_env}, capture_output=True, text=True,
                            timeout=60)
    assert f"account {OUTLET}: 300 queued" in status.stdout or f"account {OUTLET}: 0 queued" in status.stdout, \
        status.stdout
    assert "PAUSED" in status.stdout


def test_a_missing_token_variable_fails_the_worker_start_up(redis_url: str, sandbox_server: Any,
                                                           tmp_path: Path) -> None:
    env = worker_env(redis_url, sandbox_server, PINSIGNAL_ACCOUNTS=str(_accounts_file(tmp_path)),
                     SHOP_TOKEN_EU=sandbox_server.token)
    done = subprocess.run(pinsignal_cmd("worker"), env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "SHOP_TOKEN_OUTLET is not set; it holds the access token of ad account 549755885178" in done.stderr
    assert sandbox_server.token not in done.stderr + done.stdout
