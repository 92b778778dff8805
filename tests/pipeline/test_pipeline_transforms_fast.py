"""The products transforms written for speed give what their former, plainer code gave.

``pluck`` with one key, ``sum``'s all-integers case, the generated ``contents`` function and the
``strings`` coercion are compared with the code they replaced (kept here as the reference) on
arbitrary JSON values, and ``contents`` with the field overrides a pipeline may give.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from hypothesis import given, settings, strategies as st

from pinsignal.pipeline.coerce import COERCERS, money_string, to_float, to_int, to_text
from pinsignal.pipeline.transforms import BuildContext, build

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                    st.sampled_from(["", " ", "3", "2.5", "1e3", " 7 ", "sku-1"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(["product_id", "sku", "id", "price", "quantity", "name",
                                                         "category", "brand", "x"]), inner, max_size=6),
                      max_leaves=30)
products = st.one_of(values, st.lists(st.one_of(scalars, st.dictionaries(
    st.sampled_from(["product_id", "sku", "id", "price", "quantity", "name", "category", "brand", "x"]),
    scalars, max_size=7)), max_size=4))


def _as_list(value: Any) -> list[Any]:
    return value if type(value) is list else [] if value is None else [value]


def former_pluck(value: Any, key: str) -> Any:
    found = [item.get(key) if type(item) is dict else None for item in _as_list(value)]
    return [item for item in found if item is not None and item != ""]


def former_sum(value: Any, key: str) -> Any:
    numbers = [item.get(key) if type(item) is dict else None for item in _as_list(value)]
    if numbers and all(type(number) is int for number in numbers):
        return sum(numbers)
    total = Decimal(0)
    seen = False
    for item in numbers:
        number = to_float(item) if type(item) is not bool else None
        if type(number) is float and math.isfinite(number):
            total += Decimal(repr(number))
            seen = True
    if not seen:
        return None
    return int(total) if total == total.to_integral_value() else float(total)


FIELDS = {"id": ("product_id", "sku", "id"), "item_price": ("price",), "quantity": ("quantity",),
          "item_name": ("name",), "item_category": ("category",), "item_brand": ("brand",)}


def former_contents(value: Any, fields: dict[str, tuple[str, ...]]) -> Any:
    def quantity(found: Any) -> Any:
        number = to_int(found)
        return number if type(number) is int else found

    convert = {"item_price": money_string, "quantity": quantity}
    items = []
    for product in _as_list(value):
        if type(product) is not dict:
            continue
        item = {}
        for name, sources in fields.items():
            for source in sources:
                found = product.get(source)
                if found is not None and found != "":
                    item[name] = convert.get(name, to_text)(found)
                    break
        if item:
            items.append(item)
    return items


def former_strings(value: Any) -> Any:
    if type(value) is list or type(value) is tuple:
        return [text for text in (to_text(item) for item in value if item is not None) if text != ""]
    if value is None or value == "":
        return value
    return [to_text(value)]


def same(left: Any, right: Any) -> bool:
    # NaN is not equal to itself: compare the JSON-like reprs, types included.
    return repr(left) == repr(right) and type(left) is type(right)


@settings(max_examples=500)
@given(value=products, key=st.sampled_from(["product_id", "quantity", "price", "x"]))
def test_pluck_and_sum_of_one_field(value: Any, key: str) -> None:
    assert same(build("pluck", BuildContext({"field": key}, "custom_data.content_ids"))(value),
                former_pluck(value, key))
    assert same(build("sum", BuildContext({"field": key}, "custom_data.num_items"))(value), former_sum(value, key))


overrides = st.dictionaries(st.sampled_from(["id", "item_price", "quantity", "item_name", "item_brand", "extra"]),
                            st.lists(st.sampled_from(["product_id", "sku", "id", "price", "x", "name"]),
                                     max_size=3).map(tuple), max_size=3)


@settings(max_examples=500)
@given(value=products, changes=overrides)
def test_contents(value: Any, changes: dict[str, tuple[str, ...]]) -> None:
    assert same(build("contents", BuildContext({}, "custom_data.contents"))(value), former_contents(value, FIELDS))
    params = {"fields": {name: list(sources) for name, sources in changes.items()}}
    assert same(build("contents", BuildContext(params, "custom_data.contents"))(value),
                former_contents(value, {**FIELDS, **changes}))


def test_contents_keys_are_data_not_code() -> None:
    hostile = "x') or __import__('os').system('false') or ('"
    fn = build("contents", BuildContext({"fields": {hostile: [hostile]}}, "custom_data.contents"))
    assert fn([{hostile: "v"}]) == [{hostile: "v"}]


@settings(max_examples=500)
@given(value=st.one_of(values, st.tuples(scalars, scalars)))
def test_strings_coercion(value: Any) -> None:
    assert same(COERCERS["strings"](value), former_strings(value))


@given(value=st.one_of(st.text(), st.integers(), st.booleans()))
def test_kept_types_pass_their_coercion_unchanged(value: Any) -> None:
    # Generated builds call a coercion in KEEPS only for values not of its kept type.
    from pinsignal.pipeline.coerce import KEEPS

    for coercer, kept in KEEPS.items():
        if type(value) is kept:
            assert coercer(value) is value


def test_an_identity_enrichment_with_a_null_source_builds_without_it() -> None:
    # Found by test_mutated_pipelines_agree: "source: null" gave the generator no source to read.
    import textwrap

    from pinsignal.pipeline import Engine, load_pipeline_text

    text = textwrap.dedent("""\
        name: t
        trigger:
          event: track
        transform:
          static:
            - {target: event_name, value: lead}
            - {target: action_source, value: web}
          mapping:
            - {source: timestamp, target: event_time, transform: unix_seconds}
          dedup:
            - {source: message_id, target: event_id}
          enrichments:
            - {type: identity, source: null, default: u-1}
        """)
    [produced] = Engine([load_pipeline_text(text)]).process({"type": "track", "user_id": "u-2"})
    # No source: the user id is not read, and the default is written as for any step whose sources
    # are all missing (as given: a default replaces the transforms' result).
    assert produced.event["user_data"]["external_id"] == "u-1"


def former_money_float(value: float) -> Any:
    if not math.isfinite(value):
        return value
    text = repr(value)
    if "e" in text:
        from pinsignal.pipeline.coerce import _plain

        return _plain(Decimal(text))
    return text[:-2] if text.endswith(".0") else text


@settings(max_examples=500)
@given(values=st.lists(st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 14.99, 10.0, 1e-7, 1e22])), max_size=6))
def test_remembered_money_texts_are_the_computed_ones(values: list[float]) -> None:
    for value in values + values:  # each twice: the second one is remembered
        assert same(money_string(value), former_money_float(value))
