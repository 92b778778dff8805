from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pinsignal.config import Config
from pinsignal.embedded import EmbeddedRedis, redis_url

pytestmark = pytest.mark.integration

# Starts the embedded Redis from a worker thread (as EventQueue.connect does through
# asyncio.to_thread), prints its pid, then waits to be killed.
STARTER = """
import sys, threading, time
from pinsignal.embedded import EmbeddedRedis
server = EmbeddedRedis(sys.argv[1])
thread = threading.Thread(target=server.ensure_running)
thread.start(); thread.join()
print(server.process.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill -0; it is gone for our purpose once it has exited
    with open(f"/proc/{pid}/stat") if Path(f"/proc/{pid}/stat").exists() else open(os.devnull) as stat:
        return " Z " not in stat.read()


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_redis_url_prefers_redis_url_and_otherwise_starts_one(tmp_path: Path) -> None:
    assert redis_url(Config(redis_url="redis://example:6379/0")) == "redis://example:6379/0"
    url = redis_url(Config(data_dir=tmp_path))
    assert url == f"unix://{tmp_path.resolve() / 'redis.sock'}"
    server = EmbeddedRedis.shared(tmp_path)
    assert server.running
    assert EmbeddedRedis(tmp_path).running  # another process would find it by its socket
    server.stop()
    assert not server.running
    assert (tmp_path / "appendonly.aof").exists()


def test_a_starter_killed_with_sigkill_leaves_no_redis_behind(tmp_path: Path) -> None:
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path)], stdout=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        assert starter.stdout is not None
        redis_pid = int(starter.stdout.readline())
        assert alive(redis_pid) and EmbeddedRedis(tmp_path).running
        starter.send_signal(signal.SIGKILL)
        starter.wait()
        assert wait_gone(redis_pid), "the embedded redis-server outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        if starter.stdout is not None:
            starter.stdout.close()
