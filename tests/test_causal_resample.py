"""The causal FIR resampler used for live audio: same output however the input is chunked,
flat pass band, 70+ dB stop band, a fixed delay of ``delay_s``, and no output held back, so a
live session's window is ready as soon as the packet holding its last sample arrives."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_sda.streaming import InferenceWorker, ManualClock
from realtime_sda.streaming.causal_resample import CausalResampler, supports
from realtime_sda.streaming.resample import StreamResampler
from realtime_sda.streaming.session import StreamOptionError

RATES = [(48000, 16000), (44100, 16000), (48000, 50000), (8000, 16000), (22050, 16000)]


@settings(max_examples=20, deadline=None)
@given(pair=st.sampled_from(RATES), cuts=st.lists(st.integers(0, 9000), max_size=12))
def test_any_chunking_gives_the_same_output(pair, cuts) -> None:
    a, b = pair
    x = np.random.default_rng(a).standard_normal(9000).astype(np.float32) * 0.3
    whole = CausalResampler(a, b)
    ref = np.concatenate([whole.process(x), whole.flush()])
    r = CausalResampler(a, b)
    edges = [0, *sorted(cuts), x.size]
    got = np.concatenate([r.process(x[i:j]) for i, j in zip(edges[:-1], edges[1:])] + [r.flush()])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("a,b", RATES)
def test_nothing_is_held_back(a, b) -> None:
    """After n input samples every output sample whose time is <= the input's is out."""
    r = CausalResampler(a, b)
    n_in = n_out = 0
    for size in (1, 959, 960, 960, 441, 3000):
        n_out += r.process(np.zeros(size, np.float32)).size
        n_in += size
        assert n_out == -(-n_in * b // a)


@pytest.mark.parametrize("a,b", [(48000, 16000), (44100, 16000), (48000, 50000)])
def test_response_and_delay(a, b) -> None:
    nyq = min(a, b) / 2
    t = np.arange(a) / a
    for f, lo_db, hi_db in ((440.0, -0.01, 0.01), (0.85 * nyq, -0.01, 0.01)):
        r = CausalResampler(a, b)
        y = r.process(np.sin(2 * np.pi * f * t).astype(np.float32))
        n = np.arange(y.size)[b // 10 :]
        want = np.sin(2 * np.pi * f * (n / b - r.delay_s))  # exactly the input, delay_s later
        gain = 20 * np.log10(np.std(y[n]) / np.std(want))
        assert lo_db < gain < hi_db
        np.testing.assert_allclose(y[n], want, atol=2e-3)
    if b < a:  # alias rejection: a tone above the output's Nyquist frequency is gone
        r = CausalResampler(a, b)
        y = r.process(np.sin(2 * np.pi * 1.1 * nyq * t).astype(np.float32))[b // 10 :]
        assert 20 * np.log10(np.sqrt(2) * np.std(y)) < -70
    assert 0 < CausalResampler(a, b).delay_s < 0.004


def test_unsupported_pairs_fall_back_to_soxr() -> None:
    assert not supports(48000, 16001)
    with pytest.raises(ValueError, match="phases"):
        CausalResampler(48000, 16001)
    r = StreamResampler(16001, "causal")
    out = np.concatenate([r.process(np.zeros(4800, np.float32), 48000), *r.flush()])
    assert abs(out.size - 1600) <= 2
    with pytest.raises(ValueError, match="quality"):
        StreamResampler(16000, "fast")


def test_live_window_ready_with_the_packet_that_completes_it(tiny_model) -> None:
    """48 kHz audio in 20 ms packets: a live session (causal resampler) has frame 0's window as
    soon as the packet holding its last sample is pushed; soxr HQ (the offline path's
    resampler) holds that audio back for one or two more packets."""
    cfg = tiny_model.config
    need = (cfg.stride + cfg.lookahead_samples) / cfg.audio_rate  # frame 0's window ends here
    packets = int(round(need / 0.02))
    assert abs(packets * 0.02 - need) < 1e-9  # the window ends on a packet boundary
    h, w = cfg.img_size
    still = torch.zeros(1, 3, h, w)
    pcm = np.random.default_rng(0).standard_normal(960 * (packets + 3)).astype(np.float32) * 0.2

    async def packets_until_ready(quality: str) -> int:
        worker = InferenceWorker(tiny_model, clock=ManualClock(), autotick=False)
        await worker.start()
        try:
            s = await worker.open_session(still, seed=0, resample_quality=quality)
            q = s.subscribe(100)
            for k in range(packets + 3):
                s.push_audio(pcm[960 * k : 960 * (k + 1)], 48000)
                await worker.tick()  # makes the first frame once its window is complete
                if len(q) > 0:
                    return k + 1
            return -1
        finally:
            await worker.stop()

    assert asyncio.run(packets_until_ready("causal")) == packets
    assert asyncio.run(packets_until_ready("HQ")) > packets

    async def bad_option() -> None:
        worker = InferenceWorker(tiny_model, clock=ManualClock(), autotick=False)
        await worker.start()
        try:
            await worker.open_session(still, resample_quality="fast")
        finally:
            await worker.stop()

    with pytest.raises(StreamOptionError, match="resample_quality must be one of"):
        asyncio.run(bad_option())
