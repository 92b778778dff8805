"""The intake asks the consent policy about an event only when the event says something itself
(``context.consent``); every other event gets the request's verdict. Both give the same verdicts."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st

from pinsignal.collector.intake import _event_verdict
from pinsignal.config import Config
from pinsignal.consent import ConsentPolicy

advertising = st.one_of(st.booleans(), st.none(), st.text(max_size=3), st.integers(0, 1))
consent_values = st.one_of(st.none(), st.fixed_dictionaries({}, optional={"advertising": advertising}),
                           st.text(max_size=3), st.lists(st.booleans(), max_size=2))
contexts = st.one_of(
    st.none(), st.text(max_size=3), st.lists(st.integers(), max_size=2),
    st.fixed_dictionaries({}, optional={"consent": consent_values, "page": st.just({"url": "https://a.example/"}),
                                        "ip": st.just("203.0.113.9")}),
)
raws = st.one_of(st.just({}), st.fixed_dictionaries({"type": st.just("track")}, optional={"context": contexts}))


@settings(max_examples=600)
@given(mode=st.sampled_from(["opt-out", "opt-in"]), gpc=st.booleans(),
       cookie=st.sampled_from([None, "1", "granted", "0", "denied", "maybe"]), raw=raws)
def test_the_verdict_is_the_policys(mode: str, gpc: bool, cookie: str | None, raw: dict[str, Any]) -> None:
    policy = ConsentPolicy(Config(secret="s" * 32, consent=mode))  # type: ignore[arg-type]
    cookies = {} if cookie is None else {policy.cookie_name: cookie}
    consent = policy.for_request(gpc=gpc, cookies=cookies)
    assert _event_verdict(consent, raw, consent({})) == consent(raw)
