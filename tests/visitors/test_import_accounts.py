"""pinsignal import with several ad accounts (DESIGN 8.4): each row goes where the collector would send its
event, marked and counted in its own account; ``--account`` forces one (real Redis, no worker)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import redis

from pinsignal import keys
from pinsignal.cli import main
from pinsignal.config import Config
from pinsignal.errors import ConfigError
from pinsignal.offline import ImportOptions, import_file, parse_map
from support import DEFAULT_ACCOUNT, EU_ACCOUNT, OUTLET_ACCOUNT, WHOLESALE_ACCOUNT, routed_accounts_file

SECRET = "import-accounts-secret-0123456789"
NOW = int(time.time())
DEFAULT, EU, WHOLESALE, OUTLET = DEFAULT_ACCOUNT, EU_ACCOUNT, WHOLESALE_ACCOUNT, OUTLET_ACCOUNT
MAP = ["store=properties.store", "page=context.page.url"]


def _command_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> None:
    """What ``pinsignal import`` reads from the environment: Redis, the secret and the routed accounts."""
    for name, value in {"REDIS_URL": redis_url, "PINSIGNAL_SECRET": SECRET, "PINTEREST_AD_ACCOUNT_ID": DEFAULT,
                        "PINSIGNAL_ACCOUNTS": str(routed_accounts_file(tmp_path))}.items():
        monkeypatch.setenv(name, value)


def _sales(tmp_path: Path) -> Path:
    """Two rows for the outlet (by condition), one for the EU shop (by its page's host), two for the default."""
    path = tmp_path / "sales.csv"
    path.write_text(
        "order_id,email,timestamp,store,page\n"
        f"o-1,a@example.com,{NOW - 600},outlet,\n"
        f"e-1,b@example.com,{NOW - 600},,https://www.shop.example.eu/checkout\n"
        f"d-1,c@example.com,{NOW - 600},main,https://shop.example/checkout\n"
        f"o-2,d@example.com,{NOW - 600},outlet,https://shop.example/checkout\n"
        f"d-2,e@example.com,{NOW - 600},,\n")
    return path


def _orders(redis_url: str) -> dict[str, list[str]]:
    """The order ids queued in each account's stream."""
    client = redis.Redis.from_url(redis_url)
    try:
        return {account: sorted(json.loads(fields[b"e"])["custom_data"]["order_id"]
                                for _, fields in client.xrange(keys.stream(account)))
                for account in (DEFAULT, EU, WHOLESALE, OUTLET)}
    finally:
        client.close()


def _marked(redis_url: str, event_ids: dict[str, str]) -> dict[str, list[str]]:
    """Which accounts hold an "imported" mark for each order."""
    client = redis.Redis.from_url(redis_url)
    try:
        return {order: [account for account in (DEFAULT, EU, WHOLESALE, OUTLET)
                        if client.exists(keys.imported(account, "checkout", event_id))]
                for order, event_id in event_ids.items()}
    finally:
        client.close()


def _event_ids(redis_url: str) -> dict[str, tuple[str, str]]:
    """order id -> (account, event id) of every queued event."""
    client = redis.Redis.from_url(redis_url)
    try:
        found: dict[str, tuple[str, str]] = {}
        for account in (DEFAULT, EU, WHOLESALE, OUTLET):
            for _, fields in client.xrange(keys.stream(account)):
                event = json.loads(fields[b"e"])
                found[event["custom_data"]["order_id"]] = (account, event["event_id"])
        return found
    finally:
        client.close()


def test_each_row_goes_to_its_account_marked_and_counted_there(tmp_path: Path, redis_url: str) -> None:
    config = Config(secret=SECRET, redis_url=redis_url, ad_account_id=DEFAULT, accounts=routed_accounts_file(tmp_path))
    options = ImportOptions(path=_sales(tmp_path), mapping=parse_map(MAP))
    summary = asyncio.run(import_file(options, config))
    assert (summary.read, summary.queued, summary.duplicates, summary.refused) == (5, 5, 0, [])
    assert _orders(redis_url) == {DEFAULT: ["d-1", "d-2"], EU: ["e-1"], WHOLESALE: [], OUTLET: ["o-1", "o-2"]}
    assert summary.accounts == {DEFAULT: {"queued": 2, "duplicates": 0}, EU: {"queued": 1, "duplicates": 0},
                                OUTLET: {"queued": 2, "duplicates": 0}}
    assert summary.to_dict()["accounts"] == summary.accounts

    # each row is marked imported in its own account, and only there
    routed = _event_ids(redis_url)
    assert _marked(redis_url, {order: event_id for order, (_, event_id) in routed.items()}) == {
        order: [account] for order, (account, _) in routed.items()}

    # a second run: every row a duplicate of its own account's mark, not of the queue's dedup window
    client = redis.Redis.from_url(redis_url)
    try:
        for account, event_id in routed.values():
            client.delete(keys.seen(account, "checkout", event_id))
    finally:
        client.close()
    again = asyncio.run(import_file(ImportOptions(path=options.path, mapping=options.mapping, restart=True), config))
    assert (again.queued, again.duplicates) == (0, 5)
    assert again.accounts == {DEFAULT: {"queued": 0, "duplicates": 2}, EU: {"queued": 0, "duplicates": 1},
                              OUTLET: {"queued": 0, "duplicates": 2}}
    assert _orders(redis_url) == {DEFAULT: ["d-1", "d-2"], EU: ["e-1"], WHOLESALE: [], OUTLET: ["o-1", "o-2"]}


def test_the_command_routes_by_pinsignal_accounts_and_prints_each_accounts_counts(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _command_env(monkeypatch, tmp_path, redis_url)
    path = _sales(tmp_path)
    maps = [arg for item in MAP for arg in ("--map", item)]
    assert main(["import", str(path), *maps]) == 0
    out = capsys.readouterr().out
    assert "rows read 5, queued 5, duplicates 0, refused 0" in out
    assert f"account {DEFAULT}: queued 2, duplicates 0" in out
    assert f"account {EU}: queued 1, duplicates 0" in out
    assert f"account {OUTLET}: queued 2, duplicates 0" in out
    assert _orders(redis_url) == {DEFAULT: ["d-1", "d-2"], EU: ["e-1"], WHOLESALE: [], OUTLET: ["o-1", "o-2"]}
    assert main(["import", str(path), *maps, "--restart", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accounts"] == {
        DEFAULT: {"queued": 0, "duplicates": 2}, EU: {"queued": 0, "duplicates": 1},
        OUTLET: {"queued": 0, "duplicates": 2}}


def test_account_option_sends_every_row_to_that_account(tmp_path: Path, redis_url: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _command_env(monkeypatch, tmp_path, redis_url)
    path = _sales(tmp_path)
    maps = [arg for item in MAP for arg in ("--map", item)]
    client = redis.Redis.from_url(redis_url)
    try:  # as if a routed import of the file had stopped after all its rows: --account is another import
        client.hset(keys.import_progress(_file_id(path)), "rows", "5")
    finally:
        client.close()
    assert main(["import", str(path), *maps, "--account", WHOLESALE]) == 0
    assert f"account {WHOLESALE}: queued 5, duplicates 0" in capsys.readouterr().out
    assert _orders(redis_url) == {DEFAULT: [], EU: [], WHOLESALE: ["d-1", "d-2", "e-1", "o-1", "o-2"], OUTLET: []}
    routed = _event_ids(redis_url)
    assert _marked(redis_url, {order: event_id for order, (_, event_id) in routed.items()}) == {
        order: [WHOLESALE] for order in routed}


def test_an_unknown_account_option_fails_in_one_sentence_before_anything_is_queued(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _command_env(monkeypatch, tmp_path, redis_url)
    path = _sales(tmp_path)
    assert main(["import", str(path), "--account", "999"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"pinsignal import: --account '999' is not an ad account of this deployment; use one of "
                     f"{DEFAULT}, {EU}, {WHOLESALE}, {OUTLET} (PINTEREST_AD_ACCOUNT_ID and the ids of "
                     "PINSIGNAL_ACCOUNTS).")
    assert _orders(redis_url) == {DEFAULT: [], EU: [], WHOLESALE: [], OUTLET: []}
    with pytest.raises(ConfigError, match=r"^--account '1': no ad account is configured here; set "):
        asyncio.run(import_file(ImportOptions(path=path, account="1"), Config(secret=SECRET, redis_url=redis_url)))


def test_without_an_accounts_file_every_row_goes_to_the_default_account(tmp_path: Path, redis_url: str) -> None:
    config = Config(secret=SECRET, redis_url=redis_url, ad_account_id=DEFAULT)
    summary = asyncio.run(import_file(ImportOptions(path=_sales(tmp_path), mapping=parse_map(MAP)), config))
    assert summary.accounts == {DEFAULT: {"queued": 5, "duplicates": 0}}
    assert _orders(redis_url) == {DEFAULT: ["d-1", "d-2", "e-1", "o-1", "o-2"], EU: [], WHOLESALE: [], OUTLET: []}


def test_an_interrupted_import_over_several_accounts_resumes_with_each_accounts_marks(tmp_path: Path,
                                                                                     redis_url: str) -> None:
    path = tmp_path / "sales.csv"
    stores = ["outlet", "", "main"]
    path.write_text("order_id,email,timestamp,store,page\n" + "".join(
        f"r-{n},c{n}@example.com,{NOW - 600},{stores[n % 3]},{'https://shop.example.eu/' if n % 3 == 1 else ''}\n"
        for n in range(4500)))
    config = Config(secret=SECRET, redis_url=redis_url, ad_account_id=DEFAULT, accounts=routed_accounts_file(tmp_path))
    options = ImportOptions(path=path, mapping=parse_map(MAP))
    first = asyncio.run(import_file(options, config))
    assert first.queued == 4500
    assert first.accounts == {account: {"queued": 1500, "duplicates": 0} for account in (DEFAULT, EU, OUTLET)}
    routed = _event_ids(redis_url)
    client = redis.Redis.from_url(redis_url)
    try:  # the queue's dedup window forgotten, and the progress as if stopped after the first chunk
        for account, event_id in routed.values():
            client.delete(keys.seen(account, "checkout", event_id))
        client.hset(keys.import_progress(_file_id(path)), "rows", "2000")
    finally:
        client.close()
    resumed = asyncio.run(import_file(options, config))
    assert resumed.resumed_after == 2000 and (resumed.queued, resumed.duplicates) == (0, 2500)
    assert sum(counts["duplicates"] for counts in resumed.accounts.values()) == 2500
    assert set(resumed.accounts) == {DEFAULT, EU, OUTLET}
    assert {account: len(orders) for account, orders in _orders(redis_url).items()} == {
        DEFAULT: 1500, EU: 1500, WHOLESALE: 0, OUTLET: 1500}


def _file_id(path: Path) -> str:
    from pinsignal.offline import _file_id as file_id

    return file_id(path)
