"""Every registered transform, and the coercion to v5 types."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from pinsignal.pipeline.coerce import COERCERS, money_string, to_bool, to_int, to_text
from pinsignal.pipeline.transforms import REGISTRY, BuildContext, build, register

PRODUCTS = [{"product_id": "sku-1", "price": 14.99, "quantity": 3, "name": "Mug", "category": "Kitchen",
             "brand": "Pinewood", "meta": {"color": "red"}},
            {"sku": "sku-2", "price": "10", "quantity": "1"},
            "not a product"]


def run(name: str, value: Any, target: str = "custom_data.order_id", country: str = "US", **params: Any) -> Any:
    return build(name, BuildContext(params, target, country))(value)


CASES: list[tuple[str, dict[str, Any], str, Any, Any]] = [
    ("unix_seconds", {}, "event_time", "2026-11-29T12:00:00Z", 1795953600),
    ("unix_seconds", {}, "event_time", "2026-11-29T13:00:00+01:00", 1795953600),
    ("unix_seconds", {}, "event_time", 1795953600, 1795953600),
    ("unix_seconds", {}, "event_time", 1795953600123, 1795953600),
    ("unix_seconds", {}, "event_time", "1795953600", 1795953600),
    ("unix_seconds", {}, "event_time", "noon", None),
    ("unix_seconds", {}, "event_time", True, None),
    # normalised_sha256 gives the array its (hashed) target takes
    ("normalised_sha256", {}, "user_data.em", " A@B.co ", [hashlib.sha256(b"a@b.co").hexdigest()]),
    ("normalised_sha256", {}, "user_data.em", "not an email", None),
    ("normalised_sha256", {}, "user_data.em", ["A@B.co", "bad"], [hashlib.sha256(b"a@b.co").hexdigest()]),
    ("normalised_sha256", {}, "user_data.ph", "(415) 555-0123", [hashlib.sha256(b"14155550123").hexdigest()]),
    ("sha256", {}, "custom_data.order_id", " As Is ", hashlib.sha256(b" As Is ").hexdigest()),
    ("sha256", {}, "custom_data.order_id", 42, hashlib.sha256(b"42").hexdigest()),
    ("sha256", {}, "custom_data.order_id", "A" * 64, "a" * 64),
    ("sha256", {}, "custom_data.order_id", "", None),
    ("pluck", {"field": "product_id"}, "custom_data.content_ids", PRODUCTS, ["sku-1"]),
    ("pluck", {"field": "meta.color"}, "custom_data.content_ids", PRODUCTS, ["red"]),
    ("pluck", {"field": "id"}, "custom_data.content_ids", {"id": "one"}, ["one"]),
    ("sum", {"field": "quantity"}, "custom_data.num_items", PRODUCTS, 4),
    ("sum", {"field": "price"}, "custom_data.value", PRODUCTS, 24.99),
    ("sum", {}, "custom_data.num_items", [1, "2", None, "x"], 3),
    ("sum", {"field": "quantity"}, "custom_data.num_items", [], None),
    ("count", {}, "custom_data.num_items", PRODUCTS, 3),
    ("count", {}, "custom_data.num_items", "abc", None),
    ("first", {}, "custom_data.order_id", [None, "a", "b"], "a"),
    ("first", {}, "custom_data.order_id", "x", "x"),
    ("join", {}, "custom_data.content_name", ["a", 1, None], "a,1"),
    ("join", {"separator": " / "}, "custom_data.content_name", ["a", "b"], "a / b"),
    ("contents", {}, "custom_data.contents", PRODUCTS, [
        {"id": "sku-1", "item_price": "14.99", "quantity": 3, "item_name": "Mug", "item_category": "Kitchen",
         "item_brand": "Pinewood"},
        {"id": "sku-2", "item_price": "10", "quantity": 1}]),
    ("contents", {"fields": {"id": ["sku", "product_id"], "item_name": "category"}}, "custom_data.contents",
     PRODUCTS[:1], [{"id": "sku-1", "item_price": "14.99", "quantity": 3, "item_name": "Kitchen",
                     "item_category": "Kitchen", "item_brand": "Pinewood"}]),
    ("to_string", {}, "custom_data.order_id", 1001, "1001"),
    ("to_string", {}, "custom_data.order_id", 12.5, "12.5"),
    ("to_string", {}, "custom_data.order_id", False, "false"),
    ("to_string", {}, "custom_data.order_id", {"a": 1}, None),
    ("to_int", {}, "custom_data.num_items", "7", 7),
    ("to_int", {}, "custom_data.num_items", 2.6, 3),
    ("to_int", {}, "custom_data.num_items", "2.5", None),
    ("to_int", {}, "custom_data.num_items", "many", None),
    ("to_float", {}, "custom_data.value", "2.5", 2.5),
    ("to_float", {}, "custom_data.value", True, None),
    ("to_money_string", {}, "custom_data.value", 72.39, "72.39"),
    ("to_money_string", {}, "custom_data.value", " 5 ", "5"),
    ("to_money_string", {}, "custom_data.value", "cheap", None),
    ("to_bool", {}, "opt_out", "Yes", True),
    ("to_bool", {}, "opt_out", 0, False),
    ("to_bool", {}, "opt_out", "maybe", None),
    ("lowercase", {}, "custom_data.content_name", ["A", "B"], ["a", "b"]),
    ("uppercase", {}, "custom_data.currency", "usd", "USD"),
    ("trim", {}, "custom_data.content_name", "  x ", "x"),
    ("trim", {}, "custom_data.content_name", "   ", None),
    ("truncate", {"length": 2}, "language", "en-US", "en"),
    ("map", {"map": {"Order Completed": "checkout", "true": "LDP", "1": "one"}}, "event_name", "Order Completed",
     "checkout"),
    ("map", {"map": {"true": "LDP"}}, "custom_data.opt_out_type", True, "LDP"),
    ("map", {"map": {"1": "one"}}, "custom_data.content_name", 1, "one"),
    ("map", {"map": {"a": "b"}}, "custom_data.content_name", "zzz", None),
    ("map", {"map": {"a": "b"}}, "custom_data.content_name", ["a", "zzz"], ["b"]),
    ("url_param", {"param": "q"}, "custom_data.search_string", "https://shop/search?q=linen+sheets&p=2",
     "linen sheets"),
    ("url_param", {"param": "q"}, "custom_data.search_string", "https://shop/search?page=2", None),
]


@pytest.mark.parametrize(("name", "params", "target", "value", "expected"), CASES)
def test_transform(name: str, params: dict[str, Any], target: str, value: Any, expected: Any) -> None:
    assert run(name, value, target, **params) == expected


def test_every_registered_transform_has_a_case_and_a_summary() -> None:
    assert {name for name, *_ in CASES} == set(REGISTRY)
    for info in REGISTRY.values():
        assert info.summary.endswith(".") and len(info.summary) > 15


def test_the_issue_list_of_transforms_is_registered() -> None:
    assert {"unix_seconds", "normalised_sha256", "sha256", "pluck", "to_string", "to_int", "lowercase", "trim",
            "sum", "map"} <= set(REGISTRY)


def test_normalised_sha256_uses_the_default_country() -> None:
    british = run("normalised_sha256", "020 7946 0958", "user_data.ph", "GB")
    assert british == [hashlib.sha256(b"442079460958").hexdigest()]
    with pytest.raises(ValueError, match="hashed user_data target"):
        run("normalised_sha256", "x", "custom_data.order_id")


def test_adding_a_transform_is_one_function_and_one_entry() -> None:
    @register("reverse_for_test", "Reverse a string (test only).", each=True)
    def _reverse(ctx: BuildContext) -> Any:
        return lambda value: value[::-1] if type(value) is str else value

    try:
        assert run("reverse_for_test", ["ab", "cd"]) == ["ba", "dc"]
    finally:
        del REGISTRY["reverse_for_test"]


@pytest.mark.parametrize(("value", "expected"), [
    (72.39, "72.39"), (10, "10"), (10.0, "10"), (" 5.50 ", "5.50"), (1e-7, "0.0000001"), ("1e3", "1000"),
    ("+3", "3"), (1e21, "1000000000000000000000"), ("abc", "abc"), ("", None), (None, None), (True, True),
])
def test_money_string(value: Any, expected: Any) -> None:
    assert money_string(value) == expected


def test_coercers() -> None:
    assert to_int("3") == 3 and to_int(3.0) == 3 and to_int("3.5") == "3.5" and to_int(True) is True
    assert to_bool("off") is False and to_bool("x") == "x"
    assert to_text(5) == "5" and to_text(None) is None
    assert COERCERS["currency"](" usd ") == "USD"
    assert COERCERS["strings"]("sku") == ["sku"] and COERCERS["strings"]([1, None, ""]) == ["1"]
    assert COERCERS["hashed"]("a" * 64) == ["a" * 64] and COERCERS["hashed"]([None, ""]) == []
    assert COERCERS["contents"]([{"id": 1, "item_price": 2.5, "quantity": "2", "x": None}, 3]) == [
        {"id": "1", "item_price": "2.5", "quantity": 2}]
