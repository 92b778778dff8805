"""Pipelines as code (DESIGN section 4): YAML files that turn incoming events into Pinterest events.

Used by the collector, ``track()``, the CLI and the proxy::

    pipelines = load_pipelines(config.pipeline_paths)   # raises PipelineLoadError(["file:line: msg", ...])
    engine = Engine(pipelines, default_country="US")     # or Engine.from_config(config)
    engine.cookie_names                                  # frozenset of cookie names pipelines read
    for produced in engine.process(envelope, RequestContext(epik=..., cookies={...})):
        produced.pipeline, produced.event, produced.errors, produced.valid

``Produced.event`` is a Pinterest v5 event dict (hashed, typed); ``errors`` is empty when it passed
``validate: true`` (every reason otherwise). The file format is documented in ``docs/pipelines.md``.

Modules: ``spec`` (typed objects), ``yamlsource`` + ``loader`` + ``steps`` (YAML to objects, with
``file:line`` errors), ``transforms`` (the registry), ``normalise`` (match keys), ``coerce`` (v5
types), ``paths`` and ``conditions`` (compiled getters and predicates), ``codegen`` (each
pipeline's steps as one generated function), ``engine``.
"""

from __future__ import annotations

from pinsignal.errors import PipelineLoadError
from pinsignal.pipeline.engine import Engine
from pinsignal.pipeline.loader import load_pipeline_file, load_pipeline_text, load_pipelines, pipeline_files
from pinsignal.pipeline.normalise import hash_match_key, normalise
from pinsignal.pipeline.produced import Produced, RequestContext
from pinsignal.pipeline.spec import Pipeline

__all__ = [
    "Engine",
    "Pipeline",
    "PipelineLoadError",
    "Produced",
    "RequestContext",
    "hash_match_key",
    "load_pipeline_file",
    "load_pipeline_text",
    "load_pipelines",
    "normalise",
    "pipeline_files",
]
