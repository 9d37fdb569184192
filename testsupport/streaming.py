"""Streaming test helpers: a random still and a worker on a manual clock."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

import torch

from realtime_sda.streaming import InferenceWorker, ManualClock

__all__ = ["random_still", "manual_worker"]


def random_still(model: Any) -> torch.Tensor:
    """A fixed random (1, 3, H, W) still in [-1, 1] of the model's size."""
    h, w = model.config.img_size
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1


@contextlib.asynccontextmanager
async def manual_worker(model: Any) -> AsyncIterator[tuple[ManualClock, InferenceWorker]]:
    """A started worker on a manual clock (ticked by the test), stopped afterwards."""
    clock = ManualClock()
    worker = InferenceWorker(model, clock=clock, autotick=False)
    await worker.start()
    try:
        yield clock, worker
    finally:
        await worker.stop()
