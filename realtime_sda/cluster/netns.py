"""A private network namespace for local test clusters: inside ``unshare -n`` with only the
loopback interface up, Ray binds 127.0.0.1 and nothing of a test cluster can reach, or be
reached from, any network. :class:`LocalCluster` starts a multi-node Ray cluster on this
machine there. Used by the cluster tests and ``benchmarks/cluster.py``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

__all__ = ["netns_unavailable", "netns_argv", "in_private_network", "LocalCluster"]


def netns_unavailable() -> str | None:
    """Why a private network namespace cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "a private network namespace needs root (unshare -n)"
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (apt-get install {package})"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"unshare -n failed here: {probe.stderr.strip()[:200]}"
    return None


def netns_argv(argv: list[str]) -> list[str]:
    """``argv`` run in a new network namespace with only loopback, up."""
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def in_private_network() -> bool:
    """True when this process sees no network interface but loopback (of its own network
    namespace: /sys/class/net would show the namespace sysfs was mounted in)."""
    try:
        return [name for _, name in socket.if_nameindex()] == ["lo"]
    except OSError:
        return False


class LocalCluster:
    """A real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): a head
    without CPUs (no avatar worker goes there) and ``nodes`` worker nodes of ``cpus`` CPUs;
    this process joins it as a driver. Run it in a private network namespace."""

    def __init__(self, nodes: int = 2, cpus: int = 1) -> None:
        from ray.cluster_utils import Cluster

        from .launch import connect

        if not in_private_network():
            raise RuntimeError("a local test cluster runs in a private network namespace (see netns_argv)")
        self.cpus = cpus
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        self.nodes = [self.cluster.add_node(num_cpus=cpus) for _ in range(nodes)]
        connect(self.cluster.address)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def kill_node(self, node_id: str) -> None:
        """Kill a worker node and everything on it at once (no graceful shutdown)."""
        found = [n for n in self.nodes if n.node_id == node_id]
        if not found:
            raise ValueError(f"no node {node_id} in this cluster")
        self.cluster.remove_node(found[0], allow_graceful=False)
        self.nodes.remove(found[0])

    def add_node(self) -> None:
        """A new worker node (call on the main thread: Ray sets signal handlers)."""
        self.nodes.append(self.cluster.add_node(num_cpus=self.cpus))

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()
