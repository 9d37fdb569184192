"""Shared fixtures: random-weight checkpoints in the exact original layout, reference data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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
def shared_example() -> Path:
    """../shared/reference/example (image.bmp, audio.wav, original_output.gif)."""
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
