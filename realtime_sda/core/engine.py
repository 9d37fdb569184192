"""Fast inference path: the eval-mode networks rewritten for per-frame stepping.

Exact algebraic rewrites of the reference modules (checked against them in the tests):
- every BatchNorm (running statistics) is folded into the preceding convolution;
- the generator's first layer acts on a 1x1 latent, so it is a matrix product; the identity
  code's share of it is computed once per still image;
- a U-Net block's first convolution sees [x, skip]; it is linear, so the skip half is
  computed once per still image and added as a bias map. No per-frame copy of the skip
  tensors is ever made, and that half of the block's work disappears from the hot path;
- stride-1 transposed convolutions become ordinary convolutions (flipped kernels), which
  in float32 on a CPU run by Winograd's F(2x2, 3x3) (:mod:`~realtime_sda.core.winograd`).

Offline generation and streaming both step through ``SDAModel.forward_chunk``, which runs
:meth:`FoldedModel.forward` over a (B, T) block of frames from a
:class:`~realtime_sda.core.state.StreamState`. A :class:`FoldedModel` is built from the config
and the three networks (it knows nothing of :class:`~realtime_sda.core.model.SDAModel`).
"""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import SDAConfig
from .state import IdentityContext, StreamState
from .winograd import Conv3x3Winograd, UpConv4x4FewChannels, UpConv4x4Winograd

__all__ = ["FoldedModel", "InferenceEngine", "fold_bn", "default_inference_dtype", "native_bf16_cpu", "PRECISIONS"]


#: ``REALTIME_SDA_PRECISION``: the default precision (``float32`` unless set)
PRECISION_ENV = "REALTIME_SDA_PRECISION"
PRECISIONS = ("float32", "bfloat16", "auto")


@lru_cache(maxsize=1)
def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): there the
    generator's convolutions in bfloat16 take about half the time of float32 (12.7 vs 23.8
    CPU ms a frame for the GRID-size model on a 2-core AVX-512/AMX Xeon); elsewhere bfloat16
    is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def default_inference_dtype(device: torch.device | str, precision: str | None = None) -> torch.dtype:
    """The generator's dtype for ``precision``: ``float32`` (the default: frames equal the
    reference networks' to float rounding, the same for any batch or chunk size),
    ``bfloat16``, or ``auto`` (bfloat16 on a CPU that computes it natively, about twice as
    fast there, frames within a uint8 level or so of float32's; float32 elsewhere). None
    takes ``REALTIME_SDA_PRECISION`` or float32."""
    source = "precision" if precision is not None else PRECISION_ENV
    choice = (precision if precision is not None else os.environ.get(PRECISION_ENV, "float32")).strip().lower()
    if choice not in PRECISIONS:
        raise ValueError(f"{source}={choice!r}: use float32, bfloat16 or auto")
    if choice == "float32":
        return torch.float32
    if choice == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if torch.device(device).type == "cpu" and native_bf16_cpu() else torch.float32


def fold_bn(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``bn(x) == x * scale + shift`` per channel, in eval mode."""
    var, mean = bn.running_var, bn.running_mean
    if var is None or mean is None:
        raise ValueError("batch norm without running statistics cannot be folded")
    scale = bn.weight / torch.sqrt(var + bn.eps)
    return scale, bn.bias - mean * scale


#: Use the matrix-product forms below for maps of at most GEMM_MAX_AREA pixels, or when
#: batch x height x width is at most GEMM_MAX_POSITIONS: on such small maps the weights
#: dominate the work and CPU conv kernels were 2-7x slower than one GEMM (measured on a
#: 2-core AVX-512 CPU, fp32 and bf16, batch 1 to 16).
GEMM_MAX_AREA = 12
GEMM_MAX_POSITIONS = 96
#: Winograd forms (float32, CPU) for blocks with at least this C^2 x input area a frame,
#: and the upsampling one from this many input channels up (see ``_Block``).
WINOGRAD_MIN_WORK = 1 << 20
WINOGRAD_UP_MIN_CHANNELS = 256


def _conv3x3_gemm(x: torch.Tensor, w_mat: torch.Tensor) -> torch.Tensor:
    """3x3 "same" convolution as im2col + one GEMM over all N*H*W positions."""
    n, c, h, w = x.shape
    cols = F.unfold(x, 3, padding=1).transpose(0, 1).reshape(c * 9, n * h * w)
    return (w_mat @ cols).view(-1, n, h, w).transpose(0, 1)


def _up2x_gemm(x: torch.Tensor, w_mat_t: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """4x4 stride-2 padding-1 transposed convolution as one GEMM + col2im (fold)."""
    n, c, h, w = x.shape
    cols = (w_mat_t @ x.reshape(n, c, h * w).transpose(0, 1).reshape(c, n * h * w))
    cols = cols.view(-1, n, h * w).transpose(0, 1)
    return F.fold(cols, out_size, 4, stride=2, padding=1)


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run the body with one torch CPU thread, restoring the count after it. The GRUs step
    one frame after another on tiny matrices: splitting each step over threads costs more in
    synchronisation than it saves (on a 2-core CPU the content GRU took 40 ms per 16 frames
    with 2 threads, 7.8 ms with 1), and the waits grow when the cores are busy."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Block:
    """Folded weights of one U-Net block."""

    def __init__(self, block: Any, dtype: torch.dtype, winograd: bool = True) -> None:  # a U-Net block
        # The GEMM forms are a CPU measure; cuDNN's kernels are used as they are on a GPU.
        self.allow_gemm = block.dcl1.weight.device.type == "cpu"
        s1, t1 = fold_bn(block.activation1[0])
        s2, t2 = fold_bn(block.activation2[0])
        w1 = block.dcl1.weight.permute(1, 0, 2, 3).flip(2, 3) * s1[:, None, None, None]
        c = w1.shape[0]
        self.w_x: torch.Tensor | None = w1[:, :c].contiguous().to(dtype)
        self.w_x_mat: torch.Tensor | None = self.w_x.view(c, -1)  # same storage
        self.w_skip = w1[:, c:].contiguous()
        self.shift1 = t1
        self.w2: torch.Tensor | None = (block.dcl2.weight * s2[None, :, None, None]).contiguous().to(dtype)
        self.w2_mat_t: torch.Tensor | None = self.w2.view(c, -1).t()  # same storage, transposed view
        self.b2 = t2.to(dtype)
        self.out_size = tuple(block.out_size)
        # float32 on a CPU: the 3x3 convolution by Winograd F(2x2, 3x3), 2.25x fewer products,
        # for blocks with enough work a frame (C^2 x input area): every block of the GRID
        # model (2^23.6 each; 0.66-1.19 ms against 1.04-2.30 ms a frame on 2 cores, chunks of
        # 16 frames). On the default model's small blocks (2^17-2^18) the transforms' fixed
        # costs made a live step slower (2.3 against 1.6 ms).
        area = (self.out_size[0] // 2) * (self.out_size[1] // 2)
        fast = winograd and self.allow_gemm and dtype == torch.float32 and c * c * area >= WINOGRAD_MIN_WORK
        self.winograd = Conv3x3Winograd(self.w_x) if fast else None
        # and the upsampling by F(2x2, 2x2) where it measured faster: from 256 channels up
        # (0.95-1.31 ms a frame against 1.47-1.91 ms); at 128 channels its transforms cost
        # more than the products saved. It makes exactly twice the input's size, so it
        # serves a block whose output size is even.
        even = self.out_size[0] % 2 == 0 and self.out_size[1] % 2 == 0
        self.up = UpConv4x4Winograd(self.w2, self.b2) if fast and even and c >= WINOGRAD_UP_MIN_CHANNELS else None
        # weights that the Winograd forms replace are not kept (the 1024-channel block's
        # are 70 MB)
        if self.winograd is not None:
            self.w_x = self.w_x_mat = None
        if self.up is not None:
            self.w2 = self.w2_mat_t = None

    def skip_bias(self, skip: torch.Tensor) -> torch.Tensor:
        return F.conv2d(skip, self.w_skip, padding=1) + self.shift1[None, :, None, None]

    def __call__(self, x: torch.Tensor, skip_bias: torch.Tensor, b: int) -> torch.Tensor:
        n, _, hh, ww = x.shape
        gemm = self.allow_gemm and (hh * ww <= GEMM_MAX_AREA or n * hh * ww <= GEMM_MAX_POSITIONS)
        if self.winograd is not None:
            # channels-last in and out; the transposed convolution below keeps that layout
            h_last = self.winograd(x.permute(0, 2, 3, 1), skip_bias.permute(0, 2, 3, 1))
            if self.up is not None:
                return self.up(h_last).permute(0, 3, 1, 2)
            h = h_last.permute(0, 3, 1, 2)
        else:
            assert self.w_x is not None and self.w_x_mat is not None  # kept without the Winograd form
            h = _conv3x3_gemm(x, self.w_x_mat) if gemm else F.conv2d(x, self.w_x, padding=1)
            h = h.reshape(b, -1, *h.shape[1:]).add_(skip_bias.unsqueeze(1)).relu_().flatten(0, 1)
        assert self.w2 is not None and self.w2_mat_t is not None  # kept without the Winograd form
        if gemm:
            y = _up2x_gemm(h, self.w2_mat_t, self.out_size).add_(self.b2[None, :, None, None])
        else:
            pad = (self.out_size[0] - 2 * hh, self.out_size[1] - 2 * ww)
            y = F.conv_transpose2d(h, self.w2, self.b2, stride=2, padding=1, output_padding=pad)
        return y.relu_()


class FoldedModel:
    """The networks with folded weights, built from a snapshot of the content encoder,
    identity encoder and generator of ``config`` (eval mode): what every frame runs (offline
    and live; the live scheduling is ``InferenceWorker``'s).

    ``dtype`` may be ``torch.bfloat16`` to run the generator's convolutions in bfloat16
    (faster on CPUs with AVX-512 BF16 and on GPUs, at about 1e-2 error). ``winograd=False``
    keeps float32 on a CPU on the native kernels and GEMM forms instead of
    :mod:`~realtime_sda.core.winograd` (about 1.5x slower; for comparison).
    """

    def __init__(
        self,
        config: SDAConfig,
        encoder: nn.Module,
        encoder_id: nn.Module,
        generator: nn.Module,
        dtype: torch.dtype = torch.float32,
        winograd: bool = True,
    ) -> None:
        cfg = config
        self.config = cfg
        self.dtype = dtype
        with torch.no_grad():
            # Small modules are copied so that training the source model cannot change them.
            # the reference networks' submodules are read by attribute name (typed Any)
            self.content: Any = copy.deepcopy(encoder).eval().requires_grad_(False)
            self.encoder_id: Any = copy.deepcopy(encoder_id).eval().requires_grad_(False)
            gen: Any = generator
            self.rnn_noise: Any = (
                copy.deepcopy(gen.rnn_noise).eval().requires_grad_(False) if cfg.sequential_noise else None
            )
            s0, t0 = fold_bn(gen.dcl[0][1])
            w0 = gen.dcl[0][0].weight * s0[None, :, None, None]  # (latent, C, h, w)
            self.first_shape = tuple(w0.shape[1:])
            w0 = w0.flatten(1)
            n_dyn = cfg.rnn_gen_dim + cfg.aux_latent
            self.w0_dyn = w0[:n_dyn].contiguous().to(dtype)
            self.w0_id = w0[n_dyn:].contiguous()
            self.shift0 = t0
            self.blocks = [_Block(gen.dcl[i], dtype, winograd) for i in range(1, 5)]
            self.w_out = gen.dcl[5].weight.detach().clone().to(dtype)
            # with the Winograd forms (float32, CPU, large blocks), the last upsampling (to 3
            # channels, exactly twice the last block's size) as one GEMM and shifted adds; on
            # the default model's small last layer it made a live step slower (1.67 against
            # 1.47 ms)
            last = self.blocks[-1]
            exact = tuple(cfg.img_size) == (2 * last.out_size[0], 2 * last.out_size[1])
            self.out_few: UpConv4x4FewChannels | None = (
                UpConv4x4FewChannels(self.w_out) if last.winograd is not None and exact else None
            )
        self.device = self.w_out.device

    # ---- once per still image ------------------------------------------------------------
    @torch.no_grad()
    def encode_still(self, still: torch.Tensor) -> IdentityContext:
        """(B, 3, H, W) aligned still in [-1, 1] -> its identity context."""
        h, w = self.config.img_size
        if still.dim() != 4 or tuple(still.shape[1:]) != (3, h, w):
            raise ValueError(f"still image must have shape (B, 3, {h}, {w}), got {tuple(still.shape)}")
        still = still.to(self.device, torch.float32)
        id_code, skips = self.encoder_id(still)
        base = (id_code @ self.w0_id).view(-1, *self.first_shape) + self.shift0[None, :, None, None]
        biases = tuple(blk.skip_bias(s) for blk, s in zip(self.blocks, reversed(skips[1:])))
        return IdentityContext(id_code, base, biases)

    # ---- every frame ---------------------------------------------------------------------
    @torch.no_grad()
    def forward(
        self, state: StreamState, windows: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, StreamState]:
        """windows (B, T, audio_feat_samples), raw noise (B, T, aux_latent) -> frames
        (B, T, 3, H, W) in [-1, 1] and the state after the last of the T frames."""
        cfg = self.config
        b, t, n = windows.shape
        if n != cfg.audio_feat_samples or b != state.batch:
            raise ValueError(
                f"windows must be (B={state.batch}, T, {cfg.audio_feat_samples}), got {tuple(windows.shape)}"
            )
        if tuple(noise.shape) != (b, t, cfg.aux_latent):
            raise ValueError(f"noise must be ({b}, {t}, {cfg.aux_latent}), got {tuple(noise.shape)}")
        windows = windows.to(self.device, torch.float32)
        noise = noise.to(self.device, torch.float32)
        codes = self.content.encoder(windows.reshape(b * t, n)).view(b, t, -1)
        noise_h = None
        with _one_thread(self.device):  # the sequential part (see _one_thread)
            content, content_h = self.content.rnn(codes, state.content_h)
            if self.rnn_noise is not None:
                noise, noise_h = self.rnn_noise(noise, state.noise_h)
        if self.rnn_noise is not None:
            noise = torch.tanh(noise)
        frames = self.draw(state.identity, torch.cat([content, noise], dim=2))
        return frames, StreamState(state.identity, content_h, noise_h)

    def draw(self, identity: IdentityContext, dynamic: torch.Tensor) -> torch.Tensor:
        """(B, T, rnn_gen_dim + aux_latent) per-frame codes -> (B, T, 3, H, W) frames."""
        b, t, _ = dynamic.shape
        x = (dynamic.reshape(b * t, -1).to(self.dtype) @ self.w0_dyn).view(b, t, *self.first_shape)
        x = x.add_(identity.base.unsqueeze(1).to(self.dtype)).relu_().flatten(0, 1)
        for blk, bias in zip(self.blocks, identity.skip_bias):
            x = blk(x, bias.to(self.dtype), b)
        h, w = self.config.img_size
        pad = (h - 2 * x.shape[2], w - 2 * x.shape[3])
        if self.out_few is not None:
            x = self.out_few(x)
        else:
            x = F.conv_transpose2d(x, self.w_out, stride=2, padding=1, output_padding=pad)
        return torch.tanh(x.float()).view(b, t, 3, h, w)


#: the former name of :class:`FoldedModel`
InferenceEngine = FoldedModel
