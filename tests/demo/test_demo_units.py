"""``pinsignal demo``'s decisions, without starting anything: which API, which secret, which ports."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from pinsignal.cli import build_parser
from pinsignal.config import Config
from pinsignal.cookies import valid_epik
from pinsignal.demo import (
    SANDBOX_ACCOUNT,
    SANDBOX_TOKEN,
    DemoOptions,
    child_environment,
    demo_epik,
    demo_secret,
    hints,
    port_problem,
    run_demo,
)
from pinsignal.errors import ConfigError


def environment(tmp_path: Path, redis_url: str, options: DemoOptions | None = None) -> dict[str, str]:
    return child_environment(options or DemoOptions(), Config.from_env(), tmp_path, redis_url)


def test_without_credentials_the_demo_delivers_to_its_sandbox_and_records(tmp_path: Path) -> None:
    env = environment(tmp_path, "unix:///x/redis.sock", DemoOptions(sandbox_port=9555))
    assert env["PINTEREST_API_URL"] == "http://127.0.0.1:9555"
    assert env["PINTEREST_AD_ACCOUNT_ID"] == SANDBOX_ACCOUNT and env["PINTEREST_ACCESS_TOKEN"] == SANDBOX_TOKEN
    assert env["PINTEREST_TEST_MODE"] == "false", "the sandbox records nothing from test requests"
    assert env["REDIS_URL"] == "unix:///x/redis.sock"
    assert env["PINSIGNAL_SECRET"] == (tmp_path / "secret").read_text().strip()
    Config.from_env(env)  # everything the children get is valid


def test_with_credentials_the_demo_uses_pinterest_in_test_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINTEREST_AD_ACCOUNT_ID", "123456789")
    monkeypatch.setenv("PINTEREST_ACCESS_TOKEN", "pina_real")
    env = environment(tmp_path, "redis://r:6379/0")
    assert env["PINTEREST_AD_ACCOUNT_ID"] == "123456789" and env["PINTEREST_ACCESS_TOKEN"] == "pina_real"
    assert "PINTEREST_API_URL" not in env
    assert env["PINTEREST_TEST_MODE"] == "true"
    monkeypatch.setenv("PINTEREST_TEST_MODE", "false")
    assert environment(tmp_path, "redis://r:6379/0")["PINTEREST_TEST_MODE"] == "false"


def test_the_secret_is_generated_once_private_and_kept(tmp_path: Path) -> None:
    first = demo_secret(tmp_path)
    assert len(first) >= 32
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert demo_secret(tmp_path) == first
    Config(secret=first)


def test_an_explicit_secret_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINSIGNAL_SECRET", "mine-and-long-enough-0123")
    assert environment(tmp_path, "redis://r")["PINSIGNAL_SECRET"] == "mine-and-long-enough-0123"
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
        problem = port_problem("127.0.0.1", port, "--sandbox-port")
    assert problem == f"port {port} on 127.0.0.1 is already in use; choose another with --sandbox-port {port + 1}."
    assert port_problem("127.0.0.1", port, "--port") is None  # free again once closed


def test_the_command_only_parses_and_calls_run_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[DemoOptions] = []
    monkeypatch.setattr("pinsignal.commands.demo.run_demo", lambda options: calls.append(options) or 7)
    args = build_parser().parse_args(["--log-level", "debug", "demo", "--host", "::1", "--port", "9000",
                                      "--sandbox-port", "9410", "--data-dir", str(tmp_path), "--no-browser-hints"])
    assert args._module.run(args) == 7
    assert calls == [DemoOptions(host="::1", port=9000, sandbox_port=9410, data_dir=tmp_path, hints=False,
                                 log_level="debug")]


def test_two_equal_ports_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--port and --sandbox-port are both 9400; choose two different ports\.$"):
        run_demo(DemoOptions(port=9400, sandbox_port=9400, data_dir=tmp_path / "data"), Config())
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(("host", "url_host"), [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("::1", "[::1]"),
                                                ("192.0.2.7", "192.0.2.7")])
def test_urls_name_a_host_a_browser_can_open(host: str, url_host: str) -> None:
    assert DemoOptions(host=host).url_host == url_host


def test_hints_name_the_shop_the_sandbox_and_the_data_dir(tmp_path: Path) -> None:
    shop_config = Config(ad_account_id=SANDBOX_ACCOUNT, access_token=SANDBOX_TOKEN)
    short = hints(DemoOptions(port=9000, sandbox_port=9410, hints=False), shop_config, tmp_path, real=False)
    shop, sandbox, inspector = short.splitlines()
    assert shop.startswith("shop: http://127.0.0.1:9000/?epik=") and valid_epik(shop.rpartition("=")[2])
    assert sandbox == "sandbox: http://127.0.0.1:9410/"
    assert inspector == "inspector: http://127.0.0.1:8420/"
    assert hints(DemoOptions(hints=False), shop_config, tmp_path, real=True).count("\n") == 1
    assert hints(DemoOptions(hints=False), shop_config, tmp_path, real=True, inspector=False).count("\n") == 0
    assert "http://127.0.0.1:8420/" in hints(DemoOptions(), shop_config, tmp_path, real=False)
    guided = hints(DemoOptions(), shop_config, tmp_path, real=False)
    assert "delivering to the local Pinterest sandbox" in guided and f"data dir {tmp_path}" in guided
    real = hints(DemoOptions(), Config(ad_account_id="123456789", access_token="pina_x", test_mode=True), tmp_path,
                 real=True)
    assert "delivering to Pinterest ad account 123456789 in test mode" in real and ":8410" not in real
