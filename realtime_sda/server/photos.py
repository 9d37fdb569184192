"""Photo uploads off the media path: decoding and face detection run on the server's own
small thread pool (:class:`PhotoPool`), never in asyncio's default executor, where aiortc
encodes every viewer's video frames (six uploads waiting on dlib's lock there froze every
viewer for seconds).

Bounds: ``workers`` photos are worked on at once (one by default: dlib's detector is
serialised anyway, and one decode at a time bounds the memory), at most ``max_waiting``
more wait, and one client has at most ``per_client`` in the pool. Past a bound the upload is
refused at once with :class:`PhotoBusyError` (the page says to try again); nothing waits on
the event loop. The pool's threads run at a lower priority than the media threads. After
each photo the freed memory is handed back to the system (glibc's ``malloc_trim``), so a
burst of 24-megapixel uploads does not leave the server at its peak size.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from ..errors import RealtimeSDAError
from ..media.heap import release_memory
from .security import Limits, decode_image

__all__ = ["PhotoPool", "PhotoBusyError", "Upload", "pooled_avatar", "rig_job", "still_job", "warm_up", "release_memory",
           "UPLOAD_DECODE_SIDE"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: uploads are decoded with their long side at most about this (JPEG at a reduced scale):
#: the whole-photo output is at most 1280 px, and alignment needs far less
UPLOAD_DECODE_SIDE = 1280

class PhotoBusyError(RealtimeSDAError):
    """The photo pool is full (or this client already has a photo in it): try again."""


class PhotoPool:
    """``await pool.run(owner, fn, *args)``: ``fn(*args)`` on the pool's threads, bounded
    as described in the module. ``close()`` ends the threads (queued work is cancelled)."""

    def __init__(self, workers: int = 1, max_waiting: int = 4, per_client: int = 1) -> None:
        self.workers = int(workers)
        self.max_waiting = int(max_waiting)
        self.per_client = int(per_client)
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            self.workers, thread_name_prefix="photo", initializer=_lower_priority)
        self._owners: Counter[str] = Counter()
        self.in_pool = 0  # running + waiting
        self.refused = 0
        self.done = 0

    @property
    def capacity(self) -> int:
        return self.workers + self.max_waiting

    async def run(self, owner: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the pool for ``owner``; :class:`PhotoBusyError` at once when
        a bound is reached."""
        if self._executor is None:
            raise RealtimeSDAError("the server is shutting down: no more photos are taken")
        if self._owners[owner] >= self.per_client:
            self.refused += 1
            raise PhotoBusyError("your previous photo is still being processed: wait for its answer, then send another")
        if self.in_pool >= self.capacity:
            self.refused += 1
            raise PhotoBusyError(f"the server is busy with {self.in_pool} other photos: try again in a few seconds")
        self._owners[owner] += 1
        self.in_pool += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, _trimmed, fn, args)
        finally:
            self.in_pool -= 1
            self._owners[owner] -= 1
            if self._owners[owner] <= 0:
                del self._owners[owner]
            self.done += 1

    async def close(self, timeout: float = 5.0) -> None:
        """Stop taking photos: waiting ones are cancelled, and the threads end (waited for up
        to ``timeout``) after the photo being worked on, if any."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        executor.shutdown(wait=False, cancel_futures=True)
        done = asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        try:
            await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            log.warning("a photo was still being processed %.1f s after the server stopped", timeout)


#: the photo threads' niceness (Linux: per thread): face detection yields the CPU to the
#: inference and encoder threads, so a burst of uploads takes longer, not the viewers' frames
PHOTO_NICE = 10


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PHOTO_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: normal priority
        pass


def _trimmed(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """``fn(*args)``, then the memory its decode freed handed back to the system."""
    try:
        return fn(*args)
    finally:
        release_memory()


class Upload:
    """A photo file as a client sent it; decoded in the pool, at most about ``max_side``
    pixels on its long side (:func:`.security.decode_image`)."""

    def __init__(self, data: bytes, limits: Limits, max_side: int = UPLOAD_DECODE_SIDE) -> None:
        self.data, self.limits, self.max_side = data, limits, max_side

    def rgb(self) -> Any:
        return decode_image(self.data, self.limits, self.max_side)


def _image(image: Any) -> Any:
    return image.rgb() if isinstance(image, Upload) else image


def rig_job(image: Any, config: Any, size: int | None) -> Any:
    """Pool job: (rig, still) of a photo (an :class:`Upload` is decoded first), its long side
    at most ``size`` (a smaller photo is never enlarged: that would only cost time)."""
    from ..photo.rig import DEFAULT_MAX_SIDE
    from ..photo.setup import rig_and_still

    return rig_and_still(_image(image), config, max_side=size or DEFAULT_MAX_SIDE)


def still_job(image: Any, config: Any) -> Any:
    """Pool job: the model's aligned crop of a photo (an :class:`Upload` is decoded first)."""
    from ..media.face import prepare_still

    return prepare_still(_image(image), config)


def warm_up() -> None:
    """Pool job run when the server starts: load dlib's models (once per process). Loading
    them holds the GIL for about a second, which would freeze every viewer if the first
    upload did it."""
    import numpy as np

    from ..media.face import detect_faces

    detect_faces(np.zeros((64, 64, 3), np.uint8))


async def pooled_avatar(pool: PhotoPool, worker: Any, image: Any, *, owner: str, whole_photo: bool = True,
                        size: int | None = None) -> Any:
    """A photo (path, RGB array or :class:`Upload`) -> its :class:`.stills.Avatar`: decoded
    and aligned in ``pool`` (for ``owner``), the model's rest pose on ``worker``'s inference
    thread (``whole_photo``: the photo at long side ``size``; else the model's crop). For any
    server holding an ``InferenceWorker`` (``AvatarServer``, a cluster worker)."""
    from .stills import Avatar

    if whole_photo:
        from ..photo.setup import calibrate, renderer_for

        rig, still = await pool.run(owner, rig_job, image, worker.config, size)
        renderer = await worker.submit(lambda: renderer_for(worker.model, rig, still, calibrated=False))
        return Avatar(still, await pool.run(owner, calibrate, renderer))
    return Avatar(await pool.run(owner, still_job, image, worker.config))
