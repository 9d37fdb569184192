"""A private network namespace for local test clusters: inside ``unshare -n`` with only the
loopback interface up, Ray binds 127.0.0.1 and nothing of a test cluster can reach, or be
reached from, any network. Used by the cluster tests and ``benchmarks/cluster.py``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

__all__ = ["netns_unavailable", "netns_argv", "in_private_network"]


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
