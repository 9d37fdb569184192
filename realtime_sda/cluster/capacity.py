"""A worker's real-time capacity, measured on its own model, device and CPU when it starts:
how many sessions it can step, render and encode within a frame period. Placement counts
sessions against this number (not CPU percentage), so no worker is pushed past real time."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Callable

import numpy as np

__all__ = ["Capacity", "measure_capacity", "step_times", "encode_ms"]


@dataclass(frozen=True)
class Capacity:
    """``sessions``: what the worker admits; the rest says why (all times in ms)."""

    sessions: int
    period_ms: float
    step_ms: dict[int, float] = field(default_factory=dict)  # batch -> p90 step time
    render_ms: float = 0.0  # the whole-photo renderer, per session and frame (inference thread)
    encode_ms: float = 0.0  # one viewer's VP8 encode of one frame (media threads)
    budget: float = 0.75  # share of a frame period either may use
    media_threads: int = 1
    limit: int = 0  # the configured maximum (max_sessions)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["step_ms"] = {str(k): round(v, 2) for k, v in self.step_ms.items()}
        return out


def step_times(model: Any, batch: int, steps: int = 6, warmup: int = 2) -> float:
    """p90 wall time (ms) of one batched GRU step of ``batch`` sessions, frames to uint8."""
    import torch

    from ..core.state import StreamState
    from ..media.image import frames_to_uint8

    cfg = model.config
    h, w = cfg.img_size
    g = torch.Generator().manual_seed(batch)
    still = (torch.rand(1, 3, h, w, generator=g) * 2 - 1).to(model.device)
    state = StreamState.stack([model.init_state(still) for _ in range(batch)]) if batch > 1 else model.init_state(still)
    times = []
    with torch.no_grad():
        for k in range(warmup + steps):
            windows = torch.randn(batch, 1, cfg.audio_feat_samples, generator=g) * 0.1
            noise = torch.randn(batch, 1, cfg.aux_latent, generator=g)
            t = time.perf_counter()
            frames, state = model.forward_chunk(state, windows, noise)
            frames_to_uint8(frames[:, 0].permute(0, 2, 3, 1))
            if k >= warmup:
                times.append(time.perf_counter() - t)
    return 1000.0 * float(np.percentile(times, 90))


def encode_ms(size: tuple[int, int], frames: int = 12) -> float:
    """Median ms aiortc's VP8 encoder takes for one frame of ``size`` (H, W) of a smooth
    moving picture (what one viewer costs the media threads)."""
    import av
    from aiortc.codecs.vpx import Vp8Encoder

    h, w = size
    enc = Vp8Encoder()
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.stack([xx * 255 // max(w, 1), yy * 255 // max(h, 1), (xx + yy) % 256], -1)).astype(np.uint8)
    times = []
    for k in range(frames):
        img = base.copy()
        img[(k * 3) % h : (k * 3) % h + h // 8, w // 4 : w // 2] = 255 - 10 * k % 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = k * 3600, Fraction(1, 90000)
        t = time.perf_counter()
        enc.encode(frame)
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times[2:]))


def measure_capacity(model: Any, limit: int, frame_size: tuple[int, int], render: Callable[[], Any] | None = None,
                     budget: float = 0.75, media_threads: int = 1) -> Capacity:
    """The most sessions (at most ``limit``) whose batched step plus whole-photo rendering fit
    in ``budget`` of a frame period on the inference thread, and whose encoding fits in
    ``budget`` of a period on ``media_threads`` threads (one session at least when it alone
    fits a whole period). Batches double until one is over budget; the step time between
    measured batches is interpolated."""
    period = 1000.0 / float(model.config.video_rate)
    render_ms = 0.0
    if render is not None:
        render()
        t = time.perf_counter()
        for _ in range(3):
            render()
        render_ms = 1000.0 * (time.perf_counter() - t) / 3
    table: dict[int, float] = {}
    b = 1
    while True:
        table[b] = step_times(model, b)
        if table[b] + b * render_ms > budget * period or b >= limit:
            break
        b = min(2 * b, limit)
    enc = encode_ms(frame_size)
    by_media = int(budget * period * media_threads // enc) if enc > 0 else limit
    sizes = sorted(table)
    best = 0
    for n in range(1, limit + 1):
        lo = max((s for s in sizes if s <= n), default=sizes[0])
        hi = min((s for s in sizes if s >= n), default=sizes[-1])
        step = table[lo] if hi == lo else table[lo] + (table[hi] - table[lo]) * (n - lo) / (hi - lo)
        if n > sizes[-1]:
            step = table[sizes[-1]] * n / sizes[-1]  # beyond the last measured batch: linear
        if step + n * render_ms <= budget * period:
            best = n
        else:
            break
    sessions = min(best, by_media, limit)
    if sessions == 0 and table[1] + render_ms <= period and enc <= period:
        sessions = 1  # one session alone keeps real time (as single-process serve runs it)
    return Capacity(sessions, period, table, render_ms, enc, budget, media_threads, limit)
