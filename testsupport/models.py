"""Random-weight models and checkpoints in the exact original layout, for tests and benchmarks.

No weights can be downloaded here, so everything that loads weights is exercised on files
built by these helpers (full GRID size or a tiny config).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from realtime_sda.core.config import SDAConfig
from realtime_sda.core.model import SDAModel

__all__ = ["grid_config", "tiny_config", "random_model", "write_random_checkpoint", "mean_face_for"]


def mean_face_for(img_size: tuple[int, int]) -> np.ndarray:
    """A plausible iBUG-68 mean face (float64, 68 x 2, x/y pixels) for an image size, made
    from a fixed parametric layout (only the five alignment points matter for inference)."""
    h, w = img_size
    def row(x0: float, x1: float, y: float, n: int) -> np.ndarray:
        return np.c_[np.linspace(x0, x1, n), np.full(n, y)]

    def ring(cx: float, cy: float, rx: float, ry: float, n: int) -> np.ndarray:
        a = np.linspace(np.pi, 3 * np.pi, n, endpoint=False)
        return np.c_[cx + rx * np.cos(a), cy + ry * np.sin(a)]

    t = np.linspace(0, np.pi, 17)
    pts = np.concatenate([
        np.c_[0.5 - 0.42 * np.cos(t), 0.42 + 0.45 * np.sin(t)],  # 0-16 jaw
        row(0.18, 0.43, 0.33, 5), row(0.57, 0.82, 0.33, 5),  # 17-26 brows
        np.c_[np.full(4, 0.5), np.linspace(0.42, 0.58, 4)],  # 27-30 nose bridge
        row(0.42, 0.58, 0.62, 5),  # 31-35 nose base, 33 in the middle
        ring(0.32, 0.42, 0.09, 0.02, 6),  # 36-41 right eye: 36 outer, 39 inner corner
        ring(0.68, 0.42, 0.09, 0.02, 6),  # 42-47: 42 inner, 45 outer corner
        ring(0.5, 0.78, 0.16, 0.05, 12),  # 48-59 outer lips
        ring(0.5, 0.78, 0.10, 0.02, 8),  # 60-67 inner lips
    ])
    return pts * np.array([w, h], dtype=np.float64)


def grid_config() -> SDAConfig:
    """The published GRID checkpoint's configuration."""
    return SDAConfig(mean_face=mean_face_for((128, 96)))


def tiny_config() -> SDAConfig:
    """A small model with the same structure, for fast tests: 64x48 images, 16 kHz audio."""
    return SDAConfig(
        img_size=(64, 48), audio_rate=16000, video_rate=25, audio_feat_len=0.2, audio_feat_samples=3200,
        id_enc_dim=16, rnn_gen_dim=24, aud_enc_dim=20, aux_latent=6, sequential_noise=True,
        mean_face=mean_face_for((64, 48)), width=0.125,
    )


@torch.no_grad()
def random_model(config: SDAConfig | None = None, seed: int = 0) -> SDAModel:
    """An eval-mode model with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = SDAModel(config or grid_config())
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            n = mod.num_features
            mod.weight.copy_(0.5 + torch.rand(n, generator=gen))
            mod.bias.copy_(0.1 * torch.randn(n, generator=gen))
            mod.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            mod.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            mod.num_batches_tracked.fill_(1000)
    return model.eval()


def write_random_checkpoint(
    path: str | os.PathLike[str], config: SDAConfig | None = None, seed: int = 0, legacy: bool = False
) -> Path:
    """Write a random-weight checkpoint in the original dict layout (legacy or zip format)."""
    return random_model(config, seed).save(path, legacy=legacy)
