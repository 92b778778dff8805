from __future__ import annotations

import pytest
from mw_support import StubEngine

from pinsignal import MemorySink


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def engine() -> StubEngine:
    return StubEngine()

