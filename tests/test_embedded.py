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
from pinsignal.errors import ConfigError
from support import need

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


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_regression_embedded_redis_data_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # what an older pinsignal left behind
    server = EmbeddedRedis(data)
    server.ensure_running()
    try:
        import redis

        redis.Redis.from_url(server.url).set("k", "v")
    finally:
        server.stop()
    assert mode(data) == 0o700
    written = [path for path in data.rglob("*") if path.is_file()]
    assert any("appendonly" in path.name for path in written) and (data / "redis.log") in written
    for path in written:
        assert mode(path) & 0o077 == 0, f"{path.name} is readable by others: {oct(mode(path))}"


def test_regression_a_long_data_dir_gets_a_private_socket_folder_not_a_predictable_path(tmp_path: Path) -> None:
    data = tmp_path / ("d" * 120)
    server = EmbeddedRedis(data)
    folder = server.socket_path.parent
    assert folder != Path("/tmp") and str(os.getuid()) in folder.name
    server.ensure_running()
    try:
        assert server.running
        info = folder.stat()
        assert mode(folder) == 0o700 and info.st_uid == os.getuid()
    finally:
        server.stop()


def test_regression_a_socket_folder_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    need(os.getuid() == 0, "root, to make a folder owned by another user")
    server = EmbeddedRedis(tmp_path / ("d" * 120))
    folder = server.socket_path.parent
    folder.mkdir(mode=0o777, exist_ok=True)
    try:
        os.chown(folder, 65534, 65534)
        with pytest.raises(ConfigError, match="not a directory owned by this user"):
            server.ensure_running()
    finally:
        os.rmdir(folder)


def test_regression_a_planted_socket_of_another_user_is_never_used(tmp_path: Path) -> None:
    need(os.getuid() == 0, "root, to plant a socket owned by another user")
    planted = EmbeddedRedis(tmp_path)
    planted.ensure_running()  # stands in for a Redis someone else started on our socket path
    try:
        os.chown(planted.socket_path, 65534, 65534)
        with pytest.raises(ConfigError, match="not a socket owned by this user"):
            EmbeddedRedis(tmp_path).ensure_running()
    finally:
        planted.stop()
