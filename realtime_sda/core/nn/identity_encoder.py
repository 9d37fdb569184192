"""Identity encoder (the checkpoint's ``encoder_id`` state dict)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import SDAConfig

__all__ = ["IdentityEncoder"]


class IdentityEncoder(nn.Module):
    """Five stride-2 conv blocks and a final conv to the identity code; keeps the block
    outputs as the U-Net skip tensors."""

    def __init__(self, config: SDAConfig) -> None:
        super().__init__()
        chans, c_in, blocks = config.image_channels(), 3, []
        for c in chans:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(inplace=True),
                )
            )
            c_in = c
        final = config.image_sizes()[-1]
        blocks.append(nn.Sequential(nn.Conv2d(c_in, config.id_enc_dim, final, bias=False), nn.Tanh()))
        self.cl = nn.ModuleList(blocks)

    def forward(self, still: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 3, H, W) in [-1, 1] -> ((B, id_enc_dim) code, [5 skip tensors, largest first])."""
        skips, x = [], still
        for block in self.cl[:-1]:
            x = block(x)
            skips.append(x)
        return self.cl[-1](x).flatten(1), skips
