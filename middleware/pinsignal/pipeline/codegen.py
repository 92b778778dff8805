"""Compiling one pipeline's steps into a single Python function (its ``build``).

A step-by-step interpreter spends most of its time calling small closures and re-reading the same
``traits``/``properties``/``context`` objects; the generated function reads each top-level object
once, walks paths with inline ``.get`` chains, and calls only the transforms and coercions. The
source is built from fixed templates: every name, key and value from the YAML enters it through
``repr`` of a plain ``str`` or as an object in the function's namespace, never as code.

The behaviour is that of the documented step semantics (docs/pipelines.md): the first non-empty
source wins, transforms run in order until one drops the value, ``default`` replaces a missing or
dropped value, the result is coerced to the target's v5 type, empty results are not written,
hashed arrays written by several steps merge.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pinsignal.pipeline.coerce import COERCERS, KEEPS
from pinsignal.pipeline.paths import getter
from pinsignal.pipeline.produced import RequestContext
from pinsignal.pipeline.spec import TARGETS, Enrichment, Pipeline, Step
from pinsignal.pipeline.transforms import REGISTRY, BuildContext, build

__all__ = ["Builder", "generate", "static_value"]

Builder = Callable[[dict[str, Any], RequestContext], dict[str, Any]]
ClickId = Callable[[Any, RequestContext], Any]
"""A click id from the value of its enrichment's sources (the page URL) and the request."""
_CONTAINERS = (str, list, dict)
_NONEMPTY = "v is not None and (v or type(v) not in C)"


def static_value(step: Step) -> Any:
    """What the build writes for a ``static`` step: its value coerced to the target; None when nothing."""
    value = COERCERS[TARGETS[step.target]](copy.deepcopy(step.value))
    return None if value is None or (not value and type(value) in _CONTAINERS) else value


def _merge(parent: dict[str, Any], key: str, value: Any) -> None:
    existing = parent.get(key)
    if type(existing) is list and type(value) is list:
        existing.extend(item for item in value if item not in existing)
    else:
        parent[key] = value


class _Source:
    def __init__(self, pipeline: Pipeline, default_country: str, click_id: Callable[[Enrichment], ClickId]) -> None:
        self.default_country = default_country
        self.click_id = click_id
        self.namespace: dict[str, Any] = {
            "C": _CONTAINERS, "deepcopy": copy.deepcopy, "_merge": _merge, "EMPTY": {},
        }
        self.lines: list[str] = []
        self.roots: dict[str, str] = {}
        self.deep: set[str] = set()
        self.nodes: dict[tuple[str, str], str] = {}
        self.temps = 0
        self.writers: dict[str, int] = {}
        for step in pipeline.steps:
            self.writers[step.target] = self.writers.get(step.target, 0) + 1

    def name(self, prefix: str, value: Any) -> str:
        key = f"{prefix}{len(self.namespace)}"
        self.namespace[key] = value
        return key

    def root(self, key: str) -> str:
        if key not in self.roots:
            self.roots[key] = f"r{len(self.roots)}"
        return self.roots[key]

    def expression(self, path: str) -> str:
        keys = path.split(".")
        if any(key.isdigit() for key in keys):
            return f"{self.name('G', getter(path))}(env)"
        head = self.root(keys[0])
        if len(keys) == 1:
            return f"{head}v"
        self.deep.add(keys[0])
        if len(keys) == 2:
            return f"{head}.get({keys[1]!r})"
        # Objects two levels down (traits.address, context.page) are read once, like the roots.
        node = self.nodes.setdefault((keys[0], keys[1]), f"n{len(self.nodes)}")
        text = f"{node}.get({keys[2]!r})"
        for key in keys[3:]:
            self.temps += 1
            temp = f"t{self.temps}"
            text = f"({temp}.get({key!r}) if type({temp} := {text}) is dict else None)"
        return text

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def write(self, indent: int, target: str) -> None:
        parent, _, key = target.rpartition(".")
        merge = TARGETS[target] == "hashed" and self.writers[target] > 1
        holder = {"": "event", "user_data": "ud", "custom_data": "cd"}.get(parent)
        if holder is None:
            holder = f"event.setdefault({parent!r}, {{}})"
        if merge:
            self.emit(indent, f"_merge({holder}, {key!r}, v)")
        else:
            self.emit(indent, f"{holder}[{key!r}] = v")

    def static(self, step: Step) -> None:
        value = static_value(step)
        if value is None:
            return
        constant = self.name("S", value)
        mutable = type(value) is list or type(value) is dict
        self.emit(1, f"v = deepcopy({constant})" if mutable else f"v = {constant}")
        self.write(1, step.target)

    def read(self, sources: tuple[str, ...]) -> None:
        """``v`` = the first source that is not empty (the last one read when all are)."""
        # An enrichment given "source: null" has no source at all: nothing to read.
        self.emit(1, f"v = {self.expression(sources[0])}" if sources else "v = None")
        for depth, path in enumerate(sources[1:], start=1):
            self.emit(depth, "if v is None or (not v and type(v) in C):")
            self.emit(depth + 1, f"v = {self.expression(path)}")

    def mapped(self, step: Step | Enrichment) -> None:
        self.read(step.sources)
        typed = bool(step.transforms) and REGISTRY[step.transforms[-1].name].typed
        coercer = COERCERS[TARGETS[step.target]]
        coerce = None if typed else self.name("K", coercer)
        # A value already of the type its coercion keeps as it is (a string for a text field) is not
        # passed to it: most values are, and a call is most of what a coercion costs.
        kept = None if typed else KEEPS.get(coercer)
        fns = [self.name("F", build(call.name, BuildContext(call.params, step.target, self.default_country)))
               for call in step.transforms]
        if not step.has_default:
            # The common shape: each stage runs only while there is a value; a missing source costs one test.
            indent = 1
            for fn in fns:
                self.emit(indent, f"if {_NONEMPTY}:")
                self.emit(indent + 1, f"v = {fn}(v)")
                indent += 1
            self.emit(indent, f"if {_NONEMPTY}:")
            if kept is not None:
                # v is not empty here; the coerced value is tested as before.
                self.emit(indent + 1, f"if type(v) is {kept.__name__} or ((v := {coerce}(v)) is not None "
                                      "and (v or type(v) not in C)):")
                indent += 1
            elif coerce is not None:
                self.emit(indent + 1, f"v = {coerce}(v)")
                indent += 1
                self.emit(indent, f"if {_NONEMPTY}:")
            self.write(indent + 1, step.target)
            return
        for fn in fns:
            self.emit(1, f"if {_NONEMPTY}:")
            self.emit(2, f"v = {fn}(v)")
        self.emit(1, "if v is None or (not v and type(v) in C):")
        default = self.name("D", step.default)
        mutable = type(step.default) is list or type(step.default) is dict
        self.emit(2, f"v = deepcopy({default})" if mutable else f"v = {default}")
        if kept is not None:
            self.emit(1, f"if type(v) is not {kept.__name__}:")
            self.emit(2, f"v = {coerce}(v)")
        elif coerce is not None:
            self.emit(1, f"v = {coerce}(v)")
        self.emit(1, f"if {_NONEMPTY}:")
        self.write(2, step.target)

    def enrichment_click_id(self, step: Enrichment) -> None:
        # The page URL is read inline like any source (an empty one is no URL to the click id).
        self.read(step.sources)
        self.emit(1, f"v = {self.name('E', self.click_id(step))}(v, request)")
        self.emit(1, "if v is not None:")
        self.write(2, step.target)


def generate(pipeline: Pipeline, default_country: str, click_id: Callable[[Enrichment], ClickId]) -> Builder:
    """The ``build(envelope, request) -> event`` function of ``pipeline``."""
    source = _Source(pipeline, default_country, click_id)
    for step in pipeline.steps:
        if isinstance(step, Enrichment) and step.type == "click_id":
            source.enrichment_click_id(step)
        elif isinstance(step, Step) and step.section == "static":
            source.static(step)
        else:
            source.mapped(step)
    head = ["def build(env, request):", "    event = {}", "    ud = {}", "    cd = {}"]
    for key, name in source.roots.items():
        head.append(f"    {name}v = env.get({key!r})")
        if key in source.deep:
            head.append(f"    {name} = {name}v if type({name}v) is dict else EMPTY")
    for (key, sub), name in source.nodes.items():
        head.append(f"    {name} = {source.roots[key]}.get({sub!r})")
        head.append(f"    {name} = {name} if type({name}) is dict else EMPTY")
    tail = ["    if ud:", "        event['user_data'] = ud", "    if cd:", "        event['custom_data'] = cd",
            "    return event"]
    text = "\n".join(head + source.lines + tail) + "\n"
    code = compile(text, f"<pipeline {pipeline.name} ({pipeline.file})>", "exec")
    exec(code, source.namespace)  # generated from fixed templates only (see the module docstring)
    built: Builder = source.namespace["build"]
    built.__doc__ = text
    return built
