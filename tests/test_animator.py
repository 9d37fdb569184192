"""The offline API end to end on a checkpoint file: VideoAnimator (input types, seeds, the
chunked uint8 path vs the model's own output), save_video, get_audio_feature_extractor."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from PIL import Image

from realtime_sda import VideoAnimator, get_audio_feature_extractor
from realtime_sda.core.nn import ContentEncoder
from realtime_sda.core.noise import NoiseSource
from realtime_sda.errors import AudioDecodeError, FaceNotFoundError, ImageDecodeError, ModelNotFoundError, RealtimeSDAError
from realtime_sda.media.audio import audio_windows, load_audio
from realtime_sda.media.face import prepare_still
from realtime_sda.media.image import frames_to_uint8, load_rgb, original_scale


@pytest.fixture(scope="module")
def animator(tiny_checkpoint):
    return VideoAnimator(str(tiny_checkpoint), gpu=-1, chunk_frames=7)


@pytest.fixture(scope="module")
def speech(speech_wav):
    """The speech clip as int16 at 16 kHz (the tiny model's rate) and the file path."""
    signal = load_audio(speech_wav, None, 16000)
    return np.round(signal * 32767).astype(np.int16), speech_wav


def test_end_to_end_on_a_photo_and_a_wav(animator, face_image, speech_wav):
    video, audio = animator(str(face_image), str(speech_wav), seed=0)
    assert video.dtype == np.uint8 and video.shape == (75, 3, 64, 48)
    assert audio.dtype == np.int16 and audio.shape == (48000, 1)  # 3 s at the model's 16 kHz
    assert animator.model.device == torch.device("cpu") and not animator.model.training
    assert video.std() > 1.0  # a random model still draws something that varies


def test_frames_equal_the_model_output(animator, face_image, speech_wav):
    """The chunked uint8 path gives exactly the model's frames, mapped round(127.5 (x + 1))."""
    cfg = animator.config
    video, _ = animator(face_image, speech_wav, seed=11)
    still = prepare_still(face_image, cfg)
    windows = audio_windows(load_audio(speech_wav, None, cfg.audio_rate), cfg)[None]
    noise = NoiseSource(cfg.aux_latent, 11).next(windows.shape[1])[None]
    frames = animator.model.generate(still, windows, noise, chunk_frames=75)[0]
    expected = np.clip(np.round(127.5 * (frames.numpy() + 1)), 0, 255).astype(np.uint8)
    assert np.abs(video.astype(int) - expected.astype(int)).max() <= 1  # float rounding at .5
    assert (video == expected).mean() > 0.999
    np.testing.assert_allclose(original_scale(frames), 125 * frames.numpy() + 125)
    assert frames_to_uint8(torch.tensor([-1.0, 0.0, 1.0, 1.5])).tolist() == [0, 128, 255, 255]


def test_seeds(animator, face_image, speech):
    pcm, _ = speech
    img = face_image
    a, _ = animator(img, pcm, fs=16000, aligned=True, seed=3)
    b, _ = animator(img, pcm, fs=16000, aligned=True, seed=3)
    assert np.array_equal(a, b)
    # Another seed gives other frames. The tiny random model's noise path is weak (frames
    # move by about 1e-6), so after rounding to uint8 the two videos may agree: compare the
    # model's float frames (test_frames_equal_the_model_output shows the video is these).
    cfg = animator.config
    still = prepare_still(img, cfg, aligned=True)
    windows = audio_windows(pcm / 32767.0, cfg)[None]
    f3, f4 = (
        animator.model.generate(still, windows, NoiseSource(cfg.aux_latent, s).next(windows.shape[1])[None])
        for s in (3, 4)
    )
    assert not torch.equal(f3, f4)
    # Chunking does not change the result (the GRU states and the noise carry over).
    other = VideoAnimator(str(animator.model.source), chunk_frames=75)
    d, _ = other(img, pcm, fs=16000, aligned=True, seed=3)
    assert np.abs(a.astype(int) - d.astype(int)).max() <= 1


def test_image_input_types_agree(animator, face_image, speech):
    pcm, _ = speech
    pcm = pcm[:16000]
    rgb = np.asarray(Image.open(face_image).convert("RGB"))
    pil = Image.fromarray(rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    inputs = [
        str(face_image),
        face_image,
        pil,
        rgb,
        rgba,
        pil.convert("RGBA"),
        rgb.astype(np.float32) / 255.0,
        rgb.astype(np.float64) / 255.0,
    ]
    ref, _ = animator(rgb, pcm, fs=16000, aligned=True, seed=1)
    for img in inputs:
        out, _ = animator(img, pcm, fs=16000, aligned=True, seed=1)
        assert np.array_equal(out, ref), type(img)
    gray = np.asarray(pil.convert("L"))
    for img in (gray, gray[:, :, None], pil.convert("L")):
        assert np.array_equal(load_rgb(img)[:, :, 0], gray)
        out, _ = animator(img, pcm, fs=16000, aligned=True, seed=1)
        assert out.shape == ref.shape
    # Without aligned=True the face is found in every input type, too.
    out, _ = animator(pil, pcm, fs=16000, seed=1)
    assert out.shape == ref.shape


def test_audio_input_types_agree(animator, face_image, speech):
    pcm, path = speech
    img = face_image
    from_file, audio = animator(img, path, aligned=True, seed=2)
    from_int16, _ = animator(img, pcm, fs=16000, aligned=True, seed=2)
    from_float, _ = animator(img, pcm / 32767.0, fs=16000, aligned=True, seed=2)
    stereo, _ = animator(img, np.stack([pcm, pcm], axis=1), fs=16000, aligned=True, seed=2)
    assert np.array_equal(from_int16, from_float) and np.array_equal(from_int16, stereo)
    assert np.abs(from_file.astype(int) - from_int16.astype(int)).max() <= 3  # 32768 vs 32767 scaling
    assert np.abs(audio[:, 0].astype(int) - pcm.astype(int)).max() <= 2


def test_bad_inputs(animator, face_image, speech, tmp_path):
    pcm, _ = speech
    img = face_image
    with pytest.raises(AudioDecodeError, match="fs="):
        animator(img, pcm)
    with pytest.raises(AudioDecodeError, match="too short"):
        animator(img, pcm[:100], fs=16000, aligned=True)
    with pytest.raises(AudioDecodeError, match="empty"):
        animator(img, pcm[:0], fs=16000, aligned=True)
    with pytest.raises(FaceNotFoundError, match="aligned"):
        animator(np.zeros((100, 80, 3), np.uint8), pcm, fs=16000)
    with pytest.raises(ImageDecodeError, match="does not exist"):
        animator(tmp_path / "nope.png", pcm, fs=16000)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageDecodeError, match="could not read"):
        animator(bad, pcm, fs=16000)
    with pytest.raises(ImageDecodeError, match=r"\[0, 1\]"):
        animator(np.full((64, 48, 3), 200.0), pcm, fs=16000, aligned=True)
    with pytest.raises(ImageDecodeError, match="channels-first"):
        animator(np.zeros((3, 64, 48), np.uint8), pcm, fs=16000, aligned=True)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        VideoAnimator(str(tmp_path / "missing.pt"))


def test_save_video(animator, face_image, speech_wav, tmp_path):
    video, audio = animator(face_image, speech_wav, seed=0)
    path = animator.save_video(video, audio, tmp_path / "talk.mp4", scale=2)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert (c.streams.video[0].height, c.streams.video[0].width) == (128, 96)
        assert c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in c.decode(video=0)) == 75


def test_exported_save_video_takes_the_rate_from_the_animator_result(animator, face_image, speech_wav, tmp_path):
    """The tiny model runs at 16 kHz: the exported save_video must not assume 50 kHz."""
    from realtime_sda import save_video

    video, audio = animator(face_image, speech_wav, seed=0)
    assert audio.rate == 16000 and audio.dtype == np.int16 and audio.shape[1] == 1
    path = save_video(video, audio, tmp_path / "talk.mp4")
    with av.open(str(path)) as c:
        seconds = c.streams.audio[0].duration * c.streams.audio[0].time_base
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == 75 and abs(float(seconds) - 3.0) < 0.1
    with pytest.raises(RealtimeSDAError, match="audio_rate="):
        save_video(video, np.asarray(audio), tmp_path / "bare.mp4")


def test_audio_feature_extractor(tiny_checkpoint, speech):
    encoder, info = get_audio_feature_extractor(str(tiny_checkpoint), gpu=-1)
    assert isinstance(encoder, ContentEncoder) and not encoder.training
    assert set(info) == {"rate", "feature length", "overlap"}
    assert info["rate"] == 16000
    assert info["feature length"] == pytest.approx(0.2)
    assert info["overlap"] == pytest.approx(0.2 - 1 / 25)
    from realtime_sda.media.audio import cut_audio_sequence

    pcm, _ = speech
    windows = cut_audio_sequence(pcm / 32767.0, info["feature length"], info["overlap"], info["rate"])
    assert windows.shape == (75, 3200, 1)
    with torch.no_grad():
        codes, hidden = encoder(windows[:, :, 0][None])
    assert codes.shape == (1, 75, 24) and hidden.shape == (2, 1, 24)


@pytest.mark.filterwarnings("ignore:.*named like the published")
def test_no_model_named_means_grid_if_installed_else_default(monkeypatch, tmp_path, tiny_checkpoint):
    """VideoAnimator() and get_audio_feature_extractor() share one default: grid when
    grid.dat is installed (the original library's), else the shipped default model."""
    import shutil

    from realtime_sda.checkpoints.registry import default_model_name, resolve_model

    monkeypatch.setenv("REALTIME_SDA_MODELS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        resolve_model("grid")
        pytest.skip("grid is installed on this machine")
    except ModelNotFoundError:
        pass
    assert default_model_name() == "default"
    encoder, info = get_audio_feature_extractor()
    assert info["rate"] == VideoAnimator().audio_rate == resolve_default_rate()
    shutil.copy(tiny_checkpoint, tmp_path / "grid.pt")
    assert default_model_name() == "grid"
    assert get_audio_feature_extractor()[1]["rate"] == VideoAnimator().audio_rate == 16000


def resolve_default_rate() -> int:
    from realtime_sda import load_model

    return load_model("default").config.audio_rate


def test_precision_bfloat16_is_within_a_level_of_float32(grid_checkpoint_legacy):
    """``precision="bfloat16"`` (what ``auto`` picks on a CPU with native bfloat16) gives frames
    within about one uint8 level of float32's; a bad precision is one clear error."""
    rng = np.random.default_rng(0)
    still = rng.integers(0, 256, (128, 96, 3), dtype=np.uint8)
    audio = (rng.standard_normal(16000) * 3000).astype(np.int16)
    fp32 = VideoAnimator(grid_checkpoint_legacy, gpu=-1)
    bf16 = VideoAnimator(grid_checkpoint_legacy, gpu=-1, precision="bfloat16")
    assert fp32.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    a, _ = fp32(still, audio, fs=16000, aligned=True, seed=1)
    b, _ = bf16(still, audio, fs=16000, aligned=True, seed=1)
    diff = np.abs(a.astype(int) - b.astype(int))
    assert a.std() > 2 and diff.mean() < 1.0 and diff.max() <= 8, (diff.mean(), diff.max())
    assert VideoAnimator(grid_checkpoint_legacy, gpu=-1, precision="auto").dtype in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="use float32, bfloat16 or auto"):
        VideoAnimator(grid_checkpoint_legacy, gpu=-1, precision="half")
