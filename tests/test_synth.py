"""The synthetic corpus: deterministic for a seed, consistent shapes, mouths that follow the
speech, blinks at a natural rate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from realtime_sda.cli import main
from realtime_sda.errors import RealtimeSDAError
from realtime_sda.training.dataset import load_clip, read_index, read_meta
from realtime_sda.training.synth.animate import blink_track
from realtime_sda.training.synth.corpus import CorpusSpec, build_corpus
from realtime_sda.training.synth.faces import ALIGN_POINTS, MIRROR, TEMPLATE, random_identity
from realtime_sda.training.synth.speech import Voice, frame_features, sentence_split, speak


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = build_corpus(tmp_path / "a", CorpusSpec(clips=2, seed=11, identities=2))
    b = build_corpus(tmp_path / "b", CorpusSpec(clips=2, seed=11, identities=2))
    c = build_corpus(tmp_path / "c", CorpusSpec(clips=2, seed=12, identities=2))
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert len(fa) == 1 + 1 + 2 * 3  # meta, index, three arrays per clip
    assert fa == fb
    frames = [k for k in fa if k.endswith("frames.npy")]
    assert all(fa[k] != fc[k.replace("s11_", "s12_")] for k in frames)


def test_cli_synth_writes_consistent_clips(tmp_path, capsys):
    dst = tmp_path / "corpus"
    assert main(["synth", str(dst), "--clips", "3", "--seed", "4", "--identities", "3"]) == 0
    meta = read_meta(dst)
    assert meta["img_size"] == [64, 48] and meta["audio_rate"] == 16000
    clips = read_index(dst)
    assert len(clips) == 3
    assert {c.split for c in clips} == {"train", "test"}  # one of three identities held out
    stride = 16000 // 25
    for info in clips:
        clip = load_clip(dst, info.id)
        assert clip["frames"].shape == (info.frames, 64, 48, 3) and clip["frames"].dtype == np.uint8
        assert clip["audio"].shape == (info.frames * stride,) == (info.samples,)
        assert clip["landmarks"].shape == (info.frames, 68, 2)
        assert sentence_split(info.text) == info.split  # held-out identities speak held-out sentences
        assert 0.1 < np.abs(clip["audio"]).max() <= 1.0


def test_mouth_opens_with_the_speech_and_alignment_points_stay(tmp_path):
    root = build_corpus(tmp_path / "c", CorpusSpec(clips=2, seed=3, identities=2))
    mean_face = np.asarray(read_meta(root)["mean_face"])
    for info in read_index(root):
        clip = load_clip(root, info.id)
        marks = clip["landmarks"]
        opening = marks[:, 66, 1] - marks[:, 62, 1]
        level = frame_features(np.asarray(clip["audio"]), 16000, 25, info.frames)["level"]
        assert np.corrcoef(opening, level)[0, 1] > 0.6
        assert opening.max() > 2.0  # pixels at 64x48: a visibly open mouth
        # head motion is small: alignment points within a few pixels of the mean face
        err = np.abs(marks[:, list(ALIGN_POINTS)] - mean_face[list(ALIGN_POINTS)]).max()
        assert err < 4.0


def test_blinks_every_two_to_four_seconds():
    track = blink_track(25 * 120, 25.0, np.random.default_rng(0))
    closed = track > 0.9
    onsets = np.sum(closed[1:] & ~closed[:-1])
    assert 0.2 <= onsets / 120 <= 0.5


def test_template_is_symmetric_and_identities_vary():
    mirrored = TEMPLATE[MIRROR].copy()
    mirrored[:, 0] = 1 - mirrored[:, 0]
    np.testing.assert_allclose(mirrored, TEMPLATE, atol=1e-9)
    a, b = (random_identity(np.random.default_rng(i), i) for i in (1, 2))
    assert not np.allclose(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.landmarks[list(ALIGN_POINTS)], b.landmarks[list(ALIGN_POINTS)])


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(RealtimeSDAError, match="espeak-ng failed"):
        speak("bin blue", Voice("xx-nonexistent+zz", 150, 50), 16000)
    assert json.dumps(Voice("en+m3", 150, 50).__dict__)


def test_bad_synth_arguments_are_clear_errors(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x"), "--clips", "0"]) == 1
    assert "--clips must be at least 1" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x"), "--clips", "1", "--img-size", "16x12"]) == 1
    assert "too small" in capsys.readouterr().err


def test_photographic_identity_talks(tmp_path):
    pytest.importorskip("skimage.data")
    dst = tmp_path / "photo"
    assert main(["synth", str(dst), "--clips", "1", "--seed", "2", "--identities", "1", "--photos", "1"]) == 0
    info = read_index(dst)[0]
    clip = load_clip(dst, info.id)
    frames, marks = np.asarray(clip["frames"]), clip["landmarks"]
    # a photograph: far more distinct colours than a drawn face
    assert len(np.unique(frames[0].reshape(-1, 3), axis=0)) > 1500
    opening = marks[:, 66, 1] - marks[:, 62, 1]
    level = frame_features(np.asarray(clip["audio"]), 16000, 25, info.frames)["level"]
    assert np.corrcoef(opening, level)[0, 1] > 0.6
    # the warp really moves the pixels of the lower face while the mouth opens
    open_i, shut_i = int(np.argmax(opening)), int(np.argmin(opening))
    lower = np.abs(frames[open_i, 40:].astype(float) - frames[shut_i, 40:].astype(float)).mean()
    upper = np.abs(frames[open_i, :25].astype(float) - frames[shut_i, :25].astype(float)).mean()
    assert lower > 2 * upper
