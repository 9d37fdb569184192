"""The synchronization discriminator: does this mouth movement match this audio?"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import AudioEncoder, ImageEncoder

__all__ = ["SyncDiscriminator", "mouth_region", "sync_audio"]


def mouth_region(frames: torch.Tensor) -> torch.Tensor:
    """The lower half of aligned faces, middle 3/4 of the width: (..., 3, H, W) -> crop."""
    h, w = frames.shape[-2:]
    return frames[..., h // 2 :, w // 8 : w - w // 8]


def sync_audio(windows: torch.Tensor, stride: int, pad_left: int) -> torch.Tensor:
    """The audio exactly under K frames: the central ``stride`` samples of each of the
    (N, K, feat) windows, concatenated -> (N, K * stride)."""
    return windows[:, :, pad_left : pad_left + stride].flatten(1)


class SyncDiscriminator(nn.Module):
    """Mouth crops of K consecutive frames (N, K, 3, h, w) and the audio under them
    (N, K * stride) -> (N, 1) logits from the squared distance of their embeddings."""

    def __init__(self, img_size: tuple[int, int], audio_rate: int, frames: int = 5, width: float = 0.25,
                 dim: int = 64) -> None:
        super().__init__()
        h, w = img_size
        self.frames = frames
        self.video = ImageEncoder(3 * frames, (h - h // 2, w - 2 * (w // 8)), dim, width)
        self.audio = AudioEncoder(audio_rate, dim, width)
        self.head = nn.Linear(dim, 1)

    def forward(self, mouths: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        v = self.video(mouths.flatten(1, 2))
        a = self.audio(audio)
        return self.head((v - a) ** 2)
