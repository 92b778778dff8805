"""``pinsignal`` itself: the parser knows every command and loads none of the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pinsignal import __version__
from pinsignal.cli import COMMANDS, main
from support import pinsignal_cmd

HEAVY = ("starlette", "httpx", "redis", "arq", "uvicorn", "yaml")


def loaded_after(code: str) -> list[str]:
    """The heavy top-level packages a fresh interpreter has imported once ``code`` has run."""
    script = (f"import json, sys\n{code}\n"
              f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_importing_the_cli_loads_no_heavy_library() -> None:
    assert loaded_after("import pinsignal.cli") == []


def test_building_every_command_s_parser_loads_no_heavy_library() -> None:
    assert loaded_after("import pinsignal.cli\npinsignal.cli.build_parser()") == []


def test_the_check_can_fail() -> None:
    assert loaded_after("import pinsignal.cli\nimport yaml") == ["yaml"]


def test_help_lists_every_command() -> None:
    done = subprocess.run(pinsignal_cmd("--help"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    for name in COMMANDS:
        assert f"    {name} " in done.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: pinsignal {command}" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"pinsignal {__version__}\n"
