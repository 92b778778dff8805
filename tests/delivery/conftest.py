"""Fixtures of the delivery tests (helpers live in ``delivery_helpers``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import pinsignal_cmd, run_process


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start ``pinsignal worker`` subprocesses (stopped at the end); each logs to its own file."""
    stack = contextlib.ExitStack()
    counter = iter(range(1000))

    def start(env: dict[str, str], *args: str, command: list[str] | None = None) -> Any:
        log = tmp_path / f"worker-{next(counter)}.log"
        argv = command or pinsignal_cmd("--log-level", "info", "worker", "--reclaim-after", "1", *args)
        process = stack.enter_context(run_process(argv, env=env, log=log))
        process.log_path = log
        return process

    with stack:
        yield start
