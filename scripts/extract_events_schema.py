#!/usr/bin/env python3
"""Regenerate ``middleware/pinsignal/pinterest/events_schema.json`` from Pinterest's OpenAPI file.

    .venv/bin/python scripts/extract_events_schema.py [path/to/openapi.yaml]

It copies the ``ConversionEvents`` request schema and every schema it references, dropping
``description``/``example``/``title`` text (the validator needs only the constraints), so the
package never has to parse the 1.5 MB OpenAPI file at run time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = "ConversionEvents"
HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "reference" / "openapi.yaml"
TARGET = HERE.parent / "middleware" / "pinsignal" / "pinterest" / "events_schema.json"
DROPPED = {"description", "example", "title"}


def strip(node: Any) -> Any:
    """The schema without its prose."""
    if isinstance(node, dict):
        return {key: strip(value) for key, value in node.items() if key not in DROPPED}
    if isinstance(node, list):
        return [strip(item) for item in node]
    return node


def referenced(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            referenced(value, found)
    elif isinstance(node, list):
        for item in node:
            referenced(item, found)


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(source.read_text(encoding="utf-8"), Loader=loader)
    schemas = spec["components"]["schemas"]
    wanted, todo = {ROOT}, [ROOT]
    while todo:
        found: set[str] = set()
        referenced(schemas[todo.pop()], found)
        for name in sorted(found - wanted):
            wanted.add(name)
            todo.append(name)
    document = {
        "source": f"Pinterest OpenAPI {spec['info']['version']} ({source.name}), components.schemas",
        "root": ROOT,
        "schemas": {name: strip(schemas[name]) for name in sorted(wanted)},
    }
    TARGET.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {TARGET} ({', '.join(sorted(wanted))})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
