"""Conversions to the v5 types: money strings, integers, booleans, arrays of strings, contents.

Every step's result is coerced to the kind of its target (:data:`pinsignal.pipeline.spec.TARGETS`),
so ``{source: properties.revenue, target: value}`` sends ``"72.39"`` although the shop sent the
number ``72.39``. A value that cannot be coerced is left as it is, so validation reports it with
its path instead of it vanishing silently. ``None``, ``""`` and ``[]`` mean "no value".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from pinsignal.pinterest.fields import ITEM_KINDS
from pinsignal.pipeline.spec import TargetKind

__all__ = ["COERCERS", "CONTENT_COERCERS", "KEEPS", "money_string", "to_bool", "to_float", "to_int", "to_text"]

_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")
_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off"})


def money_string(value: Any) -> Any:
    """``72.39`` -> ``"72.39"``, ``10`` -> ``"10"``, ``" 5.50 "`` -> ``"5.50"``, ``1e-7`` -> ``"0.0000001"``."""
    kind = type(value)
    if kind is str:
        text = value.strip()
        if not text:
            return None
        if _NUMBER.fullmatch(text) and ("e" in text or "E" in text or text.startswith("+")):
            return _plain(Decimal(text))
        return text
    if kind is int:
        return str(value)
    if kind is float:
        known = _MONEY_TEXTS.get(value)
        if known is not None:
            return known
        if not math.isfinite(value):
            return value
        text = repr(value)
        if "e" in text:
            text = _plain(Decimal(text))
        elif text.endswith(".0"):
            text = text[:-2]
        if value:  # 0.0 and -0.0 are one key but two texts: neither is remembered
            if len(_MONEY_TEXTS) >= 4096:
                _MONEY_TEXTS.clear()
            _MONEY_TEXTS[value] = text
        return text
    return value


# A shop's prices recur (its catalogue), and repr() of a float is most of this function's cost:
# the texts made recently are remembered by value.
_MONEY_TEXTS: dict[float, str] = {}


def _plain(number: Decimal) -> str:
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def to_int(value: Any) -> Any:
    """Integers from integral numbers and numeric strings (``"3"``, ``3.0``); anything else unchanged."""
    kind = type(value)
    if kind is int:
        return value
    if kind is float and value.is_integer():
        return int(value)
    if kind is str and _NUMBER.fullmatch(value):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            return value
        if number == number.to_integral_value():
            return int(number)
    return value


def to_float(value: Any) -> Any:
    """Floats from numbers and numeric strings; anything else unchanged."""
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)
    if kind is str and _NUMBER.fullmatch(value):
        return float(value)
    return value


def to_bool(value: Any) -> Any:
    """Booleans from ``true``/``yes``/``1``/``on`` and their opposites, and from numbers."""
    kind = type(value)
    if kind is bool:
        return value
    if kind is int or kind is float:
        return bool(value)
    if kind is str:
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return value


def to_text(value: Any) -> Any:
    """Strings from strings, integers and floats (``1001`` -> ``"1001"``); anything else unchanged."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if kind is float:
        return money_string(value)
    return value


def _currency(value: Any) -> Any:
    return value.strip().upper() if type(value) is str else value


def _strings(value: Any) -> Any:
    if type(value) is list or type(value) is tuple:
        texts = [item if type(item) is str else to_text(item) for item in value if item is not None]
        return [text for text in texts if text != ""]
    if value is None or value == "":
        return value
    return [to_text(value)]


def _hashed(value: Any) -> Any:
    if type(value) is list or type(value) is tuple:
        return [item for item in value if item is not None and item != ""]
    if value is None or value == "":
        return value
    return [value]


def _contents(value: Any) -> Any:
    if type(value) is not list:
        return value
    items = []
    for item in value:
        if type(item) is dict:
            item = {key: CONTENT_COERCERS.get(key, to_text)(sub) for key, sub in item.items() if sub is not None}
            if item:
                items.append(item)
    return items


COERCERS: dict[TargetKind, Callable[[Any], Any]] = {
    "string": to_text,
    "integer": to_int,
    "boolean": to_bool,
    "money": money_string,
    "currency": _currency,
    "hashed": _hashed,
    "strings": _strings,
    "contents": _contents,
}
"""The coercion applied to every value written to a target of that kind."""

CONTENT_COERCERS: dict[str, Callable[[Any], Any]] = {key: COERCERS[kind] for key, kind in ITEM_KINDS.items()}
"""The coercion of each field of a ``contents`` item the field table names (the others: :func:`to_text`)."""

KEEPS: dict[Callable[[Any], Any], type] = {to_text: str, to_int: int, to_bool: bool}
"""Coercions that return a value of this exact type as it is: generated code calls them only for
other values (``tests/pipeline/test_pipeline_transforms_fast.py`` proves it)."""
