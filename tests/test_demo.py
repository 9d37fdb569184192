"""The README's run command: ``realtime-sda demo`` on the embedded default model and avatar
(the command line through the ``cli`` fixture: forked processes of one server)."""

from __future__ import annotations

import av
import pytest

from realtime_sda.checkpoints.registry import resolve_model


def test_demo_writes_a_talking_face_mp4(tmp_path, cli):
    try:
        resolve_model("default")
    except Exception as exc:  # the default model ships with the repository
        pytest.fail(f"the embedded default model is missing: {exc}")
    out = tmp_path / "demo.mp4"
    proc = cli(["demo", "-o", str(out), "--text", "Bin blue at F two now."], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) >= 25  # about a second and a half of speech at 25 fps
    # The face moves: not every frame is the same picture.
    diffs = [abs(frames[i].astype(int) - frames[0].astype(int)).mean() for i in range(1, len(frames))]
    assert max(diffs) > 0.5


def test_demo_without_espeak_says_what_to_install(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on this PATH (looked up when it runs)
    proc = cli(["demo", "-o", str(tmp_path / "x.mp4")], timeout=300)
    assert proc.returncode == 1
    assert "espeak-ng is not installed" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_scale_prints_the_size_written_and_every_option_has_help(tmp_path, cli):
    out = tmp_path / "big.mp4"
    proc = cli(["demo", "-o", str(out), "--text", "Hi.", "--scale", "4", "--crop"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as container:
        h, w = container.streams.video[0].height, container.streams.video[0].width
    assert (w, h) == (192, 256)  # the default model's 48x64 crop, 4x
    assert f"of {w}x{h} at" in proc.stdout
    helptext = cli(["demo", "--help"], timeout=60).stdout
    assert "noise seed" in helptext
