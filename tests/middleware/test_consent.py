from __future__ import annotations

import pytest

from pinsignal.config import Config
from pinsignal.consent import ConsentPolicy

SECRET = "consent-secret-0123456789"


@pytest.mark.parametrize(("mode", "gpc", "event", "cookie", "verdict"), [
    ("opt-out", False, None, None, "granted"),
    ("opt-out", True, None, None, "gpc"),
    ("opt-out", True, True, "1", "gpc"),
    ("opt-out", False, False, None, "refused"),
    ("opt-out", False, None, "0", "refused"),
    ("opt-out", False, True, "0", "granted"),     # the event's own answer is the newer one
    ("opt-out", False, None, "maybe", "granted"),
    ("opt-in", False, None, None, "not_given"),
    ("opt-in", False, None, "granted", "granted"),
    ("opt-in", False, True, None, "granted"),
    ("opt-in", False, None, "deny", "refused"),
    ("opt-in", False, "yes", None, "not_given"),  # only a JSON boolean counts
])
def test_verdicts(mode: str, gpc: bool, event: object, cookie: str | None, verdict: str) -> None:
    policy = ConsentPolicy(Config(secret=SECRET, consent=mode))  # type: ignore[arg-type]
    cookies = {"_psc": cookie} if cookie is not None else {}
    assert policy.verdict(gpc=gpc, event_consent=event, cookies=cookies) == verdict
    # The per-request form (what the collector uses for a batch) gives the same verdict.
    raw = {"context": {"consent": {"advertising": event}}} if event is not None else {"context": {}}
    assert policy.for_request(gpc=gpc, cookies=cookies)(raw) == verdict


def test_site_consent_cookie_is_read_not_written() -> None:
    policy = ConsentPolicy(Config(secret=SECRET, consent="opt-in", consent_cookie="cmp_ads"))
    assert policy.cookie_name == "cmp_ads" and not policy.writes_cookie
    assert policy.verdict(gpc=False, cookies={"_psc": "1"}) == "not_given"
    assert policy.verdict(gpc=False, cookies={"cmp_ads": "Accepted"}) == "granted"


def test_event_consent_is_read_from_context() -> None:
    assert ConsentPolicy.event_consent({"context": {"consent": {"advertising": False}}}) is False
    assert ConsentPolicy.event_consent({"context": "nonsense"}) is None
