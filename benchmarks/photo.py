"""The added cost per frame of the whole-photo step (realtime_sda.photo: the model's crop ->
the photo with the face moving) at a 512 px and a 1280 px long side, on this machine, with the
default model. Prints the figures and writes benchmarks/results/photo.json.

usage: python benchmarks/photo.py [--frames N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def _live(animator, photo, audio, rate) -> dict:
    """One real-time session showing the whole photo at 512 px, fed in 20 ms packets at the
    wall clock as a microphone would: its latency and frame rate with the photo step in."""
    from realtime_sda.streaming import InferenceWorker

    async with InferenceWorker(animator.model) as worker:
        renderer, still = await worker.prepare_photo(photo, size=512)
        session = await worker.open_session(still, seed=1, realtime=True, renderer=renderer, max_backlog_ms=120.0)
        frames = session.subscribe(maxsize=64)
        packet = rate // 50
        start = time.perf_counter()
        for k in range(0, len(audio) - packet + 1, packet):
            session.push_audio(audio[k : k + packet], rate)
            await asyncio.sleep(max(0.0, start + (k + packet) / rate - time.perf_counter()))
            while frames.get_nowait() is not None:  # a consumer that keeps up
                pass
        await asyncio.sleep(0.3)
        snap = session.stats.snapshot()
        await session.close()
    return {"frames": snap.frames, "fps": snap.fps, "latency_p50_ms": snap.latency_p50_ms,
            "latency_p99_ms": snap.latency_p99_ms, "skipped_frames": snap.skipped_frames}


def main() -> None:
    from PIL import Image
    from skimage import data

    from realtime_sda import VideoAnimator
    from realtime_sda.photo import photo_renderer
    from realtime_sda.photo.setup import calibrate
    from testsupport.media import speech_like

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args()
    animator = VideoAnimator("default", gpu=-1)
    rate = animator.audio_rate
    audio = speech_like(seconds=args.frames / 25.0, rate=rate)
    big = Image.fromarray(data.astronaut()).resize((1280, 1280), Image.LANCZOS)
    import os

    results = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "load_average_at_start": os.getloadavg()[0], "frames": args.frames, "sizes": {}}
    for side in (512, 1280):
        renderer, still = photo_renderer(animator.model, np.asarray(big), size=side)
        t_cal = time.perf_counter()
        calibrate(renderer)  # once per photo (its lips' response: a few renders and landmark reads)
        t_cal = time.perf_counter() - t_cal
        crops, _ = animator(renderer.rig.still(animator.config), audio, fs=rate, aligned=True, seed=1)
        crops = np.ascontiguousarray(crops.transpose(0, 2, 3, 1))
        t_model = time.perf_counter()
        animator(renderer.rig.still(animator.config), audio, fs=rate, aligned=True, seed=1)
        t_model = (time.perf_counter() - t_model) / len(crops)
        for c in crops[:5]:
            renderer(c)  # warm-up
        times, marks = [], []
        for c in crops:
            t0 = time.perf_counter()
            pose = renderer.pose(c)
            t1 = time.perf_counter()
            renderer.render(pose)
            t2 = time.perf_counter()
            times.append(t2 - t0)
            marks.append(t1 - t0)
        ms = 1000 * np.array(times)
        row = {
            "size": list(renderer.size),
            "photo_step_ms_p50": float(np.percentile(ms, 50)),
            "photo_step_ms_p99": float(np.percentile(ms, 99)),
            "of_which_crop_landmarks_ms_p50": float(np.percentile(1000 * np.array(marks), 50)),
            "model_offline_ms_per_frame": 1000 * t_model,
            "calibration_once_ms": 1000 * t_cal,
        }
        results["sizes"][str(side)] = row
        print(f"{side:5d} px ({row['size'][1]}x{row['size'][0]}): photo step p50 {row['photo_step_ms_p50']:.1f} ms, "
              f"p99 {row['photo_step_ms_p99']:.1f} ms (crop landmarks {row['of_which_crop_landmarks_ms_p50']:.1f} ms); "
              f"the model itself {row['model_offline_ms_per_frame']:.1f} ms a frame offline; "
              f"once per photo: the lips' calibration {row['calibration_once_ms']:.0f} ms")
    results["live_512"] = asyncio.run(_live(animator, np.asarray(big), audio, rate))
    live = results["live_512"]
    print(f"live session, whole photo at 512 px: {live['frames']} frames at {live['fps']:.1f} fps, latency p50 "
          f"{live['latency_p50_ms']:.1f} ms / p99 {live['latency_p99_ms']:.1f} ms (audio in to frame ready), "
          f"skipped {live['skipped_frames']}")
    out = ROOT / "benchmarks" / "results" / "photo.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
