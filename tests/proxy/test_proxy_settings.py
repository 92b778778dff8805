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
])
def test_bad_values_fail_with_a_sentence_naming_them(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        ProxySettings.from_env(env)
