"""Trigger conditions compiled into predicates ``envelope -> bool``.

Operators: ``equals``, ``not_equals`` (a missing field is "not equal"), ``in``, ``not_in``,
``exists`` / ``not_exists`` (present and not null, ``""``, ``[]`` or ``{}``), ``contains``
(substring of a string, item of a list, key of an object), ``starts_with``, ``matches`` (a Python
regular expression searched anywhere in the text), and ``gt``/``gte``/``lt``/``lte`` (numbers and
numeric strings; anything else is false).
"""

from __future__ import annotations

import operator as op
import re
from collections.abc import Callable, Sequence
from typing import Any

from pinsignal.pipeline.coerce import to_float, to_text
from pinsignal.pipeline.paths import getter, is_empty
from pinsignal.pipeline.spec import Condition

__all__ = ["Predicate", "compile_conditions"]

Predicate = Callable[[Any], bool]
_ORDER: dict[str, Callable[[float, float], bool]] = {"gt": op.gt, "gte": op.ge, "lt": op.lt, "lte": op.le}
_SCALARS = (str, int, float, bool, type(None))


def compile_conditions(conditions: Sequence[Condition]) -> Predicate:
    """One predicate that is true when every condition holds (ANDed)."""
    predicates = [_compile(condition) for condition in conditions]
    if not predicates:
        return lambda envelope: True
    if len(predicates) == 1:
        return predicates[0]
    return lambda envelope: all(predicate(envelope) for predicate in predicates)


def _same(expected: Any) -> Predicate:
    # YAML `value: true` must not match the number 1 (True == 1 in Python).
    if type(expected) is bool or expected is None:
        return lambda value: value is expected
    if type(expected) is int or type(expected) is float:
        return lambda value: type(value) is not bool and value == expected
    return lambda value: value == expected


def _compile(condition: Condition) -> Predicate:
    get = getter(condition.field)
    name, expected = condition.operator, condition.value
    if name == "equals":
        same = _same(expected)
        return lambda envelope: same(get(envelope))
    if name == "not_equals":
        same = _same(expected)
        return lambda envelope: not same(get(envelope))
    if name in ("in", "not_in"):
        matchers = [_same(option) for option in expected]
        negate = name == "not_in"

        def member(envelope: Any) -> bool:
            value = get(envelope)
            found = type(value) in _SCALARS and any(match(value) for match in matchers)
            return found != negate

        return member
    if name == "exists":
        return lambda envelope: not is_empty(get(envelope))
    if name == "not_exists":
        return lambda envelope: is_empty(get(envelope))
    if name == "contains":
        return lambda envelope: _contains(get(envelope), expected)
    if name == "starts_with":
        prefix = str(expected)
        return lambda envelope: _text(get(envelope)).startswith(prefix)
    if name == "matches":
        pattern = re.compile(str(expected))
        return lambda envelope: pattern.search(_text(get(envelope))) is not None
    compare = _ORDER[name]
    bound = float(expected)

    def ordered(envelope: Any) -> bool:
        value = get(envelope)
        number = None if type(value) is bool else to_float(value)
        return type(number) is float and compare(number, bound)

    return ordered


def _text(value: Any) -> str:
    if type(value) is bool or value is None:
        return ""
    text = to_text(value)
    return text if type(text) is str else ""


def _contains(value: Any, expected: Any) -> bool:
    if type(value) is str:
        return type(expected) is str and expected in value
    if type(value) is list:
        return any(item == expected and type(item) is type(expected) for item in value)
    if type(value) is dict:
        return type(expected) is str and expected in value
    return False
