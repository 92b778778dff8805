"""Bad input, generated: no exception escapes the envelope parser, the engine or the loader."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import orjson
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from pinsignal.config import shipped_pipelines_dir
from pinsignal.errors import EnvelopeError, PipelineLoadError
from pinsignal.events import parse_envelope
from pinsignal.pinterest import contract, schema
from pinsignal.pipeline import Engine, RequestContext, load_pipeline_text, load_pipelines

DATA = Path(__file__).parent / "data"
ENGINE = Engine(load_pipelines(shipped_pipelines_dir()))
NOW = 1_795_000_000.0
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["", " ", "abc", "72.39", "2026-11-18T11:06:00Z", "jane@example.com", "+1 (415) 555-0123",
                     "a" * 64, "https://shop.example/?epik=x%3By", "order_completed", "track", "page"]),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
keys = st.sampled_from(["type", "event", "messageId", "message_id", "userId", "anonymousId", "timestamp", "sentAt",
                        "properties", "traits", "context", "name", "category", "integrations", "propeties"])


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = draw(st.dictionaries(keys, json_values, max_size=8))
    if draw(st.booleans()):
        raw["type"] = draw(st.sampled_from(["track", "page", "identify"]))
        raw["event"] = draw(st.sampled_from(["order_completed", "product_added", "Products Searched", "x", ""]))
    if draw(st.booleans()):
        raw["properties"] = draw(st.dictionaries(
            st.sampled_from(["revenue", "currency", "products", "quantity", "order_id", "query", "pinterest_custom",
                             "price", "product_id"]), json_values, max_size=6))
    if draw(st.booleans()):
        raw["traits"] = draw(st.dictionaries(
            st.sampled_from(["email", "phone", "firstName", "gender", "birthday", "address", "city", "zip"]),
            json_values, max_size=6))
    if draw(st.booleans()):
        raw["context"] = {"ip": draw(scalars), "userAgent": draw(scalars), "page": {"url": draw(scalars)},
                          "locale": draw(scalars), "limited_data_processing": draw(scalars)}
    return raw


@FAST
@given(raw=st.one_of(envelopes(), json_values), epik=st.none() | st.text(max_size=20),
       cookie=st.text(max_size=20))
def test_envelopes_give_events_or_a_clear_rejection(raw: Any, epik: str | None, cookie: str) -> None:
    try:
        envelope = parse_envelope(copy.deepcopy(raw), received_at=NOW)
    except EnvelopeError as exc:
        assert exc.reasons and all(isinstance(reason, str) and reason for reason in exc.reasons)
        return
    for produced in ENGINE.process(envelope, RequestContext(epik=epik, cookies={"_epik": cookie}), now=NOW):
        assert produced.errors == contract.validate_event(produced.event, now=NOW)
        orjson.dumps(produced.event)  # always plain JSON
        if produced.valid:
            assert "jane@example.com" not in orjson.dumps(produced.event).decode()


def _valid_event() -> dict[str, Any]:
    return {"event_name": "checkout", "action_source": "web", "event_time": int(NOW), "event_id": "e",
            "user_data": {"em": ["a" * 64], "client_ip_address": "203.0.113.9", "client_user_agent": "UA"},
            "custom_data": {"value": "1.5", "contents": [{"id": "x", "quantity": 1}], "num_items": 1}}


@FAST
@given(path=st.sampled_from([("event_name",), ("event_time",), ("user_data",), ("user_data", "em"),
                             ("user_data", "click_id"), ("custom_data",), ("custom_data", "value"),
                             ("custom_data", "contents"), ("custom_data", "num_items"), ("opt_out",),
                             ("device_info",), ("app_info",), ("extra",), ("user_data", "client_ip_address")]),
       value=json_values)
def test_the_yes_or_no_agrees_with_the_messages(path: tuple[str, ...], value: Any) -> None:
    """fastjsonschema's answer and jsonschema's errors, from the one schema document, agree."""
    event = _valid_event()
    node: Any = event
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    messages = schema.event_errors(event)
    assert schema.event_ok(event) == (not messages), messages


LINE = re.compile(r"^.+:\d+: \S")


@FAST
@given(text=st.text(max_size=200))
def test_any_text_gives_a_pipeline_or_file_line_errors(text: str) -> None:
    try:
        load_pipeline_text(text, "fuzz.yaml")
    except PipelineLoadError as exc:
        assert exc.errors and all(LINE.match(error) and error.startswith("fuzz.yaml:") for error in exc.errors)


BRIEF = yaml.safe_load((DATA / "pinterest-checkout.yaml").read_text(encoding="utf-8"))


@st.composite
def mutated_pipelines(draw: st.DrawFn) -> str:
    document = copy.deepcopy(BRIEF)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        node: Any = document
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
            if not isinstance(node[key], dict | list):
                node[key] = draw(json_values)
                break
            node = node[key]
        else:
            if isinstance(node, dict):
                node[draw(st.sampled_from(["source", "target", "transform", "value", "field", "operator", "xx"]))] = \
                    draw(json_values)
    return yaml.safe_dump(document, allow_unicode=True)


@FAST
@given(text=mutated_pipelines())
def test_mutated_pipelines_load_or_fail_with_file_line_errors(text: str) -> None:
    try:
        pipeline = load_pipeline_text(text, "mutant.yaml")
    except PipelineLoadError as exc:
        assert exc.errors and all(LINE.match(error) for error in exc.errors)
        return
    engine = Engine([pipeline])
    envelope = parse_envelope({"type": "track", "event": "order_completed", "messageId": "m",
                               "properties": {"revenue": 5, "products": [{"product_id": "p"}]},
                               "traits": {"email": "a@b.co"}}, received_at=NOW)
    for produced in engine.process(envelope, now=NOW):
        orjson.dumps(produced.event)
