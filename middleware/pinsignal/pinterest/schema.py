"""A small JSON-schema (OpenAPI 3.0 subset) validator compiled into closures.

Only what Pinterest's ``ConversionEvents`` schema uses is supported: ``type``, ``nullable``,
``properties``, ``required``, ``additionalProperties: false``, ``items``, ``minItems``/``maxItems``,
``maxLength``, ``minimum``/``maximum``, ``enum``, ``format: int64``, ``$ref`` and ``anyOf``.
Compiling walks the schema once; checking an event then runs plain Python closures, which is
what makes validating every produced event affordable.

    check = compile_schema(schemas, schemas["ConversionEvents"])
    errors: list[str] = []
    check(body, "", errors)      # errors like "data[0].custom_data.value: expected a string, got 72.39"

``schema_fast.py`` compiles the same schema into a yes/no predicate that runs first.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["INT64_MAX", "INT64_MIN", "Check", "compile_schema", "join", "show"]

Check = Callable[[Any, str, list[str]], None]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}


def show(value: object, limit: int = 60) -> str:
    """A short, JSON-flavoured rendering of a bad value for an error message."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return f"an array of {len(value)}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_test(name: str) -> Callable[[Any], bool]:
    if name == "string":
        return lambda value: type(value) is str
    if name == "integer":
        return lambda value: type(value) is int
    if name == "number":
        return lambda value: type(value) is int or type(value) is float
    if name == "boolean":
        return lambda value: type(value) is bool
    if name == "array":
        return lambda value: type(value) is list or type(value) is tuple
    if name == "object":
        return lambda value: type(value) is dict
    raise ValueError(f"unsupported schema type {name!r}")


def compile_schema(schemas: Mapping[str, Any], node: Mapping[str, Any]) -> Check:
    """Compile ``node`` (resolving ``$ref`` against ``schemas``) into one checking closure."""
    return _Compiler(schemas).compile(node)


class _Compiler:
    def __init__(self, schemas: Mapping[str, Any]) -> None:
        self.schemas = schemas
        self.refs: dict[str, Check] = {}

    def ref(self, ref: str) -> Check:
        name = ref.rsplit("/", 1)[-1]
        if name not in self.refs:
            # Placeholder first: a recursive schema would otherwise recurse forever.
            compiled: list[Check] = []
            self.refs[name] = lambda value, path, errors: compiled[0](value, path, errors)
            compiled.append(self.compile(self.schemas[name]))
            self.refs[name] = compiled[0]
        return self.refs[name]

    def compile(self, node: Mapping[str, Any]) -> Check:
        if "$ref" in node:
            target = self.ref(node["$ref"])
            if "required" not in node:
                return target
            return _sequence([target, self.required(node["required"])])
        checks: list[Check] = []
        if node.get("type") == "object" or "properties" in node:
            checks.append(self.object(node))
        elif node.get("type") == "array":
            checks.append(self.array(node))
        elif node.get("type") == "string":
            checks.extend(self.string(node))
        elif node.get("type") in ("integer", "number"):
            checks.extend(self.number(node))
        if "enum" in node:
            checks.append(_enum(node["enum"]))
        if "anyOf" in node:
            checks.append(self.any_of(node["anyOf"]))
        body = _sequence(checks)
        type_name = node.get("type")
        if type_name is None:
            return body
        return _typed(type_name, bool(node.get("nullable")), body, bare=not checks)

    # ---------------------------------------------------------------- keywords

    def required(self, names: list[str]) -> Check:
        required = tuple(names)

        def check(value: Any, path: str, errors: list[str]) -> None:
            if type(value) is dict:
                for name in required:
                    if name not in value:
                        errors.append(f"{join(path, name)}: required field is missing")

        return check

    def object(self, node: Mapping[str, Any]) -> Check:
        properties = {name: self.compile(sub) for name, sub in node.get("properties", {}).items()}
        required = tuple(node.get("required", ()))
        closed = node.get("additionalProperties") is False
        allowed = sorted(properties)

        def check(value: Any, path: str, errors: list[str]) -> None:
            for name in required:
                if name not in value:
                    errors.append(f"{join(path, name)}: required field is missing")
            for key, item in value.items():
                sub = properties.get(key)
                if sub is not None:
                    sub(item, join(path, key), errors)
                elif closed:
                    errors.append(_unknown(path, key, allowed))

        return check

    def array(self, node: Mapping[str, Any]) -> Check:
        items = self.compile(node["items"]) if "items" in node else None
        low, high = node.get("minItems"), node.get("maxItems")

        def check(value: Any, path: str, errors: list[str]) -> None:
            if low is not None and len(value) < low:
                errors.append(f"{path}: expected at least {low} item(s), got {len(value)}")
            if high is not None and len(value) > high:
                errors.append(f"{path}: expected at most {high} items, got {len(value)}")
            if items is not None:
                for index, item in enumerate(value):
                    items(item, f"{path}[{index}]", errors)

        return check

    def string(self, node: Mapping[str, Any]) -> list[Check]:
        limit = node.get("maxLength")
        if limit is None:
            return []

        def check(value: Any, path: str, errors: list[str]) -> None:
            if len(value) > limit:
                errors.append(f"{path}: expected at most {limit} characters, got {len(value)}")

        return [check]

    def number(self, node: Mapping[str, Any]) -> list[Check]:
        low, high = node.get("minimum"), node.get("maximum")
        if node.get("type") == "integer":
            low = INT64_MIN if low is None else low
            high = INT64_MAX if high is None else high

        def check(value: Any, path: str, errors: list[str]) -> None:
            if low is not None and value < low:
                errors.append(f"{path}: expected a value of at least {low}, got {show(value)}")
            elif high is not None and value > high:
                errors.append(f"{path}: expected a value of at most {high}, got {show(value)}")

        return [check] if low is not None or high is not None else []

    def any_of(self, branches: list[Mapping[str, Any]]) -> Check:
        refs = {branch.get("$ref") for branch in branches}
        if len(refs) == 1 and None not in refs and all("required" in branch for branch in branches):
            # Pinterest's user_data: one shape, several alternative sets of required keys.
            shape = self.ref(str(refs.pop()))
            alternatives = [tuple(branch["required"]) for branch in branches]
            wording = ", or ".join(" with ".join(names) for names in alternatives)

            def alternative(value: Any, path: str, errors: list[str]) -> None:
                shape(value, path, errors)
                if type(value) is dict and not any(
                    all(name in value for name in names) for names in alternatives
                ):
                    errors.append(f"{path}: needs at least one match key: {wording}")

            return alternative

        compiled = [self.compile(branch) for branch in branches]

        def check(value: Any, path: str, errors: list[str]) -> None:
            first: list[str] = []
            for index, branch in enumerate(compiled):
                found: list[str] = []
                branch(value, path, found)
                if not found:
                    return
                if index == 0:
                    first = found
            errors.append(f"{path}: matches none of the {len(compiled)} allowed shapes")
            errors.extend(first)

        return check


def _sequence(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check(value: Any, path: str, errors: list[str]) -> None:
        for each in checks:
            each(value, path, errors)

    return check


def _typed(type_name: str, nullable: bool, body: Check, *, bare: bool) -> Check:
    test = _type_test(type_name)
    wanted = _TYPE_NAMES[type_name]

    def check(value: Any, path: str, errors: list[str]) -> None:
        if test(value):
            if not bare:
                body(value, path, errors)
        elif not (nullable and value is None):
            errors.append(f"{path or 'event'}: expected {wanted}, got {show(value)}")

    return check


def _enum(options: list[Any]) -> Check:
    allowed = frozenset(options)
    listing = ", ".join(str(option) for option in options)

    def check(value: Any, path: str, errors: list[str]) -> None:
        if value is not None and value not in allowed:
            errors.append(f"{path}: expected one of {listing}, got {show(value)}")

    return check


def _unknown(path: str, key: str, allowed: list[str]) -> str:
    guess = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else f"; allowed: {', '.join(allowed)}"
    return f"{join(path, str(key))}: unknown field{hint}"
