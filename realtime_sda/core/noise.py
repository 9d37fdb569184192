"""Reproducible per-frame noise: the same seed gives the same values however it is chunked."""

from __future__ import annotations

import numpy as np
import torch

from .config import NOISE_STD

__all__ = ["NoiseSource"]


class NoiseSource:
    """Draws the (frames, aux_latent) N(0, 0.33) noise of one session, frame after frame.

    numpy's generator fills arrays value by value, so drawing 75 frames at once or one at a
    time gives the same numbers: streaming and offline runs with one seed match exactly.
    """

    def __init__(self, aux_latent: int, seed: int | None = None) -> None:
        self.aux_latent = aux_latent
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def next(self, frames: int) -> torch.Tensor:
        """(frames, aux_latent) float32 noise."""
        values = self._rng.standard_normal((frames, self.aux_latent), dtype=np.float64) * NOISE_STD
        return torch.from_numpy(values.astype(np.float32))
