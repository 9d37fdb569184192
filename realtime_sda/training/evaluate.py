"""Metrics of a model on held-out clips: PSNR and SSIM against the real frames, a lip-sync
score (correlation of the mouth opening measured by dlib's 68-point predictor on generated
vs real frames), and blinks per second (eye aspect ratio closures).

Frames are aligned to the mean face, so the predictor runs on a known face rectangle (no
detection) after upscaling small frames; the rectangle is placed relative to the mean face.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import RealtimeSDAError
from ..photo.landmarks import CropLandmarker
from .blinks import count_blinks, eye_aspect_ratio

__all__ = [
    "psnr",
    "ssim",
    "LandmarkMeter",
    "mouth_opening",
    "eye_aspect_ratio",
    "count_blinks",
    "lip_sync_score",
    "evaluate_model",
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of two uint8 image arrays of equal shape; inf if equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _gauss_filter(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable Gaussian filter over the two leading axes, 'valid' region only."""
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    win = np.lib.stride_tricks.sliding_window_view(x, len(k), axis=0)
    x = np.tensordot(win, k, axes=([-1], [0]))
    win = np.lib.stride_tricks.sliding_window_view(x, len(k), axis=1)
    return np.tensordot(win, k, axes=([-1], [0]))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01,
    K2 0.03) of two uint8 images (H, W) or (H, W, C), averaged over channels; 1 if equal."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _gauss_filter(x), _gauss_filter(y)
    sxx = _gauss_filter(x * x) - mx * mx
    syy = _gauss_filter(y * y) - my * my
    sxy = _gauss_filter(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


#: dlib's predictor on aligned frames (the mean face fixes the face rectangle): one
#: implementation, shared with the whole-photo output
LandmarkMeter = CropLandmarker


def mouth_opening(marks: np.ndarray) -> np.ndarray:
    """(T, 68, 2) -> (T,) inner-lip gap (mean of 61-67, 62-66, 63-65) over the mouth width."""
    gap = np.linalg.norm(marks[:, [61, 62, 63]] - marks[:, [67, 66, 65]], axis=2).mean(axis=1)
    return gap / np.linalg.norm(marks[:, 54] - marks[:, 48], axis=1)


def lip_sync_score(generated: np.ndarray, real: np.ndarray) -> float:
    """Pearson correlation of two mouth-opening series (0 if either is constant)."""
    if np.std(generated) < 1e-9 or np.std(real) < 1e-9:
        return 0.0
    return float(np.corrcoef(generated, real)[0, 1])


@torch.no_grad()
def evaluate_model(model_name: str | os.PathLike[str], data: str | os.PathLike[str], split: str = "test",
                   max_clips: int = 0, seed: int = 0, out: str | os.PathLike[str] | None = None,
                   device: str = "cpu") -> dict[str, Any]:
    """Generate every clip of ``split`` from its first frame and its audio; returns (and
    writes to ``out`` as JSON) per-clip and mean metrics."""
    from ..checkpoints.loading import load_model
    from ..core.noise import NoiseSource
    from .dataset import DatasetFormatError, clip_windows, load_clip, read_index, read_meta

    model = load_model(model_name, device)
    cfg = model.config
    meta = read_meta(data)
    if tuple(meta["img_size"]) != tuple(cfg.img_size) or int(meta["audio_rate"]) != cfg.audio_rate:
        raise DatasetFormatError(
            f"dataset has {tuple(meta['img_size'])} frames at {meta['audio_rate']} Hz but the model makes "
            f"{tuple(cfg.img_size)} at {cfg.audio_rate} Hz; evaluate on a dataset built for this model"
        )
    clips = read_index(data, split)
    if max_clips:
        clips = clips[:max_clips]
    if not clips:
        raise RealtimeSDAError(f"no clips of split {split!r} in '{data}'")
    meter = LandmarkMeter(np.asarray(meta["mean_face"]), cfg.img_size)
    rows = []
    for info in clips:
        clip = load_clip(data, info.id)
        real = np.asarray(clip["frames"])
        t = len(real)
        windows = torch.from_numpy(clip_windows(np.asarray(clip["audio"]), 0, t, cfg.stride, cfg.audio_feat_samples))
        still = torch.from_numpy(real[0].copy()).float().div(127.5).sub(1).permute(2, 0, 1)[None]
        noise = NoiseSource(cfg.aux_latent, seed).next(t)[None]
        fake = model.generate(still.to(model.device), windows[None].to(model.device), noise.to(model.device))[0]
        fake = ((fake.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        real_marks = np.stack([meter(f) for f in real])
        fake_marks = np.stack([meter(f) for f in fake])
        seconds = t / float(cfg.video_rate)
        rows.append({
            "clip": info.id,
            "frames": t,
            "psnr": float(np.mean([min(psnr(a, b), 100.0) for a, b in zip(fake, real)])),
            "ssim": float(np.mean([ssim(a, b) for a, b in zip(fake, real)])),
            "lip_sync": lip_sync_score(mouth_opening(fake_marks), mouth_opening(real_marks)),
            "blinks_per_s": count_blinks(eye_aspect_ratio(fake_marks)) / seconds,
            "real_blinks_per_s": count_blinks(eye_aspect_ratio(real_marks)) / seconds,
            "mouth_motion": float(np.std(mouth_opening(fake_marks))),
            "real_mouth_motion": float(np.std(mouth_opening(real_marks))),
        })
    keys = [k for k in rows[0] if k not in ("clip", "frames")]
    result = {
        "model": str(model.source),
        "data": str(data),
        "split": split,
        "clips": len(rows),
        "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
        "per_clip": rows,
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result
