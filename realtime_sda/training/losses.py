"""The paper's objective (Vougioukas et al., IJCV 2019): three adversarial terms (frame,
sequence, synchronization) and an L1 reconstruction term on the lower half of the face."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .frame_disc import FrameDiscriminator
from .sequence_disc import SequenceDiscriminator
from .sync_disc import SyncDiscriminator, mouth_region, sync_audio

__all__ = ["Discriminators", "SyncSlices", "bce", "l1_lower_face", "masked_l1", "sync_slices", "discriminator_losses",
           "generator_losses", "blink_code_loss"]


@dataclass
class Discriminators:
    frame: FrameDiscriminator
    seq: SequenceDiscriminator
    sync: SyncDiscriminator


@dataclass
class SyncSlices:
    """Where the sync discriminator looks in a (B, T) batch: frames [a, a+K) in sync with audio
    [a, a+K), and off-sync audio [b, b+K) with |a - b| >= K // 2 + 1."""

    a: int
    b: int
    k: int
    stride: int
    pad_left: int


def sync_slices(t: int, k: int, stride: int, pad_left: int, gen: torch.Generator) -> SyncSlices:
    """Draw an in-sync start ``a`` and an off-sync audio start ``b`` within T frames."""
    gap = k // 2 + 1
    pairs = [(a, b) for a in range(t - k + 1) for b in range(t - k + 1) if abs(a - b) >= gap]
    if not pairs:
        raise ValueError(f"clips of {t} frames are too short for off-sync pairs of {k} frames (need {k + gap})")
    a, b = pairs[int(torch.randint(0, len(pairs), (1,), generator=gen))]
    return SyncSlices(a, b, k, stride, pad_left)


def bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def l1_lower_face(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the lower half of the frames (..., 3, H, W)."""
    h = fake.shape[-2]
    return (fake[..., h // 2 :, :].float() - real[..., h // 2 :, :].float()).abs().mean()


def _still_per_frame(still: torch.Tensor, t: int) -> torch.Tensor:
    return still.repeat_interleave(t, dim=0)


def _sync_inputs(frames: torch.Tensor, windows: torch.Tensor, s: SyncSlices, audio_at: int) -> tuple[torch.Tensor, torch.Tensor]:
    mouths = mouth_region(frames[:, s.a : s.a + s.k])
    audio = sync_audio(windows[:, audio_at : audio_at + s.k], s.stride, s.pad_left)
    return mouths, audio


def discriminator_losses(d: Discriminators, still: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                         windows: torch.Tensor, s: SyncSlices) -> dict[str, torch.Tensor]:
    """Each discriminator's loss (real vs generated; for sync also real vs off-sync)."""
    fake = fake.detach()
    t = real.shape[1]
    st = _still_per_frame(still, t)
    frame = bce(d.frame(st, real.flatten(0, 1)), True) + bce(d.frame(st, fake.flatten(0, 1)), False)
    seq = bce(d.seq(real, windows), True) + bce(d.seq(fake, windows), False)
    sync_real = bce(d.sync(*_sync_inputs(real, windows, s, s.a)), True)
    sync_off = bce(d.sync(*_sync_inputs(real, windows, s, s.b)), False)
    sync_fake = bce(d.sync(*_sync_inputs(fake, windows, s, s.a)), False)
    return {"d_frame": frame, "d_seq": seq, "d_sync": sync_real + 0.5 * (sync_off + sync_fake)}


def masked_l1(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean absolute error of (B, T, 3, H, W) frames, frames weighted by ``weight`` (B, T)."""
    err = (fake.float() - real.float()).abs().mean(dim=(2, 3, 4))
    if weight is None:
        return err.mean()
    return (err * weight).sum() / weight.sum().clamp_min(1.0)


def generator_losses(d: Discriminators, still: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                     windows: torch.Tensor, s: SyncSlices, explained: torch.Tensor | None = None,
                     eyes: tuple[int, int, int, int] | None = None) -> dict[str, torch.Tensor]:
    """The generator's terms, unweighted: it wants every discriminator to say "real". Besides
    the paper's lower-face L1, ``l1_face`` is the L1 over the whole frame (weight 0 by default;
    a short training run needs it to learn the upper face from the skips quickly) and
    ``l1_eyes`` the L1 over the ``eyes`` box (top, bottom, left, right). Both skip frames
    whose eyelids the noise cannot explain (``explained`` (B, T) 0: see :mod:`.blinks`)."""
    t = real.shape[1]
    out = {
        "g_frame": bce(d.frame(_still_per_frame(still, t), fake.flatten(0, 1)), True),
        "g_seq": bce(d.seq(fake, windows), True),
        "g_sync": bce(d.sync(*_sync_inputs(fake, windows, s, s.a)), True),
        "l1": l1_lower_face(fake, real),
        "l1_face": masked_l1(fake, real, explained),
    }
    if eyes is not None:
        top, bottom, left, right = eyes
        out["l1_eyes"] = masked_l1(fake[..., top:bottom, left:right], real[..., top:bottom, left:right], explained)
    return out


def blink_code_loss(squashed: torch.Tensor, closure: torch.Tensor, explained: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the noise GRU's first output (B, T) against the real eyelid
    closure (B, T), over the frames the noise explains (see :mod:`.blinks`)."""
    err = (squashed[..., 0].float() - closure.float()) ** 2
    return (err * explained).sum() / explained.sum().clamp_min(1.0)
