"""Noise GRU and U-Net frame generator (the checkpoint's ``generator`` state dict)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import SDAConfig

__all__ = ["UnetBlock", "FrameGenerator"]


def _bn_relu(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class UnetBlock(nn.Module):
    """[x, skip] -> 3x3 transposed conv back to x's channels -> 4x4 stride-2 upsampling."""

    def __init__(self, channels: int, out_size: tuple[int, int]) -> None:
        super().__init__()
        self.out_size = out_size
        self.dcl1 = nn.ConvTranspose2d(2 * channels, channels, 3, stride=1, padding=1, bias=False)
        self.dcl2 = nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1, bias=False)
        self.activation1 = _bn_relu(channels)
        self.activation2 = _bn_relu(channels // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.activation1(self.dcl1(torch.cat([x, skip], dim=1)))
        return self.activation2(self.dcl2(x, output_size=self.out_size))


class FrameGenerator(nn.Module):
    """Draws one frame from [content code, noise, identity code] and the identity skips."""

    def __init__(self, config: SDAConfig) -> None:
        super().__init__()
        self.config = config
        sizes, chans = config.image_sizes(), config.image_channels()
        if config.sequential_noise:
            self.rnn_noise = nn.GRU(config.aux_latent, config.aux_latent, num_layers=1, batch_first=True)
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.ConvTranspose2d(config.latent_dim, chans[-1], sizes[-1], bias=False),
                nn.BatchNorm2d(chans[-1]),
                nn.ReLU(inplace=True),
            )
        ]
        # U-Net blocks from the smallest size up; block i upsamples to sizes[-2 - i].
        for i in range(4):
            layers.append(UnetBlock(chans[-1 - i], sizes[-2 - i]))
        layers.append(nn.ConvTranspose2d(chans[0], 3, 4, stride=2, padding=1, bias=False))
        self.dcl = nn.ModuleList(layers)

    def squash_noise(
        self, noise: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, aux) raw noise -> (squashed noise, new noise-GRU state)."""
        if not self.config.sequential_noise:
            return noise, None
        out, hidden = self.rnn_noise(noise, hidden)
        return torch.tanh(out), hidden

    def forward(
        self, content: torch.Tensor, noise: torch.Tensor, id_code: torch.Tensor, skips: list[torch.Tensor]
    ) -> torch.Tensor:
        """Reference path. content (N, rnn), squashed noise (N, aux), id (N, id), skips with
        batch N -> frames (N, 3, H, W) in [-1, 1]."""
        z = torch.cat([content, noise, id_code], dim=1)[:, :, None, None]
        x = self.dcl[0](z)
        for block, skip in zip(self.dcl[1:5], reversed(skips[1:])):
            x = block(x, skip)
        return torch.tanh(self.dcl[5](x, output_size=self.config.img_size))
