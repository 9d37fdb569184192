"""The generator side in train mode: the reference networks of :class:`SDAModel` run over a
batch of clips with gradients (the folded inference engine is for eval mode only)."""

from __future__ import annotations

import torch

from ..core.config import NOISE_STD
from ..core.model import SDAModel

__all__ = ["generate_train"]


def generate_train(model: SDAModel, still: torch.Tensor, windows: torch.Tensor,
                   noise: torch.Tensor | None = None, codes: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """still (B, 3, H, W), windows (B, T, feat), raw noise (B, T, aux) or None (drawn here)
    -> frames (B, T, 3, H, W) in [-1, 1], differentiable. ``codes``, if given, receives the
    squashed noise (B, T, aux) as ``"noise"`` (for auxiliary losses)."""
    b, t = windows.shape[:2]
    cfg = model.config
    if noise is None:
        noise = torch.randn(b, t, cfg.aux_latent, device=windows.device) * NOISE_STD
    content, _ = model.encoder(windows)
    id_code, skips = model.encoder_id(still)
    squashed, _ = model.generator.squash_noise(noise)
    if codes is not None:
        codes["noise"] = squashed

    def per_frame(x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(t, dim=0)

    frames = model.generator(
        content.reshape(b * t, -1), squashed.reshape(b * t, -1), per_frame(id_code), [per_frame(s) for s in skips]
    )
    return frames.view(b, t, *frames.shape[1:])
