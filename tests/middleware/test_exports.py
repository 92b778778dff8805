"""``pinsignal``'s public surface: a sorted ``__all__``, each name imported from its module on first use."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import pinsignal

HEAVY = ("starlette", "httpx", "redis", "arq", "uvicorn", "yaml")


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert pinsignal.__all__ == sorted(pinsignal.__all__)
    for name in pinsignal.__all__:
        value = getattr(pinsignal, name)
        assert value.__module__.startswith("pinsignal."), name
        assert getattr(sys.modules[value.__module__], name) is value


def test_nothing_else_is_public() -> None:
    public = {name for name in dir(pinsignal)
              if not name.startswith("_") and not inspect.ismodule(getattr(pinsignal, name)) and name != "annotations"}
    assert public == set(pinsignal.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from pinsignal import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(pinsignal.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'pinsignal' has no attribute 'trak'"):
        pinsignal.trak  # noqa: B018
    with pytest.raises(ImportError, match="trak"):
        exec("from pinsignal import trak", {})


def test_the_documented_names_are_exported() -> None:
    for name in ("Config", "PinSignalMiddleware", "identify", "track", "ConfigError", "EnvelopeError",
                 "PinSignalError", "PipelineLoadError", "QueueUnavailable"):
        assert name in pinsignal.__all__


def test_import_pinsignal_loads_nothing_until_a_name_is_used() -> None:
    code = (
        "import sys, pinsignal\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = lambda: sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "print(loaded(), pinsignal.__version__)\n"
        "from pinsignal import PinSignalMiddleware\n"
        "print(loaded())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    before, after = out.splitlines()
    assert before == f"[] {pinsignal.__version__}"
    assert "starlette" in after
