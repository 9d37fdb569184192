"""Audio frame encoder and content GRU (the checkpoint's ``encoder`` state dict)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import SDAConfig

__all__ = ["AudioFrameEncoder", "ContentEncoder"]


class AudioFrameEncoder(nn.Module):
    """Strided 1-D convolutions turning one audio window into an ``aud_enc_dim`` code."""

    def __init__(self, config: SDAConfig) -> None:
        super().__init__()
        lay = config.audio_layout()
        convs, acts, c_in = [], [], 1
        for i, (k, s, p, c) in enumerate(zip(lay.kernels, lay.strides, lay.paddings, lay.channels)):
            convs.append(nn.Conv1d(c_in, c, k, stride=s, padding=p, bias=True))
            if i < len(lay.kernels) - 1:
                acts.append(nn.Sequential(nn.BatchNorm1d(c), nn.ReLU(inplace=True)))
            c_in = c
        self.cl = nn.ModuleList(convs)
        self.activations = nn.ModuleList(acts)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, L) or (N, 1, L) windows -> (N, aud_enc_dim) codes in [-1, 1]."""
        x = windows.unsqueeze(1) if windows.dim() == 2 else windows
        for conv, act in zip(self.cl, self.activations):
            x = act(conv(x))
        return torch.tanh(self.cl[-1](x)).flatten(1)


class ContentEncoder(nn.Module):
    """Frame encoder followed by the 2-layer content GRU, run over a window sequence."""

    def __init__(self, config: SDAConfig) -> None:
        super().__init__()
        self.encoder = AudioFrameEncoder(config)
        self.rnn = nn.GRU(config.aud_enc_dim, config.rnn_gen_dim, num_layers=2, batch_first=True)

    def forward(
        self, windows: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, L) windows -> ((B, T, rnn_gen_dim) content codes, new hidden state)."""
        b, t, n = windows.shape
        codes = self.encoder(windows.reshape(b * t, n)).view(b, t, -1)
        return self.rnn(codes, hidden)
