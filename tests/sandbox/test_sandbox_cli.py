"""``pinsignal sandbox`` as a real subprocess on a free port."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pinsignal.cli import main
from pinsignal.sandbox import SandboxClient
from support import free_port, pinsignal_cmd, run_process

pytestmark = pytest.mark.integration


def test_cli_serves_the_sandbox_with_its_options(tmp_path: Path, make_event: Any) -> None:
    port = free_port()
    args = pinsignal_cmd("sandbox", "--port", str(port), "--token", "tok-1", "--token", "tok-2",
                         "--account", "111", "--partial-failure", "200")
    env = {"PINSIGNAL_SANDBOX_CALLS_PER_MINUTE": "3", "PINSIGNAL_SANDBOX_PORT": "1"}  # --port wins
    log = tmp_path / "sandbox.log"
    with run_process(args, port=port, env=env, log=log), \
            SandboxClient(f"http://127.0.0.1:{port}", token="tok-2", account_id="111") as sandbox:
        old = make_event(event_time=int(time.time()) - 9 * 86400)
        response = sandbox.send([make_event(), old])
        assert response.status_code == 200  # --partial-failure 200
        assert [entry["status"] for entry in response.json()["events"]] == ["processed", "failed"]
        assert response.headers["x-ratelimit-limit"].startswith("3, ")  # from the environment
        assert sandbox.send([make_event()], token="tok-1").status_code == 200
        assert sandbox.send([make_event()], account_id="222").status_code == 403
        assert sandbox.send([make_event()], token="sandbox-token").status_code == 401
        assert sandbox.send([make_event()]).status_code == 200  # 401 and 403 did not count as calls
        assert sandbox.send([make_event()]).status_code == 429
        assert len(sandbox.events()) == 3
        assert "server" not in {name.lower() for name in response.headers}
    output = log.read_text()
    assert f"sandbox listening on http://127.0.0.1:{port}" in output
    assert "tok-1" not in output and "tok-2" not in output  # tokens never logged


def test_cli_rejects_a_bad_option_with_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "--account", "12x", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "PINSIGNAL_SANDBOX_ACCOUNTS entries must be numeric ad account ids (up to 18 digits), got '12x'." in err
    assert "Traceback" not in err


def test_cli_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sandbox", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--token", "--account", "--partial-failure", "--max-age-days",
                   "--calls-per-minute", "--unknown-event-names", "--max-recorded"):
        assert option in out


def test_cli_stops_promptly_on_sigterm_even_with_a_call_held_by_a_delay(make_event: Any) -> None:
    port = free_port()
    outcome: list[object] = []

    def held_call(sandbox: SandboxClient) -> None:
        try:
            outcome.append(httpx.post(sandbox.events_url, json={"data": [make_event()]}, headers=sandbox.headers,
                                      timeout=60).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    with run_process(pinsignal_cmd("sandbox", "--port", str(port)), port=port) as process, \
            SandboxClient(f"http://127.0.0.1:{port}") as sandbox:
        sandbox.fault(delay=600, delay_count=1)
        caller = threading.Thread(target=held_call, args=(sandbox,))
        caller.start()
        deadline = time.monotonic() + 10
        while sandbox.stats()["faults"]["delay"] is not None:  # consumed when the call arrives
            assert time.monotonic() < deadline, "the held call never arrived"
            time.sleep(0.02)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down, so -15 is a clean exit here
        assert process.wait(30) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 15
        caller.join(30)
        assert outcome and outcome[0] != 200  # cut off (an exception or an error status), never processed
