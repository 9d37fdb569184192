"""How many hostile clients of each kind one server holds while one viewer keeps real time.

An in-process AvatarServer (token required, a broadcast for the pusher kind) and a real
aiortc viewer (microphone mode, receiving the avatar) on loopback. For each kind of hostile
client (testsupport/hostile.py, run in another process as another machine would be), the
number of such clients at once is raised 1, 4, 16, 64...; each level runs ``--window``
seconds with every client repeating its case, while the viewer's frame rate, longest gap
between frames and the event loop's longest lag are measured. A level "keeps real time"
when the viewer got at least 85 % of the video rate and no gap over 500 ms (the hostile
test's bound); the baseline (one harmless client) shows what the machine gives without them. The ramp of a
kind stops at the first level that does not. Prints the figures and writes
benchmarks/results/hostile.json.

    python benchmarks/hostile.py --window 6 --levels 1 4 16 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testsupport/ (not installed)

from realtime_sda.server import AvatarServer, Limits, ServerConfig  # noqa: E402
from testsupport.hostile import run_case  # noqa: E402
from testsupport.loopback_client import LoopbackViewer  # noqa: E402
from testsupport.models import random_model, tiny_config  # noqa: E402

TOKEN = "bench-token"
KINDS = ["surrogate_token", "unhashable_fields", "duplicate_mid", "bad_origin", "long_url", "small_photo",
         "huge_photo", "push_flood"]
MIN_FPS_SHARE = 0.85  # of the video rate
MAX_GAP_S = 0.5  # the hostile test's bound


def _cpu_s() -> float:
    """CPU seconds this process (server and viewer) has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _per_answer(excess_cpu_s: float, answers: int) -> float | None:
    """ms of CPU per answered attempt over the baseline; None when within the viewer's own
    variation (the excess came out negative)."""
    return round(1000 * excess_cpu_s / max(1, answers), 2) if excess_cpu_s > 0 else None


async def _level(srv: AvatarServer, viewer: LoopbackViewer, kind: str, clients: int, window: float,
                 rate: float, base_cpu: float = 0.0) -> dict[str, Any]:
    """One level: ``clients`` of ``kind`` for ``window`` s. ``base_cpu``: the process's CPU
    seconds per second without hostile clients (the viewer's session), subtracted to give
    the server's CPU cost per answered attempt."""
    lags: list[float] = []

    async def monitor() -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - t - 0.01)

    task = asyncio.get_running_loop().create_task(monitor(), name="bench-monitor")
    t0, cpu0 = time.monotonic(), _cpu_s()
    rss0 = _rss_mb()
    try:
        result = await run_case(srv.port, kind, TOKEN, parallel=clients, seconds=window, timeout=window + 300)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    t1, cpu1 = time.monotonic(), _cpu_s()
    times = np.asarray([t for t in viewer.video.times if t0 + 1.0 <= t <= t0 + window])  # after the clients start
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 else 0.0
    gap = float(np.diff(np.concatenate([[t0 + 1.0], times, [min(t1, t0 + window)]])).max())
    answers = Counter(str(a) for a in result["answers"])
    level = {
        "clients": clients, "fps": round(fps, 2), "longest_gap_ms": round(1000 * gap),
        "loop_lag_max_ms": round(1000 * max(lags, default=0)),
        "attempts_answered": sum(answers.values()), "answers": dict(answers), "client_errors": len(result["errors"]),
        "cpu_s_per_s": round((cpu1 - cpu0) / (t1 - t0), 3),
        "server_cpu_ms_per_answer": _per_answer(cpu1 - cpu0 - base_cpu * (t1 - t0), sum(answers.values())),
        "rss_mb": [round(rss0), round(_rss_mb())], "seconds": round(t1 - t0, 1),
    }
    level["keeps_real_time"] = bool(fps >= MIN_FPS_SHARE * rate and gap <= MAX_GAP_S)
    for _ in range(200):  # let the kind's last connections and photos finish before the next level
        if len(srv.clients) <= 1 and (srv.photos is None or srv.photos.in_pool == 0):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    return level


async def main(args: argparse.Namespace) -> dict[str, Any]:
    model = random_model(tiny_config(), seed=1)
    rate = float(model.config.video_rate)
    still = torch.zeros(1, 3, *model.config.img_size)
    config = ServerConfig(port=0, token=TOKEN, broadcast=True, limits=Limits(max_sessions=args.max_sessions))
    out: dict[str, Any] = {"kinds": {}}
    async with AvatarServer(model, config, still) as srv:
        rng = np.random.default_rng(0)
        signal = 0.3 * rng.standard_normal(48000 * 3600).astype(np.float32)
        url = f"ws://127.0.0.1:{srv.port}/ws?token={TOKEN}"
        async with LoopbackViewer(url, signal=signal, keep_images=False) as viewer:
            await viewer.wait_frames(25, timeout=30)
            quiet = await _level(srv, viewer, "missing_token", 1, args.window, rate)  # a baseline: one idle-ish client
            out["baseline"] = quiet
            base_cpu = quiet["cpu_s_per_s"]
            print(f"baseline: {quiet['fps']} fps, longest gap {quiet['longest_gap_ms']} ms, "
                  f"{base_cpu:.2f} CPU s/s", flush=True)
            for kind in args.kinds:
                levels = []
                for clients in args.levels:
                    level = await _level(srv, viewer, kind, clients, args.window, rate, base_cpu)
                    levels.append(level)
                    print(f"{kind:18s} x{clients:3d}: {level['fps']:5.1f} fps, gap {level['longest_gap_ms']:4d} ms, "
                          f"loop lag {level['loop_lag_max_ms']:4d} ms, {level['attempts_answered']} answers "
                          f"({level['server_cpu_ms_per_answer']} ms CPU each) "
                          f"{level['answers']}, keeps real time: {level['keeps_real_time']}", flush=True)
                    if not level["keeps_real_time"]:
                        break
                held = [lv["clients"] for lv in levels if lv["keeps_real_time"]]
                out["kinds"][kind] = {"held": max(held) if held else 0, "levels": levels}
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--window", type=float, default=6.0, help="seconds per level")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--kinds", nargs="+", default=KINDS, choices=KINDS)
    p.add_argument("--max-sessions", type=int, default=80)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "hostile.json"))
    args = p.parse_args()
    t0, load0 = time.time(), list(os.getloadavg())
    result = asyncio.run(main(args))
    result.update({
        "what": "hostile clients of each kind (another process, loopback) a server holds while one aiortc viewer keeps "
                f"real time (>= {MIN_FPS_SHARE:.0%} of the video rate, no gap over {1000 * MAX_GAP_S:.0f} ms); tiny "
                "random model; the server and the viewer share one process; the hostile clients' own process runs on "
                "the same CPU (on 2 cores it takes one of them); server_cpu_ms_per_answer: the process's CPU over its "
                "baseline rate, per answered attempt",
        "window_s": args.window, "levels": args.levels, "cpu_count": os.cpu_count(),
        "load_avg_before_after": [load0, list(os.getloadavg())],
        "machine": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "wall_s": round(time.time() - t0, 1),
    })
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("held:", {k: v["held"] for k, v in result["kinds"].items()})
    print(f"wrote {args.out}")
