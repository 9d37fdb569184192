"""How the embedded default model (models/default.pt) was made, reproducibly.

Stages (each resumable; ``all`` runs them in order):

1. ``corpus``: a synthetic talking-face corpus (espeak-ng speech, procedural faces),
   360 clips, 40 identities of which 8 are held out with held-out sentences;
2. ``train``: the paper's objective on a small CPU-sized network (64x48 frames, 16 kHz
   audio, width 0.25), with blink-conditioned noise, an L1 on the eyes and the blink-code
   term (realtime_sda/training/blinks.py) so that the noise path learns to blink 0.3 times
   a second; resumed from the run directory if it exists;
3. ``export``: models/default.pt (float16), realtime_sda/assets/avatar.png (a held-out
   identity rendered at 256x192), evaluation on the held-out clips
   (benchmarks/results/default_model.json) and a picture of generated frames under real
   ones (benchmarks/results/default_samples.png).

Usage: python benchmarks/train_default.py all --work /tmp/sda_default [--minutes 45]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

CORPUS = {"clips": 360, "seed": 0, "identities": 40, "test_fraction": 0.2, "img_size": [64, 48], "audio_rate": 16000}

TRAIN = {
    "model": {"img_size": [64, 48], "audio_rate": 16000, "audio_feat_samples": 3200, "id_enc_dim": 64,
              "rnn_gen_dim": 128, "aud_enc_dim": 128, "aux_latent": 10, "width": 0.25},
    "batch_size": 8,
    "clip_frames": 16,
    "steps": 40000,
    "sample_every": 1000,
    "checkpoint_every": 50,
    "log_every": 10,
    "threads": 2,
    "lr_gen": 2e-4,
    "lr_seq": 1e-4,
    "lr_sync": 1e-4,
    "w_l1_face": 200.0,
    "w_l1_eyes": 300.0,
    "blink_rate": 0.3,
    "blink_crops": 0.5,
    "w_blink_code": 50.0,
    "lr_noise": 3e-3,
    "disc_width": 0.25,
    "seed": 0,
}


def stage_corpus(work: Path) -> Path:
    from realtime_sda.training.synth.corpus import CorpusSpec, build_corpus

    dst = work / "corpus"
    done = dst / "index.jsonl"
    if done.is_file() and sum(1 for _ in done.open()) == CORPUS["clips"]:
        return dst
    spec = CorpusSpec(**{**CORPUS, "img_size": tuple(CORPUS["img_size"])})
    build_corpus(dst, spec, progress=lambda i, n: print(f"corpus {i}/{n}", flush=True) if i % 20 == 0 else None)
    return dst


def stage_train(work: Path, minutes: float, data: Path) -> Path:
    from realtime_sda.training.config import TrainConfig
    from realtime_sda.training.loop import train

    cfg = TrainConfig.from_dict({**TRAIN, "data": str(data), "out": str(work / "run"), "max_minutes": minutes})
    return train(cfg, show_progress=False)


def stage_export(work: Path, data: Path) -> None:
    from PIL import Image

    from realtime_sda.checkpoints.loading import load_model
    from realtime_sda.training.dataset import read_index
    from realtime_sda.training.evaluate import evaluate_model
    from realtime_sda.training.loop import save_sample_grid

    model = load_model(work / "run" / "last.pt")
    step = int(model.extra.get("step", 0))
    extra = {
        "train_config": model.extra.get("train_config", {}),
        "step": step,
        "trained_on": "synthetic corpus: realtime-sda synth --clips 360 --seed 0 (espeak-ng voices, procedural faces)",
    }
    dst = REPO / "models" / "default.pt"
    model.save(dst, extra=extra, half=True)
    print(f"wrote {dst} ({dst.stat().st_size:,} bytes), step {step}")

    write_avatar(data)

    result = evaluate_model(dst, data, split="test")
    result["model"] = "models/default.pt"
    result["data"] = "synthetic corpus, held-out identities and sentences (split 'test')"
    result["machine"] = (f"{platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs, "
                         f"{TRAIN['threads']} torch threads for training, no GPU")
    result["training_step"] = step
    log = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    result["training_minutes"] = round(sum(_segments(log)) / 60, 1)
    result["final_l1"] = float(np.mean([r["l1"] for r in log[-10:]]))
    result["training_steps_per_minute"] = round(step / max(result["training_minutes"], 1e-9), 1)
    result["parameters"] = sum(p.numel() for p in model.parameters())
    result["file_bytes"] = dst.stat().st_size
    out = REPO / "benchmarks" / "results" / "default_model.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["mean"], indent=1))

    exported = load_model(dst)  # the float16 file, as users get it
    grids = [save_sample_grid(exported, data, cid, work / f"sample_{i}.png")
             for i, cid in enumerate([c.id for c in read_index(data, "test")][:3])]
    Image.fromarray(np.concatenate(grids, axis=0)).save(REPO / "benchmarks" / "results" / "default_samples.png")
    curve = {r["step"]: r for r in log}  # a resumed segment re-logs some steps: keep the last
    rows = [curve[k] for k in sorted(curve) if k % 100 == 0 or k == max(curve)]
    (REPO / "benchmarks" / "results" / "default_model_training.json").write_text(
        json.dumps({"train_config": extra["train_config"], "loss_curve": rows}, indent=1) + "\n")


def write_avatar(data: Path) -> Path:
    """The avatar: a held-out identity (the first bald one, whose face the hair does not
    cover; else the first), neutral, rendered at 4x the model size (dlib finds it)."""
    from PIL import Image

    from realtime_sda.training.dataset import read_index
    from realtime_sda.training.synth.animate import FaceAnimator
    from realtime_sda.training.synth.faces import random_identity

    test_ids = sorted({int(c.identity[2:]) for c in read_index(data, "test")})
    people = [random_identity(np.random.default_rng([CORPUS["seed"], 1, who]), who) for who in test_ids]
    ident = next((p for p in people if p.hair_style == "bald"), people[0])
    h, w = CORPUS["img_size"]
    frame, _ = FaceAnimator(ident, (4 * h, 4 * w)).frame(0.0, 0.0, 0.0, np.array([0.0, 0.0, 0.0, 1.0]))
    avatar = REPO / "realtime_sda" / "assets" / "avatar.png"
    avatar.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(avatar)
    print(f"wrote {avatar} (identity {ident.index})")
    return avatar


def _segments(log: list[dict]) -> list[float]:
    """Wall time of each resumed segment of the run (``time`` restarts at each resume)."""
    seg, last = [], 0.0
    for row in log:
        if row["time"] < last:
            seg.append(last)
        last = row["time"]
    return seg + [last]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["corpus", "train", "avatar", "export", "all"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/sda_default"))
    ap.add_argument("--minutes", type=float, default=45.0, help="training wall-time budget of this run")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = stage_corpus(args.work) if args.stage in ("corpus", "all") else args.work / "corpus"
    if args.stage in ("train", "all"):
        stage_train(args.work, args.minutes, data)
    if args.stage == "avatar":
        write_avatar(data)
    if args.stage in ("export", "all"):
        stage_export(args.work, data)
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
