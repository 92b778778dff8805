"""The engine: triggers and every operator, sections, defaults, coercion, enrichments, validation."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pinsignal.config import Config
from pinsignal.events import parse_envelope
from pinsignal.pinterest.contract import validate_event
from pinsignal.pipeline import Engine, Produced, RequestContext, load_pipeline_file, load_pipeline_text

DATA = Path(__file__).parent / "data"
NOW = 1_795_000_000.0
EPIK = "dj0yJnU9b2JDcFFHekV4SHJNcmVrbFBkUEdqakh0akdUT1VjVVUmcD0yJm49cnNBQ3F2Q2dOVDBXWWhkWklr"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def order_completed(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "type": "track", "event": "order_completed", "message_id": "order-1001", "user_id": "U-42",
        "timestamp": NOW - 30,
        "properties": {"revenue": 72.39, "currency": "usd", "quantity": 3, "order_id": 1001,
                       "products": [{"product_id": "sku-1", "price": 14.99, "quantity": 3},
                                    {"product_id": 2, "price": "10", "quantity": 1}]},
        "traits": {"email": " Jane.Doe@Example.com ", "phone": "+1 (415) 555-0123"},
        "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                    "page": {"url": "https://shop.example/checkout"}},
    }
    raw.update(changes)
    return parse_envelope(raw, received_at=NOW)


def engine_for(yaml_text: str) -> Engine:
    return Engine([load_pipeline_text(textwrap.dedent(yaml_text))])


def pipeline_yaml(*, trigger: str = "event: track", extra: str = "", validate: bool = False) -> str:
    return f"""\
name: t
trigger:
  {trigger}
transform:
  static:
    - {{target: event_name, value: lead}}
    - {{target: action_source, value: web}}
  mapping:
    - {{source: timestamp, target: event_time, transform: unix_seconds}}
  dedup:
    - {{source: message_id, target: event_id}}
{extra}
output:
  validate: {str(validate).lower()}
"""


def test_the_product_brief_example_produces_a_valid_checkout_event() -> None:
    engine = Engine([load_pipeline_file(DATA / "pinterest-checkout.yaml")])
    (produced,) = engine.process(order_completed(), RequestContext(cookies={"_epik": EPIK}), now=NOW)
    assert produced.pipeline == "pinterest_checkout"
    assert produced.errors == [] and produced.valid
    assert produced.event == {
        "event_name": "checkout",
        "action_source": "web",
        "event_time": int(NOW - 30),
        "event_source_url": "https://shop.example/checkout",
        "event_id": "order-1001",
        "user_data": {
            "client_ip_address": "203.0.113.9",
            "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
            "em": [sha("jane.doe@example.com")],
            "ph": [sha("14155550123")],
            "click_id": EPIK,
            "external_id": [sha("u-42")],
        },
        "custom_data": {"currency": "USD", "value": "72.39", "content_ids": ["sku-1", "2"], "num_items": 3},
    }
    assert validate_event(produced.event, now=NOW) == []


def test_nothing_matches_other_types_or_events() -> None:
    engine = Engine([load_pipeline_file(DATA / "pinterest-checkout.yaml")])
    assert engine.process(order_completed(event="product_added"), now=NOW) == []
    assert engine.process(parse_envelope({"type": "page"}, received_at=NOW), now=NOW) == []
    assert engine.cookie_names == frozenset({"_epik"})


def test_validate_true_reports_every_reason() -> None:
    engine = Engine([load_pipeline_file(DATA / "pinterest-checkout.yaml")])
    envelope = order_completed(traits={}, context={}, properties={"revenue": -5})
    (produced,) = engine.process(envelope, now=NOW + 8 * 86400)
    assert not produced.valid
    assert produced.errors == [
        "user_data: needs at least one match key: em, or hashed_maids, or client_ip_address with client_user_agent",
        f"event_time: {int(NOW - 30)} is 8.0 days old; Pinterest accepts events up to 7 days old",
        "custom_data.value: expected a positive amount, got '-5'",
    ]


@pytest.mark.parametrize(("operator", "value", "field", "matching", "other"), [
    ("equals", "'a'", "properties.x", "a", "b"),
    ("equals", "true", "properties.x", True, 1),
    ("equals", "1", "properties.x", 1, True),
    ("not_equals", "'a'", "properties.x", "b", "a"),
    ("in", "[a, b]", "properties.x", "b", "c"),
    ("in", "[1, 2]", "properties.x", 2.0, "2"),
    ("not_in", "[a, b]", "properties.x", "c", "a"),
    ("exists", None, "properties.x", 0, ""),
    ("not_exists", None, "properties.x", [], "a"),
    ("contains", "'ab'", "properties.x", "xaby", "xy"),
    ("contains", "'sku-1'", "properties.x", ["sku-1", "sku-2"], ["sku-3"]),
    ("contains", "'k'", "properties.x", {"k": 1}, {"j": 1}),
    ("starts_with", "'https://shop.'", "properties.x", "https://shop.example", "http://shop.example"),
    ("matches", "'^sku-[0-9]+$'", "properties.x", "sku-12", "sku-x"),
    ("matches", "'^4'", "properties.x", 42, None),
    ("gt", "10", "properties.x", 10.5, 10),
    ("gte", "10", "properties.x", "10", "9.99"),
    ("lt", "10", "properties.x", 9, "abc"),
    ("lte", "10", "properties.x", 10, True),
])
def test_each_operator(operator: str, value: str | None, field: str, matching: Any, other: Any) -> None:
    condition = f"{{field: {field}, operator: {operator}" + (f", value: {value}}}" if value is not None else "}")
    engine = engine_for(pipeline_yaml(trigger=f"event: track\n  conditions:\n    - {condition}"))

    def fires(x: Any) -> bool:
        envelope = {"type": "track", "event": "e", "message_id": "m", "timestamp": "2026-01-01T00:00:00Z",
                    "properties": {"x": x}}
        return bool(engine.process(envelope, now=NOW))

    assert fires(matching)
    assert not fires(other)


def test_missing_fields_and_anded_conditions() -> None:
    engine = engine_for(pipeline_yaml(trigger="""event: [track, page]
  conditions:
    - {field: properties.a, operator: equals, value: 1}
    - {field: context.page.url, operator: contains, value: shop}"""))
    base = {"message_id": "m", "timestamp": "2026-01-01T00:00:00Z", "context": {"page": {"url": "https://shop"}}}
    assert engine.process({**base, "type": "page", "properties": {"a": 1}}, now=NOW)
    assert not engine.process({**base, "type": "track", "properties": {"a": 2}}, now=NOW)
    assert not engine.process({**base, "type": "identify", "properties": {"a": 1}}, now=NOW)
    assert not engine.process({"type": "page", "properties": {"a": 1}}, now=NOW)


def test_defaults_coercion_fallback_sources_and_dotted_targets() -> None:
    engine = engine_for(pipeline_yaml(extra="""  custom_data:
    - {source: properties.currency, target: currency, default: eur}
    - {source: [properties.revenue, properties.total], target: value}
    - {source: properties.order_id, target: custom_data.order_id}
    - {source: properties.count, target: num_items}
    - {source: properties.products, target: contents, transform: contents}
    - {source: properties.missing, target: search_string}
    - {source: properties.ltv, target: predicted_ltv, default: 0.5}
  context:
    - {source: properties.wifi, target: wifi}
    - {source: properties.product_ids, target: custom_data.content_ids}
    - {source: properties.screen, target: device_info.screen_width}
"""))
    envelope = {"type": "track", "event": "e", "message_id": "m", "timestamp": 1700000000123,
                "properties": {"total": 1e-7, "order_id": 1001, "count": "4", "wifi": "yes",
                               "product_ids": [1, "b", None], "screen": 1920.0,
                               "products": [{"sku": "s", "price": 3, "quantity": 2.0, "name": "Mug", "brand": 7}]}}
    (produced,) = engine.process(envelope, now=NOW)
    assert produced.event == {
        "event_name": "lead", "action_source": "web", "event_time": 1700000000, "event_id": "m",
        "wifi": True, "custom_data": {
            "content_ids": ["1", "b"], "currency": "EUR", "value": "0.0000001", "order_id": "1001", "num_items": 4,
            "contents": [{"id": "s", "item_price": "3", "quantity": 2, "item_name": "Mug", "item_brand": "7"}],
            "predicted_ltv": "0.5",
        },
        "device_info": {"screen_width": 1920},
    }


def test_hashed_targets_merge_and_are_arrays() -> None:
    engine = engine_for(pipeline_yaml(extra="""  user_data:
    - {source: traits.email, target: em, transform: normalised_sha256}
    - {source: properties.emails, target: em, transform: normalised_sha256}
    - {source: traits.phone, target: ph, transform: normalised_sha256}
"""))
    envelope = {"type": "track", "event": "e", "message_id": "m", "timestamp": 1,
                "traits": {"email": "A@B.co", "phone": "not a phone"},
                "properties": {"emails": ["a@b.co", "C@d.co", "bad"]}}
    (produced,) = engine.process(envelope, now=NOW)
    assert produced.event["user_data"] == {"em": [sha("a@b.co"), sha("c@d.co")]}


def test_click_id_precedence() -> None:
    engine = Engine([load_pipeline_file(DATA / "pinterest-checkout.yaml")])

    def click_id(url: str, request: RequestContext) -> str | None:
        envelope = order_completed(context={"ip": "203.0.113.9", "userAgent": "UA", "page": {"url": url}})
        (produced,) = engine.process(envelope, request, now=NOW)
        return produced.event["user_data"].get("click_id")

    both = RequestContext(epik="from-request", cookies={"_epik": "from-cookie"})
    assert click_id("https://shop.example/?a=1&epik=from-url", both) == "from-url"
    assert click_id("https://shop.example/?a=1", both) == "from-request"
    assert click_id("https://shop.example/?epik=", both) == "from-request"
    assert click_id("https://shop.example/", RequestContext(cookies={"_epik": "from-cookie"})) == "from-cookie"
    assert click_id("https://shop.example/", RequestContext(epik="bad;value", cookies={"_epik": "c"})) == "c"
    assert click_id("https://shop.example/?epik=x%3By", RequestContext()) is None  # "x;y" is not plausible
    assert click_id("https://shop.example/", RequestContext()) is None


def test_identity_enrichment_defaults() -> None:
    engine = engine_for(pipeline_yaml(extra="""  enrichments:
    - {type: identity}
    - {type: click_id}
"""))
    envelope = {"type": "track", "event": "e", "message_id": "m", "timestamp": 1, "user_id": 42,
                "context": {"page": {"url": "/?epik=abc"}}}
    (produced,) = engine.process(envelope, now=NOW)
    assert produced.event["user_data"] == {"external_id": [sha("42")], "click_id": "abc"}
    assert engine.cookie_names == frozenset()


def test_static_values_are_copied_not_shared() -> None:
    engine = engine_for(pipeline_yaml(extra="""  custom_data:
    - {source: properties.ids, target: content_ids, default: [a]}
"""))
    first = engine.process({"type": "track", "message_id": "m", "timestamp": 1}, now=NOW)[0].event
    first["custom_data"]["content_ids"].append("mutated")
    second = engine.process({"type": "track", "message_id": "m", "timestamp": 1}, now=NOW)[0].event
    assert second["custom_data"]["content_ids"] == ["a"]


def test_several_pipelines_run_in_load_order_and_from_config(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(pipeline_yaml().replace("name: t", "name: a"), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(pipeline_yaml().replace("name: t", "name: b"), encoding="utf-8")
    engine = Engine.from_config(Config(pipelines=(tmp_path,), default_country="GB"))
    assert engine.default_country == "GB"
    produced = engine.process({"type": "track", "message_id": "m", "timestamp": 1}, now=NOW)
    assert [p.pipeline for p in produced] == ["a", "b"]
    assert all(isinstance(p, Produced) for p in produced)


def test_default_country_reaches_phone_normalisation() -> None:
    text = pipeline_yaml(extra="""  user_data:
    - {source: traits.phone, target: ph, transform: normalised_sha256}
""")
    envelope = {"type": "track", "message_id": "m", "timestamp": 1, "traits": {"phone": "020 7946 0958"}}
    british = Engine([load_pipeline_text(text)], default_country="GB").process(envelope, now=NOW)[0]
    assert british.event["user_data"]["ph"] == [sha("442079460958")]
    american = Engine([load_pipeline_text(text)], default_country="US").process(envelope, now=NOW)[0]
    assert "user_data" not in american.event


def test_hostile_keys_are_data_not_code() -> None:
    # Generated build functions quote every key with repr(); a key full of Python stays a key.
    key = "x'\"]);__import__('os')#\\"
    engine = engine_for(pipeline_yaml(extra=f"""  custom_data:
    - source: "properties.{key.replace(chr(92), chr(92) * 2).replace('"', chr(92) + '"')}.y"
      target: order_id
"""))
    envelope = {"type": "track", "message_id": "m", "timestamp": 1, "properties": {key: {"y": "kept"}}}
    (produced,) = engine.process(envelope, now=NOW)
    assert produced.event["custom_data"] == {"order_id": "kept"}
