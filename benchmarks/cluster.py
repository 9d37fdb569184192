"""The avatar service on a real multi-node Ray cluster on this machine (a head and two worker
nodes, ``ray.cluster_utils.Cluster``, in a private network namespace: loopback only), against
single-process ``serve`` on the same machine. Writes benchmarks/results/cluster.json:

- placement: a page's connect -> its ``session`` and ``ready`` messages; the front door's own
  placement time (loads polled, the worker's admission call);
- signaling overhead: ping -> pong and ready -> answer through a front door and a worker
  actor, against one ``serve`` process;
- a session on a remote worker: frames per second at the viewer, mic-to-face latency (a noise
  burst sent as the microphone -> the first video frame that changed, arrival at the viewer;
  the model's 80 ms look-ahead included) and the A/V offset (the burst's first loud audio
  sample against that frame, both at arrival), against ``serve``;
- reconnect: a worker node killed mid-stream -> its viewer told -> its first frame from
  the other worker (the issue's 2 s);
- sessions per worker at real time on this CPU: the capacity workers measure on start
  (the default model, the whole photo at 512 px and its 64x48 crop, 2 cores a worker).

usage: python benchmarks/cluster.py   (as root: it re-runs itself under unshare -n)
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "cluster.json"


def pct(values: list[float]) -> dict[str, float | int]:
    a = np.asarray(values, dtype=float)
    if not a.size:
        return {"n": 0}
    return {"p50": round(float(np.percentile(a, 50)), 2), "p90": round(float(np.percentile(a, 90)), 2),
            "max": round(float(a.max()), 2), "n": int(a.size)}


async def first_of(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if msg.get("type") == kind:
            return msg


async def ping_ms(url: str, n: int = 40) -> list[float]:
    from websockets.asyncio.client import connect

    out = []
    async with connect(url) as ws:
        await first_of(ws, "ready")
        for _ in range(n):
            t = time.perf_counter()
            await ws.send('{"type":"ping"}')
            await first_of(ws, "pong")
            out.append(1000 * (time.perf_counter() - t))
    return out


async def placement_ms(url: str, n: int = 20) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    to_session, to_ready = [], []
    for _ in range(n):
        t = time.perf_counter()
        async with connect(url) as ws:
            first = json.loads(await ws.recv())
            if first["type"] == "session":
                to_session.append(1000 * (time.perf_counter() - t))
            await first_of(ws, "ready") if first["type"] != "ready" else None
            to_ready.append(1000 * (time.perf_counter() - t))
        await asyncio.sleep(0.05)
    return {"connect_to_session_ms": pct(to_session), "connect_to_ready_ms": pct(to_ready)}


def burst_signal(seconds: float, at: list[float], length: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(0)
    sig = np.zeros(int(48000 * seconds), np.float32)
    for start in at:
        a, b = int(48000 * start), int(48000 * (start + length))
        sig[a:b] = 0.5 * rng.standard_normal(b - a)
    return sig


async def session_figures(url: str, seconds: float = 13.0) -> dict[str, Any]:
    """One mic session: fps, ready -> answer, connect -> first frame, burst latency and A/V."""
    from tests.test_cluster import ClusterViewer

    bursts = [4.0, 7.0, 10.0]
    t0 = time.monotonic()
    async with ClusterViewer(url, signal=burst_signal(seconds, bursts)) as v:
        await v.wait_frames(1, timeout=30, worker=v.worker or None)
        first_frame = time.monotonic() - t0
        await asyncio.sleep(seconds - 1.0)
        mic = v.mics[0]
        ready = next(m["t"] for m in v.messages if m["type"] == "ready")
        answer = next(m["t"] for m in v.messages if m["type"] == "answer")
        stats = [m for m in v.messages if m["type"] == "stats" and m.get("latency_ms") is not None]
        times = np.array([t for t, _, _ in v.frames])
        imgs = np.stack([img.astype(np.float32) for _, _, img in v.frames])
    change = np.abs(imgs[1:] - imgs[:-1]).mean(axis=(1, 2, 3))
    latency, av = [], []
    audio_t = [(t, pcm) for t, pcm in v.audio]
    for at in bursts:
        sent = mic.sent_at[int(at * 50)]
        hits = np.flatnonzero((times[1:] > sent) & (change > 1.0))
        loud = [t for t, pcm in audio_t if t > sent and np.abs(pcm).max() > 0.1]
        if hits.size:
            video_at = times[1:][hits[0]]
            latency.append(1000 * (video_at - sent))
            if loud:
                av.append(1000 * (loud[0] - video_at))
    window = times[times > times[0] + 2.0]
    return {
        "fps": round(float((len(window) - 1) / (window[-1] - window[0])), 2) if len(window) > 1 else 0.0,
        "connect_to_first_frame_ms": round(1000 * first_frame, 1),
        "ready_to_answer_ms": round(1000 * (answer - ready), 1),
        "mic_to_face_latency_ms": pct(latency),
        "av_offset_ms_audio_minus_video_arrival": pct(av),
        "server_latency_ms_from_stats": pct([m["latency_ms"] for m in stats]),
        "max_frame_gap_ms": round(1000 * float(np.diff(times).max()), 1),
    }


async def reconnects(local: Any, door: Any, url: str, reps: int = 4) -> list[dict[str, float]]:
    from tests.test_cluster import ClusterViewer

    out = []
    for rep in range(reps):
        for _ in range(150):  # the previous pages' sessions released (30 s at most)
            if not sum(w.sessions for w in (await door.refresh()).values()):
                break
            await asyncio.sleep(0.2)
        async with ClusterViewer(url) as a, ClusterViewer(url) as b:
            await a.wait_frames(25)
            await b.wait_frames(25)
            v, stay = (a, b) if rep % 2 == 0 else (b, a)
            if a.worker == b.worker:  # placed together (a worker not yet seen back): not this rep
                out.append({"skipped": f"both viewers on {a.worker}"})
                continue
            status = await door.status()
            node = next(w["node_id"] for w in status["workers"] if w["worker"] == v.worker)
            lost_worker = v.worker
            killed = time.monotonic()
            await asyncio.to_thread(local.kill_node, node)
            kill_call = time.monotonic() - killed  # SIGKILL of the node's processes, and reaping them
            await v.wait_frames(1, timeout=30, worker=stay.worker, after=killed)
            told = next((m["t"] for m in v.messages if m.get("code") == "worker_lost"), float("nan"))
            moved = next((t for t, w, _ in v.frames if t > killed and w != lost_worker), float("nan"))
            await asyncio.sleep(1.0)
            kept = [t for t, _, _ in stay.frames if t > killed - 1.0]
            out.append({"kill_call_s": round(kill_call, 3), "told_s": round(told - killed, 3),
                        "first_frame_elsewhere_s": round(moved - killed, 3),
                        "other_viewer_max_gap_ms": round(1000 * float(np.diff(kept).max()), 1)})
        local.add_node()
        deadline = time.monotonic() + 120
        while not all(w.ready for w in (await door.refresh()).values()):
            if time.monotonic() > deadline:
                raise TimeoutError("the killed worker did not come back")
            await asyncio.sleep(0.5)
    return out


async def cluster_part(local: Any) -> dict[str, Any]:
    import torch

    from realtime_sda.cluster import FrontDoor, FrontDoorConfig, WorkerSpec, start_workers
    from realtime_sda.server import AvatarServer, Limits, ServerConfig
    from testsupport.loopback_client import audio_responsive_model

    model = audio_responsive_model()
    h, w = model.config.img_size
    still = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    spec = WorkerSpec(model=audio_responsive_model, still=still, limits=Limits(max_sessions=4), capacity=4)
    t = time.perf_counter()
    await asyncio.to_thread(start_workers, spec, 1, 180.0)
    started = time.perf_counter() - t
    out: dict[str, Any] = {"workers_started_s": round(started, 1)}
    async with FrontDoor(FrontDoorConfig(port=0)) as door:
        url = f"ws://127.0.0.1:{door.port}/ws"
        out["placement"] = await placement_ms(url)
        out["placement"]["front_door_place_ms"] = (await door.status())["front_door"]["place_p50_ms"]
        out["cluster_ping_ms"] = pct(await ping_ms(url))
        out["cluster_session"] = await session_figures(url)
        out["reconnect_after_node_kill"] = await reconnects(local, door, url)
        out["status_after"] = (await door.status())["total"]
    async with AvatarServer(model, ServerConfig(port=0), still) as srv:
        url = f"ws://127.0.0.1:{srv.port}/ws"
        out["serve_ping_ms"] = pct(await ping_ms(url))
        out["serve_session"] = await session_figures(url)
    return out


def capacity_part(local: Any) -> dict[str, Any]:
    """The capacity real workers measure on start: the default model, 2 cores a worker."""
    from realtime_sda.cluster import WorkerSpec, start_workers
    from realtime_sda.cluster.launch import stop_workers
    from realtime_sda.server import Limits

    out = {}
    for label, spec in (("whole photo 512 px", WorkerSpec(model="default", worker_cpus=2, limits=Limits(max_sessions=64))),
                        ("crop 64x48", WorkerSpec(model="default", crop=True, worker_cpus=2, limits=Limits(max_sessions=64)))):
        stop_workers()
        time.sleep(1.0)
        workers = start_workers(spec, worker_cpus=2, timeout=300)
        import ray

        stats = ray.get([h.stats.remote() for h in workers.values()], timeout=60)
        out[label] = stats[0]["measured"]
        print(f"capacity, {label}: {stats[0]['measured']}", flush=True)
    stop_workers()
    return out


def main() -> None:
    from realtime_sda.cluster.netns import LocalCluster, in_private_network, netns_argv, netns_unavailable

    if not in_private_network():
        reason = netns_unavailable()
        if reason:
            sys.exit(f"benchmarks/cluster.py: {reason}")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        sys.exit(subprocess.run(netns_argv([sys.executable, __file__, *sys.argv[1:]]), env=env).returncode)
    from realtime_sda.server.peer import restrict_ice_to

    restrict_ice_to(["127.0.0.1"])  # this process's viewers (aioice never offers loopback itself)
    load0 = os.getloadavg()
    t = time.perf_counter()
    local = LocalCluster(nodes=2, cpus=1)
    started = time.perf_counter() - t
    try:
        result = asyncio.run(cluster_part(local))
    finally:
        local.shutdown()
    local = LocalCluster(nodes=1, cpus=2)
    try:
        capacity = capacity_part(local)
    finally:
        local.shutdown()
    report = {
        "benchmark": "cluster",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
                    "note": "one 2-core machine shared with other jobs: the head, both worker nodes, the "
                            "viewers and single-process serve all run on the same 2 cores"},
        "cluster": {"nodes": "head (no CPUs) + 2 worker nodes of 1 CPU, one avatar worker each",
                    "started_s": round(started, 1), "model": "tiny random (64x48, audio-responsive)"},
        **result,
        "sessions_per_worker_at_real_time": capacity,
    }
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
