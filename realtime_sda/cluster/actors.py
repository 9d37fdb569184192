"""The service's named Ray actors: their namespace and names, finding them, and where this
process runs. Imports Ray only when called (the ``cluster`` extra)."""

from __future__ import annotations

from typing import Any

from ..errors import require

__all__ = ["NAMESPACE", "PREFIX", "worker_name", "ray_module", "node_ip", "node_id", "find_workers"]

#: the Ray namespace of the service's named actors
NAMESPACE = "realtime-sda"
#: the avatar workers' names: PREFIX + index
PREFIX = "rsda-worker-"


def worker_name(index: int) -> str:
    """The Ray actor name of worker ``index``."""
    return f"{PREFIX}{index}"


def ray_module() -> Any:
    """``ray``, or a one-line error naming the ``cluster`` extra."""
    return require("ray", "cluster", "Cluster mode (serve --cluster)")


def node_ip() -> str:
    """This process's Ray node address (where its WebRTC peers are reached)."""
    return str(ray_module().util.get_node_ip_address())


def node_id() -> str:
    """This process's Ray node id (hex)."""
    return str(ray_module().get_runtime_context().get_node_id())


def find_workers() -> dict[str, Any]:
    """The service's workers on the connected cluster, by name (in index order)."""
    ray = ray_module()
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a.get("namespace") == NAMESPACE and a.get("name", "").startswith(PREFIX)]
    names.sort(key=lambda n: int(n[len(PREFIX):]) if n[len(PREFIX):].isdigit() else 0)
    out = {}
    for name in names:
        try:
            out[name] = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:  # killed meanwhile
            continue
    return out
