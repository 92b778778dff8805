"""Every code example in the README and the docs this area owns is exercised.

Python blocks are executed (and the FastAPI one is driven with a real request into a real Redis),
shell blocks go through the real CLI parser, YAML blocks are loaded (pipelines by the pipeline
loader), HTML blocks may only call what the browser script really offers.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from docsupport import OWN_DOCS, Block, check_command, check_environment, code_blocks, lifespan

from support import ROOT

BLOCKS = [block for path in OWN_DOCS for block in code_blocks(path)]
EPIK = "dj0yJnU9ZXhhbXBsZS1hcHBz"
KNOWN_LANGS = {"python", "sh", "yaml", "html", "text"}  # text: diagrams only


def blocks(lang: str) -> list[Any]:
    return [pytest.param(b, id=b.where) for b in BLOCKS if b.lang == lang]


def test_every_block_has_a_language_this_test_checks() -> None:
    assert BLOCKS, "no code blocks found"
    for block in BLOCKS:
        assert block.lang in KNOWN_LANGS, f"{block.where}: code block language {block.lang!r} is not checked"


# ---------------------------------------------------------------------------- Python


def run_python(block: Block) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(block.code, block.where, "exec"), namespace)
    return namespace


@pytest.mark.parametrize("block", blocks("python"))
def test_python_blocks_run(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINSIGNAL_SECRET", "docs-example-secret-0123456789")  # the docs read it from the environment
    namespace = run_python(block)
    if "app" in namespace:
        assert callable(namespace["app"]), f"{block.where}: 'app' is not an ASGI app"


@pytest.mark.anyio
async def test_readme_fastapi_example_queues_the_order(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (block,) = [b for b in BLOCKS if b.lang == "python" and "create_order" in b.code]
    monkeypatch.setenv("PINSIGNAL_SECRET", "docs-example-secret-0123456789")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PINTEREST_AD_ACCOUNT_ID", "549755885175")
    monkeypatch.setenv("PINTEREST_ACCESS_TOKEN", "docs-example-token")
    app = run_python(block)["app"]
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
    async with lifespan(app), httpx.AsyncClient(transport=transport, base_url="https://shop.example") as client:
        answer = await client.post("/orders/1042", headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/1"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"event_id": "order-1042", "queued": True}
    # what reached Redis is hashed: the raw email is nowhere in it
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        dump = b"".join([str(await client.xrange(key)).encode() for key in await client.keys("*")
                         if await client.type(key) == b"stream"])
    finally:
        await client.aclose()
    assert b"order-1042" in dump
    assert b"jane.doe" not in dump.lower()


def load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_starlette_example_queues_a_server_side_order(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINSIGNAL_SECRET", "starlette-example-secret-0123")
    monkeypatch.setenv("REDIS_URL", redis_url)
    source = (ROOT / "examples" / "starlette_app" / "app.py").read_text()
    assert len([line for line in source.splitlines() if line.strip()]) <= 30, "the minimal integration stays small"
    app = load(ROOT / "examples" / "starlette_app" / "app.py").app
    transport = httpx.ASGITransport(app=app, client=("203.0.113.5", 1234))
    async with lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://site.test") as client:
        home = await client.get(f"/?epik={EPIK}", headers={"accept": "text/html"})
        assert '<script src="/_ps/c.js" defer></script>' in home.text
        assert any(h.startswith(f"_epik={EPIK};") for h in home.headers.get_list("set-cookie"))
        script = await client.get("/_ps/c.js")
        assert script.status_code == 200 and "pinsignal" in script.text
        order = await client.post("/orders", json={"order_id": "77", "total": 19.5, "email": "a@b.example"},
                                  headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"})
        assert order.json() == {"ok": True}
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        streams = [key for key in await client.keys("*") if await client.type(key) == b"stream"]
        entries = [entry for key in streams for entry in await client.xrange(key)]
    finally:
        await client.aclose()
    assert "order-77" in str(entries), "the order must be queued with its deterministic event id"


# ---------------------------------------------------------------------------- shell


def shell_commands(block: Block) -> list[list[str]]:
    commands = []
    for line in block.code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


@pytest.mark.parametrize("block", blocks("sh"))
def test_shell_blocks_name_real_commands(block: Block) -> None:
    for words in shell_commands(block):
        env = {}
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        check_environment(env, block.where)
        command, args = words[0], words[1:]
        if command == "pinsignal":
            check_command(args, block.where)
        elif command.startswith(("./scripts/", "./examples/")):
            script = ROOT / command
            assert script.is_file() and script.stat().st_mode & 0o111, f"{block.where}: {command} is not a script"
            if command == "./scripts/demo":
                check_command(["demo", *args], block.where)
        elif command == "pip":
            assert args[:2] == ["install", "pinsignal"], f"{block.where}: unexpected pip command {words}"
        elif command in ("docker", "kubectl", "sudo"):
            check_deploy_command(words, block.where)
        else:
            pytest.fail(f"{block.where}: {command!r} is not a command this test knows how to check")


def check_deploy_command(words: list[str], where: str) -> None:
    """docker, kubectl and systemd commands: every repository path they name exists, every unit they
    enable is shipped, and the image they build is the one the recipes run."""
    if words[0] == "sudo":
        words = words[1:]
    for word in words:
        if word.startswith(("deploy/", "examples/")):
            assert (ROOT / word).exists(), f"{where}: {word} does not exist"
    if words[0] == "docker" and words[1] == "build":
        assert words[words.index("-t") + 1] == "pinsignal" and words[-1] == "."
    elif words[0] == "kubectl":
        assert words[1:3] == ["apply", "-k"] and (ROOT / words[3] / "kustomization.yaml").exists()
    elif words[0] == "systemctl":
        for unit in words[3:]:
            template = re.sub(r"@[^.]*$", "@", unit)
            assert (ROOT / "deploy" / "systemd" / f"{template}.service").exists(), f"{where}: no unit for {unit}"
    elif words[0] not in ("docker", "cp", "install"):
        pytest.fail(f"{where}: {words[0]!r} is not a command this test knows how to check")


def test_arq_entry_point_in_the_readme_exists(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PINTEREST_AD_ACCOUNT_ID", "549755885175")
    monkeypatch.setenv("PINTEREST_ACCESS_TOKEN", "docs-example-token")
    readme = (ROOT / "README.md").read_text()
    (target,) = set(re.findall(r"`arq ([\w.]+)`", readme))
    module, _, attribute = target.rpartition(".")
    import importlib

    assert getattr(importlib.import_module(module), attribute)


# ---------------------------------------------------------------------------- YAML


@pytest.mark.parametrize("block", blocks("yaml"))
def test_yaml_blocks_load(block: Block, tmp_path: Path) -> None:
    document = yaml.safe_load(block.code)
    assert isinstance(document, dict)
    if "trigger" in document:
        from pinsignal.pipeline import Engine, RequestContext, load_pipelines

        path = tmp_path / "example.yaml"
        path.write_text(block.code)
        engine = Engine(load_pipelines([path]), default_country="US")
        envelope = {
            "type": "track", "event": document["trigger"]["conditions"][0]["value"], "message_id": "order-1042",
            "timestamp": "2026-11-29T12:00:00.000Z", "properties": {"revenue": 72.39, "currency": "USD"},
            "traits": {"email": " Jane.Doe@Example.com "},
            "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130",
                        "page": {"url": "https://shop.example/checkout"}},
        }
        (produced,) = engine.process(envelope, RequestContext(epik="dj0yJnU9example", cookies={}))
        assert produced.valid, produced.errors
        assert produced.event["event_id"] == "order-1042"
        assert produced.event["user_data"]["click_id"] == "dj0yJnU9example"


# ---------------------------------------------------------------------------- HTML / browser API


def browser_api() -> set[str]:
    script = (ROOT / "middleware" / "pinsignal" / "collector" / "c.js").read_text()
    # The methods of the `A={...}` object: `name:function(...)` or an arrow, `name:(a,b)=>` / `name:a=>`.
    return set(re.findall(r"(\w+):(?:function\b|\([\w,]*\)=>|\w+=>)", script))


@pytest.mark.parametrize("block", blocks("html"))
def test_html_blocks_use_the_real_browser_api(block: Block) -> None:
    api = browser_api()
    assert {"track", "page", "identify", "consent"} <= api
    for name in re.findall(r"pinsignal\.(\w+)\(", block.code):
        assert name in api, f"{block.where}: pinsignal.{name}() is not in the browser script"
    for src in re.findall(r'<script src="([^"]+)"', block.code):
        assert src == "/_ps/c.js"


def test_readme_mentions_only_browser_calls_that_exist() -> None:
    api = browser_api()
    for path in OWN_DOCS:
        for name in re.findall(r"pinsignal\.(\w+)\(", path.read_text()):
            assert name in api, f"{path.name}: pinsignal.{name}() is not in the browser script"


# ---------------------------------------------------------------------------- commands named in prose

_INLINE = re.compile(r"`((?:[A-Z_]+=[^ `]+ )*(?:pinsignal|\./scripts/demo)(?: [^`]*)?)`")


def help_text(path: list[str]) -> str:
    import contextlib
    import io

    from pinsignal.cli import build_parser

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*path, "--help"])
    assert exited.value.code == 0, f"'pinsignal {' '.join(path)}' is not a command"
    return out.getvalue()


@pytest.mark.parametrize("path", OWN_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_named_in_prose_exist_with_their_flags(path: Path) -> None:
    for span in _INLINE.findall(path.read_text()):
        words = shlex.split(span)
        env = {}
        while re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        check_environment(env, f"{path.name}: `{span}`")
        argv = ["demo", *words[1:]] if words[0] == "./scripts/demo" else words[1:]
        command = [w for w in argv if not w.startswith("-")][:2]
        if command and command[0] not in ("demo", "worker", "proxy", "sandbox", "status"):
            command = command[:2]  # e.g. pipelines check, dlq list
        else:
            command = command[:1]
        text = help_text(command)
        for flag in (w for w in argv if w.startswith("--") and w != "--help"):
            assert flag in text, f"{path.name}: `{span}`: {flag} is not an option of 'pinsignal {' '.join(command)}'"
