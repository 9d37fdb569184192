"""Dataset preparation from real videos: a face video with embedded audio (GRID layout), a
silent video with a same-named wav (CREMA-D layout), a faceless and a corrupt file."""

from __future__ import annotations

import subprocess
import wave

import numpy as np
import pytest
from PIL import Image

from realtime_sda.cli import main
from realtime_sda.media.face import ALIGN_POINTS
from realtime_sda.media.video import save_video
from realtime_sda.training.dataset import load_clip, read_index, read_meta
from realtime_sda.training.prepare import speaker_of

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    (root / "s1").mkdir()
    (root / "s2").mkdir()
    wav = root / "s2" / "crema.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(wav), "bin blue at f two now"], check=True, timeout=60)
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        speech = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    photo = Image.fromarray(skimage_data.astronaut()).crop((100, 0, 400, 300))
    t = 25  # one second of video
    frames = []
    for i in range(t):  # small head motion: a shift and a zoom
        s, dx = 1 + 0.02 * np.sin(i / 4), 3 * np.sin(i / 5)
        im = photo.transform(photo.size, Image.AFFINE, (1 / s, 0, dx, 0, 1 / s, 0), resample=Image.BILINEAR)
        frames.append(np.asarray(im.resize((160, 160))).transpose(2, 0, 1))
    frames = np.stack(frames)
    audio = speech[: rate * t // 25, None]
    save_video(frames, audio, root / "s1" / "talk.mp4", video_rate=25, audio_rate=rate)
    save_video(frames, None, root / "s2" / "crema.mp4", video_rate=25)
    blank = np.stack([np.full((3, 96, 96), 40 + 5 * i, np.uint8) for i in range(t)])
    save_video(blank, audio, root / "s1" / "noface.mp4", video_rate=25, audio_rate=rate)
    (root / "s1" / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    return root


def test_prepare_writes_aligned_clips_and_lists_skipped(videos, tmp_path, capsys):
    dst = tmp_path / "data"
    assert main(["prepare", str(videos), str(dst), "--img-size", "64x48", "--audio-rate", "16000"]) == 0
    out = capsys.readouterr().out
    assert "skipped s1/corrupt.mp4: unreadable" in out
    assert "skipped s1/noface.mp4: no face" in out
    skipped = (dst / "skipped.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in skipped) == ["s1/corrupt.mp4", "s1/noface.mp4"]
    clips = read_index(dst)
    assert sorted(c.identity for c in clips) == ["s1", "s2"]
    mean_face = np.asarray(read_meta(dst)["mean_face"])
    for info in clips:
        clip = load_clip(dst, info.id)
        assert clip["frames"].shape == (info.frames, 64, 48, 3)
        assert info.frames >= 20 and clip["audio"].shape == (info.frames * 640,)
        assert np.abs(clip["audio"]).max() > 0.05  # the speech came along (embedded or wav)
        # every frame is warped onto the mean face: alignment points land on it
        err = np.abs(clip["landmarks"][:, list(ALIGN_POINTS)] - mean_face[list(ALIGN_POINTS)]).max()
        assert err < 3.0
        # the face is in the frame: not a black border, and the frames move a little
        assert clip["frames"][:, 32].mean() > 60
        assert np.abs(np.diff(clip["frames"].astype(float), axis=0)).mean() > 0.2


def test_prepare_without_videos_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert "no videos" in capsys.readouterr().err


def test_speakers_of_grid_and_crema_layouts(tmp_path):
    assert speaker_of(tmp_path / "s12" / "bbaf2n.mpg", tmp_path) == "s12"
    assert speaker_of(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv", tmp_path) == "1001"
