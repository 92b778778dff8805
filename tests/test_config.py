from __future__ import annotations

from pathlib import Path

import pytest

from pinsignal.config import Config, shipped_pipelines_dir
from pinsignal.errors import ConfigError


def test_defaults() -> None:
    config = Config.from_env({})
    assert config.api_url == "https://api.pinterest.com"
    assert config.collector_prefix == "/_ps"
    assert config.consent == "opt-out"
    assert config.trusted_proxies == ("127.0.0.1",)
    assert config.batch_size == 1000
    assert config.pipeline_paths == (shipped_pipelines_dir(),)


def test_reads_every_variable() -> None:
    config = Config.from_env({
        "PINTEREST_AD_ACCOUNT_ID": "549755885175",
        "PINTEREST_ACCESS_TOKEN": "pina_secret",
        "PINTEREST_API_URL": "http://127.0.0.1:9999",
        "PINTEREST_TEST_MODE": "true",
        "REDIS_URL": "redis://localhost:6379/0",
        "PINSIGNAL_DATA_DIR": "/var/lib/pinsignal",
        "PINSIGNAL_SECRET": "x" * 32,
        "PINSIGNAL_PIPELINES": "a.yaml,b",
        "PINSIGNAL_COOKIE_DOMAIN": "auto",
        "PINSIGNAL_COLLECTOR_PREFIX": "/t",
        "PINSIGNAL_CONSENT": "opt-in",
        "PINSIGNAL_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
    })
    assert config.events_url == "http://127.0.0.1:9999/v5/ad_accounts/549755885175/events"
    assert config.test_mode and config.batch_size == 20
    assert config.pipelines == (Path("a.yaml"), Path("b"))
    assert config.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert "pina_secret" not in repr(config)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("PINTEREST_AD_ACCOUNT_ID", "act_123", "PINTEREST_AD_ACCOUNT_ID"),
        ("PINTEREST_TEST_MODE", "maybe", "PINTEREST_TEST_MODE"),
        ("PINSIGNAL_CONSENT", "sometimes", "PINSIGNAL_CONSENT"),
        ("PINSIGNAL_COLLECTOR_PREFIX", "ps", "PINSIGNAL_COLLECTOR_PREFIX"),
        ("PINSIGNAL_TRUSTED_PROXIES", "not a host!", "PINSIGNAL_TRUSTED_PROXIES"),
        ("PINSIGNAL_SECRET", "short", "PINSIGNAL_SECRET"),
        ("PINSIGNAL_METRICS_PORT", "http", "PINSIGNAL_METRICS_PORT"),
    ],
)
def test_malformed_value_is_one_sentence_naming_the_variable(variable: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({variable: value})
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and message.endswith(".")


@pytest.mark.parametrize("secret", [
    "replace-with-a-long-random-string",  # deploy/systemd/pinsignal.env and deploy/kubernetes/secret.yaml
    "change-me-to-a-long-random-value",  # the README's production example
    "a-long-random-string-from-your-vault",
    "proxy-example-secret-CHANGE-ME",
    "Replace_With_Your_Own_Secret_Please",
])
def test_regression_placeholder_secret_is_refused(secret: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({"PINSIGNAL_SECRET": secret})
    message = str(info.value)
    assert "PINSIGNAL_SECRET is still a placeholder" in message and secret not in message
    assert "\n" not in message and message.endswith(".")


def test_a_random_secret_is_accepted() -> None:
    assert Config(secret="q5Jm0X1lZ8c2W-u9aYtB3kR7eN4sVhDf").secret


@pytest.mark.parametrize("entry", ["proxy.internal", "lb", "example.com"])
def test_regression_trusted_proxy_host_names_are_refused(entry: str) -> None:
    with pytest.raises(ConfigError, match="host names are never matched"):
        Config.from_env({"PINSIGNAL_TRUSTED_PROXIES": f"127.0.0.1,{entry}"})


def test_trusted_proxies_take_addresses_networks_localhost_and_star() -> None:
    config = Config.from_env({"PINSIGNAL_TRUSTED_PROXIES": "10.0.0.0/8, ::1, localhost, *"})
    assert config.trusted_proxies == ("10.0.0.0/8", "::1", "localhost", "*")
