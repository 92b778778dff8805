"""Transforms: short names in pipeline files, resolved through :data:`REGISTRY`.

A transform is a *builder*: given its parameters and target (at load time) it returns a small
function ``value -> value`` (``None`` drops the value). Adding one is one small function plus one
``@register`` line::

    @register("reverse", "Reverse a string.")
    def _reverse(ctx: BuildContext) -> Fn:
        return lambda value: value[::-1] if type(value) is str else value

``each=True`` transforms are applied to every item of a list (items that give ``None`` are
dropped) and to a single value as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pinsignal.events import parse_time
from pinsignal.pinterest.fields import ITEM_KINDS
from pinsignal.pipeline.coerce import money_string, to_bool, to_float, to_int, to_text
from pinsignal.pipeline.normalise import HASHED_FIELDS, is_sha256, match_key_hasher, sha256_hex

__all__ = ["REGISTRY", "BuildContext", "Fn", "Param", "TransformInfo", "build", "register"]

Fn = Callable[[Any], Any]
ParamKind = Literal["string", "integer", "mapping"]


@dataclass(frozen=True)
class Param:
    """A transform parameter: its YAML kind, whether it is required, and what it means."""

    kind: ParamKind
    summary: str
    required: bool = False


@dataclass(frozen=True)
class BuildContext:
    """What a builder may use: its parameters, the step's target path and the default country."""

    params: Mapping[str, Any] = field(default_factory=dict)
    target: str = ""
    default_country: str = "US"

    @property
    def target_field(self) -> str:
        return self.target.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class TransformInfo:
    name: str
    summary: str
    builder: Callable[[BuildContext], Fn]
    params: Mapping[str, Param]
    each: bool
    hashed_targets_only: bool
    typed: bool = False
    """Its output already has the v5 type of its target (the engine skips coercion)."""


REGISTRY: dict[str, TransformInfo] = {}
"""Every transform by name; the loader rejects other names with a suggestion."""


def register(
    name: str,
    summary: str,
    *,
    params: Mapping[str, Param] | None = None,
    each: bool = False,
    hashed_targets_only: bool = False,
    typed: bool = False,
) -> Callable[[Callable[[BuildContext], Fn]], Callable[[BuildContext], Fn]]:
    """Add a transform builder to :data:`REGISTRY` under ``name``."""

    def decorate(builder: Callable[[BuildContext], Fn]) -> Callable[[BuildContext], Fn]:
        REGISTRY[name] = TransformInfo(name, summary, builder, dict(params or {}), each, hashed_targets_only, typed)
        return builder

    return decorate


def build(name: str, ctx: BuildContext) -> Fn:
    """The function for one use of transform ``name`` (list handling for ``each`` included)."""
    info = REGISTRY[name]
    fn = info.builder(ctx)
    if not info.each or getattr(fn, "handles_lists", False):
        return fn

    def each(value: Any) -> Any:
        if type(value) is list:
            return [result for result in map(fn, value) if result is not None]
        return fn(value)

    return each


def _get(item: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if type(item) is not dict:
            return None
        item = item.get(key)
    return item


def _as_list(value: Any) -> list[Any]:
    if type(value) is list:
        return value
    return [] if value is None else [value]


# ------------------------------------------------------------------ time and hashing


@register("unix_seconds", "Unix seconds (an integer) from an ISO-8601 time, epoch seconds or epoch milliseconds.")
def _unix_seconds(ctx: BuildContext) -> Fn:
    def fn(value: Any) -> Any:
        if type(value) is bool:
            return None
        seconds = parse_time(value)
        return None if seconds is None else int(seconds)

    return fn


@register(
    "normalised_sha256",
    "Normalise for the target field (email, phone, names, city, state, zip, country, gender, birthday, "
    "external id, MAIDs), then SHA-256. Digests pass through lowercased; invalid values are dropped.",
    each=True,
    hashed_targets_only=True,
    typed=True,
)
def _normalised_sha256(ctx: BuildContext) -> Fn:
    target, country = ctx.target_field, ctx.default_country
    if target not in HASHED_FIELDS:  # the loader says so with a line number first
        raise ValueError(f"normalised_sha256 needs a hashed user_data target, not {ctx.target!r}")

    hasher = match_key_hasher(target, default_country=country)

    def fn(value: Any) -> Any:
        # Already the array of digests the (hashed) target takes, so the engine skips coercion.
        if type(value) is list:
            digests = [hasher(item) for item in value]
            return [digest for digest in digests if digest is not None]
        digest = hasher(value)
        return None if digest is None else [digest]

    fn.handles_lists = True  # type: ignore[attr-defined]
    return fn


@register("sha256", "SHA-256 of the value exactly as given (no normalisation); digests pass through lowercased.",
          each=True)
def _sha256(ctx: BuildContext) -> Fn:
    def fn(value: Any) -> Any:
        text = to_text(value)
        if type(text) is not str or not text:
            return None
        return text.strip().lower() if is_sha256(text) else sha256_hex(text)

    return fn


# ------------------------------------------------------------------ lists


@register("pluck", "From a list of objects, the list of one field's values (e.g. product_id of each product).",
          params={"field": Param("string", "the (dotted) field to take from each item", required=True)})
def _pluck(ctx: BuildContext) -> Fn:
    path = tuple(str(ctx.params["field"]).split("."))
    if len(path) == 1:  # the usual "field: product_id": one lookup per item, no call
        key = path[0]

        def one(value: Any) -> Any:
            found = []
            for item in value if type(value) is list else _as_list(value):
                if type(item) is dict:
                    item = item.get(key)
                    if item is not None and item != "":
                        found.append(item)
            return found

        return one

    def fn(value: Any) -> Any:
        found = [_get(item, path) for item in _as_list(value)]
        return [item for item in found if item is not None and item != ""]

    return fn


@register("sum", "Sum of the numbers in a list, or of one field of each item (e.g. total quantity of products).",
          params={"field": Param("string", "the (dotted) field to add up from each item")})
def _sum(ctx: BuildContext) -> Fn:
    path = tuple(str(ctx.params["field"]).split(".")) if "field" in ctx.params else ()

    def fn(value: Any) -> Any:
        items = value if type(value) is list else _as_list(value)
        if len(path) == 1:  # the usual "field: quantity": one lookup per item
            key = path[0]
            # Quantities, all integers: the common case, exact and quick (one loop, no list).
            count = 0
            for item in items:
                number = item.get(key) if type(item) is dict else None
                if type(number) is not int:
                    break
                count += number
            else:
                if items:
                    return count
            numbers = [item.get(key) if type(item) is dict else None for item in items]
        else:
            numbers = [_get(item, path) if path else item for item in items]
            if numbers and all(type(number) is int for number in numbers):
                return sum(numbers)
        # Decimal from each number's shortest repr: 14.99 + 10 is 24.99, not 24.990000000000002.
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

    return fn


@register("count", "Number of items in a list.")
def _count(ctx: BuildContext) -> Fn:
    return lambda value: len(value) if type(value) is list else None


@register("first", "The first item of a list (a single value passes through).")
def _first(ctx: BuildContext) -> Fn:
    def fn(value: Any) -> Any:
        if type(value) is list:
            return next((item for item in value if item is not None), None)
        return value

    return fn


@register("join", "Join a list into one string.",
          params={"separator": Param("string", "put between items (default ',')")})
def _join(ctx: BuildContext) -> Fn:
    separator = str(ctx.params.get("separator", ","))

    def fn(value: Any) -> Any:
        texts = [to_text(item) for item in _as_list(value)]
        return separator.join(text for text in texts if type(text) is str) or None

    return fn


_PRODUCT_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("product_id", "sku", "id"),
    "item_price": ("price",),
    "quantity": ("quantity",),
    "item_name": ("name",),
    "item_category": ("category",),
    "item_brand": ("brand",),
}


@register(
    "contents",
    "Segment products -> v5 contents: id (product_id, sku or id), item_price (string), quantity (integer), "
    "item_name, item_category, item_brand.",
    params={"fields": Param("mapping", "contents field -> product field (or list of fields), overriding the defaults")},
    typed=True,
)
def _contents(ctx: BuildContext) -> Fn:
    fields = dict(_PRODUCT_FIELDS)
    for key, sources in dict(ctx.params.get("fields") or {}).items():
        fields[str(key)] = tuple(str(source) for source in _as_list(sources))
    # Generated straight-line code per field, as codegen.py does for steps: names and keys enter
    # it only through repr() of plain strings. Strings (to_text) and integers (_quantity) are
    # kept as they are without a call, which is what those conversions do with them.
    convert = {key: _ITEM_CONVERSIONS[kind] for key, kind in ITEM_KINDS.items()}
    namespace: dict[str, Any] = {"_as_list": _as_list}
    lines = ["def contents(value):", "    items = []",
             "    for product in (value if type(value) is list else _as_list(value)):",
             "        if type(product) is not dict:", "            continue",
             "        item = {}", "        get = product.get"]
    for index, (name, sources) in enumerate(fields.items()):
        if not sources:
            continue
        kept, to_type = convert.get(name, ("str", to_text))
        namespace[f"c{index}"] = to_type
        lines.append(f"        found = get({sources[0]!r})")
        for depth, source in enumerate(sources[1:]):
            lines.append("    " * (depth + 2) + "if not (found is not None and found != ''):")
            lines.append("    " * (depth + 3) + f"found = get({source!r})")
        lines.append("        if found is not None and found != '':")
        value = f"found if type(found) is {kept} else c{index}(found)" if kept else f"c{index}(found)"
        lines.append(f"            item[{name!r}] = {value}")
    lines += ["        if item:", "            items.append(item)", "    return items"]
    exec(compile("\n".join(lines) + "\n", "<contents transform>", "exec"), namespace)  # fixed templates only
    fn: Fn = namespace["contents"]
    return fn


def _quantity(value: Any) -> Any:
    number = to_int(value)
    return number if type(number) is int else value


_ITEM_CONVERSIONS: dict[str, tuple[str, Fn]] = {"money": ("", money_string), "integer": ("int", _quantity)}
"""Per kind of a ``contents`` item field (``fields.ITEM_KINDS``): the type kept as it is, and the conversion."""


# ------------------------------------------------------------------ scalars


@register("to_string", "A string from a string or number (1001 -> '1001').", each=True)
def _to_string(ctx: BuildContext) -> Fn:
    def fn(value: Any) -> Any:
        if type(value) is bool:
            return "true" if value else "false"
        text = to_text(value)
        return text if type(text) is str else None

    return fn


@register("to_int", "An integer from a number (rounded) or an integral numeric string; anything else is dropped.")
def _to_int(ctx: BuildContext) -> Fn:
    def fn(value: Any) -> Any:
        if type(value) is float and value == value and abs(value) != float("inf"):
            return round(value)
        number = to_int(value)
        return number if type(number) is int else None

    return fn


@register("to_float", "A number from a number or numeric string; anything else is dropped.")
def _to_float(ctx: BuildContext) -> Fn:
    def fn(value: Any) -> Any:
        number = to_float(value) if type(value) is not bool else None
        return number if type(number) is float else None

    return fn


@register("to_money_string", "A decimal string from a number or numeric string (72.39 -> '72.39').")
def _to_money_string(ctx: BuildContext) -> Fn:
    def fn(value: Any) -> Any:
        number = to_float(value) if type(value) is not bool else None
        if type(number) is not float:
            return None
        text = money_string(value.strip() if type(value) is str else value)
        return text if type(text) is str else None

    return fn


@register("to_bool", "true/false from booleans, numbers and words like yes/no, on/off, 1/0.")
def _to_bool(ctx: BuildContext) -> Fn:
    def fn(value: Any) -> Any:
        flag = to_bool(value)
        return flag if type(flag) is bool else None

    return fn


@register("lowercase", "Lowercase a string.", each=True)
def _lowercase(ctx: BuildContext) -> Fn:
    return lambda value: value.lower() if type(value) is str else value


@register("uppercase", "Uppercase a string.", each=True)
def _uppercase(ctx: BuildContext) -> Fn:
    return lambda value: value.upper() if type(value) is str else value


@register("trim", "Remove leading and trailing white space; an empty result is dropped.", each=True)
def _trim(ctx: BuildContext) -> Fn:
    return lambda value: (value.strip() or None) if type(value) is str else value


@register("truncate", "Keep the first `length` characters of a string (e.g. 2 for a language code).",
          params={"length": Param("integer", "how many characters to keep", required=True)}, each=True)
def _truncate(ctx: BuildContext) -> Fn:
    length = int(ctx.params["length"])
    return lambda value: value[:length] if type(value) is str else value


@register("map", "Replace a value through a table; values not in the table are dropped (use default:).",
          params={"map": Param("mapping", "the table: value -> replacement", required=True)}, each=True)
def _map(ctx: BuildContext) -> Fn:
    table = {_map_key(key): value for key, value in dict(ctx.params["map"]).items()}

    def fn(value: Any) -> Any:
        if type(value) is dict or type(value) is list:
            return None
        return table.get(_map_key(value))

    return fn


def _map_key(value: Any) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    text = to_text(value)
    return text if type(text) is str else repr(value)


@register("url_param", "The value of one query parameter of a URL (e.g. q of a search page).",
          params={"param": Param("string", "the query parameter name", required=True)})
def _url_param(ctx: BuildContext) -> Fn:
    name = str(ctx.params["param"])
    marker = name + "="

    def fn(value: Any) -> Any:
        if type(value) is not str or marker not in value:
            return None
        try:
            values = parse_qs(urlsplit(value).query).get(name)
        except ValueError:
            return None
        return values[0] if values else None

    return fn
