"""Child processes started in order and stopped newest first: what ``pinsignal demo`` runs on.

    with Supervisor() as children:        # SIGINT or SIGTERM: KeyboardInterrupt in the main thread
        sandbox = children.spawn("sandbox", ["pinsignal", "sandbox"], env=env)
        children.wait_for_port(sandbox, "127.0.0.1", 8410)
        children.spawn("worker", ["pinsignal", "worker"], env=env, stop_timeout=15)
        children.defer("Redis", redis.stop)   # stopped after the children started after it
        ...
    # leaving the block stops everything in reverse order: nothing is orphaned

Each child gets its own process group, so a terminal's Ctrl-C reaches only this process, which then
stops the children in order; on Linux the kernel also sends them SIGTERM if this process dies
without cleaning up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from pinsignal.errors import PinSignalError

__all__ = ["Child", "ProcessFailed", "Supervisor"]

logger = logging.getLogger("pinsignal.supervisor")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ProcessFailed(PinSignalError):
    """A child process exited, or did not listen in time, before it was ready."""


@dataclass(frozen=True, slots=True)
class Child:
    """One started process: its name in messages, and how long it may take to stop on SIGTERM."""

    name: str
    process: subprocess.Popen[bytes]
    stop_timeout: float


class Supervisor:
    """Starts child processes and stops them, newest first, each given time to finish its work.

    Used as a context manager, it also turns the first SIGINT or SIGTERM into ``KeyboardInterrupt``
    in the main thread (so a ``finally`` unwinds in order) and ignores later ones while stopping.
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.children: list[Child] = []
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Supervisor:
        for sig in _SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            self.stop()
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # While starting, or re-raised by a server once it has stopped serving (uvicorn does): unwind
        # to the with block's exit. A second signal while stopping is ignored, so a child can finish
        # its work (stop() has its own time limits).
        if not self.stopping.is_set():
            self.stopping.set()
            raise KeyboardInterrupt

    def spawn(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              stop_timeout: float = 5.0) -> Child:
        """Start ``argv`` with stdin closed and stdout/stderr shared with this process."""
        process = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
        child = Child(name, process, stop_timeout)
        self.children.append(child)
        self._stops.append((name, lambda: _terminate(child)))
        logger.info("started the %s (pid %d)", name, process.pid)
        return child

    def defer(self, name: str, stop: Callable[[], None]) -> None:
        """Call ``stop`` in turn when stopping: after every child spawned later, before earlier ones."""
        self._stops.append((name, stop))

    def wait_for_port(self, child: Child, host: str, port: int, timeout: float = 30.0) -> None:
        """Return once ``host:port`` accepts connections; :class:`ProcessFailed` if ``child`` exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = child.process.poll()
            if code is not None:
                raise ProcessFailed(f"the {child.name} exited with code {code} before it was ready.")
            with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
                return
            if self.stopping.wait(0.05):
                raise KeyboardInterrupt
        raise ProcessFailed(f"the {child.name} did not listen on port {port} within {timeout:.0f} s.")

    def wait_for_exit(self, until: Callable[[], bool], interval: float = 0.2) -> Child | None:
        """The first child to exit, polled every ``interval`` seconds; ``None`` once ``until()`` is true."""
        while not until():
            for child in self.children:
                if child.process.poll() is not None:
                    return child
            time.sleep(interval)
        return None

    def stop(self) -> None:
        """Stop everything, newest first: SIGTERM, then SIGKILL for a child past its ``stop_timeout``."""
        self.stopping.set()
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception:  # one failure must not leave the rest running
                logger.exception("stopping the %s failed", name)
        self.children.clear()


def _terminate(child: Child) -> None:
    process = child.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(child.stop_timeout)
        except subprocess.TimeoutExpired:
            logger.warning("the %s did not stop within %.0f s; killing it", child.name, child.stop_timeout)
            process.kill()
            process.wait()


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setpgrp()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
