"""Each pipeline's generated check (pipeline/checks.py) agrees with ``validate_event`` on what it builds.

The check skips what a pipeline guarantees by construction; these tests prove the guarantees
(hashing transforms give digests, whatever the input) and that check and full validation agree on
the golden events, on fuzzed envelopes run through every pipeline, and on pipelines written to
break the guarantees.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from test_pipeline_fuzz import NOW, envelopes, json_values, mutated_pipelines
from test_pipeline_shipped import TRIGGERS, envelope

from pinsignal.config import shipped_pipelines_dir
from pinsignal.errors import EnvelopeError, PipelineLoadError
from pinsignal.events import parse_envelope
from pinsignal.pinterest.contract import validate_event
from pinsignal.pipeline import Engine, RequestContext, load_pipeline_file, load_pipeline_text, load_pipelines
from pinsignal.pipeline.checks import HASHING
from pinsignal.pipeline.normalise import HASHED_FIELDS
from pinsignal.pipeline.transforms import BuildContext, build

DATA = Path(__file__).parent / "data"
BRIEF = dataclasses.replace(load_pipeline_file(DATA / "pinterest-checkout.yaml"), name="brief")
ENGINE = Engine([*load_pipelines(shipped_pipelines_dir()), BRIEF])
COMPILED = [compiled for group in ENGINE._by_type.values() for compiled in group]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def is_digest(value: Any) -> bool:
    return type(value) is str and len(value) == 64 and all(ch in "0123456789abcdef" for ch in value)


def agree(compiled: Any, event: dict[str, Any], now: float = NOW) -> None:
    assert compiled.check is not None
    errors = validate_event(event, now=now)
    assert compiled.check(event, now) == (errors == []), (compiled.name, event, errors)


def every_pipeline_agrees(env: dict[str, Any], request: RequestContext) -> None:
    # Every pipeline builds every envelope, whether its trigger matches or not: more shapes to compare.
    for compiled in {id(c): c for c in COMPILED}.values():
        agree(compiled, compiled.build(env, request))


# ------------------------------------------------------------------ the guarantee

anything = st.one_of(json_values, st.text(), st.emails(), st.from_regex(r"\s*[0-9a-fA-F]{64}\s*", fullmatch=True),
                     st.from_regex(r"[+(]?[0-9 ()+.-]{6,20}", fullmatch=True))


@FUZZ
@given(name=st.sampled_from(HASHING), field=st.sampled_from(HASHED_FIELDS), country=st.sampled_from(["US", "GB", "DE"]),
       value=st.one_of(anything, st.lists(anything, max_size=4)))
def test_hashing_transforms_give_only_digests(name: str, field: str, country: str, value: Any) -> None:
    fn = build(name, BuildContext({}, f"user_data.{field}", country))
    result = fn(value)
    if name == "normalised_sha256":  # typed: what it returns is written as is
        assert result is None or (type(result) is list and all(is_digest(item) for item in result))
    else:  # coerced to a list by the hashed target's coercion, which drops None and ""
        items = result if type(result) is list else [result]
        assert all(item is None or is_digest(item) for item in items)


# ------------------------------------------------------------------ agreement

def test_the_generated_check_says_what_it_skips() -> None:
    checkout = next(c for c in COMPILED if c.name == "checkout")
    assert checkout.check is not None and checkout.check.__doc__ is not None
    assert "user_data.em (digests from normalised_sha256)" in checkout.check.__doc__
    assert "event_name (the constant 'checkout'" in checkout.check.__doc__
    assert "x_digests" not in checkout.check.__doc__  # no digest is tested again


@pytest.mark.parametrize("incoming", sorted(TRIGGERS))
def test_golden_events_agree(incoming: str) -> None:
    for request in (RequestContext(cookies={"_epik": "c"}), RequestContext(epik="e;bad")):
        every_pipeline_agrees(envelope("track", incoming), request)
        every_pipeline_agrees(envelope("page", name="Kitchen", category="Category", properties={}), request)
        every_pipeline_agrees(envelope("identify", properties={}), request)


def test_the_clock_edges_agree() -> None:
    env = envelope("track", "order_completed")
    checkout = next(c for c in COMPILED if c.name == "checkout")
    event = checkout.build(env, RequestContext())
    for now in (event["event_time"] - 300, event["event_time"] - 301, event["event_time"] + 7 * 86400,
                event["event_time"] + 7 * 86400 + 1, 0.0):
        agree(checkout, event, now)


@FUZZ
@given(raw=envelopes(), epik=st.none() | st.text(max_size=20), cookie=st.text(max_size=20))
def test_fuzzed_envelopes_agree_in_every_pipeline(raw: dict[str, Any], epik: str | None, cookie: str) -> None:
    raw.setdefault("type", "track")
    try:
        env = parse_envelope(copy.deepcopy(raw), received_at=NOW)
    except EnvelopeError:
        return
    every_pipeline_agrees(env, RequestContext(epik=epik, cookies={"_epik": cookie}))


some = st.sampled_from(["sku-1", "14.99", "-1", 3, -1, 2.5, 0, -0.5, "", "a@b.co", "+1 415 555 0123"]) | json_values


@FUZZ
@given(products=st.lists(st.dictionaries(st.sampled_from(["product_id", "sku", "price", "quantity", "name", "brand"]),
                                          some, max_size=4), max_size=3),
       properties=st.dictionaries(st.sampled_from(["revenue", "currency", "order_id", "query", "price", "quantity"]),
                                  some, max_size=3),
       traits=st.dictionaries(st.sampled_from(["email", "phone", "gender", "address", "birthday"]), some, max_size=3),
       event=st.sampled_from(sorted(TRIGGERS)))
def test_orders_agree_in_every_pipeline(products: list[dict[str, Any]], properties: dict[str, Any],
                                        traits: dict[str, Any], event: str) -> None:
    # Well-formed envelopes with a usable match key, so that the fields under test decide validity.
    raw = {"type": "track", "event": event, "properties": {**properties, "products": products}, "traits": traits,
           "context": {"ip": "203.0.113.9", "userAgent": "UA", "page": {"url": "https://shop.example/"}}}
    try:
        env = parse_envelope(raw, received_at=NOW)
    except EnvelopeError:
        return
    every_pipeline_agrees(env, RequestContext())


BASE = """\
name: breaker
trigger:
  event: track
transform:
  static:
    - {target: event_name, value: checkout}
    - {target: action_source, value: web}
  mapping:
    - {source: timestamp, target: event_time, transform: unix_seconds}
  dedup:
    - {source: message_id, target: event_id}
  user_data:
    - {source: traits.email, target: em, transform: normalised_sha256}
  custom_data:
    - {source: properties.currency, target: currency, default: USD}
"""
# One extra item each, to be appended to BASE's sections; each alone decides whether events are valid.
BREAKERS = {
    "hashed field with a default":
        "  user_data:\n    - {source: traits.phone, target: ph, transform: normalised_sha256, default: not-a-digest}",
    "uppercase static digest": '  static:\n    - {target: user_data.em, value: "%s"}' % ("A" * 64),
    "lowercase static digest": '  static:\n    - {target: user_data.em, value: "%s"}' % ("a" * 64),
    "static money that is not": "  static:\n    - {target: custom_data.value, value: abc}",
    "static negative money": '  static:\n    - {target: custom_data.value, value: "-1"}',
    "static money": "  static:\n    - {target: custom_data.value, value: 10}",
    "static out of range": "  static:\n    - {target: device_info.battery_level, value: 101}",
    "static in range": "  static:\n    - {target: device_info.battery_level, value: 50}",
    "click id into an integer": "  enrichments:\n    - {type: click_id, target: custom_data.num_items}",
    "any value as event time": "  mapping:\n    - {source: properties.when, target: event_time}",
    "a default to coerce": "  custom_data:\n    - {source: properties.nothing, target: currency, default: usd}",
    "a second static name": "  static:\n    - {target: event_name, value: lead}",
}


def with_breaker(extra: str) -> str:
    section = extra.splitlines()[0]
    head, found, tail = BASE.partition(section + "\n")
    return head + extra + "\n" + tail if found else BASE + extra + "\n"


@pytest.mark.parametrize("breaker", sorted(BREAKERS))
@given(traits=st.fixed_dictionaries({"email": st.just("a@b.co") | json_values}, optional={"phone": json_values}),
       when=json_values, currency=json_values, url=st.sampled_from(["https://shop.example/?epik=x", "", None]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_pipelines_that_break_the_guarantees_agree(breaker: str, traits: dict[str, Any], when: Any, currency: Any,
                                                   url: str | None) -> None:
    (compiled,) = Engine([load_pipeline_text(with_breaker(BREAKERS[breaker]))])._by_type["track"]
    env = {"type": "track", "event": "e", "message_id": "m", "timestamp": "2026-11-18T11:06:00Z",
           "traits": traits, "properties": {"when": when, "currency": currency},
           "context": {"page": {"url": url}}}
    agree(compiled, compiled.build(env, RequestContext()))


def test_a_breaker_can_be_valid_and_invalid() -> None:
    # The agreement above compares both answers: each pipeline gives valid events for good input.
    good = {"type": "track", "event": "e", "message_id": "m", "timestamp": "2026-11-18T11:06:00Z",
            "traits": {"email": "a@b.co", "phone": "+1 415 555 0123"}, "properties": {"when": 1795000000}}
    verdicts = {}
    for name, extra in BREAKERS.items():
        (compiled,) = Engine([load_pipeline_text(with_breaker(extra))])._by_type["track"]
        verdicts[name] = compiled.check(compiled.build(good, RequestContext()), NOW)
    assert verdicts == {**dict.fromkeys(BREAKERS, True), "uppercase static digest": False,
                        "static money that is not": False, "static negative money": False,
                        "static out of range": False}


@FUZZ
@given(text=mutated_pipelines(), raw=envelopes())
def test_mutated_pipelines_agree(text: str, raw: dict[str, Any]) -> None:
    try:
        pipeline = load_pipeline_text(text, "mutant.yaml")
        env = parse_envelope(copy.deepcopy({**raw, "type": "track"}), received_at=NOW)
    except (PipelineLoadError, EnvelopeError):  # only the ones that load and parse are compared
        return
    for compiled in Engine([pipeline])._by_type.get("track", []):
        if compiled.check is not None:
            agree(compiled, compiled.build(env, RequestContext(cookies={"_epik": "c"})))
