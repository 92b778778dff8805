"""The two small examples: the minimal Starlette app (in process, real Redis) and the proxy set-up
(``examples/proxy/run.sh`` as a subprocess: static site, sandbox, worker and proxy)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import ROOT, free_port, need, run_process, wait_for_port

EPIK = "dj0yJnU9ZXhhbXBsZS1hcHBz"


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
    async with httpx.AsyncClient(transport=transport, base_url="http://site.test") as client:
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


@pytest.mark.integration
def test_proxy_example_run_script(tmp_path: Path) -> None:
    need(sys.platform != "win32", "a POSIX shell")
    ports = {"SITE_PORT": free_port(), "PROXY_PORT": free_port(), "SANDBOX_PORT": free_port()}
    env = {name: str(port) for name, port in ports.items()}
    env["PINSIGNAL"] = str(Path(sys.executable).parent / "pinsignal")
    env["PYTHON"] = sys.executable
    env["PINSIGNAL_DATA_DIR"] = str(tmp_path / "data")
    proxy = f"http://127.0.0.1:{ports['PROXY_PORT']}"
    sandbox = f"http://127.0.0.1:{ports['SANDBOX_PORT']}"
    with run_process([str(ROOT / "examples" / "proxy" / "run.sh")], port=ports["PROXY_PORT"], env=env, timeout=60,
                     log=tmp_path / "run.log"):
        wait_for_port(ports["SANDBOX_PORT"], timeout=30)
        wait_for_port(ports["SITE_PORT"], timeout=30)
        landing = httpx.get(f"{proxy}/?epik={EPIK}", headers={"accept": "text/html"}, timeout=10)
        assert landing.status_code == 200 and "Fern &amp; Flax" in landing.text
        assert any(h.startswith(f"_epik={EPIK};") for h in landing.headers.get_list("set-cookie"))
        assert httpx.get(f"{proxy}/_ps/c.js", timeout=10).status_code == 200
        product = httpx.get(f"{proxy}/product.html", timeout=10)
        assert 'pinsignal.track("product_added", product)' in product.text
        event = {"type": "track", "event": "product_added", "message_id": "proxy-example-1",
                 "properties": {"product_id": "apron-1", "price": 38.0, "quantity": 1, "currency": "USD"},
                 "context": {"page": {"url": f"{proxy}/product.html"}}}
        answer = httpx.post(f"{proxy}/_ps/e", json=event, timeout=10, headers={
            "cookie": f"_epik={EPIK}", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"})
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = httpx.get(f"{sandbox}/_sandbox/events", params={"event_id": "proxy-example-1"}, timeout=5).json()
            if found["events"]:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the proxied event never reached the sandbox:\n" + (tmp_path / "run.log").read_text())
        delivered = found["events"][0]["event"]
        assert delivered["event_name"] == "add_to_cart"
        assert delivered["user_data"]["click_id"] == EPIK
