"""The committed default model and avatar: they load, fit the size limit, align, and the
mouth moves with speech (and more than the rest of the face)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from realtime_sda import load_model
from realtime_sda.checkpoints.registry import resolve_model
from realtime_sda.core.noise import NoiseSource
from realtime_sda.media.audio import load_audio
from realtime_sda.media.image import default_avatar_path
from realtime_sda.training.dataset import clip_windows
from realtime_sda.training.synth.faces import canonical_landmarks


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


def test_default_checkpoint_is_small_and_describes_its_training(default_model):
    path = resolve_model("default")
    assert path.stat().st_size < 40 * 2**20
    cfg = default_model.config
    assert cfg.img_size == (64, 48) and cfg.audio_rate == 16000 and cfg.width == 0.25
    np.testing.assert_allclose(cfg.mean_face, canonical_landmarks((64, 48)))
    assert default_model.extra["step"] > 0
    assert default_model.extra["train_config"]["model"]["width"] == 0.25


def test_avatar_mouth_follows_speech(default_model, tmp_path):
    from realtime_sda.media.face import prepare_still

    still = prepare_still(default_avatar_path(), default_model.config)  # detects and aligns the avatar
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), "place red at k nine again"], check=True, timeout=60)
    speech = load_audio(str(wav), None, 16000)
    t = len(speech) // 640
    silence = np.zeros_like(speech)

    def run(audio: np.ndarray) -> np.ndarray:
        win = torch.from_numpy(clip_windows(audio, 0, t, 640, 3200))[None]
        noise = NoiseSource(default_model.config.aux_latent, 0).next(t)[None]
        return default_model.generate(still, win, noise)[0].numpy()

    talk, quiet = run(speech), run(silence)
    assert np.isfinite(talk).all() and talk.min() >= -1 and talk.max() <= 1
    mouth = (slice(None), slice(None), slice(40, 58), slice(14, 34))  # around the lips at 64x48
    eyes = (slice(None), slice(None), slice(18, 30), slice(8, 40))
    motion = np.abs(np.diff(talk[mouth], axis=0)).mean()
    assert motion > 1.5 * np.abs(np.diff(quiet[mouth], axis=0)).mean()  # speech moves the mouth
    assert motion > 1.5 * np.abs(np.diff(talk[eyes], axis=0)).mean()  # more than the eyes
