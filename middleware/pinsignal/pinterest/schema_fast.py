"""The yes/no twin of ``schema.py``: a schema compiled into a predicate, without paths or messages.

Valid events are the common case; ``contract.py`` runs this predicate first and the message-building
check of ``schema.py`` only when it says no. Plain typed properties and arrays of plain items are
checked inline by ``type()`` lookups, which is most of the v5 schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pinsignal.pinterest.schema import INT64_MAX, INT64_MIN

__all__ = ["Test", "compile_test"]

Test = Callable[[Any], bool]

_PYTHON_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "integer": frozenset({int}),
    "number": frozenset({int, float}),
    "boolean": frozenset({bool}),
    "array": frozenset({list, tuple}),
    "object": frozenset({dict}),
}



def compile_test(schemas: Mapping[str, Any], node: Mapping[str, Any]) -> Test:
    """Compile ``node`` into a predicate that only says valid or not (no paths, no messages).

    Valid events are the common case; callers run the :func:`compile_schema` check only when the
    predicate says no, so that messages are built only for events that have problems.
    """
    return _FastCompiler(schemas).compile(node)


class _FastCompiler:
    def __init__(self, schemas: Mapping[str, Any]) -> None:
        self.schemas = schemas
        self.refs: dict[str, Test] = {}

    def ref(self, ref: str) -> Test:
        name = ref.rsplit("/", 1)[-1]
        if name not in self.refs:
            compiled: list[Test] = []
            self.refs[name] = lambda value: compiled[0](value)
            compiled.append(self.compile(self.schemas[name]))
            self.refs[name] = compiled[0]
        return self.refs[name]

    def compile(self, node: Mapping[str, Any]) -> Test:
        if "$ref" in node:
            target = self.ref(node["$ref"])
            required = tuple(node.get("required", ()))
            if not required:
                return target
            return lambda value: target(value) and (type(value) is not dict or all(k in value for k in required))
        tests: list[Test] = []
        kind = node.get("type")
        if "properties" in node or "required" in node or node.get("additionalProperties") is False:
            tests.append(self.object(node))
        elif kind == "array":
            tests.append(self.array(node))
        elif kind == "string" and "maxLength" in node:
            limit = node["maxLength"]
            tests.append(lambda value: len(value) <= limit)
        elif kind in ("integer", "number"):
            low = node.get("minimum", INT64_MIN if kind == "integer" else None)
            high = node.get("maximum", INT64_MAX if kind == "integer" else None)
            # One chained comparison rather than two tests joined by all(): bounds are on every number.
            if low is not None and high is not None:
                tests.append(lambda value: low <= value <= high)
            elif low is not None:
                tests.append(lambda value: value >= low)
            elif high is not None:
                tests.append(lambda value: value <= high)
        if "enum" in node:
            allowed = frozenset(node["enum"])
            tests.append(lambda value: value in allowed)
        if "anyOf" in node:
            tests.append(self.any_of(node["anyOf"]))
        nullable = bool(node.get("nullable"))
        body: Test | None = None
        if len(tests) == 1:
            body = tests[0]
        elif len(tests) == 2:
            first, second = tests
            body = lambda value: first(value) and second(value)  # noqa: E731
        elif tests:
            body = lambda value: all(each(value) for each in tests)  # noqa: E731
        if kind is None:
            return body if body is not None else (lambda value: True)
        python_types = _PYTHON_TYPES[kind]
        if body is None:
            # Plain typed fields are most of the schema: one type() lookup, nothing else.
            if nullable:
                return lambda value: type(value) in python_types or value is None
            return lambda value: type(value) in python_types
        checked = body

        def test(value: Any) -> bool:
            if type(value) in python_types:
                return checked(value)
            return nullable and value is None

        return test

    def object(self, node: Mapping[str, Any]) -> Test:
        # Plain typed properties (most of them) are checked inline by type; only the others call a test.
        # Arrays of plain typed items (every hashed user_data field, content_ids) are inline too.
        # One lookup per key: (kind, what to check) with kind 0 plain type, 1 array of plain items, 2 a test.
        fields: dict[str, tuple[int, Any]] = {}
        for name, sub in node.get("properties", {}).items():
            items = sub.get("items", {})
            if sub.keys() <= {"type", "nullable"} and sub.get("type") in _PYTHON_TYPES:
                allowed = _PYTHON_TYPES[sub["type"]]
                fields[name] = (0, allowed | {type(None)} if sub.get("nullable") else allowed)
            elif (sub.keys() <= {"type", "items"} and sub.get("type") == "array"
                  and items.keys() <= {"type"} and items.get("type") in _PYTHON_TYPES):
                fields[name] = (1, _PYTHON_TYPES[items["type"]])
            else:
                fields[name] = (2, self.compile(sub))
        required = tuple(node.get("required", ()))
        closed = node.get("additionalProperties") is False

        def test(value: Any) -> bool:
            for name in required:
                if name not in value:
                    return False
            for key, item in value.items():
                field = fields.get(key)
                if field is None:
                    if closed:
                        return False
                    continue
                kind, check = field
                if kind == 0:
                    if type(item) not in check:
                        return False
                elif kind == 1:
                    if type(item) is not list and type(item) is not tuple:
                        return False
                    for element in item:
                        if type(element) not in check:
                            return False
                elif not check(item):
                    return False
            return True

        return test

    def array(self, node: Mapping[str, Any]) -> Test:
        items = self.compile(node["items"]) if "items" in node else None
        low, high = node.get("minItems", 0), node.get("maxItems")

        def test(value: Any) -> bool:
            if len(value) < low or (high is not None and len(value) > high):
                return False
            if items is not None:
                for item in value:
                    if not items(item):
                        return False
            return True

        return test

    def any_of(self, branches: list[Mapping[str, Any]]) -> Test:
        refs = {branch.get("$ref") for branch in branches}
        if len(refs) == 1 and None not in refs and all("required" in branch for branch in branches):
            # user_data: check the shape once, then look for one complete set of keys.
            shape = self.ref(str(refs.pop()))
            alternatives = [tuple(branch["required"]) for branch in branches]

            def alternative(value: Any) -> bool:
                if not shape(value):
                    return False
                for names in alternatives:
                    for name in names:
                        if name not in value:
                            break
                    else:
                        return True
                return False

            return alternative
        compiled = [self.compile(branch) for branch in branches]
        return lambda value: any(branch(value) for branch in compiled)
