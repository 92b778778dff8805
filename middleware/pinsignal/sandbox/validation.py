"""How the sandbox judges one request body: Pinterest's answers for shape errors and per-event rules.

Shapes come from :mod:`pinsignal.pinterest.contract` (the same contract the pipelines check
before queueing); this module adds what only the stand-in needs: Pinterest's own wording where
it was observed (too-old ``event_time``, unknown ``event_name``, missing-key warnings), a
configurable age window, and the choice between failing and warning on unknown event names.
"""

from __future__ import annotations

from typing import Any

from pinsignal.pinterest import contract
from pinsignal.pinterest.schema import show
from pinsignal.sandbox.settings import SandboxSettings

__all__ = ["BatchVerdict", "EventVerdict", "judge_batch", "schema_problems", "top_level_error"]

MAX_EVENTS = 1000

# Pinterest's words (reference 4.1, 6, 8.1); the "…" parts of the observed texts are unknown
_UNKNOWN_NAME_WARNING = "This event has a non-standard name and is currently being labeled as an 'Unknown' event."
_EXTERNAL_ID_WARNING = "external_id is missing. We highly recommend this on all events."
_CLICK_ID_WARNING = "click_id is missing"
_TEST_LIMIT_ERROR = "Test requests process only the first {limit} events; this event was not processed."

# the contract reports these itself; the sandbox replaces them with Pinterest's wording and its settings
_OWN_RULES = ("event_time:", "event_name:")

EventVerdict = tuple[str, str, str]
"""(status, error_message, warning_message) for one event, status ``processed`` or ``failed``."""


class BatchVerdict:
    """The judgement of a well-formed request: one verdict per event, in request order."""

    __slots__ = ("failed", "processed", "verdicts")

    def __init__(self, verdicts: list[EventVerdict]) -> None:
        self.verdicts = verdicts
        self.processed = sum(1 for verdict in verdicts if verdict[0] == "processed")
        self.failed = len(verdicts) - self.processed


def top_level_error(body: Any) -> str | None:
    """Why a parsed body is not ``{"data": [1..1000 events]}``, or None (reference 3.1)."""
    if type(body) is not dict:
        return f'the body must be a JSON object like {{"data": [...]}}, got {show(body)}'
    extra = sorted(key for key in body if key != "data")
    if extra:
        return f"Additional properties are not allowed ({extra[0]!r} was unexpected)"
    if "data" not in body:
        return "'data' is a required property"
    data = body["data"]
    if type(data) is not list:
        return f"data: expected an array of events, got {show(data)}"
    if not data:
        return "data: expected at least 1 event, got an empty array"
    if len(data) > MAX_EVENTS:
        return f"data: expected at most {MAX_EVENTS} events, got {len(data)}"
    return None


def schema_problems(data: list[Any], limit: int = 10) -> tuple[list[str], int]:
    """Shape errors across all events (first ``limit`` messages) and how many events have any."""
    messages: list[str] = []
    bad_events = 0
    check = contract.schema_errors
    for index, event in enumerate(data):
        errors = check(event, path=f"data[{index}]")
        if errors:
            bad_events += 1
            messages.extend(errors[: max(0, limit - len(messages))])
    return messages, bad_events


def judge_batch(data: list[dict[str, Any]], settings: SandboxSettings, *, now: float, test: bool) -> BatchVerdict:
    """Per-event business rules and warnings for shape-valid events (reference 10.6, 10.7, 10.8)."""
    verdicts: list[EventVerdict] = []
    append = verdicts.append
    oldest = now - settings.max_age_days * 86400.0
    newest = now + contract.MAX_FUTURE_SKEW
    warn_unknown = settings.unknown_event_names == "warn"
    known_names = contract.STANDARD_EVENT_NAMES
    rule_errors = contract.rule_errors
    test_limit = settings.test_event_limit if test else len(data)
    for index, event in enumerate(data):
        errors = rule_errors(event, now=now)
        if errors:
            errors = [error for error in errors if not error.startswith(_OWN_RULES)]
        event_time = event["event_time"]
        if event_time < oldest:
            errors.insert(0, "Invalid event_timestamp parameter. Given timestamp is in the past. "
                             f"Current timestamp: {int(now)}, Given event_timestamp: {event_time}")
        elif event_time > newest:
            errors.insert(0, "Invalid event_timestamp parameter. Given timestamp is in the future. "
                             f"Current timestamp: {int(now)}, Given event_timestamp: {event_time}")
        name = event["event_name"]
        unknown = name not in known_names
        if unknown and not warn_unknown:
            errors.insert(0, f"Invalid event_name: {name}. Use a supported conversion event_name "
                             "(for example subscribe, checkout).")
        if index >= test_limit and not errors:
            errors.append(_TEST_LIMIT_ERROR.format(limit=test_limit))
        user_data = event["user_data"]
        warning = _WARNINGS[unknown and warn_unknown, not user_data.get("external_id"), not user_data.get("click_id")]
        if "opt_out_type" in user_data or "opt_out_type" in event.get("custom_data", ()):
            warning = _opt_out_type(event, user_data, errors, warning)
        if errors:
            append(("failed", "; ".join(errors), warning))
        else:
            append(("processed", "", warning))
    return BatchVerdict(verdicts)


def _opt_out_type(event: dict[str, Any], user_data: dict[str, Any], errors: list[str], warning: str) -> str:
    """Limited Data Processing (reference 9.2): ``custom_data.opt_out_type`` is where the v5 schema puts it,
    comma-separated, and ``LDP`` the one value Pinterest processes. ``user_data.opt_out_type`` (as some
    integrations write it) is not read by the schema: failed here, so the flag is never lost unseen."""
    if "opt_out_type" in user_data:
        errors.append(_LDP_IN_USER_DATA)
    value = event.get("custom_data", {}).get("opt_out_type")
    if value is None or (type(value) is str and not value.strip()):
        return warning
    flags = [flag.strip() for flag in value.split(",")] if type(value) is str else []
    unknown = [flag for flag in flags if flag != "LDP"]
    if not flags or unknown:
        extra = _LDP_UNKNOWN.format(values=", ".join(repr(flag) for flag in unknown) or repr(value))
        return f"{warning}; {extra}" if warning else extra
    return warning


_LDP_IN_USER_DATA = ("user_data.opt_out_type is not where Pinterest reads the Limited Data Processing flag; "
                     "send it as custom_data.opt_out_type")
_LDP_UNKNOWN = "opt_out_type {values} is not processed: the only accepted value is LDP"


def _warning(unknown_name: bool, no_external_id: bool, no_click_id: bool) -> str:
    parts = [_UNKNOWN_NAME_WARNING] if unknown_name else []
    if no_external_id:
        parts.append(_EXTERNAL_ID_WARNING)
    if no_click_id:
        parts.append(_CLICK_ID_WARNING)
    return "; ".join(parts)


# every combination precomputed: building the text per event costs more than validating some fields
_WARNINGS = {(a, b, c): _warning(a, b, c) for a in (False, True) for b in (False, True) for c in (False, True)}
