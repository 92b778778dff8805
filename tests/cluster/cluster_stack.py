"""A whole pinsignal installation on a Redis Cluster, in real processes, and a stream over 3 ad accounts.

``ClusterStack`` is the fault suite's ``Stack`` with the cluster in place of the embedded Redis: the
sandbox (``pinsignal sandbox``), the web process (uvicorn + ``tests/faults/collector_app.py``) and
``pinsignal worker`` processes, all given ``REDIS_URL`` of one cluster node and ``PINSIGNAL_ACCOUNTS``
with two routed accounts. ``AccountsStream`` posts batches of 100 to the collector like the fault
suite's ``Stream``, each event's page URL naming the host that routes it to one of the 3 accounts.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fault_harness import TOKEN, Proc, RecordReader, Stream
from harness import Cluster

from pinsignal.sandbox import SandboxClient
from support import ROOT, free_port, pinsignal_cmd

FAULTS = ROOT / "tests" / "faults"
DEFAULT, EU, WHOLESALE = "549755885175", "549755885176", "549755885177"
ACCOUNTS = (DEFAULT, EU, WHOLESALE)
HOSTS = {DEFAULT: "shop.example", EU: "eu.shop.example", WHOLESALE: "wholesale.shop.example"}


def accounts_file(folder: Path) -> Path:
    path = folder / "accounts.yaml"
    path.write_text(f'accounts:\n  - id: "{EU}"\n    token_env: SHOP_TOKEN_EU\n    match: {{hosts: [{HOSTS[EU]}]}}\n'
                    f'  - id: "{WHOLESALE}"\n    token_env: SHOP_TOKEN_WHOLESALE\n'
                    f'    match: {{hosts: [{HOSTS[WHOLESALE]}]}}\n')
    return path


def account_of(index: int) -> str:
    """Event ``index`` of a stream goes to this account (round robin)."""
    return ACCOUNTS[index % len(ACCOUNTS)]


class ClusterStack:
    """Sandbox, web process and workers of one test, on ``cluster``, all under ``root``."""

    def __init__(self, root: Path, cluster: Cluster, *, env: dict[str, str] | None = None) -> None:
        self.root, self.cluster = root, cluster
        root.mkdir(parents=True, exist_ok=True)
        self.sandbox_port, self.web_port = free_port(), free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            "REDIS_URL": cluster.url,
            "PINTEREST_AD_ACCOUNT_ID": DEFAULT,
            "PINTEREST_ACCESS_TOKEN": TOKEN,
            "SHOP_TOKEN_EU": TOKEN,
            "SHOP_TOKEN_WHOLESALE": TOKEN,
            "PINSIGNAL_ACCOUNTS": str(accounts_file(root)),
            "PINTEREST_API_URL": self.sandbox_url,
            "PINSIGNAL_SECRET": secrets.token_hex(16),
            "PINSIGNAL_PIPELINES": str(FAULTS / "checkout_pipeline.yaml"),
            "PINSIGNAL_HTTP_TIMEOUT": "2",
            "PINSIGNAL_BATCH_MAX_WAIT": "0.2",
            "PINSIGNAL_CLIENT_EVENTS_PER_MINUTE": "0",  # every post comes from 127.0.0.1
            "PYTHONPATH": os.pathsep.join([str(ROOT / "middleware"), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        self.sandbox = Proc("sandbox", pinsignal_cmd("sandbox", "--port", str(self.sandbox_port)), self.env,
                            root / "sandbox.log", self.sandbox_port)
        self.web = Proc("web", [sys.executable, "-m", "uvicorn", "--app-dir", str(FAULTS), "collector_app:app",
                                "--host", "127.0.0.1", "--port", str(self.web_port), "--log-level", "warning",
                                "--no-access-log"], self.env, root / "web.log", self.web_port)
        self.workers: list[Proc] = []
        self.client = SandboxClient(self.sandbox_url)

    def __enter__(self) -> ClusterStack:
        self.sandbox.start()
        self.web.start()
        self.sandbox.wait_ready()
        self.web.wait_ready()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # shown with the failure: what each process said last
            for proc in [*self.workers, self.web, self.sandbox]:
                print(f"===== {proc.name} (last 40 lines)\n" + "\n".join(proc.text().splitlines()[-40:]))
            for node in self.cluster.nodes:
                print(f"===== {node} (last 10 lines)\n{node.tail(10)}")
        for proc in [*self.workers, self.web, self.sandbox]:
            proc.stop(timeout=10)
        self.client.close()

    def add_worker(self) -> Proc:
        """One more ``pinsignal worker`` (reclaims a dead worker's events after 1 s idle)."""
        name = f"worker-{len(self.workers) + 1}"
        args = pinsignal_cmd("--log-level", "info", "worker", "--reclaim-after", "1", "--probe-interval", "0.5")
        proc = Proc(name, args, self.env, self.root / f"{name}.log")
        self.workers.append(proc.start())
        return proc

    def logs(self) -> str:
        return "\n".join(proc.text() for proc in [self.web, self.sandbox, *self.workers])


def make_event(run: str, index: int) -> dict[str, Any]:
    return {
        "type": "track", "event": "order_completed", "message_id": f"{run}-{index}",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "traits": {"email": f"buyer{index}@shop.example"},
        "properties": {"revenue": index + 1, "currency": "USD"},  # says which event a record is
        "context": {"page": {"url": f"https://{HOSTS[account_of(index)]}/checkout/{index}"}},
    }


@dataclass
class AccountsStream(Stream):
    """The fault suite's ``Stream`` (paced batches of 100, a batch re-sent with the same message ids on
    a 503 or a broken connection), with events spread over the 3 accounts by their page URL's host."""

    user_agent = "Mozilla/5.0 (cluster suite)"

    def event(self, index: int) -> dict[str, Any]:
        return make_event(self.run, index)


@dataclass
class Outcome:
    """What the sandbox recorded for a stream: ids delivered, duplicates, wrong accounts, lost."""

    accepted: int
    delivered: Counter[str]  # event_id -> times recorded
    by_account: Counter[str]
    mismatched: int  # records whose event_id and value (the event's index) disagree
    misrouted: int  # records delivered to another account than their page host routes to
    lost: list[str]

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.delivered.values())

    def line(self) -> str:
        return (f"accepted {self.accepted}, delivered {len(self.delivered)} ids ({dict(self.by_account)}), "
                f"duplicates {self.duplicates} (all same event_id: {self.mismatched == 0}), "
                f"misrouted {self.misrouted}, lost {len(self.lost)}")


def settle(stack: ClusterStack, stream: Stream, *, timeout: float = 45.0) -> Outcome:
    """Wait until every accepted event reached the sandbox (or ``timeout``), then count."""
    reader = RecordReader(stack)  # type: ignore[arg-type]  # it reads only .sandbox_url
    accepted = set(stream.accepted_at)
    deadline = time.monotonic() + timeout
    try:
        while True:
            reader.poll()
            missing = accepted - {record["event"]["event_id"] for record in reader.records}
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # a re-send still in flight shows up as a duplicate, not as nothing
        reader.poll()
    finally:
        reader.close()
    delivered: Counter[str] = Counter()
    by_account: Counter[str] = Counter()
    mismatched = misrouted = 0
    for record in reader.records:
        event = record["event"]
        event_id = event["event_id"]
        run, _, number = event_id.rpartition("-")
        index = int(number) if run == stream.run and number.isdigit() else -1
        if index < 0 or int(float(event.get("custom_data", {}).get("value", "-1"))) != index + 1:
            mismatched += 1
        elif record["ad_account_id"] != account_of(index):
            misrouted += 1
        if delivered[event_id] == 0:
            by_account[record["ad_account_id"]] += 1
        delivered[event_id] += 1
    return Outcome(accepted=len(accepted), delivered=delivered, by_account=by_account, mismatched=mismatched,
                   misrouted=misrouted, lost=sorted(accepted - set(delivered)))


def stream_for(stack: ClusterStack, count: int, rate: float) -> AccountsStream:
    return AccountsStream(stack.web_url, count, rate, run=secrets.token_hex(4))

