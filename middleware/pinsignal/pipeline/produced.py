"""What a request adds to an event (:class:`RequestContext`) and what a pipeline gives back (:class:`Produced`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Produced", "RequestContext"]


@dataclass(frozen=True)
class RequestContext:
    """What the HTTP request adds to an event: the request's ``epik`` query value and cookies."""

    epik: str | None = None
    cookies: Mapping[str, str] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """What the pipelines work out from the request alone, once per request (the click id fallback)."""


@dataclass
class Produced:
    """One Pinterest v5 event from one pipeline; ``errors`` is empty when it passed validation.

    ``refused`` (with an empty ``event``): the pipeline's trigger matched, but its ``trigger.source``
    does not take events from this event's source; the sentence says so.
    """

    pipeline: str
    event: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    refused: str | None = None

    @property
    def valid(self) -> bool:
        return not self.errors and self.refused is None
