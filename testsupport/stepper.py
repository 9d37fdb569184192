"""``Stepper``: the per-frame face of the step protocol (one state, advanced frame by frame).

Offline generation runs the very same ``FoldedModel.forward`` over a block of frames,
so the two paths cannot drift apart.
"""

from __future__ import annotations

import torch

from realtime_sda.core.model import SDAModel
from realtime_sda.core.state import IdentityContext, StreamState

__all__ = ["Stepper"]


class Stepper:
    """Advance B sessions one frame (or a few) at a time, keeping their state."""

    def __init__(self, model: SDAModel, still: torch.Tensor | IdentityContext | StreamState) -> None:
        self.model = model
        self.state = still if isinstance(still, StreamState) else model.init_state(still)
        self.frames_done = 0

    def step(self, windows: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """windows (B, audio_feat_samples), noise (B, aux_latent) -> frames (B, 3, H, W)."""
        return self.run(windows[:, None], noise[:, None])[:, 0]

    def run(self, windows: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """windows (B, T, feat), noise (B, T, aux) -> frames (B, T, 3, H, W)."""
        frames, self.state = self.model.forward_chunk(self.state, windows, noise)
        self.frames_done += windows.shape[1]
        return frames
