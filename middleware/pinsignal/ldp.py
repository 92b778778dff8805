"""Limited Data Processing (DESIGN 8.2): which events carry ``opt_out_type: "LDP"``, and the flag itself.

Pinterest asks advertisers who honour US state privacy laws to flag such events; the v5 schema puts
the flag in ``custom_data.opt_out_type``, a comma-separated list whose one accepted value is ``LDP``
(``reference/pinterest-api.md`` 9.2). An event is flagged when any of these says so:

* ``PINSIGNAL_LDP=always``: every event;
* ``PINSIGNAL_LDP=gpc``: a visitor whose browser sends ``Sec-GPC: 1`` (Global Privacy Control) is
  sent with LDP instead of not at all (in the default ``off`` mode, GPC refuses, see
  :mod:`pinsignal.consent`);
* the visitor's own choice, ``pinsignal.consent({advertising: true, ldp: true})`` in the browser,
  kept in the ``_psl`` cookie;
* ``ldp=True`` in ``track()``, ``Tracker.track()`` or ``remember()`` (kept with the visitor), an
  ``ldp`` column in ``pinsignal import``, or ``context.limited_data_processing: true`` on the event.

The flag is added to what the pipelines made, so a pipeline of the site's own that does not map it
still sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pinsignal.config import Config

if TYPE_CHECKING:
    from pinsignal.collector.intake import Intake, VisitorRequest

__all__ = ["LDP", "LDP_COOKIE", "LdpPolicy", "consent_cookies", "flag_ldp"]

LDP = "LDP"
LDP_COOKIE = "_psl"  # "1" while the visitor asked for Limited Data Processing (set by POST {prefix}/consent)


class LdpPolicy:
    """``PINSIGNAL_LDP`` applied to a request's signals."""

    __slots__ = ("always", "mode", "on_gpc")

    def __init__(self, config: Config) -> None:
        self.mode = config.ldp
        self.always = config.ldp == "always"
        self.on_gpc = config.ldp == "gpc"

    def for_request(self, *, gpc: bool, cookies: Mapping[str, str]) -> bool:
        """Whether a request's events are flagged: the mode, Global Privacy Control, the ``_psl`` cookie."""
        return self.always or (gpc and self.on_gpc) or cookies.get(LDP_COOKIE) == "1"


def flag_ldp(event: dict[str, Any]) -> None:
    """Add ``LDP`` to a v5 event's ``custom_data.opt_out_type`` (kept once, other flags kept)."""
    custom = event.get("custom_data")
    if type(custom) is not dict:
        custom = event["custom_data"] = {}
    current = custom.get("opt_out_type")
    if type(current) is str and current.strip():
        flags = [flag.strip() for flag in current.split(",") if flag.strip()]
        if LDP not in flags:
            custom["opt_out_type"] = ",".join([*flags, LDP])
    else:
        custom["opt_out_type"] = LDP


def consent_cookies(intake: Intake, payload: Mapping[str, Any], visitor: VisitorRequest, granted: bool) -> list[str]:
    """The ``_psl`` cookie for a ``POST {prefix}/consent`` body: set by ``"ldp": true`` with consent,
    expired by ``"ldp": false`` or a refusal."""
    ldp = payload.get("ldp")
    if granted and ldp is True:
        return [intake.cookies.consent(LDP_COOKIE, True, secure=visitor.secure, host=visitor.host)]
    if (ldp is False or not granted) and LDP_COOKIE in visitor.cookies:
        return [intake.cookies.expire(LDP_COOKIE, secure=visitor.secure, host=visitor.host)]
    return []
