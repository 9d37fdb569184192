"""Building blocks shared by the discriminators: a strided 2-D image encoder and a 1-D
audio encoder, both ending in one feature vector per input."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ImageEncoder", "AudioEncoder"]


def _ch(base: int, width: float) -> int:
    return max(4, int(round(base * width)))


class ImageEncoder(nn.Module):
    """(N, C, H, W) -> (N, dim): stride-2 4x4 convs with LeakyReLU until the image is at most
    4 pixels high, then global average pooling and a linear layer."""

    def __init__(self, in_channels: int, size: tuple[int, int], dim: int, width: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, h, i = in_channels, size[0], 0
        while h > 4 or i == 0:
            c = _ch(64 * 2**i, width)
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c_in, h, i = c, (h + 2 - 4) // 2 + 1, i + 1
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x).mean(dim=(2, 3)))


class AudioEncoder(nn.Module):
    """(N, L) raw audio -> (N, dim): a 5 ms / 1 ms first conv (as in the SDA audio encoder),
    stride-4 convs with LeakyReLU, global average pooling and a linear layer."""

    def __init__(self, rate: int, dim: int, width: float, layers: int = 3) -> None:
        super().__init__()
        k0, s0 = max(2, int(round(0.005 * rate))), max(1, int(round(0.001 * rate)))
        mods: list[nn.Module] = [nn.Conv1d(1, _ch(32, width), k0, stride=s0, padding=k0 // 2), nn.LeakyReLU(0.2, inplace=True)]
        c_in = _ch(32, width)
        for i in range(layers):
            c = _ch(64 * 2**i, width)
            mods += [nn.Conv1d(c_in, c, 8, stride=4, padding=2), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c
        self.convs = nn.Sequential(*mods)
        self.fc = nn.Linear(c_in, dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(audio.unsqueeze(1)).mean(dim=2))
