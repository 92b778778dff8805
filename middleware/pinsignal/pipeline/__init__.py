"""Pipelines as code (DESIGN section 4). OWNER: pipelines work (issue 2). STUB.

Contract used by the collector, ``track()``, the CLI and the proxy:

    pipelines = load_pipelines(config.pipeline_paths)   # raises PipelineLoadError(["file:line: msg", ...])
    engine = Engine(pipelines, default_country="US")     # or Engine.from_config(config)
    engine.cookie_names                                  # frozenset of cookie names pipelines read
    for produced in engine.process(envelope, RequestContext(epik=..., cookies={...})):
        produced.pipeline, produced.event, produced.errors, produced.valid

``Produced.event`` is a Pinterest v5 event dict (hashed, typed); ``errors`` is empty when it passed
``validate: true`` (every reason otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestContext:
    """What the HTTP request adds to an event: the request's ``epik`` query value and cookies."""

    epik: str | None = None
    cookies: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Produced:
    pipeline: str
    event: dict[str, Any]
    errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors
