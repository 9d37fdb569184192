"""Streaming benchmark: per-frame step latency and how many sessions stay real time.

For a GRID-size random-weight model (the published checkpoints' exact layout and size):

- step latency: one ``engine.forward`` with B=1, T=1 (one session, one frame), p50/p99;
- sessions in real time: B sessions stepped together per tick (stack states, one forward,
  split states, frames to uint8), the largest B whose p99 tick time is below the frame period
  1/video_rate (every frame ready before its deadline);
- end to end through the InferenceWorker: one real-time session fed 20 ms audio chunks at
  1x speed; latency from the arrival of the last audio sample a frame needs to frame ready.

Each measurement runs in float32 and with ``model.set_inference_dtype(torch.bfloat16)``, on
CPU (``torch.set_num_threads``) and on CUDA when present. Prints a table and writes
benchmarks/results/streaming.json (or --out).

    python benchmarks/streaming.py [--threads 2] [--steps 60] [--device cpu|cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testsupport/ (not installed)

from realtime_sda.core.noise import NoiseSource
from realtime_sda.core.state import StreamState
from realtime_sda.media.image import frames_to_uint8
from testsupport.models import grid_config, random_model

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _pct(times: list[float]) -> dict[str, float]:
    a = np.asarray(times) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": int(a.size)}


def tick_times(model, b: int, steps: int, warmup: int = 3) -> list[float]:
    """Wall times of ``steps`` ticks of B sessions (stack, forward T=1, split, to uint8)."""
    cfg, device = model.config, model.device
    h, w = cfg.img_size
    g = torch.Generator().manual_seed(b)
    states = [model.init_state(torch.rand(1, 3, h, w, generator=g) * 2 - 1) for _ in range(b)]
    noises = [NoiseSource(cfg.aux_latent, k) for k in range(b)]
    engine = model.engine
    out = []
    for k in range(warmup + steps):
        windows = torch.randn(b, 1, cfg.audio_feat_samples, generator=g) * 0.1
        noise = torch.stack([n.next(1) for n in noises])
        _sync(device)
        t = time.perf_counter()
        state = states[0] if b == 1 else StreamState.stack(states)
        frames, new = engine.forward(state, windows, noise)
        images = frames_to_uint8(frames[:, 0].permute(0, 2, 3, 1))
        states = [new] if b == 1 else [StreamState(s.identity, *_hidden(new, i)) for i, s in enumerate(states)]
        _sync(device)
        if k >= warmup:
            out.append(time.perf_counter() - t)
        del images
    return out


def _hidden(state: StreamState, i: int):
    sel = state.select(i)
    return sel.content_h, sel.noise_h


def sessions_in_real_time(model, steps: int, max_b: int) -> tuple[int, dict[int, float]]:
    """Largest B with p99 tick time < 1/video_rate (doubling, then bisection)."""
    period = 1.0 / float(model.config.video_rate)
    table: dict[int, float] = {}

    def ok(b: int) -> bool:
        if b not in table:
            table[b] = _pct(tick_times(model, b, steps))["p99_ms"]
            print(f"    B={b:3d}: p99 tick {table[b]:7.1f} ms (deadline {period * 1000:.0f} ms)", flush=True)
        return table[b] < period * 1000.0

    if not ok(1):
        return 0, table
    lo, hi = 1, 2
    while hi <= max_b and ok(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, max_b + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo, dict(sorted(table.items()))


async def worker_latency(model, seconds: float) -> dict[str, float]:
    """One real-time session through the InferenceWorker, audio pushed at 1x in 20 ms chunks."""
    from realtime_sda.streaming import InferenceWorker

    cfg = model.config
    h, w = cfg.img_size
    worker = InferenceWorker(model)
    await worker.start()
    try:
        session = await worker.open_session(torch.zeros(1, 3, h, w), seed=0, realtime=True)
        chunk = cfg.audio_rate // 50
        rng = np.random.default_rng(0)
        t0 = time.monotonic()
        for k in range(int(seconds * 50)):
            await asyncio.sleep(max(t0 + (k + 1) * 0.02 - time.monotonic(), 0))
            session.push_audio((0.1 * rng.standard_normal(chunk)).astype(np.float32), cfg.audio_rate)
        await asyncio.sleep(0.2)
        snap = session.stats.snapshot()
    finally:
        await worker.stop()
    return {"frames": snap.frames, "fps": round(snap.fps, 2), "latency_p50_ms": round(snap.latency_p50_ms, 2),
            "latency_p99_ms": round(snap.latency_p99_ms, 2), "silence_frames": snap.silence_frames,
            "skipped_frames": snap.skipped_frames}


def session_memory(model) -> dict[str, int]:
    """Bytes one live session holds after a frame: its identity context and GRU states, and
    its audio ring buffer (10 s at the model rate by default)."""
    from realtime_sda.streaming import InferenceWorker

    cfg = model.config
    h, w = cfg.img_size

    async def run():
        worker = InferenceWorker(model)
        await worker.start()
        try:
            session = await worker.open_session(torch.zeros(1, 3, h, w), seed=0, realtime=False)
            q = session.subscribe(1)
            session.push_audio(np.zeros(cfg.audio_feat_samples, np.float32), cfg.audio_rate)
            await asyncio.wait_for(q.get(), 60)
            st = session.state
            tensors = [st.identity.id_code, st.identity.base, *st.identity.skip_bias, st.content_h, st.noise_h]
            state_bytes = sum(t.numel() * t.element_size() for t in tensors if t is not None)
            return int(state_bytes), int(session._ring._buf.nbytes)
        finally:
            await worker.stop()

    state_bytes, ring_bytes = asyncio.run(run())
    return {"state_bytes": state_bytes, "ring_buffer_bytes": ring_bytes, "total_bytes": state_bytes + ring_bytes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="2", help="torch CPU threads; a list such as 2,1 measures each (default 2)")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-sessions", type=int, default=None, help="upper bound of the session search")
    ap.add_argument("--worker-seconds", type=float, default=4.0)
    ap.add_argument("--out", default=None, help="JSON output (default benchmarks/results/streaming[_cuda].json)")
    ap.add_argument("--note", default="", help="free text stored with the figures (e.g. machine load)")
    args = ap.parse_args()
    threads = [int(t) for t in str(args.threads).split(",")]
    torch.set_num_threads(threads[0])
    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    model = random_model(grid_config(), seed=0).to(device)
    cfg = model.config
    max_b = args.max_sessions or (256 if device.type == "cuda" else 32)
    result: dict = {
        "benchmark": "streaming",
        "model": "GRID-size random weights (128x96, 50 kHz audio, 25 fps)",
        "machine": {
            "cpu": _cpu_name(), "cores": os.cpu_count(), "torch_threads": threads,
            "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "python": platform.python_version(),
        },
        "frame_period_ms": 1000.0 / float(cfg.video_rate),
        "lookahead_ms": 1000.0 * cfg.lookahead_samples / cfg.audio_rate,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "note": args.note,
        "results": {},
    }
    runs = [(f"{name}" + ("" if k == 0 else f"_threads{t}"), dtype, t)
            for k, t in enumerate(threads) for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))]
    result["memory_per_session"] = session_memory(model)
    print(f"memory per session: {result['memory_per_session']}", flush=True)
    for name, dtype, t in runs:
        torch.set_num_threads(t)
        model.set_inference_dtype(dtype)
        print(f"{name}: one session, engine.forward B=1 T=1, {t} thread(s) ...", flush=True)
        step = _pct(tick_times(model, 1, args.steps, warmup=5))
        print(f"  step p50 {step['p50_ms']:.1f} ms, p99 {step['p99_ms']:.1f} ms", flush=True)
        print(f"{name}: sessions per tick within {result['frame_period_ms']:.0f} ms ...", flush=True)
        n_rt, table = sessions_in_real_time(model, max(args.steps // 3, 15), max_b)
        print(f"  {n_rt} session(s) stay real time", flush=True)
        print(f"{name}: one live session through the InferenceWorker ({args.worker_seconds:g} s) ...", flush=True)
        e2e = asyncio.run(worker_latency(model, args.worker_seconds))
        print(f"  latency p50 {e2e['latency_p50_ms']:.1f} ms, p99 {e2e['latency_p99_ms']:.1f} ms, "
              f"{e2e['fps']:.1f} fps, silence {e2e['silence_frames']}", flush=True)
        result["results"][name] = {
            "dtype": str(dtype).replace("torch.", ""), "torch_threads": t,
            "step_b1": step, "realtime_sessions": n_rt, "tick_p99_ms_by_sessions": table, "worker_one_session": e2e,
        }
    out = Path(args.out) if args.out else RESULTS / ("streaming.json" if device.type == "cpu" else f"streaming_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
