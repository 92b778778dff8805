"""Fixtures of the fault suite; the figures of every scenario are printed at the end of the run."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_harness import Tally

FIGURES: list[Tally] = []
# Read at import: the autouse fixture clears PINSIGNAL_* from each test's environment.
REPORT = os.environ.get("PINSIGNAL_FAULT_REPORT")


@pytest.fixture
def record_tally() -> Iterator[Any]:
    """Call with a Tally: kept for the end-of-run table (and PINSIGNAL_FAULT_REPORT, a JSON file)."""

    def record(tally: Tally) -> None:
        FIGURES.append(tally)
        print(tally.line())

    yield record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault suite figures")
    for tally in FIGURES:
        terminalreporter.write_line(tally.line())
    if REPORT:
        Path(REPORT).write_text(json.dumps([tally.as_dict() for tally in FIGURES], indent=2))
