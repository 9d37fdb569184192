"""The streaming resampler: any chunking of pushed PCM gives exactly the offline conversion
(to_float_mono + soxr one-shot resample), so live and offline runs see the same audio."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_sda.errors import AudioDecodeError
from realtime_sda.media.audio import resample, to_float_mono
from realtime_sda.streaming.resample import StreamResampler


@settings(max_examples=25, deadline=None)
@given(
    rate=st.sampled_from([8000, 16000, 22050, 44100, 48000]),
    channels=st.integers(1, 2),
    cuts=st.lists(st.integers(0, 6000), max_size=15),
    dtype=st.sampled_from(["int16", "float32"]),
)
def test_chunked_stream_equals_offline(rate, channels, cuts, dtype) -> None:
    rng = np.random.default_rng(rate + channels)
    x = rng.standard_normal((6000, channels)) * 0.2
    pcm = (x * 32767).astype(np.int16) if dtype == "int16" else x.astype(np.float32)
    ref = resample(to_float_mono(pcm), rate, 16000)
    r = StreamResampler(16000)
    edges = [0, *sorted(cuts), 6000]
    out = [r.process(pcm[a:b], rate) for a, b in zip(edges[:-1], edges[1:])] + r.flush()
    got = np.concatenate(out)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


def test_rate_change_flushes_and_restarts() -> None:
    r = StreamResampler(16000)
    a = r.process(np.zeros(4410, np.float32), 44100)
    b = r.process(np.ones(1600, np.float32), 16000)  # new rate: old tail flushed, then passthrough
    assert abs(a.size + b.size - (1600 + 1600)) <= 2
    np.testing.assert_array_equal(b[-1600:], np.ones(1600, np.float32))
    with pytest.raises(AudioDecodeError, match="sample rate"):
        r.process(np.zeros(10, np.float32), -5)
    with pytest.raises(AudioDecodeError, match="dtype"):
        r.process(np.array(["a", "b"]), 16000)
