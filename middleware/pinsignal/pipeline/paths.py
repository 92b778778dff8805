"""Dotted paths into the envelope, compiled once into getter closures.

``getter("context.page.url")`` returns a function ``envelope -> value | None``; digits index lists
(``properties.products.0.sku``). Paths of one to three keys get straight-line closures, because
reading fields is most of what a pipeline does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Getter", "first_of", "getter", "is_empty"]

Getter = Callable[[Any], Any]


_CONTAINERS = (str, list, dict)


def is_empty(value: Any) -> bool:
    """``None``, ``""``, ``[]`` and ``{}`` mean "no value" in a pipeline."""
    return value is None or (not value and type(value) in _CONTAINERS)


def getter(path: str) -> Getter:
    keys = tuple(path.split("."))
    if any(key.isdigit() for key in keys):
        return _general(keys)
    if len(keys) == 1:
        (a,) = keys
        return lambda root: root.get(a) if type(root) is dict else None
    if len(keys) == 2:
        a, b = keys

        def two(root: Any) -> Any:
            node = root.get(a) if type(root) is dict else None
            return node.get(b) if type(node) is dict else None

        return two
    if len(keys) == 3:
        a, b, c = keys

        def three(root: Any) -> Any:
            node = root.get(a) if type(root) is dict else None
            node = node.get(b) if type(node) is dict else None
            return node.get(c) if type(node) is dict else None

        return three
    return _general(keys)


def _general(keys: tuple[str, ...]) -> Getter:
    def walk(root: Any) -> Any:
        node = root
        for key in keys:
            if type(node) is dict:
                node = node.get(key)
            elif type(node) is list and key.isdigit():
                index = int(key)
                node = node[index] if index < len(node) else None
            else:
                return None
        return node

    return walk


def first_of(paths: Sequence[str]) -> Getter:
    """The value of the first path that has one (see :func:`is_empty`).

    Paths that share a first key read it once: ``[traits.address.city, traits.city]`` looks up
    ``traits`` one time, then ``address``, then ``city``.
    """
    if len(paths) == 1:
        return getter(paths[0])
    groups: list[tuple[str, list[str]]] = []
    for path in paths:
        head, _, rest = path.partition(".")
        if head.isdigit() or not rest or (groups and groups[-1][0] == head and not groups[-1][1]):
            groups.append((path, []))
        elif groups and groups[-1][0] == head:
            groups[-1][1].append(rest)
        else:
            groups.append((head, [rest]))
    parts: list[Getter] = []
    for head, rests in groups:
        if not rests:
            parts.append(getter(head))
        else:
            parts.append(_under(head, first_of(rests)))
    if len(parts) == 1:
        return parts[0]

    def first(root: Any) -> Any:
        for get in parts:
            value = get(root)
            if value is not None and (value or type(value) not in _CONTAINERS):
                return value
        return None

    return first


def _under(key: str, inner: Getter) -> Getter:
    def under(root: Any) -> Any:
        node = root.get(key) if type(root) is dict else None
        return inner(node) if type(node) is dict else None

    return under
