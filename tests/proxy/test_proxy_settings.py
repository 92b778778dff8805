"""``ProxySettings``: keywords and ``PINSIGNAL_UPSTREAM``/``PINSIGNAL_PROXY_*``, bad values named in one sentence."""

from __future__ import annotations

import pytest

from pinsignal.errors import ConfigError
from pinsignal.proxy import ProxySettings


def test_from_env_reads_every_variable_and_round_trips() -> None:
    env = {"PINSIGNAL_UPSTREAM": "https://origin.internal:8443/app", "PINSIGNAL_PROXY_TIMEOUT": "2.5",
           "PINSIGNAL_PROXY_HOST_HEADER": "upstream", "PINSIGNAL_PROXY_INJECT": "yes",
           "PINSIGNAL_PROXY_SERVER_PAGEVIEWS": "1", "PINSIGNAL_PROXY_MAX_CONNECTIONS": "10"}
    settings = ProxySettings.from_env(env)
    assert settings == ProxySettings(upstream="https://origin.internal:8443/app", timeout=2.5, host_header="upstream",
                                     inject=True, server_pageviews=True, max_connections=10)
    assert ProxySettings.from_env(settings.to_env()) == settings
    assert ProxySettings.from_env(env, inject=False).inject is False  # keywords (the command line) win


@pytest.mark.parametrize(("env", "message"), [
    ({}, "PINSIGNAL_UPSTREAM is not set"),
    ({"PINSIGNAL_UPSTREAM": "127.0.0.1:8080"}, "PINSIGNAL_UPSTREAM must be an http(s) URL"),
    ({"PINSIGNAL_UPSTREAM": "http://a/?q=1"}, "got 'http://a/?q=1'"),
    ({"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_TIMEOUT": "soon"}, "got 'soon'"),
    ({"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_TIMEOUT": "0"}, "positive number of seconds"),
    ({"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_HOST_HEADER": "public"}, "'keep' or 'upstream', got 'public'"),
    ({"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_INJECT": "maybe"}, "true or false, got 'maybe'"),
    ({"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_MAX_CONNECTIONS": "0"}, "at least 1, got 0"),
    ({"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_HEAD_TIMEOUT": "0"}, "HEAD_TIMEOUT must be a positive"),
    ({"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_WRITE_TIMEOUT": "-1"}, "WRITE_TIMEOUT must be a positive"),
    ({"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_MAX_HEAD_SIZE": "100"}, "at least 1024 bytes, got 100"),
    ({"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_MAX_PER_CLIENT": "0"}, "MAX_PER_CLIENT must be at least 1"),
])
def test_bad_values_fail_with_a_sentence_naming_them(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        ProxySettings.from_env(env)


def test_the_server_options_are_settings_too() -> None:
    env = {"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_HOST": "0.0.0.0", "PINSIGNAL_PROXY_PORT": "8443",
           "PINSIGNAL_PROXY_WORKERS": "3", "PINSIGNAL_PROXY_SSL_CERTFILE": "/etc/tls/chain.pem",
           "PINSIGNAL_PROXY_SSL_KEYFILE": "/etc/tls/key.pem", "PINSIGNAL_PROXY_ACCESS_LOG": "true"}
    settings = ProxySettings.from_env(env)
    assert (settings.host, settings.port, settings.workers, settings.access_log) == ("0.0.0.0", 8443, 3, True)
    assert (settings.ssl_certfile, settings.ssl_keyfile) == ("/etc/tls/chain.pem", "/etc/tls/key.pem")
    assert ProxySettings.from_env(settings.to_env()) == settings  # what --workers processes rebuild
    assert ProxySettings.from_env(env, port=9000).port == 9000


@pytest.mark.parametrize(("env", "message"), [
    ({"PINSIGNAL_PROXY_PORT": "http"}, "PINSIGNAL_PROXY_PORT must be a whole number, got 'http'."),
    ({"PINSIGNAL_PROXY_PORT": "70000"}, "PINSIGNAL_PROXY_PORT must be a port number, got 70000."),
    ({"PINSIGNAL_PROXY_WORKERS": "0"}, "PINSIGNAL_PROXY_WORKERS must be at least 1, got 0."),
    ({"PINSIGNAL_PROXY_SSL_CERTFILE": "/c.pem"}, "go together"),
])
def test_bad_server_options_fail_with_a_sentence(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProxySettings.from_env({"PINSIGNAL_UPSTREAM": "http://a", **env})
    assert message in str(info.value)


def test_the_visitor_limits_have_documented_defaults_and_variables() -> None:
    defaults = ProxySettings(upstream="http://a")
    assert (defaults.head_timeout, defaults.max_head_size, defaults.write_timeout, defaults.max_per_client) == (
        5.0, 64 * 1024, 30.0, 32)
    env = {"PINSIGNAL_UPSTREAM": "http://a", "PINSIGNAL_PROXY_HEAD_TIMEOUT": "2",
           "PINSIGNAL_PROXY_MAX_HEAD_SIZE": "8192", "PINSIGNAL_PROXY_WRITE_TIMEOUT": "10",
           "PINSIGNAL_PROXY_MAX_PER_CLIENT": "4"}
    settings = ProxySettings.from_env(env)
    assert (settings.head_timeout, settings.max_head_size, settings.write_timeout, settings.max_per_client) == (
        2.0, 8192, 10.0, 4)
    assert ProxySettings.from_env(settings.to_env()) == settings


def test_every_variable_is_in_the_options_table_of_the_guide() -> None:
    from pathlib import Path

    from pinsignal.proxy.settings import ENVIRONMENT

    guide = (Path(__file__).parents[2] / "docs" / "proxy.md").read_text()
    table = [line for line in guide.splitlines() if line.startswith("|")]
    missing = [variable for variable in ENVIRONMENT.values() if not any(f"`{variable}`" in line for line in table)]
    assert missing == []
