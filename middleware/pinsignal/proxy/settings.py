"""The proxy's own settings, from keywords or ``PINSIGNAL_UPSTREAM`` and friends.

    settings = ProxySettings(upstream="http://127.0.0.1:8080", inject=True)
    settings = ProxySettings.from_env()     # PINSIGNAL_UPSTREAM, PINSIGNAL_PROXY_TIMEOUT, ...

Everything else (collector prefix, trusted proxies, secret, consent) is the middleware's ``Config``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pinsignal.config import env_bool
from pinsignal.errors import ConfigError

__all__ = ["ENVIRONMENT", "HostHeader", "ProxySettings"]

HostHeader = Literal["keep", "upstream"]
_UPSTREAM_RE = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")

# ProxySettings field -> environment variable (the command line's options read these as defaults)
ENVIRONMENT = {
    "upstream": "PINSIGNAL_UPSTREAM",
    "timeout": "PINSIGNAL_PROXY_TIMEOUT",
    "host_header": "PINSIGNAL_PROXY_HOST_HEADER",
    "inject": "PINSIGNAL_PROXY_INJECT",
    "server_pageviews": "PINSIGNAL_PROXY_SERVER_PAGEVIEWS",
    "max_connections": "PINSIGNAL_PROXY_MAX_CONNECTIONS",
}


@dataclass(frozen=True)
class ProxySettings:
    """Where to forward and how. ``timeout`` bounds connecting and each wait for upstream bytes."""

    upstream: str
    timeout: float = 30.0
    host_header: HostHeader = "keep"
    inject: bool = False
    server_pageviews: bool = False
    max_connections: int = 256
    collector_prefix: str = "/_ps"

    def __post_init__(self) -> None:
        if not _UPSTREAM_RE.match(self.upstream):
            raise ConfigError(
                f"PINSIGNAL_UPSTREAM must be an http(s) URL like 'http://127.0.0.1:8080' "
                f"(no query or fragment), got {self.upstream!r}."
            )
        if not self.timeout > 0:
            raise ConfigError(f"PINSIGNAL_PROXY_TIMEOUT must be a positive number of seconds, got {self.timeout!r}.")
        if self.host_header not in ("keep", "upstream"):
            raise ConfigError(f"PINSIGNAL_PROXY_HOST_HEADER must be 'keep' or 'upstream', got {self.host_header!r}.")
        if self.max_connections < 1:
            raise ConfigError(
                f"PINSIGNAL_PROXY_MAX_CONNECTIONS must be at least 1, got {self.max_connections!r}."
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ProxySettings:
        """Read the ``PINSIGNAL_UPSTREAM``/``PINSIGNAL_PROXY_*`` variables; keywords override them."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, variable in ENVIRONMENT.items():
            raw = env.get(variable)
            if raw is None or not raw.strip():
                continue
            values[name] = _parse(name, variable, raw.strip())
        values.update(overrides)
        if "upstream" not in values:
            raise ConfigError("PINSIGNAL_UPSTREAM is not set; give the site to proxy, e.g. --upstream http://127.0.0.1:8080.")
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The same settings as environment variables (how ``--workers`` processes receive them)."""
        return {
            ENVIRONMENT["upstream"]: self.upstream,
            ENVIRONMENT["timeout"]: repr(self.timeout),
            ENVIRONMENT["host_header"]: self.host_header,
            ENVIRONMENT["inject"]: "true" if self.inject else "false",
            ENVIRONMENT["server_pageviews"]: "true" if self.server_pageviews else "false",
            ENVIRONMENT["max_connections"]: str(self.max_connections),
        }


def _parse(name: str, variable: str, raw: str) -> Any:
    if name in ("inject", "server_pageviews"):
        try:
            return env_bool(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be true or false, got {raw!r}.") from None
    if name == "timeout":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be a number of seconds, got {raw!r}.") from None
    if name == "max_connections":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be a whole number, got {raw!r}.") from None
    return raw
