"""Compiling the v5 contract for one pipeline's output into a generated ``check(event, now)``.

``validate_event`` walks any dict against the whole schema; a pipeline's output can hold only the
fields its steps write, so its check reads just those, with each field's test from
``pinterest/fields.py`` inlined. What a step guarantees by construction is not tested again:

* a hashed ``user_data`` field whose every writer ends with ``normalised_sha256`` or ``sha256``
  (and has no ``default``) holds a list of 64-lowercase-hex digests, whatever the input;
* a ``static`` value is tested once, here, unless its test depends on the clock.

``check`` says ``True`` only when ``validate_event`` would find nothing; ``False`` sends the event
to ``validate_event``, which says why. ``tests/pipeline/test_pipeline_checks.py`` runs both on
golden vectors and fuzzed input and asserts that they agree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pinsignal.pinterest.fields import NAMES, REQUIRED, USER_DATA_ALTERNATIVES, field_test
from pinsignal.pipeline.coerce import COERCERS
from pinsignal.pipeline.spec import TARGETS, Enrichment, Pipeline, Step

__all__ = ["Check", "HASHING", "generate_check"]

Check = Callable[[dict[str, Any], float], bool]
HASHING = ("normalised_sha256", "sha256")
"""Transforms whose output is always a list of SHA-256 digests (proved in test_pipeline_checks.py)."""
_HOLDERS = {"user_data": "ud", "custom_data": "cd"}
_CONTAINERS = (str, list, dict)


def _is_static(step: Step | Enrichment) -> bool:
    return isinstance(step, Step) and step.section == "static"


def _static_value(step: Step) -> Any:
    """What the generated build writes for a static step (``None``: it writes nothing)."""
    value = COERCERS[TARGETS[step.target]](copy.deepcopy(step.value))
    return None if value is None or (not value and type(value) in _CONTAINERS) else value


def _guarantee(step: Step | Enrichment) -> str | None:
    """Why this step's value always passes its field's test, or ``None`` when it must be tested."""
    test = field_test(step.target)
    if isinstance(step, Step) and _is_static(step):
        value = _static_value(step)
        if value is None:
            return "writes nothing"
        if not test.uses_now and test.compiled()(value, 0.0):
            return f"the constant {value!r}, tested when the pipeline was compiled"
        return None
    if (TARGETS[step.target] == "hashed" and step.transforms and step.transforms[-1].name in HASHING
            and not step.has_default):
        return f"digests from {step.transforms[-1].name}"
    return None


def generate_check(pipeline: Pipeline) -> Check:
    """The ``check(event, now) -> bool`` of ``pipeline``'s output (see the module docstring)."""
    writers: dict[str, list[Step | Enrichment]] = {}
    for step in pipeline.steps:
        writers.setdefault(step.target, []).append(step)
    namespace: dict[str, Any] = dict(NAMES)
    lines = ["def check(event, now):"]
    skipped: list[str] = []

    def test(indent: str, holder: str, target: str, required: bool) -> None:
        key = target.rpartition(".")[2]
        steps = writers[target]
        reasons = [_guarantee(step) for step in steps]
        always = any(_is_static(step) and reason is not None and reason != "writes nothing"
                     for step, reason in zip(steps, reasons, strict=True))
        if all(reasons):
            skipped.append(f"{target} ({'; '.join(sorted(set(filter(None, reasons))))})")
            if required and not always:
                lines.extend([f"{indent}if {key!r} not in {holder}:", f"{indent}    return False"])
            return
        field = field_test(target)
        namespace.update(field.names)
        # A pipeline never writes None, so None is an absent field (refused only when required).
        absent = "v is None or" if required else "v is not None and"
        lines.extend([f"{indent}v = {holder}.get({key!r})", f"{indent}if {absent} not ({field.expression}):",
                      f"{indent}    return False"])

    parents: dict[str, list[str]] = {}
    for target in writers:
        parent, _, _ = target.rpartition(".")
        if parent:
            parents.setdefault(parent, []).append(target)
        else:
            test("    ", "event", target, target in REQUIRED)
    for required in REQUIRED:
        if required not in writers and required not in parents:
            lines.extend([f"    # {required} is written by no step: no event of this pipeline is valid",
                          "    return False"])
    for index, (parent, targets) in enumerate(parents.items()):
        holder = _HOLDERS.get(parent, f"p{index}")
        lines.append(f"    {holder} = event.get({parent!r})")
        if parent == "user_data":
            # One complete set of keys (schema anyOf); only sets this pipeline can write can be there.
            keys = {target.rpartition(".")[2] for target in targets}
            sets = [names for names in USER_DATA_ALTERNATIVES if set(names) <= keys]
            either = " or ".join("(" + " and ".join(f"{name!r} in ud" for name in names) + ")" for names in sets)
            lines.extend([f"    if ud is None or not ({either or 'False'}):", "        return False"])
            indent = "    "
        else:
            if parent in REQUIRED:  # pragma: no cover - only user_data is a required object in v5
                lines.extend([f"    if {holder} is None:", "        return False"])
            lines.append(f"    if {holder} is not None:")
            indent = "        "
        before = len(lines)
        for target in targets:
            test(indent, holder, target, False)
        if len(lines) == before and indent != "    ":
            lines.append(f"{indent}pass")
    lines.append("    return True")
    if skipped:
        lines[1:1] = ["    # Valid by construction, not tested:"] + [f"    #   {item}" for item in skipped]
    text = "\n".join(lines) + "\n"
    exec(compile(text, f"<check {pipeline.name} ({pipeline.file})>", "exec"), namespace)
    check: Check = namespace["check"]
    check.__doc__ = text
    return check
