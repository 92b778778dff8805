"""Pipeline YAML files -> :class:`~pinsignal.pipeline.spec.Pipeline` objects, or ``file:line`` errors.

    pipelines = load_pipelines(["pipelines/", "extra/checkout.yaml"])   # raises PipelineLoadError

Every problem is reported (not only the first) as ``file:line: message``, with a "did you mean"
for unknown keys, sections, operators, transforms and targets. Nothing in a file, however broken
(binary, not UTF-8, not YAML, the wrong shapes), makes the loader raise anything else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pinsignal.errors import PipelineLoadError
from pinsignal.pinterest.contract import STANDARD_EVENT_NAMES
from pinsignal.pipeline.spec import OPERATORS, SECTIONS, Condition, Enrichment, Output, Pipeline, Step
from pinsignal.pipeline.steps import StepReader, kind_of, plain, suggest
from pinsignal.pipeline.yamlsource import SourceError, YMap, YSeq, parse_yaml, read_yaml

__all__ = ["load_pipeline_file", "load_pipeline_text", "load_pipelines", "pipeline_files"]

logger = logging.getLogger("pinsignal.pipeline")

_TOP_KEYS = ("name", "integration", "description", "enabled", "trigger", "transform", "output")
_TRIGGER_KEYS = ("event", "source", "conditions")
_SOURCES = ("browser", "server")
_CONDITION_KEYS = ("field", "operator", "value")
_OUTPUT_KEYS = ("format", "endpoint", "auth", "validate")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_PATH = re.compile(r"[^.\s]+(\.[^.\s]+)*")
_EVENT_TYPES = ("track", "page", "identify")
_REQUIRED_TARGETS = {
    "event_name": "{target: event_name, value: checkout} under static",
    "action_source": "{target: action_source, value: web} under static",
    "event_time": "{source: timestamp, target: event_time, transform: unix_seconds} under mapping",
    "event_id": "{source: message_id, target: event_id} under dedup",
}
_NO_VALUE = ("exists", "not_exists")
_NUMERIC = ("gt", "gte", "lt", "lte")
_MAX_VALUE_NODES = 10_000


def pipeline_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the ``*.yaml``/``*.yml`` files of the folders named, in order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            files.append(path)
    return files


def load_pipelines(paths: Iterable[str | Path] | str | Path) -> list[Pipeline]:
    """Load every pipeline file in ``paths`` (files or folders); raise :class:`PipelineLoadError`.

    Pipeline names must be unique across all the files.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    errors: list[str] = []
    pipelines: list[Pipeline] = []
    seen: dict[str, Pipeline] = {}
    for path in pipeline_files(paths):
        if not path.exists():
            errors.append(f"{path}:1: no such file or folder")
            continue
        try:
            pipeline = load_pipeline_file(path)
        except PipelineLoadError as exc:
            errors.extend(exc.errors)
            continue
        first = seen.get(pipeline.name)
        if first is not None:
            errors.append(
                f"{path}:{pipeline.line}: duplicate pipeline name {pipeline.name!r} "
                f"(already defined at {first.file}:{first.line}); names must be unique"
            )
            continue
        seen[pipeline.name] = pipeline
        pipelines.append(pipeline)
    if errors:
        raise PipelineLoadError(errors)
    return pipelines


def load_pipeline_file(path: str | Path) -> Pipeline:
    """One pipeline file; raises :class:`PipelineLoadError` with every problem found."""
    path = Path(path)
    try:
        document = read_yaml(path)
    except SourceError as exc:
        raise PipelineLoadError([f"{path}:{exc.line}: {exc.message}"]) from None
    return _Checker(str(path)).pipeline(document)


def load_pipeline_text(text: str, file: str = "<string>") -> Pipeline:
    """One pipeline from YAML text (``file`` only names it in messages)."""
    try:
        document = parse_yaml(text)
    except SourceError as exc:
        raise PipelineLoadError([f"{file}:{exc.line}: {exc.message}"]) from None
    return _Checker(file).pipeline(document)


class _Checker:
    """Turns one parsed document into a Pipeline, collecting ``file:line: message`` errors."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[str] = []

    def error(self, line: int, message: str) -> None:
        self.errors.append(f"{self.file}:{line}: {message}")

    def pipeline(self, document: Any) -> Pipeline:
        try:
            pipeline = self._pipeline(document)
        except RecursionError:
            self.error(1, "the file is nested too deeply")
            pipeline = None
        except Exception as exc:  # a loader bug must still not become a traceback for the user
            logger.debug("loading %s failed unexpectedly", self.file, exc_info=True)
            self.error(1, f"could not load this file ({type(exc).__name__}: {exc}); please report this as a bug")
            pipeline = None
        if self.errors or pipeline is None:
            raise PipelineLoadError(self.errors or [f"{self.file}:1: not a pipeline"])
        return pipeline

    def _pipeline(self, document: Any) -> Pipeline | None:
        if document is None:
            self.error(1, "the file is empty; a pipeline needs name, trigger and transform")
            return None
        if not isinstance(document, YMap):
            self.error(getattr(document, "line", 1),
                       f"a pipeline file must be a mapping with name, trigger and transform, got {kind_of(document)}")
            return None
        self.keys(document, _TOP_KEYS, "pipeline")
        name = self.name(document)
        integration = document.get("integration", "pinterest-conversions-api")
        if integration != "pinterest-conversions-api":
            self.error(document.line_of("integration"),
                       f"integration must be 'pinterest-conversions-api', got {integration!r}")
        description = document.get("description")
        if description is not None and not isinstance(description, str):
            self.error(document.line_of("description"), "description must be text")
        enabled = document.get("enabled", True)
        if not isinstance(enabled, bool):
            self.error(document.line_of("enabled"), f"enabled must be true or false, got {enabled!r}")
        events, conditions = self.trigger(document)
        sources = self.sources(document)
        steps = self.transform(document)
        output = self.output(document)
        if self.errors:
            return None
        return Pipeline(
            name=name, events=events, conditions=conditions, steps=steps, output=output,
            description=description if isinstance(description, str) else None, enabled=enabled is not False,
            file=self.file, line=document.line_of("name"), sources=sources,
        )

    # ---------------------------------------------------------------- helpers

    def keys(self, mapping: YMap, allowed: tuple[str, ...], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.error(mapping.line_of(key), f"unknown key {key!r} in {where}{suggest(str(key), allowed)}")

    def name(self, document: YMap) -> str:
        name = document.get("name")
        if name is None:
            self.error(document.line, "missing 'name' (a unique pipeline name like 'checkout')")
            return ""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            self.error(document.line_of("name"),
                       f"name must be letters, digits, '_', '.' or '-' (at most 100), got {name!r}")
            return ""
        return name

    # ---------------------------------------------------------------- trigger

    def trigger(self, document: YMap) -> tuple[tuple[Any, ...], tuple[Condition, ...]]:
        trigger = document.get("trigger")
        if trigger is None:
            self.error(document.line, "missing 'trigger' (e.g. trigger: {event: track, conditions: [...]})")
            return (), ()
        if not isinstance(trigger, YMap):
            self.error(document.line_of("trigger"), f"trigger must be a mapping with 'event', got {kind_of(trigger)}")
            return (), ()
        self.keys(trigger, _TRIGGER_KEYS, "trigger")
        raw_events = trigger.get("event")
        listed = raw_events if isinstance(raw_events, list) else [raw_events]
        events = []
        for event in listed:
            if event in _EVENT_TYPES:
                events.append(event)
            else:
                hint = suggest(str(event), _EVENT_TYPES) or "; use track, page or identify"
                self.error(trigger.line_of("event"), f"trigger.event {event!r} is not an event type{hint}")
        conditions: list[Condition] = []
        raw_conditions = trigger.get("conditions")
        if raw_conditions is None:
            return tuple(events), ()
        if not isinstance(raw_conditions, YSeq):
            self.error(trigger.line_of("conditions"), f"conditions must be a list, got {kind_of(raw_conditions)}")
            return tuple(events), ()
        for index, item in enumerate(raw_conditions):
            condition = self.condition(item, raw_conditions.line_of(index))
            if condition is not None:
                conditions.append(condition)
        return tuple(events), tuple(conditions)

    def sources(self, document: YMap) -> frozenset[str] | None:
        """``trigger.source``: ``server``, ``browser`` or a list of them (DESIGN 8.1)."""
        trigger = document.get("trigger")
        if not isinstance(trigger, YMap) or "source" not in trigger:
            return None
        raw = trigger.get("source")
        listed = list(raw) if isinstance(raw, list) else [raw]
        found: set[str] = set()
        for source in listed:
            if source in _SOURCES:
                found.add(source)
            else:
                hint = suggest(str(source), _SOURCES) or "; use server, browser or a list of them"
                self.error(trigger.line_of("source"), f"trigger.source {source!r} is not a source{hint}")
        if not listed:
            self.error(trigger.line_of("source"), "trigger.source is an empty list; name server, browser or both")
        return frozenset(found)

    def condition(self, item: Any, line: int) -> Condition | None:
        if not isinstance(item, YMap):
            self.error(line, f"a condition must be a mapping with field, operator and value, got {kind_of(item)}")
            return None
        self.keys(item, _CONDITION_KEYS, "a condition")
        field, operator = item.get("field"), item.get("operator", "equals")
        ok = True
        if not isinstance(field, str) or not _PATH.fullmatch(field):
            self.error(item.line_of("field"), f"condition field must be a dotted path like 'event', got {field!r}")
            ok = False
        if operator not in OPERATORS:
            self.error(item.line_of("operator"), f"unknown operator {operator!r}{suggest(str(operator), OPERATORS)}")
            return None
        line = item.line_of("value")
        value = item.get("value")
        if operator in _NO_VALUE:
            if "value" in item:
                self.error(line, f"operator {operator} takes no value")
                ok = False
        elif "value" not in item:
            self.error(item.line, f"operator {operator} needs a value")
            ok = False
        elif not self.small(value, line):
            ok = False
        elif operator in ("in", "not_in") and not isinstance(value, list):
            self.error(line, f"operator {operator} needs a list value, got {kind_of(value)}")
            ok = False
        elif operator in _NUMERIC and (isinstance(value, bool) or not isinstance(value, int | float)):
            self.error(line, f"operator {operator} needs a number, got {value!r}")
            ok = False
        elif operator in ("matches", "starts_with") and not isinstance(value, str):
            self.error(line, f"operator {operator} needs a string, got {kind_of(value)}")
            ok = False
        elif operator == "matches":
            ok = self.regex(str(value), line)
        if not ok or not isinstance(field, str):
            return None
        return Condition(field=field, operator=operator, value=plain(value), line=item.line)

    def regex(self, pattern: str, line: int) -> bool:
        try:
            re.compile(pattern)
        except re.error as exc:
            self.error(line, f"invalid regular expression {pattern!r}: {exc}")
            return False
        return True

    def small(self, value: Any, line: int) -> bool:
        """Free-form values must be plain JSON of modest size (YAML aliases can multiply them)."""
        budget = [_MAX_VALUE_NODES]

        def walk(node: Any, depth: int) -> bool:
            budget[0] -= 1
            if budget[0] < 0 or depth > 20:
                return False
            if isinstance(node, dict):
                return all(isinstance(k, str | int) and walk(v, depth + 1) for k, v in node.items())
            if isinstance(node, list):
                return all(walk(item, depth + 1) for item in node)
            return node is None or isinstance(node, str | int | float | bool)

        if not walk(value, 0):
            self.error(line, "the value is too large, too deep, or not plain JSON data")
            return False
        return True

    # ---------------------------------------------------------------- transform and output

    def transform(self, document: YMap) -> tuple[Step | Enrichment, ...]:
        transform = document.get("transform")
        if transform is None:
            self.error(document.line, "missing 'transform' (the sections that build the Pinterest event)")
            return ()
        if not isinstance(transform, YMap):
            self.error(document.line_of("transform"),
                       f"transform must be a mapping of sections, got {kind_of(transform)}")
            return ()
        for key in transform:
            if key not in SECTIONS:
                self.error(transform.line_of(key), f"unknown section {key!r} in transform{suggest(str(key), SECTIONS)}")
        reader = StepReader(self.error, self.small)
        steps: list[Step | Enrichment] = []
        for section in SECTIONS:
            items = transform.get(section)
            if items is None:
                continue
            if not isinstance(items, YSeq):
                self.error(transform.line_of(section), f"transform.{section} must be a list, got {kind_of(items)}")
                continue
            for index, item in enumerate(items):
                step = reader.step(section, item, items.line_of(index))
                if step is not None:
                    steps.append(step)
        written = {step.target for step in steps}
        for target, example in _REQUIRED_TARGETS.items():
            if target not in written and not self.errors:
                self.error(document.line_of("transform"),
                           f"nothing writes {target}, which Pinterest requires; add {example}")
        for step in steps:
            if isinstance(step, Step) and step.target == "event_name" and step.section == "static":
                if not isinstance(step.value, str) or step.value not in STANDARD_EVENT_NAMES:
                    hint = suggest(str(step.value), sorted(STANDARD_EVENT_NAMES)) or "; see docs/pipelines.md"
                    self.error(step.line, f"event_name {step.value!r} is not a Pinterest event name{hint}")
        return tuple(steps)

    def output(self, document: YMap) -> Output:
        output = document.get("output")
        if output is None:
            return Output()
        if not isinstance(output, YMap):
            self.error(document.line_of("output"), f"output must be a mapping, got {kind_of(output)}")
            return Output()
        self.keys(output, _OUTPUT_KEYS, "output")
        fmt = output.get("format", "pinterest_conversions_api")
        if fmt != "pinterest_conversions_api":
            self.error(output.line_of("format"), f"output.format must be 'pinterest_conversions_api', got {fmt!r}")
        auth = output.get("auth", "access_token")
        if auth != "access_token":
            self.error(output.line_of("auth"), f"output.auth must be 'access_token', got {auth!r}")
        endpoint = output.get("endpoint")
        if endpoint is not None and not isinstance(endpoint, str):
            self.error(output.line_of("endpoint"), "output.endpoint must be a URL")
        validate = output.get("validate", True)
        if not isinstance(validate, bool):
            self.error(output.line_of("validate"), f"output.validate must be true or false, got {validate!r}")
        return Output(endpoint=endpoint if isinstance(endpoint, str) else None, validate=validate is not False)
