"""Generated pipeline YAML and events: the loader answers ``file:line: message`` or a pipeline, the
engine answers produced events, and ``pinsignal pipelines preview`` answers JSON or a one-line
reason; never a traceback. ``PINSIGNAL_FUZZ_PIPELINES`` raises the number of examples.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st
from security_support import PIPELINE

from pinsignal.cli import main as cli_main
from pinsignal.errors import EnvelopeError, PipelineLoadError
from pinsignal.pipeline import Engine, RequestContext, load_pipeline_text

EXAMPLES = int(os.environ.get("PINSIGNAL_FUZZ_PIPELINES") or 400)
GOOD: dict[str, Any] = yaml.safe_load(PIPELINE.read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from([
                        "normalised_sha256", "sha256", "unix_seconds", "pluck", "lowercase", "equals", "matches",
                        "in", "gt", "exists", "user_data.em", "custom_data.value", "event_id", "[", "((", "*",
                        "context.page.url", "traits.email", "track", "checkout", "{ad_account_id}", "${X}"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=10)


def paths_of(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += paths_of(value, (*prefix, index))
    return found


PATHS = paths_of(GOOD)[1:]


@st.composite
def mutated_pipeline(draw: st.DrawFn) -> str:
    """The brief's pipeline with a few subtrees replaced, deleted or duplicated, as YAML text."""
    tree = copy.deepcopy(GOOD)
    for _ in range(draw(st.integers(0, 3))):  # 0: the brief's own pipeline, so events reach the engine
        path = draw(st.sampled_from(PATHS))
        parent: Any = tree
        try:
            for step in path[:-1]:
                parent = parent[step]
            action = draw(st.sampled_from(["replace", "delete", "rename"]))
            if action == "replace":
                parent[path[-1]] = draw(values)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=12))] = parent.pop(path[-1])
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or retyped this path
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


raw_yaml = st.one_of(
    st.text(max_size=300),
    st.sampled_from([
        "name: [unclosed", "name: x\nname: y\n", "\tname: tab", "!!python/object/apply:os.system ['echo hi']",
        "a: &a [1]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c]\n",
        "--- 1\n--- 2\n", "", "~", "[]", "name: x\ntrigger: {event: track, conditions: [{field: event, "
        "operator: matches, value: '(a+)+$'}]}", "%YAML 9.9\n---\nname: x", "\ufeffname: bom",
        "name: x\ntransform:\n  user_data:\n    - {source: a, target: user_data.em, transform: sha265}\n",
    ]),
    mutated_pipeline(),
)


def envelope_like() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": st.sampled_from(["track", "page", "identify"]), "event": st.sampled_from(["order_completed", "x"]),
         "message_id": st.text(min_size=1, max_size=20), "timestamp": st.sampled_from(["2026-11-29T12:00:00Z"])},
        optional={"properties": values, "traits": values, "context": values, "user_id": values, "sent_at": values})


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw_yaml, st.lists(envelope_like(), max_size=3))
def test_the_loader_and_engine_never_raise_anything_else(text: str, events: list[dict[str, Any]]) -> None:
    try:
        pipeline = load_pipeline_text(text, file="fuzz.yaml")
    except PipelineLoadError as exc:
        assert exc.errors and all(error.startswith("fuzz.yaml:") for error in exc.errors), exc.errors
        return
    engine = Engine([pipeline], default_country="US")
    for raw in events:
        from pinsignal.events import parse_envelope

        try:
            envelope = parse_envelope(raw, received_at=1_795_990_000.0)
        except EnvelopeError:
            continue
        for produced in engine.process(envelope, RequestContext(epik=None, cookies={})):
            orjson.dumps(produced.event)  # what gets queued must serialise


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()  # the standard library writes big integers and NaN, orjson refuses


@settings(max_examples=max(20, EXAMPLES // 4), deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw_yaml, st.one_of(st.lists(envelope_like(), max_size=3).map(as_json), st.binary(max_size=80),
                           values.map(as_json)))
def test_pipelines_preview_never_prints_a_traceback(tmp_path_factory: pytest.TempPathFactory, text: str,
                                                    event: bytes) -> None:
    folder = tmp_path_factory.mktemp("preview")
    (folder / "p.yaml").write_text(text, encoding="utf-8", errors="surrogateescape")
    (folder / "e.json").write_bytes(event)
    # In process: anything but an exit code (an exception) is a traceback for the user.
    code = cli_main(["pipelines", "preview", str(folder / "e.json"), "--pipelines", str(folder / "p.yaml")])
    assert code in (0, 1, 2)


@pytest.mark.integration
def test_pipelines_preview_as_a_process_answers_in_sentences(tmp_path: Path) -> None:
    cases = {"bad.yaml": "name: [unclosed", "typo.yaml": GOOD_TEXT.replace("normalised_sha256", "sha265", 1)}
    event = tmp_path / "e.json"
    event.write_bytes(b'{"type": "track", "event": "order_completed", "message_id": "m1", "traits": {"email": 5}}')
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"type": "track", \xff')
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        for event_file in (event, broken):
            result = subprocess.run([sys.executable, "-m", "pinsignal", "pipelines", "preview", str(event_file),
                                     "--pipelines", str(tmp_path / name)], capture_output=True, text=True, timeout=60)
            assert result.returncode in (1, 2), result
            assert "Traceback" not in result.stderr + result.stdout, result.stderr
            assert result.stderr.strip() or result.stdout.strip()


GOOD_TEXT = PIPELINE.read_text()
