"""The original library's computation on this package's reference networks: the baseline
the folded engine is tested against (tests/test_engine.py) and timed against
(benchmarks/offline.py)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["reference_frames"]


def reference_frames(model: Any, still: torch.Tensor, windows: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) frames as the original made them: the whole clip in one batch through
    the reference modules under no_grad, no folding, the identity's skip tensors repeated for
    every frame and concatenated in each U-Net block."""
    b, t = windows.shape[:2]
    with torch.no_grad():
        content, _ = model.encoder(windows)
        squashed, _ = model.generator.squash_noise(noise)
        id_code, skips = model.encoder_id(still)
        frames = model.generator(
            content.flatten(0, 1),
            squashed.flatten(0, 1),
            id_code.repeat_interleave(t, 0),
            [s.repeat_interleave(t, 0) for s in skips],
        )
    return frames.view(b, t, 3, *model.config.img_size)
