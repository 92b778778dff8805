"""The shipped ``pipelines/``: one per standard Pinterest event, fed by Segment spec names, all valid."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from pinsignal.config import shipped_pipelines_dir
from pinsignal.events import parse_envelope
from pinsignal.pinterest.contract import STANDARD_EVENT_NAMES
from pinsignal.pipeline import Engine, RequestContext, load_pipelines
from pinsignal.pipeline.spec import Step

NOW = 1_795_000_000.0
PIPELINES = load_pipelines(shipped_pipelines_dir())
ENGINE = Engine(PIPELINES)

# Segment spec name (snake_case) -> the Pinterest event it must produce.
TRIGGERS = {
    "product_list_viewed": "view_category", "product_list_filtered": "view_category",
    "products_searched": "search", "product_viewed": "view_content", "product_added": "add_to_cart",
    "product_added_to_wishlist": "add_to_wishlist", "checkout_started": "initiate_checkout",
    "payment_info_entered": "add_payment_info", "order_completed": "checkout", "signed_up": "signup",
    "account_created": "signup", "lead_generated": "lead", "lead_created": "lead",
    "subscription_started": "subscribe", "trial_started": "start_trial", "video_playback_started": "watch_video",
    "contact_requested": "contact", "store_located": "find_location", "appointment_scheduled": "schedule",
    "application_submitted": "submit_application", "product_customized": "customize_product",
}
TRAITS = {
    "email": "Jane.Doe@Example.com", "phone": "+1 (415) 555-0123", "firstName": "Jane", "lastName": "Doe",
    "gender": "female", "birthday": "1990-05-26",
    "address": {"city": "Menlo Park", "state": "California", "postalCode": "94025-1234", "country": "United States"},
}
EXPECTED_KEYS = {
    "em": "jane.doe@example.com", "ph": "14155550123", "fn": "jane", "ln": "doe", "ge": "f", "db": "19900526",
    "ct": "menlopark", "st": "ca", "zp": "94025", "country": "us", "external_id": "u-42",
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def envelope(kind: str = "track", event: str | None = None, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "type": kind, "messageId": f"msg-{event or kind}", "anonymousId": "anon-should-not-be-sent",
        "userId": "U-42", "timestamp": "2026-11-18T11:06:00Z", "traits": TRAITS,
        "properties": {
            "revenue": 53.98, "currency": "usd", "order_id": "o-7", "query": "linen", "category": "Kitchen",
            "product_id": "sku-101", "price": 14.99, "quantity": 2, "name": "Mug", "title": "Intro",
            "video_id": "v-1",
            "products": [{"product_id": "sku-101", "price": 14.99, "quantity": 2},
                         {"product_id": "sku-201", "price": 24, "quantity": 1}],
        },
        "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                    "locale": "en-US", "page": {"url": "https://shop.example/p?epik=from-url", "title": "Shop"}},
    }
    if event is not None:
        raw["event"] = event
    raw.update(extra)
    return parse_envelope(raw, received_at=NOW)


def test_one_pipeline_per_standard_web_event() -> None:
    names = {step.value for p in PIPELINES for step in p.steps
             if isinstance(step, Step) and step.target == "event_name"}
    assert names == STANDARD_EVENT_NAMES - {"app_install", "app_open"}
    for pipeline in PIPELINES:
        assert pipeline.output.validate, pipeline.name
        assert pipeline.description
    assert ENGINE.cookie_names == frozenset({"_epik"})


@pytest.mark.parametrize(("incoming", "pinterest"), sorted(TRIGGERS.items()))
def test_segment_spec_names_produce_valid_pinterest_events(incoming: str, pinterest: str) -> None:
    produced = ENGINE.process(envelope("track", incoming), RequestContext(cookies={"_epik": "c"}), now=NOW)
    assert [(p.event["event_name"], p.errors) for p in produced] == [(pinterest, [])]
    event = produced[0].event
    assert event["event_id"] == f"msg-{incoming}"
    assert event["action_source"] == "web" and event["event_time"] == 1795000000 - 40
    assert event["event_source_url"] == "https://shop.example/p?epik=from-url"
    assert event["language"] == "en"
    user = event["user_data"]
    assert user["click_id"] == "from-url"
    assert user["client_ip_address"] == "203.0.113.9"
    assert {key: user[key] for key in EXPECTED_KEYS} == {key: [sha(v)] for key, v in EXPECTED_KEYS.items()}
    assert "anon-should-not-be-sent" not in str(event)


def test_segment_title_case_names_work_too() -> None:
    produced = ENGINE.process(envelope("track", "Order Completed"), now=NOW)
    assert [p.event["event_name"] for p in produced] == ["checkout"]


def test_checkout_maps_the_order() -> None:
    (produced,) = ENGINE.process(envelope("track", "order_completed"), now=NOW)
    assert produced.event["custom_data"] == {
        "currency": "USD", "value": "53.98", "content_ids": ["sku-101", "sku-201"],
        "contents": [{"id": "sku-101", "item_price": "14.99", "quantity": 2},
                     {"id": "sku-201", "item_price": "24", "quantity": 1}],
        "num_items": 3, "order_id": "o-7",
    }


def test_product_events_map_the_product() -> None:
    (produced,) = ENGINE.process(envelope("track", "product_added"), now=NOW)
    assert produced.event["custom_data"] == {
        "currency": "USD", "value": "14.99", "content_ids": ["sku-101"],
        "contents": [{"id": "sku-101", "item_price": "14.99", "quantity": 2, "item_name": "Mug",
                      "item_category": "Kitchen"}],
        "num_items": 2, "content_name": "Mug", "content_category": "Kitchen",
    }


def test_search_and_pages() -> None:
    (search,) = ENGINE.process(envelope("track", "products_searched"), now=NOW)
    assert search.event["custom_data"]["search_string"] == "linen"
    page = ENGINE.process(envelope("page", name="Kitchen", properties={}), now=NOW)
    assert [p.event["event_name"] for p in page] == ["page_visit"]
    assert page[0].event["custom_data"] == {"content_name": "Kitchen"}
    category = ENGINE.process(envelope("page", name="Kitchen", category="Category", properties={}), now=NOW)
    assert [(p.event["event_name"], p.valid) for p in category] == [("page_visit", True), ("view_category", True)]
    assert category[1].event["custom_data"] == {"content_category": "Category", "content_name": "Kitchen"}


def test_unknown_events_are_not_custom_conversions_unless_flagged() -> None:
    assert ENGINE.process(envelope("track", "care_guide_opened"), now=NOW) == []
    flagged = envelope("track", "care_guide_opened")
    flagged["properties"] = {"pinterest_custom": True, "product_id": "sku-1"}
    (produced,) = ENGINE.process(flagged, now=NOW)
    assert produced.valid and produced.event["event_name"] == "custom"
    assert produced.event["custom_data"] == {"content_ids": ["sku-1"]}
    assert ENGINE.process(parse_envelope({"type": "identify", "traits": TRAITS}, received_at=NOW), now=NOW) == []


def test_limited_data_processing_flag() -> None:
    event = envelope("track", "order_completed")
    event["context"] = {**event["context"], "limited_data_processing": True}
    (produced,) = ENGINE.process(event, now=NOW)
    assert produced.valid and produced.event["custom_data"]["opt_out_type"] == "LDP"


def test_identify_cookie_traits_and_ip_only_events() -> None:
    # What identify() remembers arrives as flat, already hashed traits; they pass through unchanged.
    remembered = {"email": sha("jane@example.com"), "zip": sha("94025"), "city": sha("menlopark")}
    raw = {"type": "track", "event": "product_viewed", "messageId": "m", "traits": remembered,
           "context": {"ip": "203.0.113.9", "userAgent": "UA/1.0 (X11; Linux)"}}
    (produced,) = ENGINE.process(parse_envelope(raw, received_at=NOW), now=NOW)
    assert produced.valid
    assert produced.event["user_data"] == {
        "client_ip_address": "203.0.113.9", "client_user_agent": "UA/1.0 (X11; Linux)",
        "em": [remembered["email"]], "ct": [remembered["city"]], "zp": [remembered["zip"]],
    }
    bare = {"type": "track", "event": "product_viewed", "messageId": "m"}
    (invalid,) = ENGINE.process(parse_envelope(bare, received_at=NOW), now=NOW)
    assert invalid.errors == ["user_data: required field is missing"]
