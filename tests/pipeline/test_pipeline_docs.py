"""docs/pipelines.md: every YAML example loads, and every key, operator, transform and enrichment is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pinsignal.pipeline import Engine, load_pipeline_text
from pinsignal.pipeline.spec import OPERATORS, SECTIONS
from pinsignal.pipeline.transforms import REGISTRY

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"
TEXT = DOC.read_text(encoding="utf-8")
EXAMPLES = re.findall(r"```yaml\n(.*?)```", TEXT, flags=re.DOTALL)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("number", range(len(EXAMPLES)))
def test_every_yaml_example_loads_and_runs(number: int) -> None:
    pipeline = load_pipeline_text(EXAMPLES[number], f"docs/pipelines.md example {number + 1}")
    envelope = {"type": "track", "event": "order_completed", "message_id": "m", "timestamp": 1795000000,
                "properties": {"revenue": 5, "products": [{"product_id": "p", "quantity": 1}]},
                "traits": {"email": "a@b.co"}}
    Engine([pipeline]).process(envelope, now=1795000000.0)


def test_the_reference_is_complete() -> None:
    for name in [*OPERATORS, *SECTIONS, *REGISTRY, "click_id", "identity", "validate", "default", "enabled"]:
        assert f"`{name}`" in TEXT, f"docs/pipelines.md does not mention `{name}`"
    for name, info in REGISTRY.items():
        for param in info.params:
            assert f"`{param}`" in TEXT, f"parameter `{param}` of {name} is not documented"
