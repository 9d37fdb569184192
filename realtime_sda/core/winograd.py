"""The generator's convolutions in fewer products (Winograd's minimal filtering) or in
better-shaped ones, for float32 on CPU.

Why: CPU convolution kernels already run the generator near the machine's peak, so only
fewer products make it faster, except where a kernel runs far below its peak.

- :class:`Conv3x3Winograd`: a U-Net block's 3x3 convolution by F(2x2, 3x3). Each 2x2 output
  tile comes from a 4x4 input tile with 16 products per channel pair instead of 36.
- :class:`UpConv4x4Winograd`: the 4x4 stride-2 transposed convolution. It splits into four
  output phases, each a 2x2 convolution, and each phase runs by F(2x2, 2x2): 9 products
  instead of 16. The phases share input rows, so 25 transformed planes serve all four.
- :class:`UpConv4x4FewChannels`: the same upsampling to a few channels (the last layer,
  64 -> 3), as one GEMM over all kernel taps and shifted adds.

The input and output transforms only add and subtract, and the filter transforms are done
once in float64. Results equal direct convolution to float rounding (about 1e-6 on
activations of order 1; checked in the tests).

Layout: activations are channels-last (N, H, W, C). The 16 transformed tiles form 16
matrices (tiles x C) multiplied in one batched GEMM by the 16 transformed filters (C x K).
Each of the 16 matrices starts at an offset that is not a multiple of 4 KiB: with 16
streams a power-of-two apart, every write lands in the same cache set and the transform
runs several times slower. The transforms are torch element-wise operations, so they use
torch's own thread pool (a separate pool's idle threads would spin against it).
"""

from __future__ import annotations

import threading

import torch

__all__ = ["winograd_filters", "Conv3x3Winograd", "UpConv4x4Winograd", "UpConv4x4FewChannels"]

# F(2x2, 3x3) with interpolation points 0, 1, -1 (Lavin & Gray 2015): G is the filter
# transform; the input transform B^T and output transform A^T are written out as the
# additions below.
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
_AT = ((1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, -1.0))
#: output channels per float64 filter transform (bounds its temporary memory)
_SLAB = 64
#: 64 bytes between the 16 tile matrices (see the module docstring)
_STAGGER = 16


def winograd_filters(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, 3, 3) cross-correlation filters -> (16, C, K) transformed filters, float32."""
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"expected (K, C, 3, 3) filters, got {tuple(weight.shape)}")
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    k, c = weight.shape[:2]
    u = torch.empty(4, 4, c, k, device=weight.device)
    for k0 in range(0, k, _SLAB):  # in slabs of output channels: float64 only for a slab
        slab = weight[k0 : k0 + _SLAB].double()
        u[:, :, :, k0 : k0 + _SLAB] = torch.einsum("ai,kcij,bj->abck", g, slab, g)
    return u.view(16, c, k)


class _Workspace(threading.local):
    """Scratch buffers reused from call to call (one set per thread): fresh tensors of tens
    of MB would be page-faulted in on every call. The transform buffers are shared by every
    convolution (they run one after another in a thread); each convolution keeps its own
    zero-padded input, whose border then stays zero from call to call."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}
        self.padded: tuple[int, ...] = ()  # the (N, H, W, C) whose zero border "x" holds

    def get(self, name: str, rows: int, row_len: int, device: torch.device) -> torch.Tensor:
        """(rows, row_len) float32, rows ``row_len + _STAGGER`` apart in memory."""
        need = rows * (row_len + _STAGGER)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < need or buf.device != device:
            buf = self.buffers[name] = torch.empty(need, device=device)
            if name == "x":
                self.padded = ()
        return buf[:need].view(rows, row_len + _STAGGER)[:, :row_len]


_SHARED = _Workspace()


class _Winograd:
    """What both convolutions share: the zero-padded channels-last input."""

    in_channels: int

    def __init__(self) -> None:
        self._ws = _Workspace()  # the padded input ("x")

    def _rows(self, x: torch.Tensor, planes: int) -> tuple[list[torch.Tensor], torch.Tensor, int, int]:
        """x (N, H, W, C) -> (the 4 rows of every tile of the zero-padded x, a scratch buffer of
        ``planes`` row planes, tiles down th, tiles across tw). The padding is one pixel of
        zeros around x, plus one more where H or W is odd; tile i's rows are 2i .. 2i + 3."""
        xp, th, tw = self._padded(x)
        r = [xp[:, u : u + 2 * th : 2] for u in range(4)]
        return r, _SHARED.get("rows", planes, r[0].numel(), x.device).view(planes, *r[0].shape), th, tw

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """x (N, H, W, C) -> (x padded to (N, 2*th + 2, 2*tw + 2, C), th, tw); the border is
        zeroed only when the shape changes."""
        n, h, w, c = x.shape
        if c != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got {c}")
        th, tw = (h + 1) // 2, (w + 1) // 2
        xp = self._ws.get("x", 1, n * (2 * th + 2) * (2 * tw + 2) * c, x.device).view(n, 2 * th + 2, 2 * tw + 2, c)
        if self._ws.padded != (n, h, w, c):
            xp.zero_()
            self._ws.padded = (n, h, w, c)
        xp[:, 1 : h + 1, 1 : w + 1] = x
        return xp, th, tw


class Conv3x3Winograd(_Winograd):
    """``relu(conv3x3(x) + bias)`` by F(2x2, 3x3), for channels-last float32 activations.

    ``filters``: (K, C, 3, 3). Call with x (N, H, W, C) (any strides), bias (B, H, W, K)
    broadcast over ``N // B`` consecutive frames; returns a new (N, H, W, K) tensor.
    """

    def __init__(self, filters: torch.Tensor) -> None:
        super().__init__()
        self.u = winograd_filters(filters)
        self.in_channels, self.out_channels = self.u.shape[1], self.u.shape[2]
        at = torch.tensor(_AT, device=self.u.device)
        self._a = torch.kron(at, at)  # (4, 16) output transform

    def __call__(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        # input transform B^T d B, rows then columns
        r, rows, th, tw = self._rows(x, 4)
        n, h, w, c = x.shape
        k = self.out_channels
        tiles = n * th * tw
        ws = _SHARED
        torch.sub(r[0], r[2], out=rows[0])
        torch.add(r[1], r[2], out=rows[1])
        torch.sub(r[2], r[1], out=rows[2])
        torch.sub(r[1], r[3], out=rows[3])
        e = [rows[:, :, :, v : v + 2 * tw : 2] for v in range(4)]
        v = ws.get("v", 16, tiles * c, x.device).view(4, 4, n, th, tw, c)
        torch.sub(e[0], e[2], out=v[:, 0])
        torch.add(e[1], e[2], out=v[:, 1])
        torch.sub(e[2], e[1], out=v[:, 2])
        torch.sub(e[1], e[3], out=v[:, 3])
        # the 16 products, one batched GEMM
        m = ws.get("m", 16, tiles * k, x.device).view(16, tiles, k)
        torch.bmm(v.view(16, tiles, c), self.u, out=m)
        # output transform A^T m A as one GEMM (4 x 16) @ (16 x tiles*K), then bias and ReLU
        # in one pass that also interleaves the 2x2 outputs
        y4 = ws.get("y4", 4, tiles * k, x.device)
        torch.mm(self._a, m.flatten(1), out=y4)
        y = torch.empty(n, th, 2, tw, 2, k, device=x.device)
        tiled = y4.unflatten(1, (n, th, tw, k)).view(2, 2, n, th, tw, k).permute(2, 3, 0, 4, 1, 5)
        b = bias.shape[0]
        if (h, w) == (2 * th, 2 * tw):
            bias_tiled = bias.contiguous().view(b, 1, th, 2, tw, 2, k)
            torch.add(tiled.unflatten(0, (b, n // b)), bias_tiled, out=y.view(b, n // b, th, 2, tw, 2, k))
            return y.relu_().view(n, h, w, k)
        y.copy_(tiled)
        out = y.view(n, 2 * th, 2 * tw, k)[:, :h, :w]
        out.unflatten(0, (b, n // b)).add_(bias.contiguous().unsqueeze(1)).relu_()
        return out


# The transposed convolution's output row 2m + a takes input rows m + a and m + a + 1 of the
# padded input with kernel rows _TAPS[a] (the same for columns). Over a tile of phase rows
# m = 2i, 2i + 1, phase a reads padded rows 2i + a .. 2i + a + 2; F(2, 2) turns those three
# rows d into (d0 - d1, d1, d2 - d1). Five row planes cover both phases:
# (r0 - r1, r1, r2 - r1, r2, r3 - r2); phase 1's first one is -(r2 - r1), hence _SIGNS.
_TAPS = ((3, 1), (2, 0))
_PLANES = ((0, 1, 2), (2, 3, 4))
_SIGNS = ((1.0, 1.0, 1.0), (-1.0, 1.0, 1.0))
_G2 = ((1.0, 0.0), (1.0, 1.0), (0.0, 1.0))  # F(2, 2) filter transform
_AT2 = ((1.0, 1.0, 0.0), (0.0, 1.0, 1.0))  # F(2, 2) output transform


class UpConv4x4Winograd(_Winograd):
    """``relu(conv_transpose2d(x, weight, bias, stride=2, padding=1))`` for 4x4 kernels, by
    F(2x2, 2x2) on each of the four output phases; channels-last float32 activations.

    ``weight``: (C, K, 4, 4), as ``nn.ConvTranspose2d`` stores it; ``bias``: (K,). Call with
    x (N, H, W, C) (any strides); returns (N, 2H, 2W, K).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        if weight.dim() != 4 or tuple(weight.shape[2:]) != (4, 4):
            raise ValueError(f"expected (C, K, 4, 4) weights, got {tuple(weight.shape)}")
        self.in_channels, self.out_channels = weight.shape[0], weight.shape[1]
        g = torch.tensor(_G2, dtype=torch.float64, device=weight.device)
        c, k = weight.shape[:2]
        u = torch.empty(2, 2, 3, 3, c, k, device=weight.device)  # (a, b, s, t, C, K)
        for a in range(2):
            for b in range(2):
                signs = torch.tensor(_SIGNS[a], dtype=torch.float64)[:, None] * torch.tensor(_SIGNS[b])[None, :]
                signs = signs.to(weight.device)[:, :, None, None]
                for k0 in range(0, k, _SLAB):
                    phase = weight[:, k0 : k0 + _SLAB, list(_TAPS[a])][:, :, :, list(_TAPS[b])].double()
                    u[a, b, :, :, :, k0 : k0 + _SLAB] = torch.einsum("si,ckij,tj->stck", g, phase, g) * signs
        self.u = u.view(36, c, k)
        self.planes = [5 * _PLANES[a][s] + _PLANES[b][t] for a in range(2) for b in range(2)
                       for s in range(3) for t in range(3)]
        at = torch.tensor(_AT2, device=weight.device)
        self._a = torch.kron(at, at).expand(4, 4, 9)  # (phase, 4 outputs, 9 products)
        self.bias = bias.float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # five row planes, then five column planes of each: 25 transformed inputs
        r, rows, th, tw = self._rows(x, 5)
        n, h, w, c = x.shape
        k = self.out_channels
        tiles = n * th * tw
        ws = _SHARED
        torch.sub(r[0], r[1], out=rows[0])
        rows[1].copy_(r[1])
        torch.sub(r[2], r[1], out=rows[2])
        rows[3].copy_(r[2])
        torch.sub(r[3], r[2], out=rows[4])
        e = [rows[:, :, :, v : v + 2 * tw : 2] for v in range(4)]
        v = ws.get("v", 25, tiles * c, x.device).view(5, 5, n, th, tw, c)
        torch.sub(e[0], e[1], out=v[:, 0])
        v[:, 1].copy_(e[1])
        torch.sub(e[2], e[1], out=v[:, 2])
        v[:, 3].copy_(e[2])
        torch.sub(e[3], e[2], out=v[:, 4])
        planes = v.view(25, tiles, c)
        # 36 products: 9 for each phase
        m2 = ws.get("m", 36, tiles * k, x.device)
        m = m2.view(36, tiles, k)
        for i, plane in enumerate(self.planes):
            torch.mm(planes[plane], self.u[i], out=m[i])
        # each phase's 2x2 outputs, then bias and ReLU while interleaving phases and tiles:
        # full-resolution row 4i + 2e + a, column 4j + 2f + b
        y4 = ws.get("y4", 16, tiles * k, x.device).view(4, 4, tiles * k)
        torch.bmm(self._a, m2.view(4, 9, tiles * k), out=y4)
        y = torch.empty(n, th, 2, 2, tw, 2, 2, k, device=x.device)
        tiled = y4.view(2, 2, 2, 2, n, th, tw, k).permute(4, 5, 2, 0, 6, 3, 1, 7)
        torch.add(tiled, self.bias, out=y)
        y.relu_()
        out = y.view(n, 4 * th, 4 * tw, k)
        return out if (2 * h, 2 * w) == (4 * th, 4 * tw) else out[:, : 2 * h, : 2 * w]


class UpConv4x4FewChannels:
    """``conv_transpose2d(x, weight, stride=2, padding=1)`` to a few output channels (the
    generator's last layer, 64 -> 3): one GEMM gives every kernel tap's contribution of every
    input pixel, and each output phase adds its four taps' planes, shifted. CPU kernels run
    a 3-channel transposed convolution far below their peak (0.40-0.64 ms a frame here
    against 0.20).

    ``weight``: (C, K, 4, 4). Call with x (N, C, H, W) (any strides); returns (N, K, 2H, 2W).
    """

    def __init__(self, weight: torch.Tensor) -> None:
        c, k = weight.shape[:2]
        self.out_channels = k
        self.taps = weight.permute(2, 3, 1, 0).reshape(16 * k, c).contiguous()  # rows (ky, kx, k)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        k = self.out_channels
        z = (self.taps @ x.permute(0, 2, 3, 1).reshape(-1, c).t()).view(4, 4, k, n, h, w)
        out = torch.zeros(n, k, h, 2, w, 2, dtype=z.dtype, device=z.device)
        # output row 2m + a takes input row m + a + d - 1 (padded row m + a + d) with kernel
        # row _TAPS[a][d], d = 0, 1; the same for columns
        for a in range(2):
            for b in range(2):
                phase = out[:, :, :, a, :, b]
                for dy in range(2):
                    oy = a + dy - 1
                    rows_in, rows_out = slice(max(0, oy), h + min(0, oy)), slice(max(0, -oy), h - max(0, oy))
                    for dx in range(2):
                        ox = b + dx - 1
                        cols_in, cols_out = slice(max(0, ox), w + min(0, ox)), slice(max(0, -ox), w - max(0, ox))
                        plane = z[_TAPS[a][dy], _TAPS[b][dx], :, :, rows_in, cols_in]
                        phase[:, :, rows_out, cols_out].add_(plane.transpose(0, 1))
        return out.view(n, k, 2 * h, 2 * w)
