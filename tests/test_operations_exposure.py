"""Operations under trouble (issue 18, item 13): one sentence when Redis is down, /metrics on loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pinsignal import cli
from pinsignal.config import Config
from pinsignal.metrics import Metrics, MetricsServer
from pinsignal.worker import in_container, metrics_host


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends: nobody listens


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["dlq", "list"]])
def test_regression_item13_status_and_dlq_say_one_sentence_when_redis_is_down(
        command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{closed_port()}/0")
    assert cli.main(command) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    [line] = err.strip().splitlines()
    assert line.startswith(f"pinsignal {command[0]}: Redis failed while ") and "check that Redis is running" in line


def test_containers_are_recognised_by_their_marks(tmp_path: Path) -> None:
    assert not in_container({}, root=tmp_path)
    assert in_container({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, root=tmp_path)
    (tmp_path / ".dockerenv").touch()
    assert in_container({}, root=tmp_path)
    podman = tmp_path / "podman"
    (podman / "run").mkdir(parents=True)
    (podman / "run" / ".containerenv").touch()
    assert in_container({}, root=podman)


@pytest.mark.anyio
async def test_regression_item13_metrics_bind_loopback_outside_a_container(monkeypatch: pytest.MonkeyPatch) -> None:
    import pinsignal.worker as worker

    monkeypatch.setattr(worker, "in_container", lambda: False)
    assert metrics_host(Config()) == "127.0.0.1"
    monkeypatch.setattr(worker, "in_container", lambda: True)
    assert metrics_host(Config()) == "0.0.0.0"
    assert metrics_host(Config(metrics_host="10.1.2.3")) == "10.1.2.3"
    assert metrics_host(Config.from_env({"PINSIGNAL_METRICS_HOST": "::1"})) == "::1"
    server = await MetricsServer(Metrics(), 0).start()  # the class's own default is loopback too
    try:
        assert server.host == "127.0.0.1"
        assert all(sock.getsockname()[0] == "127.0.0.1" for sock in server._server.sockets)  # type: ignore[union-attr]
    finally:
        await server.close()


def test_the_worker_command_takes_a_metrics_host() -> None:
    args = cli.build_parser().parse_args(["worker", "--metrics-host", "0.0.0.0"])
    assert args.metrics_host == "0.0.0.0"
