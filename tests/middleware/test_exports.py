from __future__ import annotations

import inspect

import pinsignal


def test_all_is_sorted_and_complete() -> None:
    assert pinsignal.__all__ == sorted(pinsignal.__all__)
    public = {name for name, value in vars(pinsignal).items()
              if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"}
    assert set(pinsignal.__all__) == public


def test_the_documented_names_are_exported() -> None:
    for name in ("Config", "PinSignalMiddleware", "identify", "track", "ConfigError", "EnvelopeError",
                 "PinSignalError", "PipelineLoadError", "DeliveryError"):
        assert name in pinsignal.__all__
