"""Blink-conditioned noise: teach the noise path to blink in a short training run.

In the paper, blinks emerge from the noise GRU because the sequence discriminator punishes
faces that never blink; that takes days of GPU training (a 0.64 s training clip rarely holds
a blink, so the signal is weak), and while the noise is drawn blind, the L1 terms pull the
eyes towards "always open".

Here the per-frame noise follows a latent-variable model whose prior is exactly the one used
at inference (i.i.d. N(0, std^2) per value): *a blink starts at frame t when the first noise
value z_t[0] exceeds a threshold tau*, with tau set so that this happens ``rate / fps`` of
the time. For a training clip whose blink onsets are known (from its landmarks), the noise is
drawn from that prior *conditioned on* the onsets: z_t[0] > tau at onsets, below elsewhere,
the other values unconstrained. The L1 terms then see noise that explains the real eyelids,
so the generator learns "z[0] over tau -> blink", and at inference plain prior noise blinks
at ``rate`` per second. Nothing changes in the model or its checkpoint format.

The eyelids are a few pixels of a small frame, so the pixel losses alone teach the noise path
slowly. An auxiliary term (``w_blink_code``) asks the noise GRU's first output to follow the
real eyelid closure (:func:`closure_track`); the generator then only has to draw closed eyes
where that code says so, as it draws the mouth from the content code.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "eye_aspect_ratio",
    "count_blinks",
    "blink_spans",
    "blink_targets",
    "closure_track",
    "onset_threshold",
    "blink_noise",
    "eye_box",
]

#: A frame counts as closed below this fraction of the clip's median eye aspect ratio.
CLOSED = 0.75
#: Frames around a closure below this fraction belong to the same blink (lids moving).
MOVING = 0.95


def eye_aspect_ratio(marks: np.ndarray) -> np.ndarray:
    """(T, 68, 2) -> (T,) eye aspect ratio (Soukupova & Cech 2016), both eyes averaged."""
    def ear(e: np.ndarray) -> np.ndarray:
        v = np.linalg.norm(e[:, 1] - e[:, 5], axis=1) + np.linalg.norm(e[:, 2] - e[:, 4], axis=1)
        return v / (2 * np.linalg.norm(e[:, 0] - e[:, 3], axis=1))
    return (ear(marks[:, 36:42]) + ear(marks[:, 42:48])) / 2


def count_blinks(ear: np.ndarray, drop: float = CLOSED) -> int:
    """Closures: runs of frames whose EAR falls below ``drop`` x the clip's median EAR."""
    closed = ear < drop * np.median(ear)
    return int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])


def blink_spans(marks: np.ndarray, max_edge: int = 3) -> list[tuple[int, int]]:
    """The blinks of a clip from its landmarks (T, 68, 2): ``(onset, end)`` frame ranges, the
    onset being where the lids start to move (up to ``max_edge`` frames before the closure)."""
    ear = eye_aspect_ratio(np.asarray(marks, dtype=np.float64))
    med = float(np.median(ear))
    closed = ear < CLOSED * med
    moving = ear < MOVING * med
    spans: list[tuple[int, int]] = []
    t, n = 0, len(ear)
    while t < n:
        if not closed[t]:
            t += 1
            continue
        start = t
        while t < n and closed[t]:
            t += 1
        onset, end = start, t
        while onset > max(0, start - max_edge) and moving[onset - 1] and (not spans or onset > spans[-1][1]):
            onset -= 1
        while end < min(n, t + max_edge) and moving[end] and not closed[end]:
            end += 1
        spans.append((onset, end))
        t = end
    return spans


def closure_track(marks: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """(T,) eyelid closure in [0, 1] within the blinks (0 open, 1 shut), from the eye aspect
    ratio relative to the clip's median; 0 outside ``spans`` (no blink, only jitter)."""
    ear = eye_aspect_ratio(np.asarray(marks, dtype=np.float64))
    closure = np.clip(1.0 - ear / max(float(np.median(ear)), 1e-9), 0.0, 1.0)
    out = np.zeros(len(ear), np.float32)
    for a, b in spans:
        out[a:b] = closure[a:b]
    return out


def blink_targets(spans: list[tuple[int, int]], start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """For frames [start, start + length) of a clip: ``onsets`` (length,) 1.0 where a blink
    starts, and ``explained`` (length,) 1.0 where the eyelids are explained by onsets inside
    the window (0 in a blink that began before it: no noise in the window can cause it)."""
    onsets = np.zeros(length, np.float32)
    explained = np.ones(length, np.float32)
    for a, b in spans:
        if start <= a < start + length:
            onsets[a - start] = 1.0
        elif a < start < b:
            explained[: min(b, start + length) - start] = 0.0
    return onsets, explained


def onset_threshold(rate_per_s: float, fps: float, std: float) -> float:
    """tau such that a N(0, std^2) value exceeds it ``rate_per_s / fps`` of the time."""
    p = rate_per_s / fps
    if not 0.0 < p < 0.5:
        raise ValueError(f"blink rate {rate_per_s}/s at {fps} fps is not a per-frame probability in (0, 0.5)")
    return std * math.sqrt(2.0) * float(torch.erfinv(torch.tensor(1.0 - 2.0 * p, dtype=torch.float64)))


def blink_noise(onsets: torch.Tensor, known: torch.Tensor, aux: int, std: float, tau: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Raw noise (B, T, aux) from the prior, conditioned on blink ``onsets`` (B, T) for the
    clips whose blinks are ``known`` (B,): z[..., 0] > tau exactly at the onsets. Clips with
    unknown blinks get unconditioned prior noise."""
    b, t = onsets.shape
    z = torch.randn(b, t, aux, generator=generator, dtype=torch.float64) * std
    u = torch.rand(b, t, generator=generator, dtype=torch.float64)
    cut = float(torch.special.ndtr(torch.tensor(tau / std, dtype=torch.float64)))
    on = onsets.detach().cpu().to(torch.float64) > 0.5
    lo = torch.where(on, torch.full_like(u, cut), torch.zeros_like(u))
    hi = torch.where(on, torch.ones_like(u), torch.full_like(u, cut))
    eps = 1e-12
    first = torch.special.ndtri((lo + u * (hi - lo)).clamp(eps, 1 - eps)) * std
    use = known.detach().cpu().bool()[:, None].expand(b, t)
    z[..., 0] = torch.where(use, first, z[..., 0])
    return z.to(device=onsets.device, dtype=torch.float32)


def eye_box(mean_face: np.ndarray, img_size: tuple[int, int], margin: float = 0.6) -> tuple[int, int, int, int]:
    """Rows and columns ``(top, bottom, left, right)`` around both eyes of the mean face
    (points 17-26 brows and 36-47 eyes), widened by ``margin`` x the eye height."""
    h, w = img_size
    pts = np.asarray(mean_face, dtype=np.float64)[list(range(36, 48))]
    brows = np.asarray(mean_face, dtype=np.float64)[list(range(17, 27))]
    eye_h = max(1.0, float(pts[:, 1].max() - pts[:, 1].min()))
    top = int(np.floor(min(brows[:, 1].min(), pts[:, 1].min() - margin * eye_h)))
    bottom = int(np.ceil(pts[:, 1].max() + margin * eye_h)) + 1
    left = int(np.floor(pts[:, 0].min() - margin * eye_h))
    right = int(np.ceil(pts[:, 0].max() + margin * eye_h)) + 1
    return max(0, top), min(h, bottom), max(0, left), min(w, right)
