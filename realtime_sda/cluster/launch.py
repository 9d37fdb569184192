"""Connect to a Ray cluster, start the avatar workers (one per GPU on every node, or one per
``worker_cpus`` cores where a node has no GPU), find them again, and ``serve --cluster``.

Workers are detached named actors (``rsda-worker-N`` in the ``realtime-sda`` namespace):
they outlive the front door that started them, so further front doors (any number, behind
any HTTP load balancer) find and share them. Ray restarts a lost one (``max_restarts=-1``),
on another node when its own is gone."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import RealtimeSDAError
from .actors import NAMESPACE, PREFIX, find_workers, ray_module, worker_name
from .worker import AvatarWorker, WorkerSpec

__all__ = ["ray_module", "connect", "worker_slots", "start_workers", "grow_workers", "find_workers", "stop_workers",
           "run_cli"]

log = logging.getLogger(__name__)

#: heartbeats are answered on a thread and event loop of their own (a Ray concurrency group),
#: so a worker busy on its main loop (a peer's certificate, a photo) still answers them
HEALTH_GROUP = {"health": 1}


def connect(address: str = "auto") -> None:
    """Join the Ray cluster at ``address`` ("auto": the one started on this machine with
    ``ray start``) in the service's namespace."""
    ray = ray_module()
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
    except ConnectionError as exc:
        raise RealtimeSDAError(f"no Ray cluster at {address!r} ({exc}): start one with 'ray start --head'") from None


def worker_slots(worker_cpus: int = 1) -> list[tuple[str, dict[str, float]]]:
    """(node id, actor resources) for every worker the live nodes hold: one per GPU, or one
    per ``worker_cpus`` CPU cores on a node without GPUs."""
    if worker_cpus < 1:
        raise RealtimeSDAError(f"--worker-cpus must be at least 1, got {worker_cpus}")
    slots = []
    for node in ray_module().nodes():
        if not node.get("Alive"):
            continue
        res = node.get("Resources", {})
        gpus, cpus = int(res.get("GPU", 0)), float(res.get("CPU", 0))
        if gpus:
            slots += [(node["NodeID"], {"num_gpus": 1.0, "num_cpus": 0.0})] * gpus
        else:
            slots += [(node["NodeID"], {"num_gpus": 0.0, "num_cpus": float(worker_cpus)})] * int(cpus // worker_cpus)
    return slots


def start_workers(spec: WorkerSpec, worker_cpus: int = 1, timeout: float = 300.0) -> dict[str, Any]:
    """Start a worker on every slot (:func:`worker_slots`) unless the service's workers
    already run, and wait until each has measured its capacity. Returns them by name."""
    ray = ray_module()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    existing = find_workers()
    if existing:
        log.warning("%d avatar workers already run on this cluster; their settings stay", len(existing))
    else:
        slots = worker_slots(worker_cpus)
        if not slots:
            raise RealtimeSDAError(f"no node of this cluster has a GPU or {worker_cpus} free CPU cores for a worker")
        actor = ray.remote(concurrency_groups=HEALTH_GROUP)(AvatarWorker)
        for i, (node, res) in enumerate(slots):
            actor.options(
                name=worker_name(i), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                max_restarts=-1, max_task_retries=0, max_concurrency=1000, **res,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True),
            ).remote(spec, i)
        existing = find_workers()
    ray.get([h.ready.remote() for h in existing.values()], timeout=timeout)
    return existing


def grow_workers(spec: WorkerSpec, worker_cpus: int = 1) -> list[str]:
    """Start workers for the slots of nodes that joined since (one per new GPU or per
    ``worker_cpus`` new cores); returns the new workers' names. Workers waiting for a node
    to restart on are counted, so a replaced node gets its worker back, not a second one."""
    ray = ray_module()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    existing = find_workers()
    slots = worker_slots(worker_cpus)
    if len(slots) <= len(existing):
        return []
    used: dict[str, int] = {}
    for load in ray.get([h.load.remote() for h in existing.values()], timeout=30):
        used[load.get("node_id", "")] = used.get(load.get("node_id", ""), 0) + 1
    free = []
    for node, res in slots:
        if used.get(node, 0):
            used[node] -= 1
        else:
            free.append((node, res))
    start = 1 + max((int(n[len(PREFIX):]) for n in existing if n[len(PREFIX):].isdigit()), default=-1)
    actor = ray.remote(concurrency_groups=HEALTH_GROUP)(AvatarWorker)
    names = []
    for i, (node, res) in enumerate(free[: len(slots) - len(existing)], start):
        actor.options(
            name=worker_name(i), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            max_restarts=-1, max_task_retries=0, max_concurrency=1000, **res,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True),
        ).remote(spec, i)
        names.append(worker_name(i))
    return names


def stop_workers() -> int:
    """Kill the service's workers (no restart); returns how many."""
    ray = ray_module()
    workers = find_workers()
    for handle in workers.values():
        ray.kill(handle, no_restart=True)
    return len(workers)


def run_cli(args: Any) -> int:
    """``realtime-sda serve --cluster ADDRESS``: workers on the cluster, a front door here."""
    import asyncio

    from ..server.security import Limits
    from .frontdoor import FrontDoor, FrontDoorConfig

    ray_module()
    if args.max_sessions < 1:
        raise RealtimeSDAError(f"--max-sessions must be at least 1, got {args.max_sessions}")
    if args.worker_cpus < 1:
        raise RealtimeSDAError(f"--worker-cpus must be at least 1, got {args.worker_cpus}")
    limits = Limits(max_sessions=args.max_sessions, allowed_origins=frozenset(args.allow_origin))
    spec = WorkerSpec(
        model=args.model, device=args.device, bf16=args.bf16, avatar=args.avatar, aligned=args.aligned,
        crop=args.crop, size=args.size, lookahead_ms=args.lookahead_ms, audio_prefetch=args.audio_prefetch,
        playout_margin_ms=args.playout_margin_ms, ice_servers=tuple(args.ice_server), limits=limits,
        worker_cpus=args.worker_cpus, broadcast=bool(args.broadcast or args.broadcast_audio),
        broadcast_audio=args.broadcast_audio,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    connect(args.cluster)
    workers = start_workers(spec, args.worker_cpus)
    from pathlib import Path

    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    config = FrontDoorConfig(host=args.host, port=args.port, token=args.token, limits=limits,
                             tls_cert=Path(cert) if cert else None, tls_key=Path(key) if key else None)

    async def grow() -> None:  # nodes that join later get their workers too
        while True:
            await asyncio.sleep(10.0)
            try:
                added = await asyncio.to_thread(grow_workers, spec, args.worker_cpus)
            except Exception as exc:  # the cluster is changing: try again later
                log.warning("could not check for new nodes: %s", exc)
                continue
            if added:
                log.info("new nodes: started %s", ", ".join(added))

    async def main() -> None:
        async with FrontDoor(config) as door:
            grower = asyncio.get_running_loop().create_task(grow(), name="grow-workers")
            query = f"?token={args.token}" if args.token else ""
            scheme = "https" if config.tls_cert is not None else "http"
            print(f"realtime-sda: {len(workers)} avatar workers; open {scheme}://{args.host}:{door.port}/{query} "
                  f"(cluster state: /status; Ctrl-C stops this front door, the workers stay)", flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                grower.cancel()

    asyncio.run(main())
    return 0
