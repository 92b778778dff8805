"""Helpers of the hostile-input suite: the real web process (uvicorn in its own process) on real Redis."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from support import ROOT, free_port, run_process

ACCOUNT = "549755885175"
PIPELINE = ROOT / "tests" / "faults" / "checkout_pipeline.yaml"


@dataclass
class WebProcess:
    url: str
    pid: int
    log: Path
    redis_url: str
    secret: str


def web_env(redis_url: str, secret: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url, "PINTEREST_AD_ACCOUNT_ID": ACCOUNT, "PINSIGNAL_SECRET": secret,
        "PINSIGNAL_PIPELINES": str(PIPELINE),
        # The fuzz comes from one address: without this, the quota's 429 would answer most bodies
        # unread. The quota has its own tests (tests/middleware/test_quota.py, test_redis_full.py).
        "PINSIGNAL_CLIENT_EVENTS_PER_MINUTE": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "middleware"), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def start_web(redis_url: str, log: Path, *server_args: str, **extra: str) -> Iterator[WebProcess]:
    port = free_port()
    secret = secrets.token_hex(16)
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "tests" / "faults"), "collector_app:app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "info", "--no-access-log", *server_args]
    with run_process(args, port=port, env=web_env(redis_url, secret, **extra), log=log, cwd=ROOT) as process:
        yield WebProcess(f"http://127.0.0.1:{port}", process.pid, log, redis_url, secret)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
