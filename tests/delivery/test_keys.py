"""Every Redis name, held to its value: they are stored data, shared by every process and release."""

from __future__ import annotations

import pathlib
import re

import pytest

from pinsignal import keys

ACCOUNT = "549755885175"


def test_every_key_keeps_its_value() -> None:
    assert (keys.GROUP, keys.ACCOUNTS, keys.PAUSED, keys.ARQ_QUEUE, keys.MIGRATING) == (
        "pinsignal", "pinsignal:accounts", "pinsignal:paused", "pinsignal:arq", "pinsignal:migrating")
    assert (keys.COUNTERS, keys.TRACE, keys.WARNINGS) == (
        "pinsignal:{global}:counters", "pinsignal:{global}:trace", "pinsignal:{global}:warnings")
    assert (keys.QUARANTINE, keys.QUARANTINE_INDEX) == ("pinsignal:{quarantine}:items", "pinsignal:{quarantine}:index")
    assert keys.UNASSIGNED_ACCOUNT == "default"
    assert keys.stream(ACCOUNT) == "pinsignal:{549755885175}:events"
    assert keys.stream(keys.UNASSIGNED_ACCOUNT) == "pinsignal:{default}:events"
    assert keys.seen_prefix(ACCOUNT) == "pinsignal:{549755885175}:seen:"
    assert keys.seen(ACCOUNT, "checkout", "o-1") == "pinsignal:{549755885175}:seen:checkout:o-1"
    assert keys.browser_seen_count(ACCOUNT, 7) == "pinsignal:{549755885175}:seen-count:7"
    assert keys.account_counters(ACCOUNT) == "pinsignal:{549755885175}:counters"
    assert (keys.dlq(ACCOUNT), keys.dlq_index(ACCOUNT), keys.dlq_reasons(ACCOUNT)) == (
        "pinsignal:{549755885175}:dlq", "pinsignal:{549755885175}:dlq:index", "pinsignal:{549755885175}:dlq:reasons")
    assert keys.probe(ACCOUNT) == "pinsignal:{549755885175}:probe"
    assert keys.ratelimit(ACCOUNT) == "pinsignal:{549755885175}:ratelimit"
    assert keys.backoff(ACCOUNT) == "pinsignal:{549755885175}:backoff"
    assert keys.imported_prefix(ACCOUNT) == "pinsignal:{549755885175}:imported:"
    assert keys.imported(ACCOUNT, "checkout", "o-1") == "pinsignal:{549755885175}:imported:checkout:o-1"
    assert keys.visitor("t") == "pinsignal:visitor:t"
    assert keys.import_progress("f") == "pinsignal:import:f"


def test_the_old_names_stay_what_older_versions_wrote() -> None:
    """pinsignal.migrate reads them: they are what a Redis written before issue 17 holds."""
    assert (keys.OLD_PREFIX, keys.OLD_COUNTERS, keys.OLD_STREAMS) == (
        "pinsignal:", "pinsignal:counters", "pinsignal:streams")
    assert (keys.OLD_DLQ, keys.OLD_DLQ_INDEX, keys.OLD_DLQ_REASONS) == (
        "pinsignal:dlq", "pinsignal:dlq:index", "pinsignal:dlq:reasons")
    assert keys.OLD_GLOBALS == {"pinsignal:trace": keys.TRACE, "pinsignal:warnings": keys.WARNINGS,
                                "pinsignal:quarantine": keys.QUARANTINE,
                                "pinsignal:quarantine:index": keys.QUARANTINE_INDEX}


def _slot(key: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(key.encode()))


@pytest.mark.parametrize("account", [ACCOUNT, "default", "1"])
def test_every_key_of_an_account_is_in_one_cluster_slot(account: str) -> None:
    """What lets the enqueue script, the settle MULTI and the rate-limit script run on a Redis Cluster."""
    names = [keys.stream(account), keys.seen(account, "checkout", "o-1"), keys.browser_seen_count(account, 3),
             keys.account_counters(account), keys.dlq(account), keys.dlq_index(account), keys.dlq_reasons(account),
             keys.probe(account), keys.ratelimit(account), keys.backoff(account),
             keys.imported(account, "checkout", "o-1")]
    assert {_slot(name) for name in names} == {_slot(keys.stream(account))}


def test_keys_written_together_share_a_slot() -> None:
    assert _slot(keys.TRACE) == _slot(keys.COUNTERS) == _slot(keys.WARNINGS)  # the trace's one script
    assert _slot(keys.QUARANTINE) == _slot(keys.QUARANTINE_INDEX)  # the quarantine's MULTI and script


@pytest.mark.parametrize("account", [ACCOUNT, "default"])
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
