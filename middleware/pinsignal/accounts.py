"""Several ad accounts from one deployment: ``PINSIGNAL_ACCOUNTS`` (DESIGN 8.4).

The file lists accounts; an event goes to the first one whose ``match`` it meets, else to the
default account (``PINTEREST_AD_ACCOUNT_ID``)::

    accounts:
      - id: "549755885175"
        token_env: SHOP_TOKEN_EU        # the variable that holds this account's token
        match:
          hosts: ["shop.example.eu", "*.shop.example.eu"]
      - id: "549755885176"
        token_env: SHOP_TOKEN_WHOLESALE
        match:
          sources: [wholesale-backend]       # write-key names of PINSIGNAL_WRITE_KEYS
      - id: "549755885177"
        token_env: SHOP_TOKEN_OUTLET
        match:
          conditions:                        # the pipeline condition format, on the envelope
            - {field: properties.store, operator: equals, value: outlet}

Within one ``match``, every kind given must hold (a host glob, a source name, and all the
conditions); a list of globs or names matches when any of its items does. The host is the one of
the event's page URL, else the request's ``Host``. The file holds variable names only: tokens are
read from the environment by the worker and never logged. A bad file fails start-up with
``file:line: message``.

:meth:`Accounts.route` is the one place an event's account is decided: the collector calls it with
the request's host and write-key name, ``pinsignal import`` with a row's envelope (conditions and
``context.page.url``), and ``pinsignal quarantine replay`` for an event quarantined before its
account was recorded.

    routes = Accounts.load(Path("accounts.yaml"), default="549755885175")
    routes.route(envelope, host="shop.example.eu", source_name=None)    # '549755885175'
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pinsignal.errors import ConfigError
from pinsignal.pipeline.conditions import Predicate, compile_conditions
from pinsignal.pipeline.yamlsource import SourceError, YMap, YSeq, read_yaml

if TYPE_CHECKING:
    from pinsignal.config import Config

__all__ = ["Account", "Accounts"]

_ID = re.compile(r"^\d{1,18}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_MATCH_KEYS = ("hosts", "sources", "conditions")
_ACCOUNT_KEYS = ("id", "token_env", "match")


@dataclass(frozen=True)
class Account:
    """One routed account: its id, the variable of its token, and what it matches."""

    id: str
    token_env: str
    hosts: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    conditions: Predicate | None = None
    line: int = 1

    def matches(self, envelope: Any, host: str | None, source_name: str | None) -> bool:
        if self.hosts and (host is None or not any(fnmatch.fnmatchcase(host, glob) for glob in self.hosts)):
            return False
        if self.sources and source_name not in self.sources:
            return False
        return self.conditions is None or self.conditions(envelope)

    def token(self, environ: Mapping[str, str]) -> str:
        """This account's token from ``environ``; a missing one is a :class:`ConfigError` naming the variable."""
        value = environ.get(self.token_env, "").strip()
        if not value:
            raise ConfigError(f"{self.token_env} is not set; it holds the access token of ad account {self.id} "
                              "(PINSIGNAL_ACCOUNTS).")
        return value


@dataclass(frozen=True)
class Accounts:
    """The routed accounts in file order, and the default account (``None``: the unassigned stream)."""

    accounts: tuple[Account, ...] = ()
    default: str | None = None

    @classmethod
    def load(cls, path: Path | None, *, default: str | None = None) -> Accounts:
        """Read ``PINSIGNAL_ACCOUNTS``; raises :class:`ConfigError` with every ``file:line: message``."""
        if path is None:
            return cls((), default)
        try:
            document = read_yaml(Path(path))
        except SourceError as exc:
            raise ConfigError(f"{path}:{exc.line}: {exc.message}") from None
        checker = _Checker(str(path))
        accounts = checker.document(document)
        if checker.errors:
            raise ConfigError("PINSIGNAL_ACCOUNTS has errors:\n" + "\n".join(checker.errors))
        return cls(tuple(accounts), default)

    @classmethod
    def from_config(cls, config: Config) -> Accounts:
        """The routes of ``config``: its ``PINSIGNAL_ACCOUNTS`` file and ``PINTEREST_AD_ACCOUNT_ID``."""
        return cls.load(config.accounts, default=config.ad_account_id)

    @property
    def ids(self) -> list[str]:
        """Every account events can go to: the default first, then the file's, each once."""
        found = [self.default] if self.default else []
        return list(dict.fromkeys([*found, *(account.id for account in self.accounts)]))

    def require(self, account_id: str, *, option: str = "--account") -> str:
        """``account_id`` if events can go to it (one of :attr:`ids`), else a one-sentence :class:`ConfigError`.

        ``routes.require("549755885176")``: what ``pinsignal import --account`` checks before it reads a row.
        """
        if account_id in self.ids:
            return account_id
        if not self.ids:
            raise ConfigError(f"{option} {account_id!r}: no ad account is configured here; set "
                              "PINTEREST_AD_ACCOUNT_ID or list the account in PINSIGNAL_ACCOUNTS.")
        raise ConfigError(f"{option} {account_id!r} is not an ad account of this deployment; use one of "
                          f"{', '.join(self.ids)} (PINTEREST_AD_ACCOUNT_ID and the ids of PINSIGNAL_ACCOUNTS).")

    def route(self, envelope: Any, *, host: str | bytes | None = None, source_name: str | None = None) -> str | None:
        """The account of one envelope: the first match, else the default (``None`` when there is none)."""
        if not self.accounts:
            return self.default
        site = _page_host(envelope)
        if site is None and host is not None:
            site = (host.decode("latin-1") if isinstance(host, bytes) else host).rsplit(":", 1)[0].lower()
        for account in self.accounts:
            if account.matches(envelope, site, source_name):
                return account.id
        return self.default


def _page_host(envelope: Any) -> str | None:
    try:
        url = envelope["context"]["page"]["url"]
    except (KeyError, TypeError):
        return None
    if type(url) is not str or not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


class _Checker:
    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[str] = []

    def error(self, line: int, message: str) -> None:
        self.errors.append(f"{self.file}:{line}: {message}")

    def document(self, document: Any) -> list[Account]:
        if not isinstance(document, YMap) or not isinstance(document.get("accounts"), YSeq):
            line = document.line if isinstance(document, YMap) else 1
            self.error(line, "the file must be a mapping with an 'accounts' list "
                             "(accounts: [{id: '549755885175', token_env: SHOP_TOKEN_EU, match: {...}}])")
            return []
        items: YSeq = document["accounts"]
        for key in document:
            if key != "accounts":
                self.error(document.line_of(key), f"unknown key {key!r}; the file has one key, 'accounts'")
        accounts: list[Account] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            account = self.account(item, items.line_of(index))
            if account is None:
                continue
            if account.id in seen:
                self.error(account.line, f"ad account {account.id} is listed twice (first on line {seen[account.id]})")
                continue
            seen[account.id] = account.line
            accounts.append(account)
        return accounts

    def account(self, item: Any, line: int) -> Account | None:
        if not isinstance(item, YMap):
            self.error(line, "an account must be a mapping with id, token_env and match")
            return None
        for key in item:
            if key not in _ACCOUNT_KEYS:
                self.error(item.line_of(key), f"unknown key {key!r}; an account has id, token_env and match")
        account_id, token_env, match = item.get("id"), item.get("token_env"), item.get("match")
        ok = True
        if isinstance(account_id, int) and not isinstance(account_id, bool):
            account_id = str(account_id)
        if not isinstance(account_id, str) or not _ID.match(account_id):
            self.error(item.line_of("id"),
                       f"id must be the numeric ad account id (up to 18 digits), got {account_id!r}")
            ok = False
        if not isinstance(token_env, str) or not _ENV.match(token_env):
            # a token pasted here by mistake must not be echoed into a log
            self.error(item.line_of("token_env"), "token_env must name the environment variable that holds the "
                                                  "account's token (like SHOP_TOKEN_EU), not the token itself")
            ok = False
        if not isinstance(match, YMap) or not any(key in match for key in _MATCH_KEYS):
            self.error(item.line_of("match"), "match must be a mapping with hosts, sources or conditions")
            return None
        for key in match:
            if key not in _MATCH_KEYS:
                self.error(match.line_of(key), f"unknown match {key!r}; use hosts, sources or conditions")
                ok = False
        hosts = self.names(match, "hosts")
        sources = self.names(match, "sources")
        conditions_ok, predicate = self.conditions(match)
        if not ok or hosts is None or sources is None or not conditions_ok:
            return None
        return Account(id=str(account_id), token_env=str(token_env), hosts=tuple(h.lower() for h in hosts),
                       sources=sources, conditions=predicate, line=item.line)

    def names(self, match: YMap, key: str) -> tuple[str, ...] | None:
        value = match.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            self.error(match.line_of(key), f"{key} must be a list of non-empty strings, got {value!r}")
            return None
        return tuple(value)

    def conditions(self, match: YMap) -> tuple[bool, Predicate | None]:
        """(whether they are valid, the compiled predicate or ``None`` when there are none)."""
        raw = match.get("conditions")
        if raw is None:
            return True, None
        # the pipeline loader checks conditions exactly as it does in a trigger, with their lines
        from pinsignal.pipeline.loader import _Checker as PipelineChecker

        checker = PipelineChecker(self.file)
        if not isinstance(raw, YSeq) or not raw:
            self.error(match.line_of("conditions"), "conditions must be a non-empty list of "
                                                    "{field, operator, value} mappings")
            return False, None
        parsed = [checker.condition(item, raw.line_of(index)) for index, item in enumerate(raw)]
        if checker.errors:
            self.errors.extend(checker.errors)
            return False, None
        return True, compile_conditions([condition for condition in parsed if condition is not None])
