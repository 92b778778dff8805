"""Each pipeline's own check (pipeline/checks.py) never passes what ``validate_event`` would refuse.

The check is the yes/no of the hot path; ``validate_event`` is the whole contract and the messages.
For every pipeline shipped, in the examples and in the tests, generated input goes through the
pipeline's build and both judge the result: whenever the check says yes, ``validate_event`` finds
nothing. The check may say no to a valid event (that event is then validated whole), but not to the
realistic ones, which would lose the fast path without failing anything else.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pinsignal.config import shipped_pipelines_dir
from pinsignal.events import parse_envelope
from pinsignal.pinterest import contract
from pinsignal.pipeline import Engine, RequestContext, load_pipeline_text, load_pipelines
from pinsignal.pipeline.checks import DIGESTS, generate_check
from pinsignal.pipeline.normalise import HASHED_FIELDS
from pinsignal.pipeline.spec import Enrichment, Pipeline, Step
from pinsignal.pipeline.transforms import BuildContext, build

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "bench"))
from bench_pipeline import make_events  # noqa: E402

NOW = 1_795_000_000.0
FILES = [shipped_pipelines_dir(), ROOT / "examples" / "shop" / "pipelines", ROOT / "tests" / "pipeline" / "data",
         ROOT / "tests" / "faults" / "checkout_pipeline.yaml"]
PIPELINES: list[Pipeline] = [pipeline for path in FILES for pipeline in load_pipelines(path)]
COMPILED = [compiled for compiled in (Engine([pipeline])._by_type for pipeline in PIPELINES)
            for kind in compiled.values() for compiled in kind]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", " ", "  x ", "0", "0.00", "-1", "72.39", "1e3", "+5", "usd", "USD", "EURO", "0.0.0.0",
                     "::", "203.0.113.9", "2001:db8::1", "2026-11-18T11:06:00Z", "jane@example.com",
                     "+1 (415) 555-0123", "a" * 64, "A" * 64, "checkout", "web", "true", "LDP", "x" * 300]),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["product_id", "price", "quantity", "name", "sku", "id", "category", "brand", "x"]),
        inner, max_size=4),
    max_leaves=12,
)
items = st.lists(st.dictionaries(st.sampled_from(["id", "item_price", "quantity", "item_name", "item_brand", "sku"]),
                                 scalars.filter(lambda value: value is not None), max_size=4), max_size=3)
written = st.one_of(json_values, items, st.lists(scalars, max_size=3)).filter(lambda value: value is not None)


def _sources(pipeline: Pipeline) -> list[str]:
    return sorted({source for step in pipeline.steps for source in getattr(step, "sources", ())})


def _put(envelope: dict[str, Any], path: str, value: Any) -> None:
    *parents, key = path.split(".")
    node = envelope
    for parent in parents:
        child = node.get(parent)
        if type(child) is not dict:
            if type(child) is list or parent.isdigit():
                return  # a list index in the path: leave the realistic value
            child = node[parent] = {}
        node = child
    node[key] = value


def _realistic() -> dict[str, Any]:
    raw = make_events(1, visitors=1)[0]
    raw["timestamp"] = NOW - 5
    raw["sentAt"] = NOW - 4
    raw["traits"].update({"firstName": "Jane", "lastName": "Doe", "gender": "f", "birthday": "1990-05-26",
                          "address": {"city": "Menlo Park", "state": "CA", "postalCode": "94025", "country": "US"}})
    raw["context"]["locale"] = "en-US"
    raw["properties"].update({"query": "mugs", "value": 12.5, "category": "Kitchen"})
    return parse_envelope(raw, received_at=NOW)


REALISTIC = _realistic()
REQUEST = RequestContext(epik="dj0yJnU9b2JDcFFHekV4SHJNcmVrbFBkUEdqakh0", cookies={"_epik": "cookie-epik"})


def test_every_pipeline_here_gets_its_own_check() -> None:
    assert len(COMPILED) >= 25 and len(WITH_PRODUCTS) >= 5
    for compiled in COMPILED:
        assert compiled.check is not None, compiled.name


def test_realistic_events_take_the_fast_path() -> None:
    # The bench's order and the same envelope through every pipeline: valid, and the check says so.
    checked = 0
    for compiled in COMPILED:
        event = compiled.build(copy.deepcopy(REALISTIC), REQUEST)
        if contract.validate_event(event, now=NOW) == []:
            assert compiled.check(event, NOW), (compiled.name, event)
            checked += 1
    assert checked >= 20


@FUZZ
@given(data=st.data())
def test_the_check_passes_nothing_validate_event_refuses(data: st.DataObject) -> None:
    compiled = data.draw(st.sampled_from(COMPILED), label="pipeline")
    pipeline = next(p for p in PIPELINES if p.name == compiled.name)
    envelope = copy.deepcopy(REALISTIC) if data.draw(st.booleans()) else {"type": "track"}
    for path in data.draw(st.lists(st.sampled_from(_sources(pipeline) or ["timestamp"]), max_size=4, unique=True)):
        _put(envelope, path, data.draw(json_values, label=path))
    request = RequestContext(epik=data.draw(st.none() | st.text(max_size=8)), cookies={"_epik": "c"})
    event = compiled.build(envelope, request)
    now = data.draw(st.sampled_from([NOW, NOW + 30 * 86400, 0.0, 1e12]))
    if compiled.check(event, now):
        assert contract.validate_event(event, now=now) == [], compiled.check.__doc__


def _settled(pipeline: Pipeline) -> set[str]:
    """Targets the check does not test: static ones and digests (the build guarantees them)."""
    writers: dict[str, list[Step | Enrichment]] = {}
    for step in pipeline.steps:
        writers.setdefault(step.target, []).append(step)
    return {target for target, steps in writers.items()
            if all((isinstance(step, Step) and step.section == "static")
                   or (step.transforms and step.transforms[-1].name in DIGESTS and not step.has_default)
                   for step in steps)}


@FUZZ
@given(data=st.data())
def test_the_check_on_any_value_of_the_fields_it_tests(data: st.DataObject) -> None:
    # Any value (never None: the build writes none) in a field the check tests, a valid event otherwise.
    compiled = data.draw(st.sampled_from(COMPILED), label="pipeline")
    pipeline = next(p for p in PIPELINES if p.name == compiled.name)
    event = compiled.build(copy.deepcopy(REALISTIC), REQUEST)
    tested = sorted({step.target for step in pipeline.steps} - _settled(pipeline))
    if not tested:
        return
    for target in data.draw(st.lists(st.sampled_from(tested), min_size=1, max_size=3, unique=True)):
        parent, _, key = target.rpartition(".")
        holder = event.setdefault(parent, {}) if parent else event
        holder[key] = data.draw(written, label=target)
    if compiled.check(event, NOW):
        assert contract.validate_event(event, now=NOW) == [], compiled.check.__doc__


WITH_PRODUCTS = [compiled for compiled in COMPILED
                 if any(step.target == "custom_data.contents" for step in next(
                     p for p in PIPELINES if p.name == compiled.name).steps)]


@FUZZ
@given(data=st.data(), contents=items, content_ids=st.lists(scalars, max_size=3))
def test_the_check_on_any_contents(data: st.DataObject, contents: list[Any], content_ids: list[Any]) -> None:
    # The arrays of the event, item by item: unknown item fields, types, prices and quantities.
    compiled = data.draw(st.sampled_from(WITH_PRODUCTS), label="pipeline")
    event = compiled.build(copy.deepcopy(REALISTIC), REQUEST)
    event["custom_data"]["contents"] = contents
    if data.draw(st.booleans()):
        event["custom_data"]["content_ids"] = content_ids
    if compiled.check(event, NOW):
        assert contract.validate_event(event, now=NOW) == [], compiled.check.__doc__


@FUZZ
@given(value=json_values, target=st.sampled_from(sorted(HASHED_FIELDS)))
def test_digest_transforms_give_only_digests(value: Any, target: str) -> None:
    # What lets the check skip a hashed field every writer of which ends with one of DIGESTS.
    for name in DIGESTS:
        result = build(name, BuildContext({}, f"user_data.{target}"))(value)
        assert result is None or (type(result) is list and all(
            type(item) is str and re.fullmatch("[0-9a-f]{64}", item) for item in result)), result


def _check(yaml_steps: str) -> tuple[Any, Pipeline]:
    pipeline = load_pipeline_text(f"""
name: t
trigger: {{event: track}}
transform:
{yaml_steps}
  dedup: [{{source: message_id, target: event_id}}]
  context: [{{source: context.ip, target: user_data.client_ip_address}},
            {{source: context.userAgent, target: user_data.client_user_agent}}]
""")
    return generate_check(pipeline), pipeline


@pytest.mark.parametrize(("steps", "valid"), [
    ("  static: [{target: event_name, value: checkout}, {target: action_source, value: web}]\n"
     "  mapping: [{source: timestamp, target: event_time, transform: unix_seconds}]", True),
    # A bad constant is judged once, at load: every event of the pipeline is validated whole.
    ("  static: [{target: event_name, value: checkout}, {target: action_source, value: web},"
     " {target: custom_data.num_items, value: -1}]\n"
     "  mapping: [{source: timestamp, target: event_time, transform: unix_seconds}]", False),
    ("  static: [{target: event_name, value: checkout}, {target: action_source, value: web},"
     " {target: custom_data.currency, value: usd}]\n"
     "  mapping: [{source: timestamp, target: event_time, transform: unix_seconds}]", True),
    ("  static: [{target: event_name, value: checkout}, {target: action_source, value: web},"
     " {target: custom_data.value, value: 0}]\n"
     "  mapping: [{source: timestamp, target: event_time, transform: unix_seconds}]", False),
    # event_time from a field this event does not have: a required field missing.
    ("  static: [{target: event_name, value: checkout}, {target: action_source, value: web}]\n"
     "  mapping: [{source: properties.time_of_order, target: event_time, transform: unix_seconds}]", False),
])
def test_constants_and_missing_fields(steps: str, valid: bool) -> None:
    check, pipeline = _check(steps)
    compiled = Engine([pipeline])._by_type["track"][0]
    event = compiled.build(copy.deepcopy(REALISTIC), REQUEST)
    errors = contract.validate_event(event, now=NOW)
    assert (errors == []) is valid, errors
    assert check(event, NOW) is valid


def test_a_refused_event_still_gets_every_reason() -> None:
    engine = Engine(load_pipelines(shipped_pipelines_dir()))
    envelope = copy.deepcopy(REALISTIC)
    envelope["properties"]["revenue"] = -5
    envelope["context"]["ip"] = "0.0.0.0"
    (produced,) = engine.process(envelope, REQUEST, now=NOW)
    assert produced.errors == contract.validate_event(produced.event, now=NOW)
    assert produced.errors == ["user_data.client_ip_address: '0.0.0.0' is the unspecified address; "
                               "send the visitor's real IP",
                               "custom_data.value: expected a positive amount, got '-5'"]
