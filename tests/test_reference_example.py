"""The original library's own example through a GRID-size checkpoint in the published
(legacy) format gives a video of the same shape as the original's output for it.

Kept on the original's data on purpose: its example (../shared/reference/example, not in this
repository, so the test skips in a fresh clone) is the only input for which the original's
output exists to compare with. Every other offline test runs on the bundled photo and audio
made by the test."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageSequence

from realtime_sda import VideoAnimator


def test_grid_size_video_has_the_originals_shape(grid_checkpoint_legacy, shared_example):
    gif = Image.open(shared_example / "original_output.gif")
    original = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    va = VideoAnimator(model_path=grid_checkpoint_legacy, gpu=-1)
    video, audio = va(str(shared_example / "image.bmp"), str(shared_example / "audio.wav"), seed=0)
    assert video.shape == (len(original), 3, *original[0].shape[:2]) == (75, 3, 128, 96)
    assert audio.shape == (150000, 1) and audio.dtype == np.int16
