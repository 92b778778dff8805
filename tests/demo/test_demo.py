"""``pinsignal demo`` end to end: a real subprocess, a real Chromium, the real sandbox.

The demo runs on free ports with a temporary data dir. The browser lands with ``?epik=``, adds to
cart and checks out; the checkout must reach the sandbox with the click id, the hashed email, the
browser's IP and user agent, and the ``order-<id>`` event id. Stopping the demo (Ctrl-C or SIGTERM)
must leave no redis-server, worker or sandbox behind.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import CHROMIUM_ARGS, chromium_path, free_port, need, pinsignal_cmd, stop_process, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EPIK = "dj0yJnU9ZGVtby10ZXN0JnA9MSZuPXNtb2tlJnQ9QUFBQUFHbVp2V0k"
EMAIL = "  Jane.Doe@Example.COM "


def children_of(pid: int) -> dict[int, str]:
    """Live child processes of ``pid`` (Linux /proc), with their command names."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = comm
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def wait_until(condition: Any, timeout: float, message: str | Any) -> Any:
    """Poll ``condition`` until truthy; else fail with ``message`` (or ``message()``, computed then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    pytest.fail(message if isinstance(message, str) else message())


class Demo:
    """``pinsignal demo`` as a subprocess in its own session (so a signal reaches it like Ctrl-C)."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.env = env or {}
        self.own_sandbox = "PINTEREST_ACCESS_TOKEN" not in self.env
        self.port = free_port()
        self.sandbox_port = free_port()
        self.data_dir = tmp_path / "data"
        self.log = tmp_path / "demo.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Demo:
        args = pinsignal_cmd("demo", "--port", str(self.port), "--sandbox-port", str(self.sandbox_port),
                             "--payments-port", str(free_port()), "--data-dir", str(self.data_dir),
                             "--no-browser-hints")
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        try:
            wait_for_port(self.port, timeout=60, process=self.process)
            if self.own_sandbox:
                wait_for_port(self.sandbox_port, timeout=30, process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            self.__exit__()
            pytest.fail(f"the demo did not start: {exc}\n{self.output}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            stop_process(self.process)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def shop(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sandbox(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def stop_with(self, signum: int) -> tuple[int, dict[int, str]]:
        """Send ``signum`` the way a terminal would; return the exit code and the children it had."""
        assert self.process is not None
        children = children_of(self.process.pid)
        os.killpg(self.process.pid, signum)
        try:
            code = self.process.wait(45)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo did not stop within 45 s of signal {signum}\n{self.output}")
        return code, children

    def assert_nothing_left(self, children: dict[int, str]) -> None:
        names = set(children.values())
        assert any("redis" in name for name in names), f"expected the embedded Redis among {children}"
        expected = 3 if self.own_sandbox else 2
        assert len(children) >= expected, f"expected Redis, the worker and the sandbox, got {children}"
        wait_until(lambda: not any(alive(pid) for pid in children), 15,
                   f"orphaned processes: {[(p, n) for p, n in children.items() if alive(p)]}")
        sock = self.data_dir / "redis.sock"
        if sock.exists():
            with socket.socket(socket.AF_UNIX) as client, pytest.raises(OSError):
                client.connect(str(sock))


def sandbox_event(demo: Demo, event_id: str, timeout: float = 60.0) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        answer = httpx.get(f"{demo.sandbox}/_sandbox/events", params={"event_id": event_id}, timeout=5)
        answer.raise_for_status()
        events = answer.json()["events"]
        return events[0]["event"] if events else None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"event {event_id!r} never reached the sandbox; {report(demo)}")


def report(demo: Demo) -> str:
    received = httpx.get(f"{demo.sandbox}/_sandbox/events", timeout=5).json()["events"]
    names = [(e["event"]["event_name"], e["event"]["event_id"]) for e in received]
    return f"the sandbox received {names}\n{demo.output}"


@pytest.mark.browser
def test_landing_to_checkout_reaches_the_sandbox_then_ctrl_c_stops_everything(tmp_path: Path) -> None:
    need(sys.platform.startswith("linux"), "process checks read /proc")
    need(chromium_path(), "a Chromium binary (set PINSIGNAL_CHROMIUM or install chromium)")
    from playwright.sync_api import sync_playwright

    with Demo(tmp_path) as demo:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            try:
                # Headless Chromium says "HeadlessChrome", which the crawler filter rightly refuses;
                # a visitor's browser says "Chrome".
                probe = browser.new_page()
                user_agent = probe.evaluate("navigator.userAgent").replace("HeadlessChrome", "Chrome")
                probe.close()
                page = browser.new_page(user_agent=user_agent)
                page.set_default_timeout(20_000)
                page.goto(f"{demo.shop}/?epik={EPIK}")
                assert any(c["name"] == "_epik" and c["value"] == EPIK for c in page.context.cookies())
                page.click("text=Speckled stoneware mug")
                page.fill("input[name=quantity]", "2")
                # wait for the browser to hand the event to the collector: what the smoke test checks is
                # the road from there to Pinterest (the script's own delivery is tests/browser's subject)
                with page.expect_response(lambda r: r.url.endswith("/_ps/e") and "product_added" in (
                        r.request.post_data or "")) as sent:
                    page.click("#add-to-cart")
                assert sent.value.status == 202
                page.wait_for_selector("#added", state="visible")
                page.goto(f"{demo.shop}/cart")
                page.fill("input[name=email]", EMAIL)
                page.click("#place-order")
                # DemoPay's page, another process and origin; its webhook confirms the order
                page.wait_for_url("**/pay/*")
                page.click("#pay")
                page.wait_for_url("**/order/*")
                order_id = page.inner_text("#order-id").strip()
                assert "payment webhook" in page.inner_text("main")
            finally:
                browser.close()

        event = sandbox_event(demo, f"order-{order_id}")
        assert event["event_name"] == "checkout"
        assert event["action_source"] == "web"
        user = event["user_data"]
        assert user["click_id"] == EPIK
        assert user["em"] == [hashlib.sha256(b"jane.doe@example.com").hexdigest()]
        assert user["client_ip_address"] == "127.0.0.1"
        assert user["client_user_agent"] == user_agent
        assert event["custom_data"]["value"] == "29.98"
        assert event["custom_data"]["currency"] == "USD"
        assert event["custom_data"]["content_ids"] == ["sku-101"]
        # no raw email anywhere in what left the server
        assert "example.com" not in str(event).lower()
        # the sandbox page shows the checkout with the landing's click id and the shopper's IP and user agent
        sandbox_page = httpx.get(f"{demo.sandbox}/", timeout=5).text
        assert EPIK in sandbox_page and "127.0.0.1" in sandbox_page and user_agent[:40] in sandbox_page
        # browser events took the same road (click id from the first-party cookie)
        added = wait_until(lambda: [e["event"] for e in httpx.get(f"{demo.sandbox}/_sandbox/events").json()["events"]
                                    if e["event"]["event_name"] == "add_to_cart"], 60,
                           lambda: f"no add_to_cart event reached the sandbox; {report(demo)}")
        assert added[0]["user_data"]["click_id"] == EPIK

        code, children = demo.stop_with(signal.SIGINT)
        assert code == 0, demo.output
        demo.assert_nothing_left(children)
        assert "Traceback" not in demo.output, demo.output


def test_sigterm_stops_redis_worker_and_sandbox(tmp_path: Path) -> None:
    need(sys.platform.startswith("linux"), "process checks read /proc")
    with Demo(tmp_path) as demo:
        assert httpx.get(f"{demo.sandbox}/_sandbox/health", timeout=5).status_code == 200
        landing = httpx.get(f"{demo.shop}/?epik={EPIK}", timeout=10)
        assert landing.status_code == 200
        assert "/_ps/c.js" in landing.text
        assert any(h.startswith(f"_epik={EPIK};") for h in landing.headers.get_list("set-cookie"))
        secret = demo.data_dir / "secret"
        assert len(secret.read_text().strip()) >= 32
        assert secret.stat().st_mode & 0o077 == 0, "the demo secret must be private to its owner"
        wait_until(lambda: len(children_of(demo.process.pid)) >= 3, 30,  # type: ignore[union-attr]
                   f"the demo's children did not all start\n{demo.output}")
        code, children = demo.stop_with(signal.SIGTERM)
        assert code == 0, demo.output
        demo.assert_nothing_left(children)


def test_port_in_use_is_one_sentence_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            pinsignal_cmd("demo", "--port", str(port), "--sandbox-port", str(free_port()),
                          "--data-dir", str(tmp_path / "data")),
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 2
    message = done.stderr.strip()
    expected = f"port {port} on 127.0.0.1 is already in use; choose another with --port {port + 1}."
    assert message == f"pinsignal demo: {expected}"
    assert not (tmp_path / "data" / "redis.sock").exists(), "nothing may start when a port is taken"


def test_sandbox_port_in_use_names_its_own_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            pinsignal_cmd("demo", "--port", str(free_port()), "--sandbox-port", str(port),
                          "--data-dir", str(tmp_path / "data")),
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 2
    assert f"choose another with --sandbox-port {port + 1}." in done.stderr


def test_with_credentials_the_demo_sends_to_that_api_in_test_mode(tmp_path: Path, sandbox_server: Any) -> None:
    """Real credentials: no local sandbox is started, and events go out with ?test=true (recorded nowhere)."""
    need(sys.platform.startswith("linux"), "process checks read /proc")
    env = {"PINTEREST_API_URL": sandbox_server.url, "PINTEREST_ACCESS_TOKEN": sandbox_server.token,
           "PINTEREST_AD_ACCOUNT_ID": sandbox_server.account_id}
    with Demo(tmp_path, env) as demo:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{demo.sandbox}/_sandbox/health", timeout=2)
        event = {"type": "track", "event": "product_added", "message_id": "demo-real-1",
                 "properties": {"product_id": "sku-101", "price": 14.99, "quantity": 1, "currency": "USD"},
                 "context": {"page": {"url": f"{demo.shop}/product/sku-101"}}}
        firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
        answer = httpx.post(f"{demo.shop}/_ps/e", json=event, timeout=10,
                            headers={"cookie": f"_epik={EPIK}", "user-agent": firefox})
        assert answer.status_code == 202 and answer.json()["accepted"] == ["demo-real-1"], answer.text
        stats = wait_until(lambda: (s := sandbox_server.stats())["test_events"] >= 1 and s, 60,
                           f"no test request reached the API\n{demo.output}")
        assert stats["events_recorded"] == 0, "test mode: Pinterest records nothing"
        code, children = demo.stop_with(signal.SIGTERM)
        assert code == 0, demo.output
        demo.assert_nothing_left(children)
