"""Every Redis name, held to its value: they are stored data, shared by every process and release."""

from __future__ import annotations

import pathlib
import re

import pytest

from pinsignal import keys

ACCOUNT = "549755885175"


def test_every_key_keeps_its_value() -> None:
    assert (keys.GROUP, keys.COUNTERS, keys.STREAMS, keys.PAUSED, keys.ARQ_QUEUE) == (
        "pinsignal", "pinsignal:counters", "pinsignal:streams", "pinsignal:paused", "pinsignal:arq")
    assert (keys.DLQ, keys.DLQ_INDEX, keys.DLQ_REASONS) == (
        "pinsignal:dlq", "pinsignal:dlq:index", "pinsignal:dlq:reasons")
    assert keys.UNASSIGNED_ACCOUNT == "default"
    assert keys.stream(ACCOUNT) == "pinsignal:events:549755885175"
    assert keys.stream(keys.UNASSIGNED_ACCOUNT) == "pinsignal:events:default"
    assert keys.seen_prefix(ACCOUNT) == "pinsignal:seen:549755885175:"
    assert keys.seen(ACCOUNT, "checkout", "o-1") == "pinsignal:seen:549755885175:checkout:o-1"
    assert keys.probe(ACCOUNT) == "pinsignal:probe:549755885175"
    assert keys.ratelimit(ACCOUNT) == "pinsignal:ratelimit:549755885175"
    assert keys.backoff(ACCOUNT) == "pinsignal:backoff:549755885175"


@pytest.mark.parametrize("account", [ACCOUNT, "default", "a:b"])
def test_account_of_inverts_stream(account: str) -> None:
    assert keys.account_of(keys.stream(account)) == account
    assert keys.account_of(keys.stream(account).encode()) == account


def test_no_other_module_spells_a_redis_key() -> None:
    package = pathlib.Path(keys.__file__).parent
    spelled = re.compile(r"""["']pinsignal:[a-z]""")
    offenders = [f"{path.relative_to(package)}:{number}" for path in sorted(package.rglob("*.py"))
                 if path.name != "keys.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if spelled.search(line)]
    assert offenders == []
