"""Whether a visitor's events may go to Pinterest, and whether tracking cookies may be set.

``PINSIGNAL_CONSENT=opt-out`` (the default): send unless refused. ``opt-in``: nothing, not even a
cookie, before consent is given. The signals, strongest first:

1. ``Sec-GPC: 1`` (Global Privacy Control) refuses, in both modes, unless ``PINSIGNAL_LDP=gpc``
   makes it a request for Limited Data Processing instead (:mod:`pinsignal.ldp`);
2. the event's own ``context.consent.advertising`` (``true`` or ``false``);
3. the consent cookie: ``PINSIGNAL_CONSENT_COOKIE`` names the site's own (CMP) cookie, read only;
   without it pinsignal keeps its own ``_psc`` cookie, set by ``POST {prefix}/consent`` (which is
   what the browser script's ``pinsignal.consent({advertising})`` calls);
4. the mode's default.

A cookie value of ``1``, ``true``, ``yes``, ``granted``, ``allow``, ``accepted`` or ``on`` grants;
``0``, ``false``, ``no``, ``denied``, ``deny``, ``rejected`` or ``off`` refuses; anything else says
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

from pinsignal.config import Config

__all__ = ["OWN_CONSENT_COOKIE", "ConsentPolicy"]

OWN_CONSENT_COOKIE = "_psc"
_GRANTED = frozenset({"1", "true", "yes", "granted", "allow", "accepted", "on"})
_REFUSED = frozenset({"0", "false", "no", "denied", "deny", "rejected", "off"})

Verdict = Literal["granted", "gpc", "refused", "not_given"]


class ConsentPolicy:
    """Applies the consent mode to a request's signals."""

    def __init__(self, config: Config) -> None:
        self.mode = config.consent
        self.cookie_name = config.consent_cookie or OWN_CONSENT_COOKIE
        # A site's CMP cookie is the CMP's to write; pinsignal only writes its own.
        self.writes_cookie = config.consent_cookie is None
        self._default: bool = config.consent == "opt-out"
        # PINSIGNAL_LDP=gpc: a GPC visitor is sent with LDP instead of not at all
        self.gpc_refuses = config.ldp != "gpc"

    def cookie_state(self, cookies: Mapping[str, str]) -> bool | None:
        """What the consent cookie says: ``True``, ``False`` or ``None`` (absent or unreadable)."""
        raw = cookies.get(self.cookie_name)
        if raw is None:
            return None
        value = raw.strip().lower()
        if value in _GRANTED:
            return True
        if value in _REFUSED:
            return False
        return None

    def verdict(self, *, gpc: bool, event_consent: object = None, cookies: Mapping[str, str]) -> Verdict:
        """``"granted"``, or why not: ``"gpc"``, ``"refused"`` or ``"not_given"`` (opt-in, no answer yet)."""
        if gpc and self.gpc_refuses:
            return "gpc"
        given = event_consent if isinstance(event_consent, bool) else self.cookie_state(cookies)
        if given is None:
            given = self._default
            return "granted" if given else "not_given"
        return "granted" if given else "refused"

    def for_request(self, *, gpc: bool, cookies: Mapping[str, str]) -> Callable[[Mapping[str, object]], Verdict]:
        """:meth:`verdict` for each raw event of one request, with the request's signals read once."""
        if gpc and self.gpc_refuses:
            return lambda raw_event: "gpc"
        state = self.cookie_state(cookies)
        fallback: Verdict
        if state is None:
            fallback = "granted" if self._default else "not_given"
        else:
            fallback = "granted" if state else "refused"
        event_consent = self.event_consent

        def verdict(raw_event: Mapping[str, object]) -> Verdict:
            given = event_consent(raw_event)
            if given is True:
                return "granted"
            if given is False:
                return "refused"
            return fallback

        return verdict

    @staticmethod
    def event_consent(raw_event: Mapping[str, object]) -> object:
        """``context.consent.advertising`` of an incoming event, if it says anything."""
        context = raw_event.get("context")
        # Decoded JSON is plain dicts: an exact type test first (isinstance of an ABC costs about ten
        # times more, on 3.11 and 3.13 alike), and an absent context or consent (most events) never
        # reaches isinstance at all.
        if context is not None and (type(context) is dict or isinstance(context, Mapping)):
            consent = context.get("consent")
            if consent is not None and (type(consent) is dict or isinstance(consent, Mapping)):
                return consent.get("advertising")
        return None
