"""Shared fixtures: random-weight checkpoints in the exact original layout, a face photo and
speech made here (every test runs in a fresh clone); the original example, for the few tests
that compare with it; a private X display (Xvfb) for the window tests; the command line in
forked processes of one server that imported torch once (``cli``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from testsupport.clirunner import CliRunner
from testsupport.media import face_photo, write_speech_like_wav
from testsupport.models import grid_config, random_model, tiny_config, write_random_checkpoint

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "reference"
EXAMPLE = SHARED / "example"


@pytest.fixture()
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, spinning OpenMP threads of a busy
    CPU make tiny steps 100x slower; results do not depend on it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def face_image() -> Path:
    """The bundled avatar photo (192x256, a face dlib finds; its aspect is the models')."""
    return face_photo()


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """3 s of speech-like sound as a 50 kHz mono int16 wav (the original example's format):
    75 frames at 25 frames/s."""
    return write_speech_like_wav(tmp_path_factory.mktemp("speech") / "speech.wav", seconds=3.0, rate=50000)


@pytest.fixture(scope="session")
def shared_example() -> Path:
    """../shared/reference/example (image.bmp, audio.wav, original_output.gif), beside a
    checkout only. Only tests that compare with the original library's own example use it;
    everything else uses ``face_image`` and ``speech_wav``."""
    if not EXAMPLE.is_dir():
        pytest.skip("../shared/reference/example is not present beside this checkout")
    return EXAMPLE


@pytest.fixture(scope="session")
def tiny_model():
    """A small random model (64x48 images, 16 kHz audio), eval mode."""
    return random_model(tiny_config(), seed=1)


@pytest.fixture(scope="session")
def grid_model():
    """A random model of the GRID checkpoint's exact size (55 M parameters), eval mode."""
    return random_model(grid_config(), seed=2)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tiny_config(), seed=1)


@pytest.fixture(scope="session")
def grid_checkpoint_legacy(tmp_path_factory) -> Path:
    """A random GRID-size checkpoint in the legacy (non-zip) format of the published files."""
    return write_random_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "grid_random.dat", grid_config(), seed=2, legacy=True
    )


@pytest.fixture()
def xvfb():
    """A private Xvfb (640x480) with a black root window; it picks a free display itself
    (-displayfd), so parallel test runs of other suites cannot collide with it."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "640x480x24", "-br", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,),
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()
        if not number.isdigit():
            pytest.fail("Xvfb did not report a display number")
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def cli():
    """``cli(args, env=None, cwd=None, timeout=120)``: ``realtime-sda *args`` as
    ``subprocess.run(..., capture_output=True, text=True)`` returns it, each command a forked
    child of one fork server that imported torch and the CLI once (testsupport/clirunner.py);
    ``env`` is the whole environment (None: this process's os.environ at the call)."""
    runner = CliRunner()
    try:
        yield runner.run
    finally:
        runner.close()
