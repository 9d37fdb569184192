"""The command line: ``animate`` to an mp4, ``models`` listing, and clean error messages (no
tracebacks). The first test runs ``python -m realtime_sda`` in a fresh subprocess (the
``__main__`` path); the rest run through the ``cli`` fixture (forked processes of one server
that imported torch once)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:cfd703ecb1bbbb2a81ea62a0df948627a6e4e6481e9c444fccb4a41701867ca7\n"
    "size 221179358\n"
)


@pytest.fixture()
def isolated(tmp_path):
    """The environment with an empty model search path (no user models leak into the test)."""
    models = tmp_path / "models"
    models.mkdir()
    return dict(os.environ, REALTIME_SDA_MODELS=str(models), XDG_CACHE_HOME=str(tmp_path / "cache")), models


def test_animate_writes_an_mp4(tmp_path, tiny_checkpoint, face_image, speech_wav, isolated):
    env, _ = isolated
    out = tmp_path / "talk.mp4"
    res = subprocess.run(
        [sys.executable, "-m", "realtime_sda", "animate", str(face_image), str(speech_wav), "-o", str(out),
         "--model", str(tiny_checkpoint), "--device", "cpu", "--seed", "1", "--scale", "2", "--crop"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout and "75 frames" in res.stdout
    assert "animating" in res.stderr and "75/75" in res.stderr  # the progress bar
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert (c.streams.video[0].height, c.streams.video[0].width) == (128, 96)
        assert c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in c.decode(video=0)) == 75


def test_animate_finds_the_default_model_by_name(tmp_path, tiny_checkpoint, face_image, speech_wav, isolated, cli):
    env, models = isolated
    shutil.copy(tiny_checkpoint, models / "default.pt")
    out = tmp_path / "a.mp4"
    res = cli(["animate", str(face_image), str(speech_wav),
              "-o", str(out), "--aligned", "--quiet"], env, tmp_path)
    assert res.returncode == 0, res.stderr
    assert out.is_file() and "animating" not in res.stderr


@pytest.mark.parametrize("case", ["no-model", "lfs", "no-face", "bad-audio"])
def test_animate_errors_are_clean(tmp_path, tiny_checkpoint, face_image, speech_wav, isolated, case, cli):
    env, models = isolated
    image, audio = str(face_image), str(speech_wav)
    args = ["--model", str(tiny_checkpoint)]
    if case == "no-model":
        args, expected = ["--model", "timit"], "was not found. Looked in"
    elif case == "lfs":
        (models / "grid.dat").write_text(LFS_POINTER)
        args, expected = ["--model", "grid"], "git lfs pull"
    elif case == "no-face":
        from PIL import Image

        image = str(tmp_path / "wall.png")
        Image.new("RGB", (120, 90), (200, 180, 150)).save(image)
        expected = "--aligned"
    else:
        audio = str(tmp_path / "noise.mp3")
        Path(audio).write_bytes(b"\x00garbage" * 50)
        expected = "could not decode audio"
    res = cli(["animate", image, audio, "-o", str(tmp_path / "x.mp4")] + args, env, tmp_path)
    assert res.returncode == 1
    assert res.stderr.startswith("realtime-sda: error:") and expected in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "x.mp4").exists() or case == "bad-audio"


@pytest.mark.parametrize("case", ["cuda-without-gpu", "gpu", "empty-wav"])
def test_device_and_empty_audio_errors_are_one_line(tmp_path, tiny_checkpoint, face_image, speech_wav, isolated, case, cli):
    """--device cuda where no GPU is seen, an unknown device name, a 0-byte wav: one line on
    stderr naming the fix, no traceback."""
    import torch

    env, _ = isolated
    audio, args = str(speech_wav), ["--model", str(tiny_checkpoint)]
    if case == "cuda-without-gpu":
        if torch.cuda.is_available():
            pytest.skip("a CUDA GPU is present here")
        args, expected = args + ["--device", "cuda"], "use --device cpu"
    elif case == "gpu":
        args, expected = args + ["--device", "gpu"], "unknown device 'gpu'; use cpu, cuda or cuda:N"
    else:
        audio = str(tmp_path / "empty.wav")
        Path(audio).write_bytes(b"")
        expected = "is empty (0 bytes)"
    res = cli(["animate", str(face_image), audio, "-o", str(tmp_path / "x.mp4")] + args, env, tmp_path)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and "Errno" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("realtime-sda: error:") and expected in res.stderr
    if case == "gpu":  # demo takes the same --device
        res = cli(["demo", "-o", str(tmp_path / "d.mp4"), "--device", "gpu"], env, tmp_path)
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert expected in res.stderr


def test_models_lists_what_is_found_and_missing(tmp_path, tiny_checkpoint, isolated, cli):
    env, models = isolated
    shutil.copy(tiny_checkpoint, models / "default.pt")
    shutil.copy(tiny_checkpoint, models / "timit.dat")  # named like a published file, but differs
    shutil.copy(tiny_checkpoint, models / "my_speaker.pt")
    (models / "grid.dat").write_text(LFS_POINTER)
    res = cli(["models"], env, tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert str(models) in out and str(Path(tmp_path / "cache" / "realtime-sda" / "models")) in out
    known = out.split("Known models:")[1].split("\n\n")[0]
    lines = {line.split()[0]: line for line in known.splitlines() if line.split()}
    assert "default.pt" in lines["default"] and "no published hash" in lines["default"]
    assert "DIFFERS" in lines["timit"]
    assert "POINTER" in lines["grid"]
    assert "not found" in lines["crema"]
    assert "my_speaker.pt" in out
    missing = out.split("Missing, and where to get it:")[1]
    assert "crema" in missing and "git lfs pull" in missing and "lrw" in missing and "default" not in missing

    res = cli(["models", "--json"], env, tmp_path)
    report = json.loads(res.stdout)
    by_name = {m["name"]: m for m in report["models"]}
    assert by_name["grid"]["check"] == "lfs-pointer" and by_name["timit"]["check"] == "differs"
    assert by_name["crema"]["path"] is None and by_name["default"]["size"] == tiny_checkpoint.stat().st_size
    assert report["search_path"][0] == str(models)


def test_animate_speaks_text_with_espeak(tmp_path, tiny_checkpoint, face_image, speech_wav, isolated, cli):
    """--text instead of AUDIO (as demo does); exactly one of the two."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    env, _ = isolated
    out = tmp_path / "said.mp4"
    res = cli(["animate", str(face_image), "--text", "Bin blue at F two now.", "--voice", "en-us",
              "-o", str(out), "--model", str(tiny_checkpoint), "--crop", "--quiet"], env, tmp_path)
    assert res.returncode == 0, res.stderr
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in c.decode(video=0)) >= 25
    for extra in ([], [str(speech_wav), "--text", "hello"]):
        res = cli(["animate", str(face_image), *extra, "-o", str(tmp_path / "x.mp4"),
                  "--model", str(tiny_checkpoint)], env, tmp_path)
        assert res.returncode == 1 and "exactly one of AUDIO" in res.stderr and "Traceback" not in res.stderr


def test_aligned_on_a_whole_photo_warns(tmp_path, tiny_checkpoint, face_image, speech_wav, isolated, cli):
    """--aligned on an image that is not an aligned crop (a face far smaller than the image, or
    an aspect far from the model's) prints a warning; on an aligned-looking crop it does not.
    The command once each way; the other image through the same check it runs."""
    from PIL import Image

    from realtime_sda.checkpoints.loading import load_model
    from realtime_sda.media.face import aligned_crop_doubt

    env, _ = isolated
    src = Image.open(face_image).convert("RGB")
    w, h = src.size
    canvas = Image.new("RGB", (4 * w, 4 * h), (90, 110, 130))  # the face small in a large photo
    canvas.paste(src, (w, h))
    canvas.save(tmp_path / "small.png")
    res = cli(["animate", str(tmp_path / "small.png"), str(speech_wav), "-o", str(tmp_path / "x.mp4"),
              "--model", str(tiny_checkpoint), "--aligned", "--quiet"], env, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "warning: --aligned" in res.stderr and "leave out --aligned" in res.stderr, res.stderr
    wide = src.resize((3 * w, h))  # an aspect far from the model's
    assert "leave out --aligned" in (aligned_crop_doubt(wide, load_model(tiny_checkpoint).config) or "")
    res = cli(["animate", str(face_image), str(speech_wav), "-o", str(tmp_path / "x.mp4"),
              "--model", str(tiny_checkpoint), "--aligned", "--quiet"], env, tmp_path)
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
