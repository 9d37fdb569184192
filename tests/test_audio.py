"""Audio input: every container format (written here with PyAV), dtype and channel layout;
resampling; the original's window cutting in linear time; batch vs per-frame generation."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from realtime_sda.core.noise import NoiseSource
from realtime_sda.errors import AudioDecodeError, RealtimeSDAError
from realtime_sda.media.audio import (
    audio_windows,
    cut_audio_sequence,
    decode_audio,
    load_audio,
    to_float_mono,
    to_int16,
    window_segments,
)
from testsupport.models import grid_config, tiny_config
from testsupport.stepper import Stepper

RATE = 44100


def _tone(n: int = RATE, rate: int = RATE, freq: float = 440.0) -> np.ndarray:
    """An amplitude-modulated tone: its envelope makes a misaligned decode fail correlation."""
    t = np.arange(n) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _write(path: Path, codec: str, signal: np.ndarray, rate: int, options: dict | None = None) -> Path:
    """Encode a stereo file (left = signal, right = 0.5 * signal) with PyAV."""
    data = np.stack([signal, 0.5 * signal]).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo", options=options or {})
        for i in range(0, data.shape[1], 1024):
            block = np.ascontiguousarray(data[:, i : i + 1024])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 3000) -> float:
    """Highest normalised correlation of a and b over lags up to max_lag (codec delays)."""
    best = -1.0
    n = min(len(a), len(b)) - max_lag
    ref = a[:n] - a[:n].mean()
    for lag in range(0, max_lag, 1):
        seg = b[lag : lag + n] - b[lag : lag + n].mean()
        c = float(ref @ seg / (np.linalg.norm(ref) * np.linalg.norm(seg) + 1e-12))
        best = max(best, c)
        if best > 0.999:
            break
    return best


FORMATS = [
    ("wav", "pcm_s16le", None, 0),
    ("flac", "flac", None, 0),
    ("mp3", "libmp3lame", None, 1200),
    ("ogg", "vorbis", {"strict": "experimental"}, 2048),
    ("m4a", "aac", None, 2048),
]


@pytest.mark.parametrize("ext,codec,options,slack", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_decodes(tmp_path, ext, codec, options, slack):
    tone = _tone()
    path = _write(tmp_path / f"tone.{ext}", codec, tone, RATE, options)
    samples, rate = decode_audio(path)
    assert rate == RATE
    assert samples.shape[1] == 2 and samples.dtype == np.float32
    assert RATE <= len(samples) <= RATE + slack
    assert _best_correlation(tone, samples[:, 0]) > 0.98
    # Downmixed to mono (the mean of 1.0 and 0.5 times the tone) and resampled to the model rate.
    mono = load_audio(path, None, 50000)
    assert abs(len(mono) - len(samples) * 50000 / RATE) <= 2
    back = load_audio(path, None, RATE)
    assert _best_correlation(0.75 * tone, back) > 0.98
    assert np.std(back) == pytest.approx(0.75 * np.std(tone), rel=0.1)  # mean, not first channel


def test_file_and_array_inputs_agree(tmp_path):
    tone = _tone()
    path = _write(tmp_path / "t.flac", "flac", tone, RATE)
    from_file = load_audio(path, None, 16000)
    pcm = np.round(np.stack([tone, 0.5 * tone], 1) * 32767).astype(np.int16)
    from_array = load_audio(pcm, RATE, 16000)
    assert from_file.shape == from_array.shape
    assert np.abs(from_file - from_array).max() < 2e-3  # FFmpeg scales int16 by 32768, we by 32767


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.float64, np.uint8])
def test_every_dtype_scales_to_unit_range(dtype):
    x = _tone(4000)
    if dtype == np.uint8:
        arr = np.round(x * 127 + 128).astype(np.uint8)
        tol = 1 / 127
    elif np.issubdtype(dtype, np.integer):
        arr = np.round(x * np.iinfo(dtype).max).astype(dtype)
        tol = 2 / np.iinfo(dtype).max
    else:
        arr = x.astype(dtype)
        tol = 1e-6
    out = to_float_mono(arr)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.abs(out - x).max() <= tol


def test_integer_full_scale_is_one():
    assert to_float_mono(np.array([32767, -32767], np.int16)).tolist() == [1.0, -1.0]
    assert to_float_mono(np.array([2**31 - 1], np.int32))[0] == pytest.approx(1.0)


def test_mono_and_multichannel():
    x = _tone(3000)
    assert np.array_equal(to_float_mono(x), to_float_mono(x[:, None]))
    stereo = np.stack([x, -0.5 * x, 0.25 * x], axis=1)
    np.testing.assert_allclose(to_float_mono(stereo), x * (1 - 0.5 + 0.25) / 3, atol=1e-7)
    t = torch.from_numpy(stereo)
    np.testing.assert_allclose(to_float_mono(t), to_float_mono(stereo))


def test_resampling_keeps_pitch_and_duration():
    x = _tone(16000, 16000, freq=500.0)
    y = load_audio(x, 16000, 50000)
    assert len(y) == 50000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 50000 / len(y) - 500.0) < 2.0


@pytest.mark.parametrize(
    "audio,fs,match",
    [
        (np.zeros(1000, np.float32), None, "fs="),
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.zeros((2, 16000), np.float32), 16000, "channels-first"),
        (np.zeros(100, np.complex64), 16000, "dtype"),
        (np.full(100, np.nan, np.float32), 16000, "NaN"),
        (np.zeros((2, 3, 4), np.float32), 16000, "shape"),
        (12345, 16000, "file path or an array"),
        (np.zeros(100, np.float32), -5, "positive"),
    ],
)
def test_bad_audio_arrays_raise_clear_errors(audio, fs, match):
    with pytest.raises(AudioDecodeError, match=match):
        load_audio(audio, fs, 16000)


def test_bad_audio_files_raise_clear_errors(tmp_path):
    with pytest.raises(AudioDecodeError, match="does not exist"):
        load_audio(tmp_path / "missing.wav", None, 16000)
    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio at all\n" * 10)
    with pytest.raises(AudioDecodeError, match="could not decode"):
        load_audio(junk, None, 16000)
    good = _write(tmp_path / "t.wav", "pcm_s16le", _tone(), RATE)
    with pytest.raises(AudioDecodeError, match="fs="):
        load_audio(good, 16000, 16000)
    assert issubclass(AudioDecodeError, RealtimeSDAError)


def test_too_short_audio():
    cfg = tiny_config()
    with pytest.raises(AudioDecodeError, match="too short"):
        audio_windows(np.zeros(cfg.stride - 1, np.float32), cfg)
    assert audio_windows(np.zeros(cfg.stride, np.float32), cfg).shape == (1, cfg.audio_feat_samples)


def test_a_3_s_clip_gives_75_frames(speech_wav):
    cfg = grid_config()
    signal = load_audio(speech_wav, None, cfg.audio_rate)
    assert len(signal) == 150000
    windows = audio_windows(signal, cfg)
    assert windows.shape == (75, 10000)
    cut = cut_audio_sequence(signal, cfg.audio_feat_len, cfg.audio_feat_len - 1 / cfg.video_rate, cfg.audio_rate)
    assert cut.shape == (75, 10000, 1)
    assert torch.equal(cut[:, :, 0], windows)


def _direct_window(signal: np.ndarray, i: int, stride: int, pad_left: int, feat: int) -> np.ndarray:
    """Frame i sees samples i*stride - pad_left ... + feat (zeros outside the signal)."""
    out = np.zeros(feat, np.float32)
    start = i * stride - pad_left
    lo, hi = max(start, 0), min(start + feat, len(signal))
    if hi > lo:
        out[lo - start : hi - start] = signal[lo:hi]
    return out


@pytest.mark.parametrize("n", [2000, 2001, 3999, 4000, 9999, 10000, 10001, 150000, 151999])
def test_windows_equal_the_direct_formula(n):
    cfg = grid_config()
    rng = np.random.default_rng(n)
    signal = rng.standard_normal(n).astype(np.float32)
    windows = audio_windows(signal, cfg)
    expected_frames = (n + cfg.audio_feat_samples - cfg.stride - cfg.audio_feat_samples) // cfg.stride + 1
    assert windows.shape == (expected_frames, cfg.audio_feat_samples) == (n // cfg.stride, 10000)
    for i in sorted({0, min(1, expected_frames - 1), expected_frames // 2, expected_frames - 1}):
        direct = _direct_window(signal, i, cfg.stride, cfg.pad_left, cfg.audio_feat_samples)
        assert np.array_equal(windows[i].numpy(), direct), i


def test_windows_are_a_view_not_copies():
    cfg = grid_config()
    signal = np.random.default_rng(0).standard_normal(50000 * 60).astype(np.float32)  # 1 min
    windows = audio_windows(signal, cfg)
    assert windows.shape == (1500, 10000)
    # One padded copy of the signal backs all 1500 windows (a copy would be 60 MB, 25x more).
    assert windows.untyped_storage().nbytes() == 4 * (len(signal) + cfg.pad_left + cfg.pad_right)
    cut = cut_audio_sequence(signal, 0.2, 0.16, 50000)
    assert cut.untyped_storage().nbytes() == windows.untyped_storage().nbytes()


def test_cut_uses_round_not_int():
    # 0.3 s windows at 25 fps: (0.3 - (0.3 - 1/25)) * 50000 is 1999.99..., int() gives 1999.
    overlap = 0.3 - 1 / 25
    assert int((0.3 - overlap) * 50000) == 1999
    long = cut_audio_sequence(np.ones(50000, np.float32), 0.3, overlap, 50000)
    assert long.shape == (25, 15000, 1)  # stride 2000, not 1999 (which would give 26 windows)
    cut = cut_audio_sequence(np.ones(50000, np.float32), 0.2, 0.16, 50000)
    assert cut.shape == (25, 10000, 1)
    # The pad split: (feat - stride) // 2 = 4000 zeros left, 4000 right.
    assert float(cut[0, :4000].abs().sum()) == 0.0 and float(cut[0, 4000:].min()) == 1.0
    assert cut_audio_sequence(np.ones(10, np.float32), 0.2, 0.16, 50000).shape == (0, 10000, 1)


def test_to_int16():
    out = to_int16(np.array([0.0, 0.5, -1.0, 2.0], np.float32))
    assert out.dtype == np.int16 and out.shape == (4, 1)
    assert out[:, 0].tolist() == [0, 16384, -32767, 32767]


def test_batch_and_frame_by_frame_generation_match(tiny_model):
    cfg = tiny_model.config
    signal = 0.3 * np.random.default_rng(1).standard_normal(cfg.stride * 12 + 7).astype(np.float32)
    windows = audio_windows(signal, cfg)[None]
    still = torch.rand(1, 3, *cfg.img_size) * 2 - 1
    noise = NoiseSource(cfg.aux_latent, seed=5).next(windows.shape[1])[None]
    batch = tiny_model.generate(still, windows, noise, chunk_frames=5)
    stepper = Stepper(tiny_model, still)
    per_frame = torch.stack([stepper.step(windows[:, i], noise[:, i]) for i in range(windows.shape[1])], 1)
    assert batch.shape == per_frame.shape == (1, 12, 3, *cfg.img_size)
    torch.testing.assert_close(batch, per_frame, atol=1e-5, rtol=1e-4)
    # And the noise source gives the same values however it is chunked.
    src = NoiseSource(cfg.aux_latent, seed=5)
    assert torch.equal(torch.cat([src.next(5), src.next(7)])[None], noise)


@pytest.mark.parametrize("n,per_segment", [(2000, 1), (5999, 2), (150000, 7), (150000, 1024), (777777, 100)])
def test_window_segments_are_the_windows_in_pieces(n, per_segment):
    cfg = grid_config()
    signal = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    segments = window_segments(signal, cfg, per_segment)
    assert all(len(s) <= per_segment for s in segments)
    assert torch.equal(torch.cat(segments), audio_windows(signal, cfg))
    # Each segment is a view over its own small buffer (dropping it frees that audio).
    for seg in segments:
        assert seg.untyped_storage().nbytes() == 4 * ((len(seg) - 1) * cfg.stride + cfg.audio_feat_samples)
    with pytest.raises(AudioDecodeError, match="too short"):
        window_segments(signal[: cfg.stride - 1], cfg)
