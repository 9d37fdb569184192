"""The numba ring buffer against a plain numpy reference of the offline window cut."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_sda.streaming.ringbuffer import AudioRingBuffer
from testsupport.models import tiny_config


def reference_windows(signal: np.ndarray, feat: int, stride: int, lookahead: int | None = None) -> np.ndarray:
    """Offline cut: windows of the zero-padded signal (numpy only)."""
    pad = feat - stride
    left, right = pad // 2, pad - pad // 2
    padded = np.concatenate([np.zeros(left, np.float32), signal, np.zeros(right, np.float32)])
    count = 0 if signal.size + pad < feat else (signal.size + pad - feat) // stride + 1
    out = np.stack([padded[i * stride : i * stride + feat] for i in range(count)]) if count else np.zeros((0, feat), np.float32)
    if lookahead is not None:  # audio past (i+1)*stride + lookahead is treated as silence
        out = out.copy()
        out[:, feat - (right - lookahead) :] = 0.0
    return out


def stream_windows(signal: np.ndarray, cuts: list[int], rb: AudioRingBuffer) -> np.ndarray:
    got = []
    pos = 0
    for c in cuts + [signal.size]:
        c = min(max(c, pos), signal.size)
        rb.write(signal[pos:c])
        pos = c
        while rb.ready():
            got.append(rb.read().copy())
    rb.flush()
    while rb.ready():
        got.append(rb.read().copy())
    return np.stack(got) if got else np.zeros((0, rb.feat), np.float32)


geometry = st.tuples(st.integers(1, 9), st.integers(1, 6), st.integers(0, 7)).map(
    lambda t: (t[0] * t[1] + t[2], t[0]) if t[0] * t[1] + t[2] >= t[0] else (t[0], t[0])
)


@settings(max_examples=150, deadline=None)
@given(geom=geometry, n=st.integers(0, 120), cuts=st.lists(st.integers(0, 120), max_size=12), data=st.data())
def test_stream_equals_offline_cut(geom, n, cuts, data) -> None:
    feat, stride = geom
    pad = feat - stride
    rng = np.random.default_rng(n)
    signal = rng.standard_normal(n).astype(np.float32)
    look = data.draw(st.one_of(st.none(), st.integers(0, pad - pad // 2)))
    rb = AudioRingBuffer(feat, stride, pad // 2, pad - pad // 2, capacity=feat + stride + 200, lookahead=look)
    got = stream_windows(signal, sorted(cuts), rb)
    ref = reference_windows(signal, feat, stride, look)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    assert rb.overflow_samples == 0


def test_model_geometry_frame_count() -> None:
    cfg = tiny_config()
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(3 * cfg.audio_rate + 123).astype(np.float32)
    rb = AudioRingBuffer(cfg.audio_feat_samples, cfg.stride, cfg.pad_left, cfg.pad_right)
    cuts = list(np.cumsum(rng.integers(1, 900, size=200)))
    got = stream_windows(signal, cuts, rb)
    assert got.shape[0] == cfg.num_frames(signal.size)
    np.testing.assert_array_equal(got, reference_windows(signal, cfg.audio_feat_samples, cfg.stride))


def test_no_window_before_enough_audio() -> None:
    rb = AudioRingBuffer(10, 4, 3, 3)
    rb.write(np.ones(6, np.float32))  # 3 pad + 6 = 9 < 10
    assert rb.ready() == 0 and rb.missing() == 1
    with pytest.raises(ValueError, match="1 more samples"):
        rb.read()
    rb.write(np.ones(1, np.float32))
    assert rb.ready() == 1


def test_overflow_drops_oldest_whole_strides_and_counts() -> None:
    feat, stride = 8, 2
    rb = AudioRingBuffer(feat, stride, 3, 3, capacity=16)
    signal = np.arange(1, 41, dtype=np.float32)
    rb.write(signal)  # 3 + 40 = 43 samples written into 16 places
    assert rb.overflow_samples > 0 and rb.overflow_windows == rb.overflow_samples // stride
    padded = np.concatenate([np.zeros(3, np.float32), signal, np.zeros(3, np.float32)])
    start = rb.read_pos
    assert start >= rb.total - rb.capacity  # the next window lies wholly in the buffer
    w = rb.read()
    np.testing.assert_array_equal(w, padded[start : start + feat])


def test_skip_and_invalid_arguments() -> None:
    rb = AudioRingBuffer(8, 2, 3, 3)
    rb.write(np.arange(20, dtype=np.float32))
    before = rb.ready()
    assert rb.skip(2) == 2 and rb.ready() == before - 2
    with pytest.raises(ValueError, match="lookahead"):
        AudioRingBuffer(8, 2, 3, 3, lookahead=4)
    with pytest.raises(ValueError, match="capacity"):
        AudioRingBuffer(8, 2, 3, 3, capacity=9)
    rb.flush()
    with pytest.raises(ValueError, match="flushed"):
        rb.write(np.zeros(3, np.float32))
