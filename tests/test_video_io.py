"""MP4 writing with PyAV: decoded back, the file has the frames, the H.264 and AAC streams,
the durations, and the pixels and sound it was given."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from realtime_sda.errors import RealtimeSDAError
from realtime_sda.media.audio import to_int16
from realtime_sda.media.video import AAC_RATE, VideoWriter, even_size, save_video


def _probe(path):
    with av.open(str(path)) as c:
        streams = {s.type: s for s in c.streams}
        v = streams["video"]
        info = {
            "vcodec": v.codec_context.name,
            "pix_fmt": v.codec_context.pix_fmt,
            "size": (v.codec_context.height, v.codec_context.width),
            "fps": float(v.average_rate),
            "acodec": streams["audio"].codec_context.name if "audio" in streams else None,
            "arate": streams["audio"].codec_context.sample_rate if "audio" in streams else None,
        }
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        sound = [f.to_ndarray() for f in c.decode(audio=0)] if info["acodec"] else []
    info["frames"] = np.stack(frames)
    info["audio"] = np.concatenate(sound, axis=1)[0] if sound else None
    return info


def _colour_video(t: int, h: int, w: int) -> np.ndarray:
    """Frames of flat colours changing over time (what H.264 keeps almost exactly)."""
    video = np.empty((t, 3, h, w), np.uint8)
    for i in range(t):
        video[i] = np.array([(40 + 7 * i) % 256, 128, 255 - (5 * i) % 200], np.uint8)[:, None, None]
    return video


def _speech_like(n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    return (0.4 * np.sin(2 * np.pi * 330 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


@pytest.mark.parametrize("seconds", [3.0, 1.37])
def test_mp4_round_trip(tmp_path, seconds):
    rate, fps = 50000, 25
    n = int(seconds * rate)
    frames_expected = n // (rate // fps)
    video = _colour_video(frames_expected, 128, 96)
    audio = to_int16(_speech_like(n, rate))
    path = save_video(video, audio, tmp_path / "out.mp4", audio_rate=rate)
    info = _probe(path)
    assert info["vcodec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["size"] == (128, 96)
    assert info["acodec"] == "aac" and info["arate"] == AAC_RATE
    assert info["fps"] == pytest.approx(25.0)
    assert len(info["frames"]) == frames_expected
    video_s = len(info["frames"]) / fps
    audio_s = len(info["audio"]) / AAC_RATE
    assert abs(video_s - n / rate) <= 1 / fps
    assert abs(audio_s - n / rate) <= 1 / fps
    # The pixels and the sound are what was given.
    decoded = info["frames"].transpose(0, 3, 1, 2).astype(int)
    assert np.abs(decoded - video.astype(int)).mean() < 3.0
    ref = _speech_like(int(seconds * AAC_RATE), AAC_RATE)
    got = info["audio"][: len(ref)]
    corr = max(
        float(np.corrcoef(ref[: len(ref) - 2048], got[lag : lag + len(ref) - 2048])[0, 1]) for lag in range(0, 2048, 16)
    )
    assert corr > 0.98


def test_scale_and_odd_sizes(tmp_path):
    video = _colour_video(5, 63, 47)
    info = _probe(save_video(video, None, tmp_path / "odd.mp4"))
    assert info["size"] == (64, 48) and info["acodec"] is None and len(info["frames"]) == 5
    assert np.abs(info["frames"][:, :63, :47].astype(int) - video.transpose(0, 2, 3, 1)).mean() < 3.0
    info = _probe(save_video(_colour_video(4, 128, 96), None, tmp_path / "big.mp4", scale=2.5))
    assert info["size"] == (320, 240)
    assert even_size(128, 96, 1.01) == (130, 98)
    with pytest.raises(RealtimeSDAError, match="positive"):
        even_size(128, 96, 0)


def test_accepted_frame_layouts(tmp_path):
    video = _colour_video(3, 32, 24)
    hwc = video.transpose(0, 2, 3, 1).copy()
    original_style = video.astype(np.float64)  # the original library's float frames
    for i, v in enumerate([hwc, torch.from_numpy(video), original_style]):
        info = _probe(save_video(v, None, tmp_path / f"v{i}.mp4", video_rate=10))
        assert len(info["frames"]) == 3 and info["fps"] == pytest.approx(10.0)


def test_writer_streams_chunks(tmp_path):
    video = _colour_video(20, 64, 48)
    audio = _speech_like(16000 * 20 // 25, 16000)
    with VideoWriter(tmp_path / "chunks.mp4", 25, (64, 48), audio, 16000) as w:
        for start in range(0, 20, 6):
            w.write(video[start : start + 6])
    assert w.frames_written == 20
    info = _probe(w.path)
    assert len(info["frames"]) == 20 and abs(len(info["audio"]) / AAC_RATE - 0.8) <= 1 / 25


def test_bad_inputs(tmp_path):
    with pytest.raises(RealtimeSDAError, match=".mp4"):
        save_video(_colour_video(2, 8, 8), None, tmp_path / "out.avi")
    with pytest.raises(RealtimeSDAError, match="shape"):
        save_video(np.zeros((2, 8, 8), np.uint8), None, tmp_path / "out.mp4")
    with pytest.raises(RealtimeSDAError, match="no frames"):
        save_video(np.zeros((0, 3, 8, 8), np.uint8), None, tmp_path / "out.mp4")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(RealtimeSDAError, match="cannot write"):
        save_video(_colour_video(2, 8, 8), None, blocker / "out.mp4")
    with VideoWriter(tmp_path / "w.mp4", 25, (8, 8)) as w:
        with pytest.raises(RealtimeSDAError, match="opened for"):
            w.write(np.zeros((1, 3, 16, 16), np.uint8))
        w.write(np.zeros((1, 3, 8, 8), np.uint8))


def test_save_video_never_guesses_the_audio_rate(tmp_path):
    """A bare array needs ``audio_rate=``; audio that carries its rate (what VideoAnimator
    returns) needs none, and a contradicting rate is an error, not a guess."""
    from realtime_sda.media.audio import RatedAudio

    rate = 16000
    video = _colour_video(50, 64, 48)  # 2 s
    pcm = to_int16(_speech_like(2 * rate, rate))
    with pytest.raises(RealtimeSDAError, match="audio_rate="):
        save_video(video, pcm, tmp_path / "bare.mp4")
    rated = RatedAudio(pcm, rate)
    assert rated[:100].rate == rate and rated.dtype == np.int16 and rated.shape == pcm.shape
    info = _probe(save_video(video, rated, tmp_path / "rated.mp4"))
    assert abs(len(info["audio"]) / AAC_RATE - 2.0) <= 1 / 25
    with pytest.raises(RealtimeSDAError, match="disagrees"):
        save_video(video, rated, tmp_path / "bad.mp4", audio_rate=50000)
