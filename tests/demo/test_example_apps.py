"""The proxy example: ``examples/proxy/run.sh`` as a subprocess (static site, sandbox, worker, proxy).
The minimal Starlette example is exercised in ``tests/docs/test_examples.py``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from support import ROOT, free_port, need, run_process, wait_for_port

EPIK = "dj0yJnU9ZXhhbXBsZS1hcHBz"


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
