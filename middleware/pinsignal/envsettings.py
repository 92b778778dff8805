"""Settings dataclasses from environment variables, each value parsed by its field's type.

    settings = from_env(SandboxSettings, prefixed(SandboxSettings, "PINSIGNAL_SANDBOX_"))
    config = from_env(Config, {"api_url": "PINTEREST_API_URL", ...}, overrides={"test_mode": True})

``Config``, the proxy's and the sandbox's settings all read the environment through here, so a flag
means the same thing everywhere and a malformed value fails with the same kind of sentence. An unset
or blank variable leaves the field's default; the dataclass's ``__post_init__`` then checks the
values as it does for keywords.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from pinsignal.errors import ConfigError

__all__ = ["env_bool", "env_list", "from_env", "prefixed", "to_env"]

T = TypeVar("T")
Parser = Callable[[str], Any]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_bool(raw: str) -> bool:
    """An environment flag: 1/true/yes/on or 0/false/no/off (any case); ``ValueError`` otherwise."""
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true or false")


def env_list(raw: str) -> tuple[str, ...]:
    """A comma-separated environment value, items stripped, empty items dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def env_paths(raw: str) -> tuple[Path, ...]:
    """Paths separated by commas or the platform's path separator."""
    return tuple(Path(part) for part in env_list(raw.replace(os.pathsep, ",")))


def prefixed(cls: type[Any], prefix: str) -> dict[str, str]:
    """Field name -> ``PREFIX`` + the name in capitals, for every field of the dataclass ``cls``."""
    return {item.name: prefix + item.name.upper() for item in fields(cls)}


def from_env(cls: type[T], variables: Mapping[str, str], environ: Mapping[str, str] | None = None, *,
             parsers: Mapping[str, Parser] | None = None, overrides: Mapping[str, Any] | None = None) -> T:
    """Build ``cls`` from the variables named in ``variables`` (field -> variable), then ``overrides``.

    Each value is parsed by the field's annotation (``str``, ``int``, ``float``, ``bool``, ``Path``,
    ``tuple[str, ...]``, ``tuple[Path, ...]``, a ``Literal`` and ``X | None`` of those) unless
    ``parsers`` names a parser for that field. A value that does not parse raises
    :class:`ConfigError` naming the variable and quoting the value.
    """
    env = os.environ if environ is None else environ
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, variable in variables.items():
        raw = env.get(variable)
        if raw is None or not raw.strip():
            continue
        parse, expected = (parsers[name], "well-formed") if parsers and name in parsers else _parser(hints[name])
        try:
            values[name] = parse(raw.strip())
        except ValueError:
            raise ConfigError(f"{variable} must be {expected}, got {raw!r}.") from None
    if overrides:
        values.update(overrides)
    return cls(**values)


def to_env(settings: Any, variables: Mapping[str, str]) -> dict[str, str]:
    """The inverse of :func:`from_env` for the fields in ``variables`` that are set (not ``None``)."""
    out: dict[str, str] = {}
    for name, variable in variables.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
            out[variable] = "true" if value else "false"
        elif isinstance(value, tuple):
            out[variable] = ",".join(str(item) for item in value)
        elif isinstance(value, float):
            out[variable] = repr(value)
        else:
            out[variable] = str(value)
    return out


def _parser(annotation: Any) -> tuple[Parser, str]:
    """The parser for a field's type, and the words for what it expects."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(inner) == 1:
            return _parser(inner[0])
    if origin is Literal:
        choices = get_args(annotation)
        kind = type(choices[0])
        return kind, "one of " + ", ".join(repr(choice) for choice in choices)
    if origin is tuple:
        item = get_args(annotation)[0]
        return (env_paths, "a list of paths") if item is Path else (env_list, "a comma-separated list")
    simple: dict[Any, tuple[Parser, str]] = {
        bool: (env_bool, "true or false"),
        int: (int, "a whole number"),
        float: (float, "a number"),
        Path: (Path, "a path"),
        str: (str, "text"),
    }
    if annotation in simple:
        return simple[annotation]
    raise TypeError(f"no environment parser for fields of type {annotation!r}")
