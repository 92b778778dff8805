"""The optional C speedups (pinsignal/_speedups.c) against their Python reference in asgi.py.

Both versions must give the same answer, the same scope changes and the same exceptions for any
input. CI must have built the C module (its compiler is there); elsewhere these tests skip when
the module was not built.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from pinsignal import asgi
from pinsignal.asgi import COOKIES_KEY, SENT

try:
    from pinsignal import _speedups
except ImportError:
    _speedups = None  # type: ignore[assignment]

# Read at import: the suite's fixtures clear PINSIGNAL_* variables from each test's environment.
PURE_PYTHON = bool(os.environ.get("PINSIGNAL_PURE_PYTHON"))
needs_c = pytest.mark.skipif(_speedups is None and not os.environ.get("CI"),
                             reason="the C speedups were not built (no compiler at install)")

QUICK: asgi.QuickEpik = (frozenset((b"cookie", b"sec-gpc")), b"_epik=",
                         {"http": b"; Max-Age=1; Path=/", "https": b"; Max-Age=1; Path=/; Secure"})


def test_ci_builds_and_uses_the_c_speedups() -> None:
    if PURE_PYTHON:
        assert not asgi.SPEEDUPS and asgi._cookie_send is asgi._cookie_send_py
        return
    if not os.environ.get("CI"):
        pytest.skip("only CI requires the compiler")
    assert _speedups is not None, "the C speedups were not built: is a C compiler installed?"
    assert asgi.SPEEDUPS and asgi._cookie_send is _speedups.cookie_send


def _outcome(call: Any) -> tuple[str, object]:
    try:
        return "returned", call()
    except Exception as error:  # the same exception type from both versions
        return "raised", type(error)


_NAMES = st.sampled_from([b"host", b"cookie", b"sec-gpc", b"accept", b"x-forwarded-proto", b"Cookie"])
# What servers give (a list of 2-tuples), where both versions must agree exactly ...
_LISTED = st.lists(st.tuples(_NAMES, st.binary(max_size=8)), max_size=6)
# ... and other shapes, which the C version leaves to the general path: the landing's result agrees.
_HEADERS = _LISTED | st.sampled_from([(), [(b"host",)], [[b"host", b"x"]], [(b"a", b"b", b"c")], ((b"host", b"x"),),
                                      ((b"cookie", b"x"),), [[b"sec-gpc", b"1"]]])
_AFTER = st.binary(max_size=12) | st.text("aZ09+-_%/", max_size=12).map(str.encode) | st.sampled_from(
    [b"A" * 1024, b"A" * 1025, b"abc\x00", "é".encode()])
_BEFORE = st.sampled_from([b"", b"&", b"a=1&", b"a=1", b"x", b"&&"]) | st.binary(max_size=6)


@needs_c
@settings(max_examples=500, deadline=None)
@given(headers=_LISTED, before=_BEFORE, after=_AFTER, scheme=st.sampled_from(["http", "https", "ws", 1]))
def test_first_visit_epik_matches_the_python_reference(headers: Any, before: bytes, after: bytes, scheme: Any
                                                        ) -> None:
    results = []
    for implementation in (_speedups.first_visit_epik, asgi._first_visit_epik_py):
        scope = {"headers": headers, "scheme": scheme}
        outcome = _outcome(lambda: implementation(QUICK, scope, before, after, COOKIES_KEY))  # noqa: B023
        results.append((outcome, scope.get(COOKIES_KEY)))
    assert results[0] == results[1]


@needs_c
@settings(max_examples=500, deadline=None)
@given(headers=_HEADERS, before=_BEFORE, after=_AFTER, scheme=st.sampled_from(["http", "https"]))
def test_a_landing_sets_the_same_cookie_with_either_version(headers: Any, before: bytes, after: bytes, scheme: str
                                                            ) -> None:
    from mw_support import wrap

    middleware = wrap()
    results = []
    for implementation in (_speedups.first_visit_epik, asgi._first_visit_epik_py):
        scope = {"type": "http", "headers": headers, "scheme": scheme, "path": "/",
                 "query_string": before + b"epik=" + after}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asgi, "_first_visit_epik", implementation)
            outcome = _outcome(lambda: middleware._landing(scope, before, after))  # noqa: B023
        results.append((outcome, scope.get(COOKIES_KEY)))
    assert results[0] == results[1]


@needs_c
def test_first_visit_epik_without_headers_or_scheme_raises_like_python() -> None:
    for scope in ({"scheme": "http"}, {"headers": []}):
        outcomes = [_outcome(lambda: f(QUICK, dict(scope), b"", b"abc", COOKIES_KEY))  # noqa: B023
                    for f in (_speedups.first_visit_epik, asgi._first_visit_epik_py)]
        assert outcomes[0] == outcomes[1] == ("raised", KeyError)


_MESSAGES = st.fixed_dictionaries({"type": st.sampled_from(["http.response.start", "http.response.body", "x"])},
                                  optional={"status": st.just(200), "body": st.just(b"ok"), "headers": st.sampled_from(
                                      [[], [(b"a", b"1")], ((b"a", b"1"),), None, 5])})
_PENDING = st.sampled_from([None, [], [(b"set-cookie", b"a=1")], [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
                            SENT, 0, "x"])


@needs_c
@settings(max_examples=500, deadline=None)
@given(messages=st.lists(_MESSAGES, max_size=4), pending=_PENDING)
def test_cookie_send_matches_the_python_reference(messages: list[dict[str, Any]], pending: object) -> None:
    results = []
    for implementation in (_speedups.cookie_send, asgi._cookie_send_py):
        scope: dict[str, Any] = {} if pending is None else {COOKIES_KEY: pending}
        received: list[Any] = []

        async def send(message: Any) -> None:
            received.append(message)  # noqa: B023

        wrapped = implementation(send, scope, COOKIES_KEY, SENT)
        outcomes = []
        for message in messages:
            original = dict(message)
            outcome = _outcome(lambda: asyncio.run(wrapped(message)))  # noqa: B023
            assert message == original  # never changed in place
            outcomes.append(outcome)
        results.append((outcomes, received, scope))
    assert results[0] == results[1]


@needs_c
def test_cookie_send_errors_match_python() -> None:
    class Scope(dict[str, Any]):  # a scope that is not exactly a dict takes the generic path
        pass

    for message in ({}, {"type": "http.response.start", "headers": 5}):
        outcomes = []
        for implementation in (_speedups.cookie_send, asgi._cookie_send_py):
            async def send(message: Any) -> None:
                pass

            wrapped = implementation(send, Scope({COOKIES_KEY: [(b"set-cookie", b"a=1")]}), COOKIES_KEY, SENT)
            outcomes.append(_outcome(lambda: asyncio.run(wrapped(message))))  # noqa: B023
        assert outcomes[0] == outcomes[1], message
    with pytest.raises(TypeError):
        _speedups.cookie_send(None, {}, COOKIES_KEY)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _speedups.cookie_send(send, {}, COOKIES_KEY, SENT)(message={})  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _speedups.first_visit_epik((1, 2, 3), {}, b"", b"a", COOKIES_KEY)  # type: ignore[arg-type]


@needs_c
def test_the_c_speedups_keep_no_references() -> None:
    """Nothing leaks: memory blocks stay the same over many calls of every branch."""
    async def send(message: Any) -> None:
        pass

    def round_trip() -> None:
        for pending in ([(b"set-cookie", b"a=1")], [], SENT):
            scope: dict[str, Any] = {COOKIES_KEY: pending}
            wrapped = _speedups.cookie_send(send, scope, COOKIES_KEY, SENT)
            for message in ({"type": "http.response.start", "headers": [(b"a", b"1")]}, {"type": "http.response.body"}):
                coroutine = wrapped(message)
                coroutine.close()
        for headers, after in (([(b"host", b"x")], b"abc"), ([(b"cookie", b"x")], b"abc"), ([], b"a-c"), ([], b"")):
            _speedups.first_visit_epik(QUICK, {"headers": headers, "scheme": "https"}, b"a=1&", after, COOKIES_KEY)
        for bad in ({}, {"type": "http.response.start", "headers": 5}):
            try:
                _speedups.cookie_send(send, {COOKIES_KEY: [(b"set-cookie", b"a=1")]}, COOKIES_KEY, SENT)(bad).close()
            except (KeyError, TypeError):
                pass

    for _ in range(200):
        round_trip()
    before = sys.getallocatedblocks()
    for _ in range(5000):
        round_trip()
    assert sys.getallocatedblocks() - before < 100


def test_the_middleware_lands_the_same_with_and_without_the_c_speedups(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole middleware: the same answers with the Python versions swapped in."""
    from mw_support import HTML, client, wrap

    async def requests() -> list[tuple[int, list[str]]]:
        answers = []
        async with client(wrap()) as http:
            for path, headers in (("/?epik=abc", HTML), ("/?a=1&epik=abc", HTML), ("/?epik=a-b", HTML),
                                  ("/?epik=abc", {**HTML, "sec-gpc": "1"}), ("/?epik=abc", {"cookie": "x=1"}),
                                  ("/page", HTML), ("/_ps/c.js", {})):
                response = await http.get(path, headers=headers)
                answers.append((response.status_code, response.headers.get_list("set-cookie")))
        return answers

    native = asyncio.run(requests())
    monkeypatch.setattr(asgi, "_cookie_send", asgi._cookie_send_py)
    monkeypatch.setattr(asgi, "_first_visit_epik", asgi._first_visit_epik_py)
    assert asyncio.run(requests()) == native
    assert [cookies[-1:] for _, cookies in native][:3] == [[f"_epik={value}; Max-Age=34560000; Path=/; SameSite=Lax"]
                                                           for value in ("abc", "abc", "a-b")]
