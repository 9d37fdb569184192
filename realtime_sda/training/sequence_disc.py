"""The sequence discriminator: is this a real video of someone saying this audio?"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import AudioEncoder, ImageEncoder

__all__ = ["SequenceDiscriminator"]


class SequenceDiscriminator(nn.Module):
    """Frames (B, T, 3, H, W) and their audio windows (B, T, feat) -> (B, 1) logits.

    Each frame and each window is encoded, the pairs are concatenated and a GRU runs over
    time; its last output is scored. It sees motion, so it punishes jitter and frozen faces.
    """

    def __init__(self, img_size: tuple[int, int], audio_rate: int, width: float = 0.25, dim: int = 64) -> None:
        super().__init__()
        self.frames = ImageEncoder(3, img_size, dim, width)
        self.audio = AudioEncoder(audio_rate, dim, width)
        self.rnn = nn.GRU(2 * dim, dim, batch_first=True)
        self.head = nn.Linear(dim, 1)

    def forward(self, frames: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        v = self.frames(frames.flatten(0, 1)).view(b, t, -1)
        a = self.audio(windows.flatten(0, 1)).view(b, t, -1)
        out, _ = self.rnn(torch.relu(torch.cat([v, a], dim=2)))
        return self.head(out[:, -1])
