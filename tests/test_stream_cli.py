"""The ``preview``/``vcam`` commands' clean errors (in process: no traceback, exit code 1)."""

from __future__ import annotations

import glob

import numpy as np
import pytest
from PIL import Image
from test_stream_pipeline import write_wav

from realtime_sda.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture()
def inputs(tmp_path):
    avatar = tmp_path / "avatar.png"
    Image.fromarray((np.random.default_rng(0).random((64, 48, 3)) * 255).astype(np.uint8)).save(avatar)
    return str(avatar), str(write_wav(tmp_path / "s.wav", 16000, 0.5))


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def test_vcam_without_backend_names_what_to_install(tiny_checkpoint, inputs, capsys) -> None:
    if glob.glob("/dev/video*"):
        pytest.skip("a v4l2 device exists here")
    avatar, wav = inputs
    rc, err = _run(capsys, "vcam", "--audio", wav, "--avatar", avatar, "--aligned", "--model", str(tiny_checkpoint))
    assert rc == 1 and "Traceback" not in err
    assert "no virtual camera is available" in err and "v4l2loopback" in err and "modprobe" in err


def test_preview_errors(tiny_checkpoint, inputs, capsys, monkeypatch, tmp_path) -> None:
    avatar, wav = inputs
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    common = ["--avatar", avatar, "--aligned", "--model", str(tiny_checkpoint)]
    rc, err = _run(capsys, "preview", "--audio", wav, *common)
    assert rc == 1 and "no display for the preview window" in err and "xvfb-run" in err
    rc, err = _run(capsys, "preview", "--audio", wav, "--lookahead-ms", "500", *common)
    assert rc == 1 and "lookahead_ms must be between 0 and the model's own look-ahead 80 ms" in err
    rc, err = _run(capsys, "preview", "--audio", str(tmp_path / "nope.wav"), *common)
    assert rc == 1 and "does not exist" in err
    rc, err = _run(capsys, "preview", "--mic", "--mic-device", "97", *common)
    assert rc == 1 and "no usable microphone 97" in err and "--mic-device" in err
    rc, err = _run(capsys, "vcam", "--audio", wav, "--avatar", str(tmp_path / "none.png"), "--model", str(tiny_checkpoint))
    assert rc == 1 and "none.png" in err
