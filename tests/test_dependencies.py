"""DESIGN 9: no code path relies on a dependency's private modules or attributes, or on its release."""

from __future__ import annotations

import re

from support import ROOT

PACKAGE = ROOT / "middleware" / "pinsignal"
DEPENDENCIES = ("uvicorn", "starlette", "httpx", "httpcore", "redis", "arq", "aiohttp", "httptools", "orjson",
                "itsdangerous", "yaml", "fastjsonschema", "jsonschema", "anyio", "prometheus_client")
# uvicorn's protocol modules count as private: they are how uvicorn serves, not what it offers.
PRIVATE_IMPORT = re.compile(
    r"^\s*(?:from|import)\s+(?:uvicorn\.(?:protocols|server|config|lifespan|supervisors|loops)\b|"
    rf"(?:{'|'.join(DEPENDENCIES)})(?:\.\w+)*\._\w*)", re.MULTILINE)
VERSION_CHECK = re.compile(rf"\b(?:{'|'.join(DEPENDENCIES)})\.(?:__version__|VERSION)\b|importlib\.metadata")


def test_no_module_imports_a_private_module_of_a_dependency() -> None:
    found = [f"{path.relative_to(ROOT)}: {match.group(0).strip()}" for path in sorted(PACKAGE.rglob("*.py"))
             for match in PRIVATE_IMPORT.finditer(path.read_text())]
    assert not found, found


def test_no_code_path_is_gated_to_a_release_of_a_dependency() -> None:
    found = [f"{path.relative_to(ROOT)}: {match.group(0)}" for path in sorted(PACKAGE.rglob("*.py"))
             for match in VERSION_CHECK.finditer(path.read_text())]
    assert not found, found


def test_the_patterns_catch_what_they_are_for() -> None:
    assert PRIVATE_IMPORT.search("from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol")
    assert PRIVATE_IMPORT.search("import httpx._transports.default")
    assert PRIVATE_IMPORT.search("from starlette._utils import is_async_callable")
    assert not PRIVATE_IMPORT.search("from starlette.types import Scope")
    assert VERSION_CHECK.search("if uvicorn.__version__.startswith('0.54.'):")
    assert not VERSION_CHECK.search("from pinsignal import __version__")
