"""``pinsignal demo``'s decisions, without starting anything: which API, which secret, which ports."""

from __future__ import annotations

import argparse
import base64
import socket
from pathlib import Path

import pytest

from pinsignal.cli import build_parser
from pinsignal.commands.demo import SANDBOX_ACCOUNT, SANDBOX_TOKEN, Demo, _port_problem, demo_epik, demo_secret
from pinsignal.config import Config
from pinsignal.cookies import valid_epik


def demo_for(tmp_path: Path, *argv: str) -> Demo:
    args = build_parser().parse_args(["demo", "--data-dir", str(tmp_path), *argv])
    assert isinstance(args, argparse.Namespace)
    return Demo(args, Config.from_env(), tmp_path)


def test_without_credentials_the_demo_delivers_to_its_sandbox_and_records(tmp_path: Path) -> None:
    env = demo_for(tmp_path, "--sandbox-port", "9555").child_environment("unix:///x/redis.sock")
    assert env["PINTEREST_API_URL"] == "http://127.0.0.1:9555"
    assert env["PINTEREST_AD_ACCOUNT_ID"] == SANDBOX_ACCOUNT and env["PINTEREST_ACCESS_TOKEN"] == SANDBOX_TOKEN
    assert env["PINTEREST_TEST_MODE"] == "false", "the sandbox records nothing from test requests"
    assert env["REDIS_URL"] == "unix:///x/redis.sock"
    assert env["PINSIGNAL_SECRET"] == (tmp_path / "secret").read_text().strip()
    Config.from_env(env)  # everything the children get is valid


def test_with_credentials_the_demo_uses_pinterest_in_test_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINTEREST_AD_ACCOUNT_ID", "123456789")
    monkeypatch.setenv("PINTEREST_ACCESS_TOKEN", "pina_real")
    env = demo_for(tmp_path).child_environment("redis://r:6379/0")
    assert env["PINTEREST_AD_ACCOUNT_ID"] == "123456789" and env["PINTEREST_ACCESS_TOKEN"] == "pina_real"
    assert "PINTEREST_API_URL" not in env
    assert env["PINTEREST_TEST_MODE"] == "true"
    monkeypatch.setenv("PINTEREST_TEST_MODE", "false")
    assert demo_for(tmp_path).child_environment("redis://r:6379/0")["PINTEREST_TEST_MODE"] == "false"


def test_the_secret_is_generated_once_private_and_kept(tmp_path: Path) -> None:
    first = demo_secret(tmp_path)
    assert len(first) >= 32
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert demo_secret(tmp_path) == first
    Config(secret=first)


def test_an_explicit_secret_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINSIGNAL_SECRET", "mine-and-long-enough-0123")
    assert demo_for(tmp_path).child_environment("redis://r")["PINSIGNAL_SECRET"] == "mine-and-long-enough-0123"
    assert not (tmp_path / "secret").exists()


def test_the_landing_epik_looks_like_pinterest_s_and_is_accepted() -> None:
    epik = demo_epik()
    assert valid_epik(epik)
    decoded = base64.urlsafe_b64decode(epik + "=" * (-len(epik) % 4)).decode()
    assert decoded.startswith("v=2&u=") and "&t=" in decoded
    assert demo_epik() != epik


def test_port_problem_names_the_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        problem = _port_problem("127.0.0.1", port, "--sandbox-port")
    assert problem == f"port {port} on 127.0.0.1 is already in use; choose another with --sandbox-port {port + 1}."
    assert _port_problem("127.0.0.1", port, "--port") is None  # free again once closed
