"""The README's first screen and quick start, and the configuration docs against ``Config``."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from docsupport import OWN_DOCS, code_blocks, known_variables

from pinsignal.envsettings import prefixed
from pinsignal.proxy.settings import ENVIRONMENT as PROXY_ENVIRONMENT
from pinsignal.sandbox.settings import SandboxSettings
from support import ROOT

README = ROOT / "README.md"
QUICK_START = ["./scripts/demo", "./scripts/test"]


def quick_start_commands() -> list[str]:
    first = code_blocks(README)
    block = next(b for b in first if b.lang == "sh")
    return [shlex.split(line, comments=True)[0] for line in block.code.splitlines() if shlex.split(line, comments=True)]


def test_quick_start_is_exactly_the_two_commands_on_the_first_screen() -> None:
    assert quick_start_commands() == QUICK_START
    text = README.read_text()
    first_screen = text[: text.index("./scripts/test") + 200]
    assert first_screen.count("\n") < 70, "the quick start must be on the README's first screen"
    for must in ("20-40%", "ad blocker", "Safari", "7 days", "Third-party JavaScript", "Consent timing", "```text"):
        assert must.lower() in first_screen.lower(), f"the first screen must mention {must!r}"


def test_quick_start_scripts_set_themselves_up_and_run_what_the_readme_says() -> None:
    setup = (ROOT / "scripts" / "_setup").read_text()
    assert "python3.11" in setup and 'VENV="${PINSIGNAL_VENV:-.venv}"' in setup and '-m venv "$VENV"' in setup
    assert "pip install" in setup
    for command in QUICK_START:
        script = ROOT / command
        assert script.stat().st_mode & 0o111, f"{command} must be executable"
        text = script.read_text()
        assert text.startswith("#!/bin/sh"), f"{command} must run with a plain POSIX shell (macOS and Linux)"
        assert '. "$(dirname "$0")/_setup"' in text, f"{command} must set up .venv itself"
    assert 'exec "$VENV/bin/pinsignal" demo' in (ROOT / "scripts" / "demo").read_text()
    assert "-m pytest" in (ROOT / "scripts" / "test").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert "./scripts/test" in commands, ".ci/run must call the README's test command"
    assert "export CI=true" in commands


def test_other_docs_show_the_same_quick_start() -> None:
    """Wherever a doc points a newcomer at a script, it is one of the README's two (or ./scripts/check)."""
    docs = [*OWN_DOCS, *sorted((ROOT / "docs").glob("*.md"))]
    for path in docs:
        for script in re.findall(r"\./scripts/[\w-]+", path.read_text()):
            assert script in [*QUICK_START, "./scripts/check"], f"{path.name} mentions {script}"
            assert (ROOT / script).exists()


def test_every_configuration_variable_is_documented_in_readme_and_docs() -> None:
    variables = known_variables()
    readme = README.read_text()
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, re.M))
    assert table == variables, f"README table: missing {variables - table}, unknown {table - variables}"
    config_doc = (ROOT / "docs" / "configuration.md").read_text()
    headings = set(re.findall(r"^### `([A-Z_]+)`$", config_doc, re.M))
    assert headings == variables, f"configuration.md: missing {variables - headings}, unknown {headings - variables}"


def test_docs_mention_no_variable_that_does_not_exist() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "middleware" / "pinsignal").rglob("*.py"))
    sandbox = prefixed(SandboxSettings, "PINSIGNAL_SANDBOX_")
    settings = {*known_variables(), *PROXY_ENVIRONMENT.values(), *sandbox.values()}
    for path in OWN_DOCS:
        for name in set(re.findall(r"\b((?:PINSIGNAL|PINTEREST)_[A-Z_]*[A-Z])\b", path.read_text())):
            if name == "PINSIGNAL_SANDBOX_":
                continue
            assert name in settings or f'"{name}"' in source, f"{path.name}: {name} exists nowhere"


def test_relative_links_resolve() -> None:
    for path in OWN_DOCS:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).resolve().exists(), f"{path.name} links to missing {target}"
        for mentioned in re.findall(r"`((?:examples|deploy|docs|pipelines)/[\w./@-]+)`", path.read_text()):
            assert (ROOT / mentioned.rstrip("/")).exists(), f"{path.name} mentions missing {mentioned}"


def test_readme_commands_for_metrics_name_real_metrics() -> None:
    metrics = (ROOT / "middleware" / "pinsignal" / "metrics.py").read_text()
    for name in re.findall(r"`(pinsignal_[a-z_]+)`", README.read_text()):
        assert f'"{name}"' in metrics, f"README names metric {name}, which the worker does not export"


def test_shop_is_shipped_in_the_wheel() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force["examples/shop"] == "pinsignal/demo_shop"
    from pinsignal.demo import shop_dir

    assert shop_dir() == ROOT / "examples" / "shop" or Path(shop_dir()).name == "demo_shop"
    assert (shop_dir() / "__init__.py").exists()
