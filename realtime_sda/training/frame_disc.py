"""The frame discriminator: is this frame a real frame of the person in the still image?"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ImageEncoder

__all__ = ["FrameDiscriminator"]


class FrameDiscriminator(nn.Module):
    """Scores (still, frame) pairs, concatenated on channels: (N, 3, H, W) twice -> (N, 1)
    logits. Conditioning on the still makes it judge identity preservation, not only realism."""

    def __init__(self, img_size: tuple[int, int], width: float = 0.25) -> None:
        super().__init__()
        self.encoder = ImageEncoder(6, img_size, 64, width)
        self.head = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(64, 1))

    def forward(self, still: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(torch.cat([still, frame], dim=1)))
