"""Reading pipeline YAML safely, keeping the line of every key and list item.

``read_yaml(path)`` returns the document with mappings as :class:`YMap` and lists as
:class:`YSeq`, which remember their own line and the line of each key or item, or raises
:class:`SourceError` with a ``line`` and a sentence. Binary files, non-UTF-8 text, oversized files,
duplicate keys and YAML syntax errors are all reported that way, never as a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_FILE_BYTES", "SourceError", "YMap", "YSeq", "parse_yaml", "read_yaml"]

MAX_FILE_BYTES = 1 << 20
"""Pipeline files larger than this (1 MiB) are refused."""

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SourceError(Exception):
    """A file that cannot be read as YAML; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class YMap(dict[Any, Any]):
    """A YAML mapping with its ``line`` and the line of each key (``key_lines``)."""

    line: int = 1
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class YSeq(list[Any]):
    """A YAML sequence with its ``line`` and the line of each item (``item_lines``)."""

    line: int = 1
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class _Loader(_Base):  # type: ignore[misc]
    pass


def _mapping(loader: Any, node: yaml.MappingNode) -> YMap:
    loader.flatten_mapping(node)
    result = YMap()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise SourceError(line, "a mapping key must be a plain value, not a list or mapping") from None
        if key in result:
            raise SourceError(line, f"duplicate key {key!r} (first at line {result.key_lines[key]})")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


def _sequence(loader: Any, node: yaml.SequenceNode) -> YSeq:
    result = YSeq(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


def _timestamp_as_text(loader: Any, node: yaml.ScalarNode) -> str:
    # Dates stay strings: a pipeline value must be JSON, and "2026-01-01" means the text.
    return str(loader.construct_scalar(node))


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def parse_yaml(text: str) -> Any:
    """The single YAML document in ``text`` (``None`` when empty); raises :class:`SourceError`."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except SourceError:
        raise
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        character = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise SourceError(line, f"invalid YAML: unacceptable character #x{ord(character):04x} ({exc.reason})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise SourceError(line, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise SourceError(1, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise SourceError(1, "the YAML is nested too deeply") from None


def read_yaml(path: Path) -> Any:
    """Read and parse one file; raises :class:`SourceError` for unreadable or non-YAML content."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SourceError(1, f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SourceError(1, f"the file is larger than {MAX_FILE_BYTES // 1024} KiB; is it really a pipeline?")
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise SourceError(line, "this is a binary file (it contains NUL bytes), not a YAML pipeline")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(
            line, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the file as UTF-8"
        ) from None
    return parse_yaml(text)
