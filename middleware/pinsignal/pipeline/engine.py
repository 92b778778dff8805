"""The pipeline engine: canonical envelopes in, Pinterest v5 events out.

    engine = Engine(load_pipelines("pipelines/"), default_country="US")
    for produced in engine.process(envelope, RequestContext(epik=..., cookies={...})):
        produced.pipeline, produced.event, produced.errors

Each pipeline is compiled once: a predicate for its trigger (closures, ``conditions.py``) and one
generated Python function for its steps (``codegen.py``: getters inlined, transforms and coercions
bound). Events are tried only against pipelines that name their event (or name none). Processing
an event does no YAML, no path parsing and no lookups by name. A pipeline with ``validate: true``
checks what it produces against the one v5 contract: with its own check (``checks.py``: only the
fields it writes, from the same schema nodes and rules) and, for an event that check does not pass,
``validate_event``, which says why.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pinsignal.config import Config
from pinsignal.pinterest.contract import validate_event
from pinsignal.pipeline.checks import Check, generate_check
from pinsignal.pipeline.codegen import Builder, generate
from pinsignal.pipeline.conditions import Predicate, compile_conditions
from pinsignal.pipeline.produced import Produced, RequestContext
from pinsignal.pipeline.spec import Condition, Enrichment, Pipeline

__all__ = ["Engine"]

logger = logging.getLogger("pinsignal.pipeline")

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
        # Most pipelines name the events they want (event equals/in ...): index them by that name so
        # an event is tried only against pipelines that could match, in load order.
        self._by_name: dict[tuple[str, str], list[_Compiled]] = {}
        self._unnamed: dict[str, list[_Compiled]] = {}
        for kind, compiled_list in self._by_type.items():
            names = {name for compiled in compiled_list for name in compiled.names or ()}
            for name in names:
                self._by_name[kind, name] = [
                    compiled for compiled in compiled_list if compiled.names is None or name in compiled.names
                ]
            self._unnamed[kind] = [compiled for compiled in compiled_list if compiled.names is None]
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
        kind, name = envelope.get("type"), envelope.get("event")
        if type(kind) is not str:
            return []
        candidates = self._by_name.get((kind, name)) if type(name) is str else None
        indexed = candidates is not None
        if candidates is None:
            candidates = self._unnamed.get(kind)
            if not candidates:
                return []
        if request is None:
            request = RequestContext()
        if now is None:
            now = time.time()
        produced: list[Produced] = []
        for compiled in candidates:
            try:
                # Found by its event name: only its other conditions are left to test.
                matches = compiled.others if indexed else compiled.matches
                if matches is not None and not matches(envelope):
                    continue
                if compiled.sources is not None and envelope.get("source", "browser") not in compiled.sources:
                    produced.append(Produced(compiled.name, {}, refused=compiled.refusal(envelope)))
                    continue
                event = compiled.build(envelope, request)
            except Exception as exc:  # a transform bug rejects this event, it does not crash the collector
                logger.warning("pipeline %s failed on message %r: %s", compiled.name, envelope.get("message_id"),
                               type(exc).__name__, exc_info=True)
                produced.append(Produced(compiled.name, {}, [f"internal error in pipeline {compiled.name}: "
                                                             f"{type(exc).__name__}; the event was not sent"]))
                continue
            if compiled.validate:
                # The pipeline's own check passes a valid event quickly; validate_event says why one is not.
                check = compiled.check
                errors = [] if check is not None and check(event, now) else validate_event(event, now=now)
            else:
                errors = []
            produced.append(Produced(compiled.name, event, errors))
        return produced


class _Compiled:
    __slots__ = ("build", "check", "matches", "name", "names", "others", "sources", "validate")

    def __init__(self, pipeline: Pipeline, default_country: str) -> None:
        self.name = pipeline.name
        self.names, named_by = _event_names(pipeline)
        self.matches: Predicate = compile_conditions(pipeline.conditions)
        others = [condition for condition in pipeline.conditions if condition is not named_by]
        self.others: Predicate | None = compile_conditions(others) if others else None
        self.build: Builder = generate(pipeline, default_country, _click_id)
        self.validate = pipeline.output.validate
        self.check: Check | None = generate_check(pipeline) if self.validate else None
        self.sources = pipeline.sources

    def refusal(self, envelope: dict[str, Any]) -> str:
        source = envelope.get("source", "browser")
        taken = " or ".join(sorted(self.sources or ()))
        how = ("send it from the site's server (track(), or a write key on /v1)" if taken == "server"
               else f"send it from a {taken} source")
        return (f"{self.name}: this pipeline takes {envelope.get('event') or envelope.get('type')!r} only from "
                f"a {taken} source, and this event came from a {source}; {how}")


def _event_names(pipeline: Pipeline) -> tuple[frozenset[str] | None, Condition | None]:
    """The event names a pipeline is limited to by an ``event`` equals/in condition, and that condition."""
    for condition in pipeline.conditions:
        if condition.field != "event":
            continue
        if condition.operator == "equals" and type(condition.value) is str:
            return frozenset({condition.value}), condition
        if condition.operator == "in" and all(type(value) is str for value in condition.value):
            return frozenset(condition.value), condition
    return None, None


def _click_id(step: Enrichment) -> Callable[[Any, RequestContext], str | None]:
    """The click id for an event: ``param`` in the page URL, then the request's epik, then cookies.

    The generated build reads the URL from the step's sources and passes it in.
    """
    param = step.param or "epik"
    marker = param + "="
    use_request_epik = param == "epik"
    cookies = step.cookies
    key = ("click_id", use_request_epik, cookies)

    def from_request(request: RequestContext) -> str | None:
        if use_request_epik and _plausible(request.epik):
            return request.epik
        for name in cookies:
            candidate = request.cookies.get(name)
            if _plausible(candidate):
                return candidate
        return None

    def click_id(url: Any, request: RequestContext) -> str | None:
        if type(url) is str and marker in url:
            value = _query_value(url, param)
            if value is not None and _PLAUSIBLE_EPIK.fullmatch(value):
                return value
        # The same for every event of a request: worked out once.
        memo = request.memo
        if key not in memo:
            memo[key] = from_request(request)
        found: str | None = memo[key]
        return found

    return click_id


def _plausible(value: Any) -> bool:
    return type(value) is str and _PLAUSIBLE_EPIK.fullmatch(value) is not None


def _query_value(url: str, name: str) -> str | None:
    try:
        values = parse_qs(urlsplit(url).query).get(name)
    except ValueError:
        return None
    return values[0] if values else None
