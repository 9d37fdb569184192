"""The SDA model: the three networks, their config, and inference through one step protocol."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..checkpoints.format import write_checkpoint
from .config import SDAConfig
from .engine import FoldedModel, default_inference_dtype
from .nn import ContentEncoder, FrameGenerator, IdentityEncoder
from .state import IdentityContext, StreamState

__all__ = ["SDAModel"]


class SDAModel(nn.Module):
    """Audio content encoder (``encoder``), identity encoder (``encoder_id``) and frame
    generator (``generator``), named as in the original checkpoints.

    Inference goes through a cached :class:`FoldedModel` (folded weights); it is rebuilt
    after ``load_state_dict`` or ``train()``, so it always reflects the current weights.
    """

    def __init__(self, config: SDAConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ContentEncoder(config)
        self.encoder_id = IdentityEncoder(config)
        self.generator = FrameGenerator(config)
        self._engine: FoldedModel | None = None
        self._engine_dtype: torch.dtype | None = None  # None: default_inference_dtype
        #: Extra values from the checkpoint file (e.g. the training config), kept as loaded.
        self.extra: dict[str, Any] = {}
        self.source: Path | None = None

    # ---- engine ------------------------------------------------------------------------------
    @property
    def engine(self) -> FoldedModel:
        if self._engine is None:
            if self.training:
                raise RuntimeError("call model.eval() before inference (BatchNorm must use running statistics)")
            dtype = self._engine_dtype
            if dtype is None:
                dtype = default_inference_dtype(next(self.parameters()).device)
            self._engine = FoldedModel(self.config, self.encoder, self.encoder_id, self.generator, dtype=dtype)
        return self._engine

    def set_inference_dtype(self, dtype: torch.dtype | None) -> "SDAModel":
        """Run the generator's convolutions in ``dtype`` (float32 or bfloat16; None: the
        default, :func:`~.engine.default_inference_dtype`)."""
        self._engine_dtype = dtype
        self._engine = None
        return self

    def train(self, mode: bool = True) -> "SDAModel":
        self._engine = None
        return super().train(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self._engine = None
        return super().load_state_dict(*args, **kwargs)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "SDAModel":  # .to(), .cuda(), .half()
        self._engine = None
        return super()._apply(fn, *args, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- the step protocol -------------------------------------------------------------------
    def encode_still(self, still: torch.Tensor) -> IdentityContext:
        """(B, 3, H, W) aligned still image(s) in [-1, 1] -> identity context."""
        return self.engine.encode_still(still)

    def init_state(self, still: torch.Tensor | IdentityContext) -> StreamState:
        """A fresh per-session state (zero GRU states) for a still image or its context."""
        identity = still if isinstance(still, IdentityContext) else self.encode_still(still)
        return StreamState(identity)

    def forward_chunk(
        self, state: StreamState, windows: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, StreamState]:
        """Frames for a (B, T) block of windows and noise, and the state after them: the one
        entry point for stepping (offline chunks, the live worker's batches, the tests)."""
        return self.engine.forward(state, windows, noise)

    def iter_generate(
        self,
        still: torch.Tensor | IdentityContext | StreamState,
        windows: torch.Tensor,
        noise: torch.Tensor,
        chunk_frames: int = 16,
    ) -> Iterator[torch.Tensor]:
        """Yield frames (B, t, 3, H, W) chunk by chunk, carrying the state; memory stays flat.

        ``windows`` may be a strided view (see :func:`cut_audio_sequence`): only one chunk of
        it is ever made contiguous.
        """
        state = still if isinstance(still, StreamState) else self.init_state(still)
        t = windows.shape[1]
        if noise.shape[:2] != windows.shape[:2]:
            raise ValueError(f"noise {tuple(noise.shape)} and windows {tuple(windows.shape)} differ in (B, T)")
        for start in range(0, t, chunk_frames):
            stop = min(start + chunk_frames, t)
            frames, state = self.forward_chunk(state, windows[:, start:stop], noise[:, start:stop])
            yield frames

    def generate(
        self,
        still: torch.Tensor | IdentityContext | StreamState,
        windows: torch.Tensor,
        noise: torch.Tensor,
        chunk_frames: int = 16,
    ) -> torch.Tensor:
        """still (B,3,H,W) in [-1,1], windows (B,T,feat), raw noise (B,T,aux) ->
        frames (B,T,3,H,W) in [-1,1]. Runs in time chunks carrying the GRU states."""
        b, t = windows.shape[:2]
        h, w = self.config.img_size
        out = torch.empty(b, t, 3, h, w)
        pos = 0
        for frames in self.iter_generate(still, windows, noise, chunk_frames):
            out[:, pos : pos + frames.shape[1]] = frames.cpu()
            pos += frames.shape[1]
        return out

    # ---- files -------------------------------------------------------------------------------
    def state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "encoder": self.encoder.state_dict(),
            "encoder_id": self.encoder_id.state_dict(),
            "generator": self.generator.state_dict(),
        }

    def save(
        self,
        path: str | os.PathLike[str],
        extra: dict[str, Any] | None = None,
        *,
        legacy: bool = False,
        half: bool = False,
    ) -> Path:
        """Write a checkpoint in the original dict layout (loadable by the original library
        when ``width`` is 1), with ``extra`` top-level values beside it."""
        top = self.config.to_checkpoint()
        top.update(extra if extra is not None else self.extra)
        return write_checkpoint(path, top, self.state_dicts(), legacy=legacy, half=half)
