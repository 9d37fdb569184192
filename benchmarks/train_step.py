"""Training-step benchmark: steps/s and step p50/p99 of the training loop's step, float32 vs
bfloat16 autocast (the loop's ``amp`` option), for the GRID-size model.

One step is what ``realtime_sda.training.loop.train`` does per step, on a random batch already
on the device (data loading is not measured): the generator over the clips, a discriminator
update (frame, sequence, sync) and a generator update (adversarial terms + L1), with Adam.
``bf16`` runs the forward passes under ``torch.autocast(device, bfloat16)`` as the loop does on
CUDA with ``amp: true`` (the loop uses float16 + GradScaler only where bfloat16 is not
supported); ``fp32`` is ``amp: false``.

    python benchmarks/train_step.py [--device cuda] [--batch 4,16] [--steps 30] [--out FILE]
    python benchmarks/train_step.py --tiny --steps 3     # a quick check of the script on a CPU

Prints a table and writes benchmarks/results/train_step[_cuda].json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from realtime_sda import SDAModel
from realtime_sda.training.config import TrainConfig
from realtime_sda.training.generate import generate_train
from realtime_sda.training.loop import build_discriminators
from realtime_sda.training.losses import discriminator_losses, generator_losses, sync_slices

RESULTS = Path(__file__).resolve().parent / "results"

#: A small model of the same structure (as the tests' tiny config), for checking the script.
TINY_MODEL = {"img_size": [64, 48], "audio_rate": 16000, "audio_feat_samples": 3200, "id_enc_dim": 16,
              "rnn_gen_dim": 24, "aud_enc_dim": 20, "aux_latent": 6, "width": 0.125}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pct(times: list[float]) -> dict[str, float]:
    a = np.asarray(times) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": int(a.size)}


def measure(cfg: TrainConfig, device: torch.device, dtype: str, steps: int, warmup: int) -> dict:
    """Time ``steps`` training steps (after ``warmup``) of a fresh model and discriminators."""
    torch.manual_seed(cfg.seed)
    mcfg = cfg.model_config(np.zeros((68, 2)))
    model = SDAModel(mcfg).to(device).train()
    d = build_discriminators(cfg, model)
    for net in (d.frame, d.seq, d.sync):
        net.to(device).train()
    opts = {
        "gen": torch.optim.Adam(model.parameters(), lr=cfg.lr_gen, betas=cfg.betas),
        "frame": torch.optim.Adam(d.frame.parameters(), lr=cfg.lr_frame, betas=cfg.betas),
        "seq": torch.optim.Adam(d.seq.parameters(), lr=cfg.lr_seq, betas=cfg.betas),
        "sync": torch.optim.Adam(d.sync.parameters(), lr=cfg.lr_sync, betas=cfg.betas),
    }
    weights = {"g_frame": cfg.w_frame, "g_seq": cfg.w_seq, "g_sync": cfg.w_sync, "l1": cfg.w_l1,
               "l1_face": cfg.w_l1_face}

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()

    gen = torch.Generator().manual_seed(cfg.seed)
    b, t = cfg.batch_size, cfg.clip_frames
    h, w = mcfg.img_size
    still = (torch.rand(b, 3, h, w, generator=gen) * 2 - 1).to(device)
    real = (torch.rand(b, t, 3, h, w, generator=gen) * 2 - 1).to(device)
    windows = (torch.randn(b, t, mcfg.audio_feat_samples, generator=gen) * 0.1).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for k in range(warmup + steps):
        s = sync_slices(t, cfg.sync_frames, mcfg.stride, mcfg.pad_left, gen)
        _sync(device)
        t0 = time.perf_counter()
        with autocast():
            fake = generate_train(model, still, windows)
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        with autocast():
            d_losses = discriminator_losses(d, still, real, fake, windows, s)
        sum(d_losses.values()).backward()
        for name in ("frame", "seq", "sync"):
            opts[name].step()
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        with autocast():
            g_losses = generator_losses(d, still, real, fake, windows, s)
            g_total = sum(weights[k2] * v for k2, v in g_losses.items() if k2 in weights)
        g_total.backward()
        opts["gen"].step()
        _sync(device)
        if k >= warmup:
            times.append(time.perf_counter() - t0)
            losses.append(float(g_total.detach()))
    if not all(np.isfinite(losses)):
        raise RuntimeError(f"{dtype}: non-finite generator loss {losses}")
    step = _pct(times)
    out = {"step": step, "steps_per_s": round(1000.0 / step["mean_ms"], 2),
           "frames_per_s": round(b * t * 1000.0 / step["mean_ms"], 1), "g_total_last": round(losses[-1], 4)}
    if device.type == "cuda":
        out["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    out["parameters"] = {"generator": sum(p.numel() for p in model.parameters()),
                         "discriminators": sum(p.numel() for n in (d.frame, d.seq, d.sync) for p in n.parameters())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", default="4", help="batch size(s), e.g. 4,16 (default 4, TrainConfig's)")
    ap.add_argument("--clip-frames", type=int, default=TrainConfig().clip_frames)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--tiny", action="store_true", help="a small model (to check the script quickly)")
    ap.add_argument("--out", default=None, help="JSON output (default benchmarks/results/train_step[_cuda].json)")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model_fields = dict(TINY_MODEL) if args.tiny else {}  # {}: SDAConfig's defaults, the GRID model's size
    result: dict = {
        "benchmark": "train_step",
        "model": "tiny (64x48, 16 kHz, width 0.125)" if args.tiny else "GRID-size (128x96, 50 kHz audio, 25 fps)",
        "machine": {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(),
                    "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                    "matmul_tf32": torch.backends.cuda.matmul.allow_tf32},
        "what": "one training-loop step on a batch already on the device (data loading not counted): generator "
                "forward, discriminator losses + backward + Adam (frame, seq, sync), generator losses + backward + "
                "Adam; bf16 = torch.autocast(bfloat16) as the loop's amp option on CUDA",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": args.note,
        "results": {},
    }
    for bs in [int(x) for x in args.batch.split(",")]:
        cfg = TrainConfig.from_dict({"model": model_fields, "batch_size": bs, "clip_frames": args.clip_frames})
        result["train_config"] = {k: v for k, v in cfg.to_dict().items()
                                  if k in ("clip_frames", "sync_frames", "disc_width", "lr_gen", "betas")}
        for dtype in args.dtypes.split(","):
            key = f"batch{bs}_{dtype}"
            print(f"{key}: {args.steps} steps of batch {bs} x {cfg.clip_frames} frames on {device} ...", flush=True)
            r = measure(cfg, device, dtype, args.steps, args.warmup)
            result["results"][key] = {"batch_size": bs, "clip_frames": cfg.clip_frames, "dtype": dtype, **r}
            print(f"  step p50 {r['step']['p50_ms']:.1f} ms, p99 {r['step']['p99_ms']:.1f} ms, "
                  f"{r['steps_per_s']:.2f} steps/s, {r['frames_per_s']:.0f} frames/s"
                  + (f", peak {r['peak_gpu_mem_gb']:.2f} GB" if "peak_gpu_mem_gb" in r else ""), flush=True)
        fp, bf = result["results"].get(f"batch{bs}_fp32"), result["results"].get(f"batch{bs}_bf16")
        if fp and bf:
            result["results"][f"batch{bs}_bf16"]["speedup_vs_fp32"] = round(bf["steps_per_s"] / fp["steps_per_s"], 2)
    default = "train_step.json" if device.type == "cpu" else f"train_step_{device.type}.json"
    out = Path(args.out) if args.out else RESULTS / default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
