"""Offline benchmark: frames per second and peak memory of ``VideoAnimator`` on 3 s, 30 s and
10 min clips, with a random-weight checkpoint of the GRID model's exact size.

Each (device, length) runs in a fresh subprocess, so its peak RSS (VmHWM) is its own. Input:
int16 audio arrays at 44.1 kHz (resampled to 50 kHz inside, as a user's clip would be) and an
aligned still image (``aligned=True``: detection is not what is measured). CPU runs use
``torch.set_num_threads(2)``; a GPU run is added when ``torch.cuda.is_available()``.

    python benchmarks/offline.py            # 3 s, 30 s, 10 min  -> benchmarks/results/offline.json
    python benchmarks/offline.py --quick    # 3 s and 30 s only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testsupport/ (not installed)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: The original library on the same 2-core machine (from the project's issue).
REFERENCE = {
    "3s": {"frames_per_s": 56.0, "peak_rss_gb": 1.4},
    "30s": {"frames_per_s": 38.5, "peak_rss_gb": 6.8},
    "600s": {"frames_per_s": None, "peak_rss_gb": None, "note": "the original could not run it (out of memory)"},
}
TARGETS = {"speedup_vs_reference": 2.0, "peak_rss_gb_max": 1.5}
INPUT_RATE = 44100


def _peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM), in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker(args: argparse.Namespace) -> None:
    """One measurement, in its own process: prints a JSON line."""
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO))
    from realtime_sda import VideoAnimator

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    va = VideoAnimator(args.checkpoint, device=args.device, chunk_frames=args.chunk)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    n = int(args.seconds * INPUT_RATE)
    # Speech-like test signal: noise shaped by a slow syllable-rate envelope, as int16.
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * np.arange(n) / INPUT_RATE)
    audio = (rng.standard_normal(n) * env * 3000).astype(np.int16)
    del env
    h, w = va.img_size
    still = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # Warm-up on 1 s (first-call allocations and kernel selection are not what we measure).
    va(still, audio[:INPUT_RATE], fs=INPUT_RATE, aligned=True, seed=0)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    times, cpu_times = [], []
    for _ in range(max(1, args.repeat)):
        video = out_audio = None  # the previous run's output is freed first
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        video, out_audio = va(still, audio, fs=INPUT_RATE, aligned=True, seed=0)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu_times.append(_cpu_seconds() - cpu0)
    best = min(range(len(times)), key=times.__getitem__)
    gen_s, cpu_s = times[best], cpu_times[best]
    frames = int(video.shape[0])
    result = {
        "device": args.device,
        "clip_s": args.seconds,
        "frames": frames,
        "load_s": round(load_s, 3),
        "runs": len(times),
        "generate_s_all": [round(t, 3) for t in times],
        "generate_s": round(gen_s, 3),
        "frames_per_s": round(frames / gen_s, 2),
        "realtime_factor": round(args.seconds / gen_s, 2),
        # CPU seconds this process got (all threads): a wall time far above cpu_s / threads
        # means the process waited for a core (other jobs on the machine).
        "cpu_s": round(cpu_s, 3),
        "cpu_share": round(cpu_s / (gen_s * max(1, torch.get_num_threads())), 3),
        "video_bytes": int(video.nbytes),
        "peak_rss_gb": round(_peak_rss_bytes() / 1e9, 3),
        "threads": torch.get_num_threads(),
        "chunk_frames": args.chunk,
    }
    if args.device.startswith("cuda"):
        result["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
    print("RESULT " + json.dumps(result), flush=True)


def _run_one(checkpoint: Path, device: str, seconds: float, threads: int, chunk: int, repeat: int) -> dict:
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", "--checkpoint", str(checkpoint),
        "--device", device, "--seconds", str(seconds), "--threads", str(threads), "--chunk", str(chunk),
        "--repeat", str(repeat),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"benchmark worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def _machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    try:
        info["ram_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (OSError, ValueError, AttributeError):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s and 30 s only")
    p.add_argument("--lengths", type=float, nargs="*", default=None, help="clip lengths in seconds")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--chunk", type=int, default=16, help="frames per generation step")
    p.add_argument("--repeat", type=int, default=0, help="runs per length, best kept (default 3/2/1)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "offline.json")
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=3.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    import torch

    sys.path.insert(0, str(REPO))
    from testsupport.models import grid_config, write_random_checkpoint

    load_start = os.getloadavg()
    lengths = args.lengths or ([3.0, 30.0] if args.quick else [3.0, 30.0, 600.0])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    with tempfile.TemporaryDirectory(prefix="sda-bench-") as tmp:
        ckpt = write_random_checkpoint(Path(tmp) / "random_grid_size.pt", grid_config(), seed=0)
        for device in devices:
            for seconds in lengths:
                repeat = args.repeat or (3 if seconds <= 10 else 2 if seconds <= 60 else 1)
                r = _run_one(ckpt, device, seconds, args.threads, args.chunk, repeat)
                ref = REFERENCE.get(f"{seconds:g}s", {})
                if device == "cpu" and ref.get("frames_per_s"):
                    r["speedup_vs_reference"] = round(r["frames_per_s"] / ref["frames_per_s"], 2)
                    r["reference"] = ref
                results.append(r)
                print(
                    f"{device:5s} {seconds:6.0f} s clip: {r['frames']:6d} frames, {r['frames_per_s']:7.1f} frames/s "
                    f"({r['realtime_factor']:.1f}x real time, CPU share {r['cpu_share']:.2f}), "
                    f"peak RSS {r['peak_rss_gb']:.2f} GB"
                    + (f", {r['speedup_vs_reference']:.2f}x the original" if "speedup_vs_reference" in r else ""),
                    flush=True,
                )
    cpu_runs = [r for r in results if r["device"] == "cpu"]
    summary = {
        "min_speedup_vs_reference": min(
            (r["speedup_vs_reference"] for r in cpu_runs if "speedup_vs_reference" in r), default=None
        ),
        "max_peak_rss_gb": max(r["peak_rss_gb"] for r in cpu_runs),
    }
    summary["meets_speed_target"] = (
        summary["min_speedup_vs_reference"] is not None
        and summary["min_speedup_vs_reference"] >= TARGETS["speedup_vs_reference"]
    )
    summary["meets_memory_target"] = summary["max_peak_rss_gb"] < TARGETS["peak_rss_gb_max"]
    machine = _machine()
    machine.pop("load_avg_at_start", None)
    machine["load_avg_at_start"] = load_start
    try:
        machine["load_avg_at_end"] = os.getloadavg()
    except OSError:
        pass
    report = {
        "benchmark": (
            "offline VideoAnimator (int16 44.1 kHz array input, aligned=True still, random GRID-size checkpoint)"
        ),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "note": args.note,
        "targets": TARGETS,
        "reference_original_library": REFERENCE,
        "results": results,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
