"""Each pipeline's own yes/no of the v5 contract, compiled when it loads from what its build can write.

``validate_event`` judges any object against the whole contract. A pipeline's build writes only its
targets (never ``None``; ``user_data`` and ``custom_data`` as objects), so its output can break only
what the contract says about those fields, and part of that is settled when the pipeline loads.
The generated ``check(event, now)`` reads just those fields, and each test in it comes from the
sources ``validate_event`` uses:

* a field's shape from its node of the extracted schema (``schema.field_schema``): a node that says
  no more than a JSON type (with an integer's bounds, or an array of such items) is that type test
  written inline; any other node is fastjsonschema compiled from it (``schema.field_ok``);
* a field's rules from the field table's rule tree (``contract.rule_check``, the same closures);
* the required fields and the alternative sets of match keys from the schema's ``required`` and
  ``anyOf``; unknown fields cannot occur (every target is a field of the schema).

What the build guarantees by construction is not tested again: a ``static`` value is judged once,
here (unless a rule on it depends on the clock), and a hashed target every writer of which ends with
a transform of :data:`DIGESTS` (without a ``default``) holds only SHA-256 digests, whatever the input.

``check`` says True only when ``validate_event`` finds nothing; False sends the event to
``validate_event``, which says why (it may also find it valid: the check may be stricter, never
laxer). ``tests/pipeline/test_pipeline_checks.py`` runs both on generated input for every pipeline
shipped, in the examples and in the tests, and proves what :data:`DIGESTS` promises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pinsignal.pinterest.contract import RULES_ON_THE_CLOCK, rule_check
from pinsignal.pinterest.fields import RULES
from pinsignal.pinterest.schema import field_ok, field_schema
from pinsignal.pipeline.codegen import static_value
from pinsignal.pipeline.spec import Enrichment, Pipeline, Step

__all__ = ["DIGESTS", "Check", "generate_check"]

Check = Callable[[dict[str, Any], float], bool]
DIGESTS = frozenset({"normalised_sha256"})
"""Transforms whose every result is a list of SHA-256 hex digests, or None (tested on generated input)."""
_JSON_TYPES = {"string": "str", "boolean": "bool", "integer": "int"}
_OBJECT_KEYWORDS = frozenset({"type", "required", "properties", "additionalProperties", "anyOf", "$schema",
                              "components"})
_STRINGS = {"type": "array", "items": {"type": "string"}}


class _Unsupported(Exception):
    """The pipeline's output has a form this module does not judge: it gets no check of its own."""


def generate_check(pipeline: Pipeline) -> Check | None:
    """The ``check(event, now) -> bool`` of ``pipeline``'s output (see the module docstring), or None
    when it writes something outside what the check can judge (then every event is validated whole)."""
    try:
        return _Source(pipeline).compile()
    except _Unsupported:
        return None


class _Source:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.namespace: dict[str, Any] = {}
        self.lines = ["def check(event, now):"]
        self.settled: list[str] = []
        self.writers: dict[str, list[Step | Enrichment]] = {}
        for step in pipeline.steps:
            self.writers.setdefault(step.target, []).append(step)

    def name(self, prefix: str, value: Any) -> str:
        key = f"{prefix}{len(self.namespace)}"
        self.namespace[key] = value
        return key

    def compile(self) -> Check:
        event = field_schema("")
        assert event is not None
        parents: dict[str, list[str]] = {}
        for target in self.writers:
            parent, _, _ = target.rpartition(".")
            parents.setdefault(parent, []).append(target)
        if any("." in parent for parent in parents):
            raise _Unsupported
        self.object("event", "", event, parents.get("", []), parents)
        self.lines.append("    return True")
        if self.settled:
            self.lines[1:1] = ["    # Settled when the pipeline loaded, not tested again:"] + [
                f"    #   {item}" for item in self.settled]
        text = "\n".join(self.lines) + "\n"
        pipeline = self.pipeline
        exec(compile(text, f"<check {pipeline.name} ({pipeline.file})>", "exec"), self.namespace)  # fixed templates
        check: Check = self.namespace["check"]
        check.__doc__ = text
        return check

    def object(self, holder: str, path: str, node: dict[str, Any], targets: list[str],
               parents: dict[str, list[str]]) -> None:
        """The tests of one object the build writes (the event, ``user_data``...), held in ``holder``."""
        if not node.keys() <= _OBJECT_KEYWORDS or node.get("additionalProperties", False) is not False:
            raise _Unsupported
        always = {target.rpartition(".")[2] for target in targets if self.always_written(target)}
        keys = {target.rpartition(".")[2] for target in targets} | (set(parents) - {""} if not path else set())
        for required in node.get("required", ()):
            if required not in keys:
                self.lines.append(f"    return False  # {required} is written by no step: never valid")
                return
        branches = node.get("anyOf")
        if branches is not None:
            if any(branch.keys() != {"required"} for branch in branches):
                raise _Unsupported
            sets = [names for names in (branch["required"] for branch in branches) if set(names) <= keys]
            if not any(set(names) <= always for names in sets):
                either = " or ".join("(" + " and ".join(f"{name!r} in {holder}" for name in names) + ")"
                                     for names in sets)
                self.lines.append(f"    if not ({either or 'False'}):")
                self.lines.append("        return False")
        required = set(node.get("required", ()))
        for target in targets:
            self.field(holder, target, target.rpartition(".")[2] in required)
        if path:
            return
        for index, (parent, children) in enumerate(parents.items()):
            if not parent:
                continue
            sub = field_schema(parent)
            if sub is None or sub.get("type") != "object":
                raise _Unsupported
            name = f"p{index}"
            self.lines.append(f"    {name} = event.get({parent!r})")
            if parent in required:
                self.lines += [f"    if {name} is None:", "        return False"]
                self.object(name, parent, sub, children, parents)
            else:
                # The build writes an object only with something in it; an absent one has nothing to test.
                start = len(self.lines)
                self.object(name, parent, sub, children, parents)
                body = ["    " + line for line in self.lines[start:]] or ["        pass"]
                self.lines[start:] = [f"    if {name} is not None:", *body]

    def always_written(self, target: str) -> bool:
        steps = self.writers[target]
        return any(self.settled_static(step) is not None for step in steps) and all(
            self.settled_static(step) is not False for step in steps)

    def settled_static(self, step: Step | Enrichment) -> bool | None:
        """For a static step: True when its value passes its field for good, None when it writes
        nothing; False for any other step (or a value to test every time)."""
        if not isinstance(step, Step) or step.section != "static":
            return False
        value = static_value(step)
        if value is None:
            return None
        check = rule_check(step.target)
        return (not _on_the_clock(step.target) and field_ok(step.target)(value)
                and (check is None or check(value, 0.0) is None))

    def field(self, holder: str, target: str, required: bool) -> None:
        key = target.rpartition(".")[2]
        node = field_schema(target)
        if node is None:
            raise _Unsupported
        steps = self.writers[target]
        statics = [self.settled_static(step) for step in steps]
        if all(verdict is not False for verdict in statics):
            self.settled.append(f"{target} (a constant, judged at load)")
            if required and not self.always_written(target):  # every static step of it writes nothing
                self.lines += [f"    if {key!r} not in {holder}:", "        return False"]
            return
        check = rule_check(target)
        if node == _STRINGS and (check is None or RULES.get(target) == "digests") and all(
                verdict is not False or _digests(step) for step, verdict in zip(steps, statics, strict=True)):
            self.settled.append(f"{target} (digests from {' and '.join(sorted(DIGESTS))})")
            if required:  # pragma: no cover - no hashed field is required by the schema itself
                self.lines += [f"    if {key!r} not in {holder}:", "        return False"]
            return
        test = self.shape(node, target, check)
        absent = "v is None or" if required else "v is not None and"
        self.lines += [f"    v = {holder}.get({key!r})", f"    if {absent} not ({test}):", "        return False"]

    def shape(self, node: dict[str, Any], path: str, check: Any) -> str:
        """An expression true only when ``v`` (never None) has the shape of ``node`` and passes the rules
        ``check`` (the rules at ``path``, of its items included)."""
        inline = _inline(node, "v")
        items = node.get("items")
        if node.keys() == {"type", "items"} and node["type"] == "array" and isinstance(items, dict):
            body = self.object_items(items, path)
            if body is not None:  # the rules of each item's fields are in the loop
                return f"{self.function(path, body)}(v, now)"
            item = _inline(items, "x")
            if item is not None:
                loop = ["for x in v:", f"    if not ({item}):", "        return False"]
                inline = f"{self.function(path, loop)}(v)"
        if inline is None:
            inline = f"{self.name('S', field_ok(path))}(v)"
        return inline if check is None else f"{inline} and {self.name('R', check)}(v, now) is None"

    def function(self, path: str, loop: list[str]) -> str:
        """A generated function of an array ``v`` (and ``now``): False unless ``loop`` passes each item."""
        name = self.name("A", None)
        lines = [f"def {name}(v, now=None):", "    if type(v) is not list:", "        return False",
                 *("    " + line for line in loop), "    return True"]
        # In the check's namespace: the rules and key sets it names are there.
        exec(compile("\n".join(lines) + "\n", f"<check {path}>", "exec"), self.namespace)  # fixed templates only
        self.namespace[name].__doc__ = "\n".join(lines)
        return name

    def object_items(self, node: dict[str, Any], path: str) -> list[str] | None:
        """The loop over an array of objects (``contents``): each item's fields by their inline type
        test and rules; None when a field's node is more than a type."""
        if not node.keys() <= {"type", "properties", "additionalProperties", "required"} or node["type"] != "object":
            return None
        unknown = node.get("additionalProperties", True)
        if unknown not in (True, False):
            return None
        tests: dict[str, list[str]] = {}
        for key, sub in node.get("properties", {}).items():
            test = _inline(sub, "y")
            if test is None:
                return None
            check = rule_check(f"{path}[].{key}")
            if check is not None:
                test += f" and {self.name('R', check)}(y, now) is None"
            tests.setdefault(test, []).append(key)
        loop = ["for x in v:", "    if type(x) is not dict:", "        return False"]
        for name in node.get("required", ()):
            loop += [f"    if {name!r} not in x:", "        return False"]
        loop.append("    for k, y in x.items():")
        for index, (test, keys) in enumerate(tests.items()):
            which = f"k == {keys[0]!r}" if len(keys) == 1 else f"k in {self.name('K', frozenset(keys))}"
            loop += [f"        {'if' if index == 0 else 'elif'} {which}:", f"            if not ({test}):",
                     "                return False"]
        if unknown is False:
            loop += ["        else:" if tests else "        if True:", "            return False"]
        return loop


def _inline(node: dict[str, Any], var: str) -> str | None:
    """``node`` as a type test of ``var`` when it says no more than one JSON type (``null`` aside: the
    build writes no None) and, for an integer, its bounds."""
    kind = node.get("type")
    if isinstance(kind, list) and len(kind) == 2 and "null" in kind:
        kind = next(name for name in kind if name != "null")
    keywords = {"type", "minimum", "maximum"} if kind == "integer" else {"type"}
    if kind not in _JSON_TYPES or not node.keys() <= keywords:
        return None
    if any(type(node.get(bound, 0)) is not int for bound in ("minimum", "maximum")):
        return None
    test = f"type({var}) is {_JSON_TYPES[kind]}"
    if "minimum" in node:
        test += f" and {var} >= {node['minimum']!r}"
    if "maximum" in node:
        test += f" and {var} <= {node['maximum']!r}"
    return test


def _on_the_clock(path: str) -> bool:
    return any(rule in RULES_ON_THE_CLOCK for field, rule in RULES.items()
               if field == path or field.startswith((f"{path}.", f"{path}[]")))


def _digests(step: Step | Enrichment) -> bool:
    return bool(step.transforms) and step.transforms[-1].name in DIGESTS and not step.has_default
