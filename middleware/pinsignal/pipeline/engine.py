"""The pipeline engine: canonical envelopes in, Pinterest v5 events out.

    engine = Engine(load_pipelines("pipelines/"), default_country="US")
    for produced in engine.process(envelope, RequestContext(epik=..., cookies={...})):
        produced.pipeline, produced.event, produced.errors

Each pipeline is compiled once into closures: a predicate for its trigger and one small function
per step (getter, transforms, default, coercion to the target's v5 type, writer). Processing an
event is then a walk over those closures, with no YAML, no path parsing and no lookups by name.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pinsignal.config import Config
from pinsignal.pinterest.contract import validate_event
from pinsignal.pipeline.coerce import COERCERS
from pinsignal.pipeline.conditions import Predicate, compile_conditions
from pinsignal.pipeline.paths import first_of, is_empty
from pinsignal.pipeline.produced import Produced, RequestContext
from pinsignal.pipeline.spec import TARGETS, Enrichment, Pipeline, Step
from pinsignal.pipeline.transforms import BuildContext, Fn, build

__all__ = ["Engine"]

Apply = Callable[[Any, dict[str, Any], RequestContext], None]
"""One compiled step: ``(envelope, event being built, request context) -> None``."""

# A click id worth sending: printable ASCII without ';', at most 1 KiB (DESIGN section 5).
_PLAUSIBLE_EPIK = re.compile(r"[!-:<-~]{1,1024}")


class Engine:
    """Runs every enabled pipeline whose trigger matches an envelope (see the module docstring)."""

    def __init__(self, pipelines: Iterable[Pipeline], *, default_country: str = "US") -> None:
        self.pipelines = tuple(pipeline for pipeline in pipelines if pipeline.enabled)
        self.default_country = default_country
        self._by_type: dict[str, list[_Compiled]] = {}
        for pipeline in self.pipelines:
            compiled = _Compiled(pipeline, default_country)
            for event_type in pipeline.events:
                self._by_type.setdefault(event_type, []).append(compiled)
        self.cookie_names: frozenset[str] = frozenset(
            name for pipeline in self.pipelines for name in pipeline.cookie_names
        )
        """Cookies the pipelines read (the collector passes only these in ``RequestContext``)."""

    @classmethod
    def from_config(cls, config: Config) -> Engine:
        """Load ``config.pipeline_paths`` (raises ``PipelineLoadError``) with the configured country."""
        from pinsignal.pipeline.loader import load_pipelines

        return cls(load_pipelines(config.pipeline_paths), default_country=config.default_country)

    def process(
        self, envelope: dict[str, Any], request: RequestContext | None = None, *, now: float | None = None
    ) -> list[Produced]:
        """One :class:`Produced` per matching pipeline, in load order.

        ``now`` is the time validation measures ``event_time`` against (default: the clock).
        """
        candidates = self._by_type.get(envelope.get("type"))  # type: ignore[arg-type]
        if not candidates:
            return []
        if request is None:
            request = RequestContext()
        produced: list[Produced] = []
        for compiled in candidates:
            if compiled.matches(envelope):
                event = compiled.build(envelope, request)
                errors = validate_event(event, now=time.time() if now is None else now) if compiled.validate else []
                produced.append(Produced(compiled.name, event, errors))
        return produced


class _Compiled:
    __slots__ = ("applies", "matches", "name", "validate")

    def __init__(self, pipeline: Pipeline, default_country: str) -> None:
        self.name = pipeline.name
        self.validate = pipeline.output.validate
        self.matches: Predicate = compile_conditions(pipeline.conditions)
        self.applies: list[Apply] = [_compile_step(step, default_country) for step in pipeline.steps]

    def build(self, envelope: dict[str, Any], request: RequestContext) -> dict[str, Any]:
        event: dict[str, Any] = {}
        for apply in self.applies:
            apply(envelope, event, request)
        return event


def _compile_step(step: Step | Enrichment, default_country: str) -> Apply:
    write = _writer(step.target)
    if isinstance(step, Enrichment) and step.type == "click_id":
        return _click_id(step, write)
    kind = TARGETS[step.target]
    coerce = COERCERS[kind]
    if isinstance(step, Step) and step.section == "static":
        constant = step.value
        mutable = type(constant) is list or type(constant) is dict

        def static(envelope: Any, event: dict[str, Any], request: RequestContext) -> None:
            value = coerce(copy.deepcopy(constant) if mutable else constant)
            if not is_empty(value):
                write(event, value)

        return static
    get = first_of(step.sources)
    fns: list[Fn] = [
        build(call.name, BuildContext(call.params, step.target, default_country)) for call in step.transforms
    ]
    has_default, default = step.has_default, step.default

    def mapped(envelope: Any, event: dict[str, Any], request: RequestContext) -> None:
        value = get(envelope)
        for fn in fns:
            if is_empty(value):
                break
            value = fn(value)
        if is_empty(value):
            if not has_default:
                return
            value = copy.deepcopy(default)
        value = coerce(value)
        if not is_empty(value):
            write(event, value)

    return mapped


def _click_id(step: Enrichment, write: Callable[[dict[str, Any], Any], None]) -> Apply:
    get_url = first_of(step.sources) if step.sources else None
    param = step.param or "epik"
    marker = param + "="
    use_request_epik = param == "epik"
    cookies = step.cookies

    def click_id(envelope: Any, event: dict[str, Any], request: RequestContext) -> None:
        value: Any = None
        url = get_url(envelope) if get_url is not None else None
        if type(url) is str and marker in url:
            value = _query_value(url, param)
        if not _plausible(value) and use_request_epik:
            value = request.epik
        if not _plausible(value):
            value = None
            for name in cookies:
                candidate = request.cookies.get(name)
                if _plausible(candidate):
                    value = candidate
                    break
        if value is not None:
            write(event, value)

    return click_id


def _plausible(value: Any) -> bool:
    return type(value) is str and _PLAUSIBLE_EPIK.fullmatch(value) is not None


def _query_value(url: str, name: str) -> str | None:
    try:
        values = parse_qs(urlsplit(url).query).get(name)
    except ValueError:
        return None
    return values[0] if values else None


def _writer(target: str) -> Callable[[dict[str, Any], Any], None]:
    """A closure writing a value at a dotted target; hashed arrays merge instead of replacing."""
    keys = target.split(".")
    merge = TARGETS[target] == "hashed"
    if len(keys) == 1:
        (key,) = keys

        def top(event: dict[str, Any], value: Any) -> None:
            event[key] = value

        return top
    parent_key, key = keys[0], keys[-1]

    def nested(event: dict[str, Any], value: Any) -> None:
        parent = event.get(parent_key)
        if parent is None:
            event[parent_key] = {key: value}
            return
        if merge and type(parent.get(key)) is list and type(value) is list:
            existing = parent[key]
            existing.extend(item for item in value if item not in existing)
            return
        parent[key] = value

    return nested
