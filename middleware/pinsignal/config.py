"""Settings, from keywords or from the environment.

Every environment variable of DESIGN 2.3 has a ``Config`` keyword of the same meaning::

    config = Config.from_env()                      # reads PINTEREST_* and PINSIGNAL_*
    config = Config(ad_account_id="549755885175", access_token="pina_...", secret="...")

A missing or malformed value raises :class:`~pinsignal.errors.ConfigError` with one sentence that
names the variable and the value, so start-up fails before the first request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from pinsignal.envsettings import env_bool, env_list, from_env
from pinsignal.errors import ConfigError

__all__ = ["ENVIRONMENT", "Config", "ConsentMode", "LdpMode", "env_bool", "env_list", "shipped_pipelines_dir"]

ConsentMode = Literal["opt-out", "opt-in"]
LdpMode = Literal["off", "always", "gpc"]

DEFAULT_API_URL = "https://api.pinterest.com"
_AD_ACCOUNT_RE = re.compile(r"^\d{1,18}$")
_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


def shipped_pipelines_dir() -> Path:
    """The folder of pipeline files that ships with pinsignal.

    In a wheel they are installed inside the package; in a source checkout (editable install)
    they sit at the repository root beside ``middleware/``.
    """
    here = Path(__file__).resolve().parent
    installed = here / "pipelines"
    if installed.is_dir():
        return installed
    return here.parent.parent / "pipelines"


@dataclass(frozen=True)
class Config:
    """Everything pinsignal can be told. Unknown keywords are a ``TypeError``."""

    # Pinterest
    ad_account_id: str | None = None
    access_token: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_API_URL
    test_mode: bool = False
    # storage
    redis_url: str | None = None
    redis_cluster: bool | None = None  # None: ask the server (INFO cluster) at connect
    data_dir: Path = Path(".pinsignal")
    # cookies and collector
    secret: str | None = field(default=None, repr=False)
    pipelines: tuple[Path, ...] = ()
    cookie_domain: str | None = None
    collector_prefix: str = "/_ps"
    consent: ConsentMode = "opt-out"
    consent_cookie: str | None = None
    trusted_proxies: tuple[str, ...] = ("127.0.0.1",)
    allowed_origins: tuple[str, ...] = ()
    epik_httponly: bool = False
    default_country: str = "US"
    # server sources (DESIGN 8.1): name:key pairs or bare keys; never shown
    write_keys: tuple[str, ...] = field(default=(), repr=False)
    # visitors remembered by key, Limited Data Processing (DESIGN 8.2)
    remember_days: float = 7.0
    ldp: LdpMode = "off"
    # several ad accounts (DESIGN 8.4)
    accounts: Path | None = None
    # delivery
    http_timeout: float = 10.0
    batch_max_wait: float = 0.5
    metrics_port: int | None = None
    # seeing what Pinterest sees (DESIGN 8.3)
    trace_maxlen: int = 20_000
    quarantine_max: int = 10_000
    quarantine_days: float = 7.0
    quarantine_unmatched: bool = False
    admin_token: str | None = field(default=None, repr=False)
    read_token: str | None = field(default=None, repr=False)
    # limits against hostile input (issue 18, docs/security.md)
    client_events_per_minute: int = 1200
    client_burst: int = 400
    browser_dedup_max: int = 100_000
    track_raises: bool = False
    metrics_host: str | None = None

    def __post_init__(self) -> None:
        if self.ad_account_id is not None and not _AD_ACCOUNT_RE.match(self.ad_account_id):
            raise ConfigError(
                f"PINTEREST_AD_ACCOUNT_ID must be the numeric ad account id (up to 18 digits), "
                f"got {self.ad_account_id!r}."
            )
        if self.access_token is not None and not self.access_token.strip():
            raise ConfigError("PINTEREST_ACCESS_TOKEN is set but empty; set the conversion access token.")
        if not re.match(r"^https?://[^\s/]+", self.api_url):
            raise ConfigError(f"PINTEREST_API_URL must be an http(s) URL, got {self.api_url!r}.")
        if not _PREFIX_RE.match(self.collector_prefix):
            raise ConfigError(
                f"PINSIGNAL_COLLECTOR_PREFIX must be a path like '/_ps', got {self.collector_prefix!r}."
            )
        if self.consent not in ("opt-out", "opt-in"):
            raise ConfigError(f"PINSIGNAL_CONSENT must be 'opt-out' or 'opt-in', got {self.consent!r}.")
        if self.cookie_domain is not None and not re.match(r"^(auto|\.?[A-Za-z0-9.-]+)$", self.cookie_domain):
            raise ConfigError(
                f"PINSIGNAL_COOKIE_DOMAIN must be 'auto' or a domain name, got {self.cookie_domain!r}."
            )
        for proxy in self.trusted_proxies:
            _check_proxy(proxy)
        for origin in self.allowed_origins:
            if not re.match(r"^https?://[^\s/]+$", origin):
                raise ConfigError(
                    f"PINSIGNAL_ALLOWED_ORIGINS entries must look like 'https://shop.example', got {origin!r}."
                )
        if self.write_keys:
            from pinsignal.sources import WriteKeys

            WriteKeys.parse(self.write_keys)
        if not _COUNTRY_RE.match(self.default_country):
            raise ConfigError(
                f"PINSIGNAL_DEFAULT_COUNTRY must be a two-letter ISO country code like 'US', "
                f"got {self.default_country!r}."
            )
        if self.remember_days <= 0:
            raise ConfigError(
                f"PINSIGNAL_REMEMBER_DAYS must be a positive number of days, got {self.remember_days}.")
        if self.ldp not in ("off", "always", "gpc"):
            raise ConfigError(f"PINSIGNAL_LDP must be 'off', 'always' or 'gpc', got {self.ldp!r}.")
        if self.accounts is not None:
            from pinsignal.accounts import Accounts

            Accounts.load(self.accounts)  # a bad file fails start-up with file:line: message
        if self.http_timeout <= 0:
            raise ConfigError(f"PINSIGNAL_HTTP_TIMEOUT must be a positive number of seconds, got {self.http_timeout}.")
        if self.batch_max_wait < 0:
            raise ConfigError(f"PINSIGNAL_BATCH_MAX_WAIT must not be negative, got {self.batch_max_wait}.")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"PINSIGNAL_METRICS_PORT must be a port number, got {self.metrics_port}.")
        if self.trace_maxlen < 0:
            raise ConfigError(f"PINSIGNAL_TRACE_MAXLEN must be 0 (no trace) or more, got {self.trace_maxlen}.")
        if self.quarantine_max < 0:
            raise ConfigError(f"PINSIGNAL_QUARANTINE_MAX must be 0 (no quarantine) or more, got {self.quarantine_max}.")
        if self.quarantine_days <= 0:
            raise ConfigError(
                f"PINSIGNAL_QUARANTINE_DAYS must be a positive number of days, got {self.quarantine_days}.")
        if self.admin_token is not None and len(self.admin_token.strip()) < 16:
            raise ConfigError("PINSIGNAL_ADMIN_TOKEN must be at least 16 characters long; use a long random string.")
        if self.read_token is not None and not self.read_token.strip():
            raise ConfigError("PINTEREST_READ_TOKEN is set but empty; set an ads:read token or unset it.")
        if self.client_events_per_minute < 0:
            raise ConfigError("PINSIGNAL_CLIENT_EVENTS_PER_MINUTE must be 0 (no quota) or more, "
                              f"got {self.client_events_per_minute}.")
        if self.client_burst < 1:
            raise ConfigError(f"PINSIGNAL_CLIENT_BURST must be at least 1, got {self.client_burst}.")
        if self.browser_dedup_max < 0:
            raise ConfigError(f"PINSIGNAL_BROWSER_DEDUP_MAX must be 0 or more, got {self.browser_dedup_max}.")
        if self.metrics_host is not None and not self.metrics_host.strip():
            raise ConfigError("PINSIGNAL_METRICS_HOST is set but empty; set an address such as 127.0.0.1 or 0.0.0.0.")
        if self.secret is not None and len(self.secret) < 16:
            raise ConfigError("PINSIGNAL_SECRET must be at least 16 characters long; use a long random string.")
        if self.secret is not None and _is_placeholder(self.secret):
            # the value is not quoted: a real secret that happened to match must not reach a log
            raise ConfigError(
                "PINSIGNAL_SECRET is still a placeholder from an example or deploy file, so anyone could forge "
                "the signed cookies; set it to a long random string "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')."
            )

    # ------------------------------------------------------------------ derived values

    @property
    def pipeline_paths(self) -> tuple[Path, ...]:
        """The pipeline files or folders to load: the configured ones, else the shipped folder."""
        return self.pipelines or (shipped_pipelines_dir(),)

    @property
    def can_deliver(self) -> bool:
        return bool(self.ad_account_id and self.access_token)

    @property
    def batch_size(self) -> int:
        """Events per request: Pinterest processes only the first 20 of a test request."""
        return 20 if self.test_mode else 1000

    @property
    def events_url(self) -> str:
        if not self.ad_account_id:
            raise ConfigError("PINTEREST_AD_ACCOUNT_ID is not set; it is required to deliver events.")
        return f"{self.api_url.rstrip('/')}/v5/ad_accounts/{self.ad_account_id}/events"

    def require_secret(self) -> str:
        if not self.secret:
            raise ConfigError(
                "PINSIGNAL_SECRET is not set; set it to a long random string "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')."
            )
        return self.secret

    def with_(self, **changes: Any) -> Config:
        """A copy with some values changed (validated again)."""
        return replace(self, **changes)

    # ------------------------------------------------------------------ environment

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read DESIGN 2.3's variables; keywords override them."""
        return from_env(cls, ENVIRONMENT, environ, parsers=_PARSERS, overrides=overrides)

    @classmethod
    def env_variables(cls) -> dict[str, str]:
        """Map of ``Config`` field name to its environment variable (for docs and tests)."""
        return dict(ENVIRONMENT)


# Secrets shown in pinsignal's own docs and deploy files, and the words placeholders are made of.
PLACEHOLDER_SECRETS = frozenset({
    "replace-with-a-long-random-string",
    "change-me-to-a-long-random-value",
    "a-long-random-string-from-your-vault",
})
_PLACEHOLDER_RE = re.compile(r"change[-_ ]?me|replace[-_ ]?(?:me|with)|your[-_ ]?secret", re.IGNORECASE)


def _is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDER_SECRETS or _PLACEHOLDER_RE.search(secret) is not None


def _check_proxy(value: str) -> None:
    # Entries are compared with the peer's IP address: a host name would never match, and silently
    # trusting nobody is worse than failing at start-up. "localhost" and "*" are the two words known.
    if value.lower() in ("localhost", "*"):
        return
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(
            f"PINSIGNAL_TRUSTED_PROXIES entries must be IP addresses, networks like '10.0.0.0/8', 'localhost' "
            f"or '*' (host names are never matched against a peer's address), got {value!r}."
        ) from None


# Config field -> environment variable
ENVIRONMENT: dict[str, str] = {
    "ad_account_id": "PINTEREST_AD_ACCOUNT_ID",
    "access_token": "PINTEREST_ACCESS_TOKEN",
    "api_url": "PINTEREST_API_URL",
    "test_mode": "PINTEREST_TEST_MODE",
    "redis_url": "REDIS_URL",
    "redis_cluster": "PINSIGNAL_REDIS_CLUSTER",
    "data_dir": "PINSIGNAL_DATA_DIR",
    "secret": "PINSIGNAL_SECRET",
    "pipelines": "PINSIGNAL_PIPELINES",
    "cookie_domain": "PINSIGNAL_COOKIE_DOMAIN",
    "collector_prefix": "PINSIGNAL_COLLECTOR_PREFIX",
    "consent": "PINSIGNAL_CONSENT",
    "consent_cookie": "PINSIGNAL_CONSENT_COOKIE",
    "trusted_proxies": "PINSIGNAL_TRUSTED_PROXIES",
    "allowed_origins": "PINSIGNAL_ALLOWED_ORIGINS",
    "epik_httponly": "PINSIGNAL_EPIK_HTTPONLY",
    "default_country": "PINSIGNAL_DEFAULT_COUNTRY",
    "write_keys": "PINSIGNAL_WRITE_KEYS",
    "remember_days": "PINSIGNAL_REMEMBER_DAYS",
    "ldp": "PINSIGNAL_LDP",
    "accounts": "PINSIGNAL_ACCOUNTS",
    "http_timeout": "PINSIGNAL_HTTP_TIMEOUT",
    "batch_max_wait": "PINSIGNAL_BATCH_MAX_WAIT",
    "metrics_port": "PINSIGNAL_METRICS_PORT",
    "trace_maxlen": "PINSIGNAL_TRACE_MAXLEN",
    "quarantine_max": "PINSIGNAL_QUARANTINE_MAX",
    "quarantine_days": "PINSIGNAL_QUARANTINE_DAYS",
    "quarantine_unmatched": "PINSIGNAL_QUARANTINE_UNMATCHED",
    "admin_token": "PINSIGNAL_ADMIN_TOKEN",
    "read_token": "PINTEREST_READ_TOKEN",
    "client_events_per_minute": "PINSIGNAL_CLIENT_EVENTS_PER_MINUTE",
    "client_burst": "PINSIGNAL_CLIENT_BURST",
    "browser_dedup_max": "PINSIGNAL_BROWSER_DEDUP_MAX",
    "track_raises": "PINSIGNAL_TRACK_RAISES",
    "metrics_host": "PINSIGNAL_METRICS_HOST",
}

_PARSERS = {"default_country": str.upper}

assert set(ENVIRONMENT) == {f.name for f in fields(Config)}, "every Config field needs an environment variable"
