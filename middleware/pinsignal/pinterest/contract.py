"""The v5 events contract. OWNER: pipelines work (issue 2). STUB.

    errors = validate_event(event, now=time.time())   # [] when valid, else one reason per problem

Compiled once from reference/openapi.yaml's ConversionEvents schema plus the documented rules
(five required fields, minimum match keys, string money values, integer counts, event_time in
seconds within the last 7 days and not in the future, a known event_name). Used by pipelines
(``validate: true``), the worker (expiry) and the sandbox.
"""

from __future__ import annotations

from typing import Any


def validate_event(event: dict[str, Any], *, now: float | None = None) -> list[str]:
    raise NotImplementedError
