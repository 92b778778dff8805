"""The fault suite's moving parts: a whole pinsignal installation in real processes, and a stream of events.

``Stack`` runs, under one temp dir, the embedded Redis (AOF, ``appendfsync always``), the sandbox
(``pinsignal sandbox``), the web process (uvicorn + ``collector_app``) and any number of
``pinsignal worker`` processes, each of which can be stopped, SIGKILLed and restarted. ``Stream``
posts batches of 100 events to the real collector at a steady rate, re-sending a batch (same
message ids, as the browser script would) when the web process is unreachable or answers 503, and
notes when each event was acknowledged. ``Tally`` reads what the sandbox recorded and what was
dead-lettered, and works out the figures every scenario prints.

Event ``i`` of a run carries ``message_id`` ``<run>-<i>`` and ``properties.revenue`` ``i + 1``, so the
sandbox's ``custom_data.value`` says which event a record is: a re-send that came back with another
``event_id`` would show up as a record whose value and ``event_id`` disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from pinsignal import keys
from pinsignal.embedded import EmbeddedRedis
from pinsignal.sandbox import SandboxClient
from support import ROOT, free_port, pinsignal_cmd, wait_for_port

HERE = Path(__file__).resolve().parent
ACCOUNT = "549755885175"
TOKEN = "sandbox-token"
BATCH = 100  # the collector's own limit per request


# Read at import: the suite's autouse fixture clears PINSIGNAL_* from the environment of each test.
EVENTS = int(os.environ.get("PINSIGNAL_FAULT_EVENTS") or 20_000)
"""Events per scenario: ``PINSIGNAL_FAULT_EVENTS`` (default 20,000, the issue's floor)."""


class Proc:
    """One child process with its log file; killable and restartable with the same command."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.name, self.args, self.env, self.log, self.port = name, args, env, log, port
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Proc:
        self.starts += 1
        out = open(self.log, "ab")
        out.write(f"\n----- start {self.starts} at {time.time():.3f}\n".encode())
        out.flush()
        self.process = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        out.close()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        if self.port is not None:
            wait_for_port(self.port, timeout=timeout, process=self.process)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it does not leave in time."""
        if not self.alive:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Stack:
    """Redis, sandbox, web process and workers of one scenario, all real, all under ``root``."""

    def __init__(self, root: Path, *, sandbox_args: tuple[str, ...] = (), worker_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.redis = EmbeddedRedis(root / "redis")
        self.sandbox_port = free_port()
        self.web_port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.secret = secrets.token_hex(16)
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "PINTEREST_AD_ACCOUNT_ID": ACCOUNT,
            "PINTEREST_ACCESS_TOKEN": TOKEN,
            "PINTEREST_API_URL": self.sandbox_url,
            "PINSIGNAL_SECRET": self.secret,
            "PINSIGNAL_PIPELINES": str(HERE / "checkout_pipeline.yaml"),
            "PINSIGNAL_HTTP_TIMEOUT": "2",
            # Every load of this suite comes from 127.0.0.1: the per-client quota would refuse most of it.
            "PINSIGNAL_CLIENT_EVENTS_PER_MINUTE": "0",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "middleware"), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        self.worker_args = worker_args
        self.sandbox = Proc("sandbox", pinsignal_cmd("sandbox", "--port", str(self.sandbox_port), *sandbox_args),
                            self.env, root / "sandbox.log", self.sandbox_port)
        self.web = Proc("web", [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), "collector_app:app",
                                "--host", "127.0.0.1", "--port", str(self.web_port), "--log-level", "warning",
                                "--no-access-log"], self.env, root / "web.log", self.web_port)
        self.workers: list[Proc] = []
        self._worker_count = 0
        self.client = SandboxClient(self.sandbox_url)

    # ------------------------------------------------------------------ processes

    def __enter__(self) -> Stack:
        self.redis.ensure_running()
        self.sandbox.start()
        self.web.start()
        self.sandbox.wait_ready()
        self.web.wait_ready()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # shown with the failure: what each process said last
            for proc in [*self.workers, self.web, self.sandbox]:
                print(f"===== {proc.name} (last 40 lines)\n" + "\n".join(proc.text().splitlines()[-40:]))
        for proc in [*self.workers, self.web, self.sandbox]:
            proc.stop(timeout=10)
        self.client.close()
        self.redis.stop()

    def add_worker(self, *extra: str) -> Proc:
        """Start one more ``pinsignal worker`` (reclaims a dead worker's events after 1 s idle)."""
        self._worker_count += 1
        args = pinsignal_cmd("--log-level", "info", "worker", "--reclaim-after", "1", "--probe-interval", "0.5",
                             *self.worker_args, *extra)
        proc = Proc(f"worker-{self._worker_count}", args, self.env, self.root / f"worker-{self._worker_count}.log")
        self.workers.append(proc.start())
        return proc

    def restart_web(self) -> None:
        self.web.kill()
        self.web.start()

    def redis_client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.redis.socket_path))

    def logs(self) -> str:
        return "\n".join(proc.text() for proc in [self.web, self.sandbox, *self.workers])


# ---------------------------------------------------------------------- the stream of events


def make_event(run: str, index: int, *, traits: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "track", "event": "order_completed", "message_id": f"{run}-{index}",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "traits": traits if traits is not None else {"email": f"buyer{index}@shop.example"},
        "properties": {"revenue": index + 1, "currency": "USD"},  # Pinterest wants a positive value
        "context": {"page": {"url": f"https://shop.example/checkout/{index}"}},
    }


@dataclass
class Stream:
    """Posts ``count`` events in batches of 100 at ``rate`` events/s over ``connections`` connections."""

    url: str
    count: int
    rate: float
    connections: int = 4
    run: str = field(default_factory=lambda: secrets.token_hex(4))
    accepted_at: dict[str, float] = field(default_factory=dict)  # message id -> wall time of the 202
    rejected: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)  # HTTP status (or error) of every post
    resent_batches: int = 0
    posts_answered: int = 0
    finished: bool = False

    @property
    def ids(self) -> list[str]:
        return [f"{self.run}-{i}" for i in range(self.count)]

    async def send(self, on_answer: Any = None) -> None:
        """Send everything; ``on_answer(posts_answered)`` runs after each 202 (fault hooks)."""
        batches = [list(range(start, min(start + BATCH, self.count))) for start in range(0, self.count, BATCH)]
        queue: asyncio.Queue[list[int]] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)
        started = time.monotonic()
        per_batch = BATCH / self.rate
        sent = 0
        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        async with httpx.AsyncClient(base_url=self.url, timeout=10.0, limits=limits, trust_env=False) as http:

            async def poster() -> None:
                nonlocal sent
                while True:
                    try:
                        batch = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    # Pace the stream so that faults land in the middle of it, not after it.
                    due = started + sent * per_batch
                    sent += 1
                    if due > time.monotonic():
                        await asyncio.sleep(due - time.monotonic())
                    await self._post(http, batch)
                    if on_answer is not None:
                        await on_answer(self.posts_answered)

            await asyncio.gather(*(poster() for _ in range(self.connections)))
        self.finished = True

    user_agent = "Mozilla/5.0 (fault suite)"

    def event(self, index: int) -> dict[str, Any]:
        """The stream's event number ``index`` (a subclass may send other events)."""
        return make_event(self.run, index)

    async def _post(self, http: httpx.AsyncClient, batch: list[int]) -> None:
        body = orjson.dumps({"batch": [self.event(i) for i in batch]})
        headers = {"content-type": "application/json", "user-agent": self.user_agent}
        deadline = time.monotonic() + 90
        while True:
            try:
                response = await http.post("/_ps/e", content=body, headers=headers)
            except httpx.TransportError as exc:
                self.statuses[type(exc).__name__] += 1
            else:
                self.statuses[str(response.status_code)] += 1
                if response.status_code == 202:
                    now = time.time()
                    answer = response.json()
                    for message_id in answer["accepted"]:
                        self.accepted_at.setdefault(message_id, now)
                    for rejection in answer["rejected"]:
                        self.rejected["; ".join(rejection["reasons"])] += 1
                    self.posts_answered += 1
                    return
                if response.status_code != 503:  # 503 is no acknowledgement: the batch is sent again
                    raise AssertionError(f"the collector answered {response.status_code}: {response.text[:300]}")
            if time.monotonic() > deadline:
                raise AssertionError("a batch could not be posted for 90 s")
            self.resent_batches += 1
            await asyncio.sleep(0.2)


# ---------------------------------------------------------------------- counting


@dataclass
class Tally:
    """What happened to every event of a stream: the figures each scenario prints."""

    scenario: str
    sent: int
    accepted: int
    delivered: int
    duplicates: int
    mismatched: int  # a record whose event_id is not the one its event was sent with
    dead: dict[str, int]
    lost_ids: list[str]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return len(self.lost_ids)

    def line(self) -> str:
        dead = ", ".join(f"{reason} {count}" for reason, count in sorted(self.dead.items())) or "none"
        extra = "".join(f"; {key}: {value}" for key, value in self.notes.items())
        return (f"{self.scenario}: sent {self.sent}, accepted {self.accepted}, delivered {self.delivered}, "
                f"duplicates {self.duplicates} (all same event_id: {self.mismatched == 0}), dead-lettered "
                f"{sum(self.dead.values())} ({dead}), lost {self.lost}{extra}")

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "sent": self.sent, "accepted": self.accepted, "delivered": self.delivered,
                "duplicates": self.duplicates, "mismatched": self.mismatched, "dead": self.dead, "lost": self.lost,
                **self.notes}


class RecordReader:
    """Reads the sandbox's records incrementally (it keeps them in order, with a ``seq``)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.seq = 0
        self.records: list[dict[str, Any]] = []
        self._http = httpx.Client(base_url=stack.sandbox_url, timeout=30.0, trust_env=False)

    def poll(self) -> None:
        response = self._http.get("/_sandbox/events", params={"since": self.seq})
        response.raise_for_status()
        for record in response.json()["events"]:
            self.records.append(record)
            self.seq = max(self.seq, record["seq"])

    def close(self) -> None:
        self._http.close()


def dead_letters(stack: Stack) -> list[dict[str, Any]]:
    client = stack.redis_client()
    try:
        return [orjson.loads(raw) for account in client.smembers(keys.ACCOUNTS)
                for raw in client.hvals(keys.dlq(account.decode()))]
    finally:
        client.close()


def settle(stack: Stack, stream: Stream, scenario: str, *, timeout: float = 60.0) -> Tally:
    """Wait until every accepted event is delivered or dead-lettered (or nothing moves for a while)."""
    reader = RecordReader(stack)
    accepted = set(stream.accepted_at)
    deadline = time.monotonic() + timeout
    try:
        while True:
            reader.poll()
            delivered = {record["event"]["event_id"] for record in reader.records}
            dead_ids = {letter["event"]["event_id"] for letter in dead_letters(stack)}
            missing = accepted - delivered - dead_ids
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        time.sleep(0.3)  # a re-send still in flight shows up as a duplicate, not as nothing
        reader.poll()
    finally:
        reader.close()
    letters = dead_letters(stack)
    expected = {f"{stream.run}-{i}": i + 1 for i in range(stream.count)}
    seen: Counter[str] = Counter()
    mismatched = 0
    for record in reader.records:
        event = record["event"]
        event_id = event["event_id"]
        seen[event_id] += 1
        index = int(float(event.get("custom_data", {}).get("value", "-1")))
        if expected.get(event_id) != index:
            mismatched += 1
    delivered_ids = set(seen)
    dead_ids = {letter["event"]["event_id"] for letter in letters}
    return Tally(
        scenario=scenario, sent=stream.count, accepted=len(accepted), delivered=len(delivered_ids & accepted),
        duplicates=sum(count - 1 for count in seen.values()), mismatched=mismatched,
        dead=dict(Counter(letter["reason"] for letter in letters)),
        lost_ids=sorted(accepted - delivered_ids - dead_ids),
        notes={"rejected at the collector": dict(stream.rejected)} if stream.rejected else {},
    )


async def at_random_moments(count: int, span: float, action: Any, *, first: float = 0.5) -> None:
    """Run ``action()`` ``count`` times at random moments spread over ``span`` seconds."""
    moments = sorted(random.uniform(first, span) for _ in range(count))
    started = time.monotonic()
    for moment in moments:
        await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
        await action()


def worker_pids(stack: Stack) -> list[int]:
    return [proc.process.pid for proc in stack.workers if proc.alive and proc.process is not None]


@contextlib.contextmanager
def stack_for(root: Path, **options: Any) -> Any:
    with Stack(root, **options) as stack:
        yield stack
