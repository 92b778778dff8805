"""Helpers for the documentation tests: code blocks out of Markdown, commands through the real CLI."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pinsignal.cli import COMMANDS, build_parser
from pinsignal.config import Config
from pinsignal.errors import ConfigError
from support import ROOT

# the documents the demo/docs work owns (others test their own: docs/pipelines.md, docs/proxy.md...)
OWN_DOCS = [ROOT / "README.md", ROOT / "docs" / "configuration.md", ROOT / "examples" / "proxy" / "README.md",
            ROOT / "deploy" / "README.md"]
# variables that are not pinsignal's own but that recipes and docs may set
FOREIGN_VARIABLES = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}

_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    return [Block(path, text.count("\n", 0, m.start()) + 2, m.group(1), m.group(2)) for m in _FENCE.finditer(text)]


def known_variables() -> set[str]:
    return set(Config.env_variables().values())


def check_command(argv: list[str], where: str) -> None:
    """``argv`` (the words after ``pinsignal``) is a command that the real CLI parser accepts."""
    assert argv, f"{where}: empty pinsignal command"
    assert argv[0] in COMMANDS, f"{where}: 'pinsignal {argv[0]}' is not a command ({sorted(COMMANDS)})"
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: 'pinsignal {shlex.join(argv)}' does not parse")


def check_variables(names: list[str], where: str) -> None:
    known = known_variables()
    for name in names:
        if name not in FOREIGN_VARIABLES:
            assert name in known, f"{where}: {name} is not a pinsignal variable (Config.env_variables())"


def check_environment(env: dict[str, object], where: str) -> None:
    """Names exist and the values are accepted by ``Config.from_env`` (placeholders skipped).

    A placeholder secret that a deploy file ships must be refused at start-up, so a deployment that
    forgot to replace it fails instead of signing cookies with a public key.
    """
    check_variables(list(env), where)
    values = {k: str(v) for k, v in env.items()
              if k not in FOREIGN_VARIABLES and "${" not in str(v) and "%" not in str(v)}
    secret = values.get("PINSIGNAL_SECRET")
    if secret is not None and "replace" in secret:
        with pytest.raises(ConfigError, match="placeholder"):
            Config.from_env({"PINSIGNAL_SECRET": secret})
        del values["PINSIGNAL_SECRET"]
    Config.from_env(values)


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run an ASGI app's lifespan around a block (httpx's ASGITransport does not), so the middleware
    opens and closes its Redis queue the way a server would."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(from_app.get(), 30)
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        stopped = await asyncio.wait_for(from_app.get(), 30)
        assert stopped["type"] == "lifespan.shutdown.complete", stopped
        await task
