"""Per-session inference state (one protocol for offline and streaming inference).

An :class:`IdentityContext` is computed once per still image; a :class:`StreamState` adds the
two GRU hidden states and is carried from one step to the next. Both are batched along
dimension 0 (sessions), so several sessions can be stacked into one call and split again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["IdentityContext", "StreamState"]


def _cat(items: Sequence[torch.Tensor | None], dim: int) -> torch.Tensor | None:
    if items[0] is None:
        return None
    return torch.cat(list(items), dim=dim)  # type: ignore[arg-type]


@dataclass
class IdentityContext:
    """What a still image contributes to every frame, precomputed once.

    ``base``: the identity code's share of the first generator layer (plus its folded
    BatchNorm shift); ``skip_bias``: each U-Net block's skip tensor pushed through the skip
    half of its first convolution (plus BatchNorm shift). Adding these maps replaces the
    per-frame concatenation of the skip tensors.
    """

    id_code: torch.Tensor  # (B, id_enc_dim)
    base: torch.Tensor  # (B, C, h, w)
    skip_bias: tuple[torch.Tensor, ...]  # 4 x (B, C_i, h_i, w_i)

    @property
    def batch(self) -> int:
        return self.id_code.shape[0]

    def select(self, index: int | slice) -> "IdentityContext":
        sl = slice(index, index + 1) if isinstance(index, int) else index
        return IdentityContext(self.id_code[sl], self.base[sl], tuple(s[sl] for s in self.skip_bias))

    @staticmethod
    def stack(items: Sequence["IdentityContext"]) -> "IdentityContext":
        return IdentityContext(
            torch.cat([i.id_code for i in items]),
            torch.cat([i.base for i in items]),
            tuple(torch.cat(parts) for parts in zip(*(i.skip_bias for i in items))),
        )


@dataclass
class StreamState:
    """Everything one step needs from the past: identity context and GRU hidden states.

    ``content_h``: (layers, B, rnn_gen_dim) or None before the first frame;
    ``noise_h``: (1, B, aux_latent), or None (first frame, or no sequential noise).
    """

    identity: IdentityContext
    content_h: torch.Tensor | None = None
    noise_h: torch.Tensor | None = None

    @property
    def batch(self) -> int:
        return self.identity.batch

    def select(self, index: int | slice) -> "StreamState":
        sl = slice(index, index + 1) if isinstance(index, int) else index
        return StreamState(
            self.identity.select(sl),
            None if self.content_h is None else self.content_h[:, sl],
            None if self.noise_h is None else self.noise_h[:, sl],
        )

    @staticmethod
    def stack(states: Sequence["StreamState"]) -> "StreamState":
        """Stack sessions along the batch; a fresh state gets zero hidden states."""
        return StreamState(
            IdentityContext.stack([s.identity for s in states]),
            _cat(_zeros_for(states, "content_h"), dim=1),
            _cat(_zeros_for(states, "noise_h"), dim=1),
        )

    def split(self) -> list["StreamState"]:
        return [self.select(i) for i in range(self.batch)]


def _zeros_for(states: Sequence[StreamState], attr: str) -> list[torch.Tensor | None]:
    """Hidden states of ``attr``, with zeros standing in for sessions that have none yet
    (a GRU started from None starts from zeros, so this changes nothing)."""
    present = [getattr(s, attr) for s in states if getattr(s, attr) is not None]
    if not present:
        return [None]
    ref = present[0]
    out = []
    for s in states:
        h = getattr(s, attr)
        out.append(h if h is not None else ref.new_zeros(ref.shape[0], s.batch, ref.shape[2]))
    return out
