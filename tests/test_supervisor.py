"""``pinsignal.supervisor``: children stopped newest first, a stubborn one killed, signals unwound."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from pinsignal.supervisor import ProcessFailed, Supervisor

# a child that says when SIGTERM reached it (into the file named by its argument), then exits
POLITE = ("import signal, sys, time\n"
          "def bye(*_):\n"
          "    open(sys.argv[1], 'a').write(sys.argv[2] + '\\n'); sys.exit(0)\n"
          "signal.signal(signal.SIGTERM, bye)\n"
          "open(sys.argv[1] + '.ready', 'a').write(sys.argv[2] + '\\n')\n"
          "time.sleep(60)\n")
STUBBORN = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "open(sys.argv[1], 'w').write('ready\\n')\n"
            "time.sleep(60)\n")


def wait_for_lines(path: Path, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.02)
    pytest.fail(f"{path} never had {count} lines")


def stopped(log: Path, name: str) -> None:
    with log.open("a") as out:
        out.write(name + "\n")


def test_everything_stops_newest_first(tmp_path: Path) -> None:
    log = tmp_path / "stopped"
    with Supervisor() as children:
        first = children.spawn("first", [sys.executable, "-c", POLITE, str(log), "first"])
        children.defer("between", lambda: stopped(log, "between"))
        second = children.spawn("second", [sys.executable, "-c", POLITE, str(log), "second"])
        wait_for_lines(Path(f"{log}.ready"), 2)
    assert log.read_text().splitlines() == ["second", "between", "first"]
    assert first.process.returncode == 0 and second.process.returncode == 0
    assert children.children == []


def test_a_child_that_ignores_sigterm_is_killed_after_its_timeout(tmp_path: Path) -> None:
    children = Supervisor()
    ready = tmp_path / "ready"
    stubborn = children.spawn("stubborn", [sys.executable, "-c", STUBBORN, str(ready)], stop_timeout=0.5)
    wait_for_lines(ready, 1)
    started = time.monotonic()
    children.stop()
    assert stubborn.process.returncode == -signal.SIGKILL
    assert 0.4 < time.monotonic() - started < 10


def test_a_child_that_exits_before_listening_is_one_sentence() -> None:
    with Supervisor() as children:
        child = children.spawn("server", [sys.executable, "-c", "raise SystemExit(3)"])
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        with pytest.raises(ProcessFailed, match=r"^the server exited with code 3 before it was ready\.$"):
            children.wait_for_port(child, "127.0.0.1", port)
        assert children.wait_for_exit(until=lambda: False) is child


def test_wait_for_port_returns_once_the_port_listens() -> None:
    with socket.socket() as listening, Supervisor() as children:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        child = children.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        children.wait_for_port(child, "127.0.0.1", listening.getsockname()[1], timeout=5)
        assert children.wait_for_exit(until=lambda: True) is None


def test_the_first_signal_unwinds_the_block_and_the_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), Supervisor() as children:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert children.stopping.is_set()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_while_stopping_is_ignored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with Supervisor() as children:
        children.stopping.set()  # as while the children are being stopped
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
    assert signal.getsignal(signal.SIGTERM) is before
