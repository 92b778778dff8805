"""What the sandbox can be told, from keywords or from ``PINSIGNAL_SANDBOX_*`` variables.

    settings = SandboxSettings(tokens=("t1",), accounts=("549755885175",), partial_failure=200)
    settings = SandboxSettings.from_env()     # PINSIGNAL_SANDBOX_TOKENS=t1,t2 ...

Every value is checked when the object is built, so a bad option fails before the server starts,
with one sentence that names the option and the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pinsignal.envsettings import from_env, prefixed
from pinsignal.errors import ConfigError

__all__ = ["DEFAULT_TOKEN", "DEMO_AD_ACCOUNT", "PartialFailure", "SandboxSettings", "UnknownEventNames"]

DEFAULT_TOKEN = "sandbox-token"
"""The one token the sandbox accepts when none is given (documented in docs/sandbox.md)."""

DEMO_AD_ACCOUNT = "549755885175"
"""The ad account id the demo and the test fixture use (any id is accepted unless ``accounts`` is set)."""

PartialFailure = Literal[422, 200]
UnknownEventNames = Literal["warn", "fail"]

ACCOUNT_RE = re.compile(r"^\d{1,18}$")


@dataclass(frozen=True)
class SandboxSettings:
    """The sandbox's behaviour. Each field has a ``PINSIGNAL_SANDBOX_<FIELD>`` variable."""

    host: str = "127.0.0.1"
    port: int = 8410
    tokens: tuple[str, ...] = (DEFAULT_TOKEN,)
    # empty: every well-formed ad account id exists and every known token may use it
    accounts: tuple[str, ...] = ()
    # HTTP status when some events fail: Pinterest's real choice is unconfirmed (reference 8.2)
    partial_failure: PartialFailure = 422
    max_age_days: float = 7.0
    # Pinterest's published limit: 5,000 calls per minute per ad account
    calls_per_minute: int = 5000
    # reference 4.1: a 2026 measurement saw unknown names processed with a warning; docs say failed
    unknown_event_names: UnknownEventNames = "warn"
    test_event_limit: int = 20
    dedup_hours: float = 48.0
    # memory bounds: counters cover everything, the stores keep the newest entries
    max_recorded: int = 200_000
    max_dedup_keys: int = 2_000_000
    max_body_bytes: int = 32 * 1024 * 1024
    # reference 8.1: Pinterest is moving to omitting empty optional fields; default is the observed ""
    omit_empty_messages: bool = False

    def __post_init__(self) -> None:
        if not self.tokens or any(not token.strip() or any(c.isspace() for c in token) for token in self.tokens):
            raise ConfigError(
                f"PINSIGNAL_SANDBOX_TOKENS must list at least one token without spaces, got {len(self.tokens)} "
                "token(s) with an empty or spaced one."
            )
        for account in self.accounts:
            if not ACCOUNT_RE.match(account):
                raise ConfigError(
                    f"PINSIGNAL_SANDBOX_ACCOUNTS entries must be numeric ad account ids (up to 18 digits), "
                    f"got {account!r}."
                )
        if self.partial_failure not in (422, 200):
            raise ConfigError(f"PINSIGNAL_SANDBOX_PARTIAL_FAILURE must be 422 or 200, got {self.partial_failure!r}.")
        if self.unknown_event_names not in ("warn", "fail"):
            raise ConfigError(
                f"PINSIGNAL_SANDBOX_UNKNOWN_EVENT_NAMES must be 'warn' or 'fail', got {self.unknown_event_names!r}."
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"PINSIGNAL_SANDBOX_PORT must be a port number, got {self.port}.")
        for name in ("max_age_days", "dedup_hours"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"PINSIGNAL_SANDBOX_{name.upper()} must be positive, got {getattr(self, name)}.")
        for name in ("calls_per_minute", "test_event_limit", "max_recorded", "max_dedup_keys", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"PINSIGNAL_SANDBOX_{name.upper()} must be a positive whole number, got {getattr(self, name)}."
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SandboxSettings:
        """Settings from ``PINSIGNAL_SANDBOX_*`` variables; keyword ``overrides`` win over them."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return from_env(cls, prefixed(cls, "PINSIGNAL_SANDBOX_"), environ, overrides=given)

    def with_(self, **changes: Any) -> SandboxSettings:
        """A copy with some values changed (validated again)."""
        return replace(self, **changes)

