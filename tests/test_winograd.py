"""Winograd F(2x2, 3x3): equal to direct convolution to float rounding, for any map size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from realtime_sda.core.winograd import Conv3x3Winograd, UpConv4x4FewChannels, UpConv4x4Winograd, winograd_filters


def _direct(x_nchw: torch.Tensor, w: torch.Tensor, bias_nchw: torch.Tensor) -> torch.Tensor:
    b = bias_nchw.shape[0]
    y = F.conv2d(x_nchw, w, padding=1)
    return y.unflatten(0, (b, -1)).add(bias_nchw.unsqueeze(1)).relu().flatten(0, 1)


@pytest.mark.parametrize(
    "n_sessions, frames, c, k, h, w",
    [(1, 4, 16, 16, 8, 6), (2, 3, 8, 12, 5, 7), (1, 1, 32, 32, 1, 1), (3, 2, 4, 8, 4, 3), (1, 5, 24, 16, 13, 9)],
)
def test_equals_direct_convolution(n_sessions, frames, c, k, h, w) -> None:
    g = torch.Generator().manual_seed(h * 100 + w)
    x = torch.randn(n_sessions * frames, c, h, w, generator=g).relu()
    weight = torch.randn(k, c, 3, 3, generator=g) / (3 * c**0.5)
    bias = torch.randn(n_sessions, k, h, w, generator=g) * 0.1
    conv = Conv3x3Winograd(weight)
    # channels-last in, as the engine passes it (a permuted view, not a copy)
    out = conv(x.permute(0, 2, 3, 1), bias.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    want = _direct(x, weight, bias)
    assert out.shape == want.shape
    assert torch.allclose(out, want, atol=2e-6, rtol=1e-5), (out - want).abs().max()
    # nothing of a previous call leaks into the next (scratch buffers are reused)
    x2 = torch.randn_like(x).relu()
    out2 = conv(x2.permute(0, 2, 3, 1).contiguous(), bias.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert torch.allclose(out2, _direct(x2, weight, bias), atol=2e-6, rtol=1e-5)


def test_filter_transform_shape_and_bad_input() -> None:
    u = winograd_filters(torch.randn(5, 3, 3, 3))
    assert u.shape == (16, 3, 5) and u.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(K, C, 3, 3\)"):
        winograd_filters(torch.randn(5, 3, 5, 5))
    with pytest.raises(ValueError, match="expected 3 channels"):
        Conv3x3Winograd(torch.randn(5, 3, 3, 3))(torch.randn(1, 4, 4, 2), torch.zeros(1, 4, 4, 5))


@pytest.mark.parametrize("frames, c, k, h, w", [(3, 16, 8, 4, 3), (2, 8, 12, 5, 7), (1, 32, 16, 1, 1), (4, 12, 6, 8, 6)])
def test_upsampling_equals_transposed_convolution(frames, c, k, h, w) -> None:
    g = torch.Generator().manual_seed(h * 10 + w)
    x = torch.randn(frames, c, h, w, generator=g).relu()
    weight = torch.randn(c, k, 4, 4, generator=g) / (4 * c**0.5)
    bias = torch.randn(k, generator=g) * 0.1
    up = UpConv4x4Winograd(weight, bias)
    out = up(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    want = F.conv_transpose2d(x, weight, bias, stride=2, padding=1).relu()
    assert out.shape == want.shape == (frames, k, 2 * h, 2 * w)
    assert torch.allclose(out, want, atol=2e-6, rtol=1e-5), (out - want).abs().max()
    x2 = torch.randn_like(x).relu()  # the reused scratch buffers carry nothing over
    out2 = up(x2.permute(0, 2, 3, 1).contiguous()).permute(0, 3, 1, 2)
    assert torch.allclose(out2, F.conv_transpose2d(x2, weight, bias, stride=2, padding=1).relu(), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("frames, c, k, h, w", [(2, 16, 3, 8, 6), (1, 8, 3, 5, 7), (3, 4, 2, 1, 1)])
def test_few_channel_upsampling_equals_transposed_convolution(frames, c, k, h, w) -> None:
    g = torch.Generator().manual_seed(h * 7 + w)
    x = torch.randn(frames, c, h, w, generator=g)
    weight = torch.randn(c, k, 4, 4, generator=g) / (4 * c**0.5)
    out = UpConv4x4FewChannels(weight)(x.contiguous(memory_format=torch.channels_last))
    want = F.conv_transpose2d(x, weight, stride=2, padding=1)
    assert out.shape == want.shape == (frames, k, 2 * h, 2 * w)
    assert torch.allclose(out, want, atol=2e-6, rtol=1e-5), (out - want).abs().max()
