"""Reading the items of a pipeline's ``transform`` sections into :class:`Step` / :class:`Enrichment`.

Part of the loader: every problem is passed to ``error(line, message)``; an item with a problem
gives ``None``. Targets are checked against the v5 fields (:data:`TARGETS`), transforms against
the registry, and the hashing rules of the field table (``pinterest/fields.py``) are enforced here,
at load time: a hashed ``user_data`` field needs a hashing transform, and the others (``click_id``,
IP, user agent, partner id) are never hashed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import Any

from pinsignal.pinterest.fields import NEVER_HASHED
from pinsignal.pipeline.normalise import is_sha256
from pinsignal.pipeline.spec import TARGETS, Enrichment, Section, Step, TransformCall
from pinsignal.pipeline.transforms import REGISTRY
from pinsignal.pipeline.yamlsource import YMap

__all__ = ["StepReader", "plain", "suggest"]

ErrorSink = Callable[[int, str], None]
SizeCheck = Callable[[Any, int], bool]

_STEP_KEYS = ("source", "target", "transform", "default")
_STATIC_KEYS = ("target", "value")
_CLICK_ID_KEYS = ("type", "target", "param", "cookies", "source")
_IDENTITY_KEYS = ("type", "source", "target", "transform", "default")
_ENRICHMENTS = ("click_id", "identity")
_HASHING = ("normalised_sha256", "sha256")
_PATH = re.compile(r"[^.\s]+(\.[^.\s]+)*")
_COOKIE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PREFIX: dict[Section, str] = {"user_data": "user_data.", "custom_data": "custom_data."}


def plain(value: Any) -> Any:
    """YAML containers (which carry line numbers) as plain dicts and lists, for the engine."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""``."""
    guess = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {guess[0]!r}?" if guess else ""


class StepReader:
    def __init__(self, error: ErrorSink, small: SizeCheck) -> None:
        self.error = error
        self.small = small

    def step(self, section: Section, item: Any, line: int) -> Step | Enrichment | None:
        if not isinstance(item, YMap):
            self.error(line, f"each item of transform.{section} must be a mapping, got {kind_of(item)}")
            return None
        if section == "static":
            return self.static(item)
        if section == "enrichments":
            return self.enrichment(item)
        return self.mapped(section, item)

    # ---------------------------------------------------------------- kinds of item

    def static(self, item: YMap) -> Step | None:
        self.keys(item, _STATIC_KEYS, "a static item")
        target = self.target("static", item)
        if "value" not in item:
            self.error(item.line, "a static item needs a value")
            return None
        value = item["value"]
        if not self.small(value, item.line_of("value")) or target is None:
            return None
        if TARGETS[target] == "hashed" and not _all_digests(value):
            self.error(item.line_of("value"),
                       f"{target} holds SHA-256 digests; a static value there must already be one (64 hex)")
            return None
        return Step(section="static", target=target, value=plain(value), line=item.line)

    def mapped(self, section: Section, item: YMap) -> Step | None:
        calls = self.transforms(item)
        self.keys(item, _STEP_KEYS + _params(calls), f"a transform.{section} item")
        target = self.target(section, item)
        sources = self.sources(item, required=True)
        default, has_default = item.get("default"), "default" in item
        if has_default and not self.small(default, item.line_of("default")):
            return None
        if calls is None or target is None or sources is None or not self.hashing(target, calls, item):
            return None
        return Step(section=section, target=target, sources=sources, transforms=calls, default=plain(default),
                    has_default=has_default, line=item.line)

    def enrichment(self, item: YMap) -> Enrichment | None:
        kind = item.get("type")
        if kind not in _ENRICHMENTS:
            hint = suggest(str(kind), _ENRICHMENTS) or "; use click_id or identity"
            self.error(item.line_of("type"), f"unknown enrichment type {kind!r}{hint}")
            return None
        if kind == "click_id":
            self.keys(item, _CLICK_ID_KEYS, "a click_id enrichment")
            item.setdefault("target", "user_data.click_id")
            target = self.target("enrichments", item)
            param = item.get("param", "epik")
            if not isinstance(param, str) or not param:
                self.error(item.line_of("param"), f"param must be a query parameter name, got {param!r}")
                return None
            cookies = item.get("cookies", [])
            if not isinstance(cookies, list) or not all(isinstance(c, str) and _COOKIE.fullmatch(c) for c in cookies):
                self.error(item.line_of("cookies"), f"cookies must be a list of cookie names, got {cookies!r}")
                return None
            sources = self.sources(item, required=False) if "source" in item else ("context.page.url",)
            if target is None or sources is None:
                return None
            if target in TARGETS and TARGETS[target] == "hashed":
                self.error(item.line_of("target"), f"click_id goes to user_data.click_id, not {target!r}")
                return None
            return Enrichment(type="click_id", target=target, param=param, cookies=tuple(cookies),
                              sources=sources, line=item.line)
        calls = self.transforms(item, default=("normalised_sha256",))
        self.keys(item, _IDENTITY_KEYS + _params(calls), "an identity enrichment")
        item.setdefault("target", "user_data.external_id")
        target = self.target("enrichments", item)
        sources = self.sources(item, required=False) if "source" in item else ("user_id",)
        if calls is None or target is None or sources is None or not self.hashing(target, calls, item):
            return None
        return Enrichment(type="identity", target=target, sources=sources, transforms=calls,
                          default=plain(item.get("default")), has_default="default" in item, line=item.line)

    # ---------------------------------------------------------------- parts

    def keys(self, item: YMap, allowed: tuple[str, ...], where: str) -> None:
        for key in item:
            if key not in allowed:
                hint = suggest(str(key), allowed)
                if not hint and isinstance(key, str):
                    owners = sorted(name for name, info in REGISTRY.items() if key in info.params)
                    if owners:
                        hint = f"; {key!r} is a parameter of transform {' / '.join(owners)}"
                self.error(item.line_of(key), f"unknown key {key!r} in {where}{hint}")

    def target(self, section: Section, item: YMap) -> str | None:
        raw = item.get("target")
        if not isinstance(raw, str) or not _PATH.fullmatch(raw):
            self.error(item.line_of("target") if "target" in item else item.line,
                       f"missing or malformed target (a v5 field like 'user_data.em'), got {raw!r}")
            return None
        prefix = _PREFIX.get(section, "")
        target = raw if raw.startswith(prefix) else prefix + raw
        if target not in TARGETS:
            self.error(item.line_of("target"), f"unknown target {raw!r}: not a field of a Pinterest v5 event"
                                               f"{suggest(target, TARGETS) or suggest(raw, TARGETS)}")
            return None
        return target

    def sources(self, item: YMap, *, required: bool) -> tuple[str, ...] | None:
        raw = item.get("source")
        if raw is None:
            if required:
                self.error(item.line, "missing source (a dotted path in the incoming event, e.g. 'traits.email')")
            return None if required else ()
        listed = raw if isinstance(raw, list) else [raw]
        if not listed or not all(isinstance(path, str) and _PATH.fullmatch(path) for path in listed):
            self.error(item.line_of("source"), f"source must be a dotted path or a list of them, got {raw!r}")
            return None
        return tuple(listed)

    def transforms(self, item: YMap, default: tuple[str, ...] = ()) -> tuple[TransformCall, ...] | None:
        raw = item.get("transform", list(default))
        listed = raw if isinstance(raw, list) else [raw]
        calls: list[TransformCall] = []
        line = item.line_of("transform")
        for name in listed:
            if not isinstance(name, str) or name not in REGISTRY:
                self.error(line, f"unknown transform {name!r}{suggest(str(name), REGISTRY)}")
                return None
            info = REGISTRY[name]
            params: dict[str, Any] = {}
            for param_name, param in info.params.items():
                if param_name not in item:
                    if param.required:
                        self.error(line, f"transform {name} needs {param_name!r} ({param.summary})")
                        return None
                    continue
                value = item[param_name]
                if not _param_ok(param.kind, value) or not self.small(value, item.line_of(param_name)):
                    self.error(item.line_of(param_name),
                               f"{param_name!r} of transform {name} must be a {param.kind}, got {kind_of(value)}")
                    return None
                params[param_name] = plain(value)
            calls.append(TransformCall(name=name, params=params, line=line))
        return tuple(calls)

    def hashing(self, target: str, calls: tuple[TransformCall, ...], item: YMap) -> bool:
        names = [call.name for call in calls]
        hashed = any(name in _HASHING for name in names)
        line = item.line_of("transform") if "transform" in item else item.line
        if TARGETS[target] == "hashed" and not hashed:
            self.error(line, f"{target} holds SHA-256 digests; add transform: normalised_sha256")
            return False
        if target in NEVER_HASHED and hashed:
            self.error(line, f"{target} is never hashed; remove the hashing transform")
            return False
        for name in names:
            if REGISTRY[name].hashed_targets_only and TARGETS[target] != "hashed":
                self.error(line, f"transform {name} normalises a user_data match key (em, ph, fn, ...); "
                                 f"{target!r} is not one (use sha256 to hash as-is)")
                return False
        if hashed and names[-1] not in _HASHING:
            self.error(line, f"hashing must be the last transform for {target}, not {names[-1]!r}")
            return False
        return True


def _params(calls: tuple[TransformCall, ...] | None) -> tuple[str, ...]:
    """Keys the item may carry for its transforms (all parameters when a transform was unknown)."""
    infos = REGISTRY.values() if calls is None else [REGISTRY[call.name] for call in calls]
    return tuple(sorted({name for info in infos for name in info.params}))


def _param_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str | int) and not isinstance(value, bool) and str(value) != ""
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, dict)


def _all_digests(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(item, str) and is_sha256(item) for item in items)


def kind_of(value: Any) -> str:
    """How a YAML value reads in an error message: a mapping, a list, nothing, or its repr."""
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
