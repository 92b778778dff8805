"""Helpers for the delivery tests: valid v5 events, worker subprocesses, Redis inspection."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Raw values that must never reach Redis or a log line: only their SHA-256 may.
PLANTED_EMAIL = "planted.person@example.org"
PLANTED_PHONE = "14155550199"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``pinsignal ARGS`` in a subprocess, with ``env`` over this process's environment."""
    from support import pinsignal_cmd

    return subprocess.run(pinsignal_cmd(*args), env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_event(n: int, *, name: str = "checkout", event_time: int | None = None, prefix: str = "ev",
               **extra: Any) -> dict[str, Any]:
    """A v5 event the sandbox accepts, already hashed, with a unique ``event_id``."""
    event: dict[str, Any] = {
        "event_name": name,
        "action_source": "web",
        "event_time": int(time.time()) if event_time is None else event_time,
        "event_id": f"{prefix}-{n}",
        "user_data": {
            "em": [sha256(f"person{n}@example.com")],
            "ph": [sha256(PLANTED_PHONE)],
            "client_ip_address": "203.0.113.9",
            "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        },
        "custom_data": {"currency": "USD", "value": "12.50"},
    }
    event.update(extra)
    return event


def worker_env(redis_url: str, sandbox: Any, **more: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "PINTEREST_AD_ACCOUNT_ID": sandbox.account_id,
        "PINTEREST_ACCESS_TOKEN": sandbox.token,
        "PINTEREST_API_URL": sandbox.url,
        "PINSIGNAL_BATCH_MAX_WAIT": "0.2",
        **more,
    }


def worker_logs(tmp_path: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted(tmp_path.glob("worker-*.log")))


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(interval)


def python() -> str:
    return sys.executable
