"""``InferenceWorker``: ONE thread that owns the model and steps every live session.

Each round it collects the sessions whose next frame is due (see :mod:`.session` for the
real-time policy), stacks their :class:`~realtime_sda.core.state.StreamState` into one batch,
runs a single ``model.forward_chunk`` with T=1, splits the states back and hands each frame
to its session's subscribers. It drives sessions only through the protocol of
:mod:`.stepping` (``poll``, ``take``, ``deliver``, ``fail``, ``next_wakeup``); a session
reaches the worker only through the two callables of its ``WorkerLink``. Model work never runs on the event loop: identity encoding of a new
still image is also done on this thread (as a job), so the model is only ever touched by it.

Failure isolation: if a batched step raises, every session of the batch is retried alone and
only the one that fails again is closed with the error; the thread itself never dies from a
session's problem.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from ..core.model import SDAModel
from ..core.state import IdentityContext, StreamState
from ..errors import ImageDecodeError, RealtimeSDAError
from ..media.image import frames_to_uint8
from .clock import Clock, SystemClock
from .options import SessionMoreArgs, SessionOptions
from .session import AvatarSession
from .stepping import StepInput, SteppedSession, WorkerLink

if TYPE_CHECKING:
    from typing import Unpack

    from ..photo.render import PhotoRenderer

__all__ = ["InferenceWorker", "WorkerNotRunningError", "WorkerBusyError", "MAX_PENDING_JOBS"]


class WorkerNotRunningError(RealtimeSDAError):
    """The inference worker is not started (``await worker.start()``) or already stopped."""


class WorkerBusyError(RealtimeSDAError):
    """Too many requests (session openings) are waiting for the inference thread."""


#: Requests (open_session, tick) that may wait for the inference thread at once.
MAX_PENDING_JOBS = 256


class InferenceWorker:
    """Steps many sessions of one model on one thread, batching those that are due together.
    ``async with InferenceWorker(model) as worker:`` starts and stops it.

    ``clock``: time source for the real-time schedule (:class:`SystemClock` by default).
    ``autotick=False`` makes the thread wait for explicit :meth:`tick` calls (deterministic
    tests of pacing with a :class:`~.clock.ManualClock`). ``num_threads``: torch CPU threads
    of the inference thread (default: those of the thread creating the worker).
    """

    def __init__(
        self,
        model: SDAModel,
        max_batch: int = 64,
        *,
        clock: Clock | None = None,
        autotick: bool = True,
        name: str = "sda-inference",
        num_threads: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model
        self.config = model.config
        self.max_batch = int(max_batch)
        self.clock = clock or SystemClock()
        self.autotick = autotick
        self.name = name
        #: torch intra-op threads of the inference thread (default: the creating thread's;
        #: OpenMP settings are per thread, and results are only bit-identical across runs
        #: that use the same count)
        self.num_threads = int(num_threads or torch.get_num_threads())
        self.steps = 0  # batched engine calls made
        self.errors = 0  # rounds that failed outside any one session (should stay 0)
        self.last_error: BaseException | None = None
        self._sessions: list[AvatarSession] = []
        self._lock = threading.Lock()
        self._jobs: deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: what its sessions may ask of the worker (see .stepping)
        self._link = WorkerLink(wake=self.notify, release=self.forget)

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    async def start(self) -> None:
        """Start the inference thread (idempotent)."""
        if self.running:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    async def __aenter__(self) -> "InferenceWorker":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def stop(self, timeout: float = 5.0) -> None:
        """Close every session and stop the thread, waiting at most ``timeout`` seconds."""
        with self._lock:
            sessions = list(self._sessions)
        for s in sessions:
            await s.close()
        thread = self._thread
        self._stopping = True
        self._wake.set()
        if thread is None:
            return
        await asyncio.to_thread(thread.join, timeout)  # joined in a thread, never on the loop
        if thread.is_alive():
            raise TimeoutError(f"inference thread did not stop within {timeout} s (a step is still running)")
        self._thread = None
        self._fail_jobs()

    @property
    def sessions(self) -> list[AvatarSession]:
        with self._lock:
            return list(self._sessions)

    # ---- sessions -----------------------------------------------------------------------------
    async def prepare_photo(
        self, image: Any, *, face: int = 0, size: int | None = None, max_side: int = 1280
    ) -> tuple["PhotoRenderer", torch.Tensor]:
        """(renderer, still) for a session that shows the whole photo ``image`` with face
        ``face`` (0 = largest) moving, long side ``size`` (default the photo's, at most
        ``max_side``: a smaller photo is never enlarged then). Detection and the lips'
        calibration run off the event loop; the model's rest pose on the inference thread."""
        from ..photo.setup import calibrate, renderer_for, rig_and_still

        rig, still = await asyncio.to_thread(rig_and_still, image, self.config, face=face, size=size,
                                             max_side=max_side)
        renderer = await self.submit(lambda: renderer_for(self.model, rig, still, calibrated=False))
        return await asyncio.to_thread(calibrate, renderer), still

    async def open_session(
        self,
        still: torch.Tensor | IdentityContext,
        seed: int | None = None,
        lookahead_ms: float | None = None,
        realtime: bool = True,
        *,
        options: SessionOptions | None = None,
        **more: "Unpack[SessionMoreArgs]",
    ) -> AvatarSession:
        """A new session for an aligned still ``(1, 3, H, W)`` in [-1, 1] (or its identity).

        The session's options are :class:`~.options.SessionOptions` (``options``) or its
        fields as keywords (``seed``, ``lookahead_ms``, ``realtime``, ``grace_ms``,
        ``max_backlog_ms``, ``buffer_s``, ``catchup_frames``, ``resample_quality``,
        ``renderer``; for the whole photo, the renderer and still from :meth:`prepare_photo`);
        they are checked before anything runs (:class:`~.options.StreamOptionError`).
        """
        args: dict[str, Any] = dict(more)
        if seed is not None:
            args["seed"] = seed
        if lookahead_ms is not None:
            args["lookahead_ms"] = lookahead_ms
        if realtime is not True:
            args["realtime"] = realtime
        opts = options or SessionOptions()
        if args:
            opts = dataclasses.replace(opts, **args)
        opts.lookahead_samples(self.config)  # a bad look-ahead fails here, not on the thread
        if isinstance(still, IdentityContext):
            identity = still

            def identity_job() -> IdentityContext:
                return identity
        else:
            h, w = self.config.img_size
            if not isinstance(still, torch.Tensor) or still.dim() != 4 or tuple(still.shape) != (1, 3, h, w):
                shape = tuple(still.shape) if isinstance(still, torch.Tensor) else type(still).__name__
                raise ImageDecodeError(
                    f"the still image must be a (1, 3, {h}, {w}) float tensor in [-1, 1] (an aligned face, "
                    f"e.g. from realtime_sda.media.image.to_model_input), got {shape}"
                )
            image = still

            def identity_job() -> IdentityContext:
                return self.model.encode_still(image)
        identity = await self.submit(identity_job)

        def make() -> AvatarSession:
            session = AvatarSession(
                self.config, StreamState(identity), opts, clock=self.clock, link=self._link,
            )
            with self._lock:
                self._sessions.append(session)
            return session

        return await self.submit(make)

    def forget(self, session: SteppedSession) -> None:
        """Drop a session from the schedule (thread-safe, idempotent)."""
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)

    def notify(self) -> None:
        """Wake the thread (new audio arrived)."""
        self._wake.set()

    # ---- jobs on the inference thread ---------------------------------------------------------
    async def submit(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the inference thread and await its result."""
        if not self.running:
            raise WorkerNotRunningError("the inference worker is not running: call 'await worker.start()' first")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if len(self._jobs) >= MAX_PENDING_JOBS:  # bounded: refuse rather than queue forever
                raise WorkerBusyError(
                    f"the inference worker has {len(self._jobs)} requests waiting; retry later or use fewer sessions"
                )
            self._jobs.append((fn, fut))
        self._wake.set()
        return await asyncio.wrap_future(fut)

    async def tick(self) -> int:
        """Run one scheduling round now, on the inference thread; returns sessions stepped."""
        return await self.submit(lambda: self._round(self.clock.now()))

    def _fail_jobs(self) -> None:
        with self._lock:
            jobs, self._jobs = list(self._jobs), deque()
        for _, fut in jobs:
            if not fut.done():
                fut.set_exception(WorkerNotRunningError("the inference worker stopped before this job ran"))

    def _run_jobs(self) -> int:
        n = 0
        while True:
            with self._lock:
                if not self._jobs:
                    return n
                fn, fut = self._jobs.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # delivered to the awaiting coroutine
                fut.set_exception(exc)
            n += 1

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        torch.set_num_threads(self.num_threads)
        while not self._stopping:
            self._wake.clear()
            try:
                busy = self._run_jobs()
                if self.autotick:
                    busy += self._round(self.clock.now())
                if busy or self._stopping:
                    continue
                self._wake.wait(self._idle_timeout())
            except Exception as exc:  # never let one bad round end the thread serving everyone
                self.errors += 1
                self.last_error = exc
                self._wake.wait(0.01)
        self._fail_jobs()

    def _idle_timeout(self) -> float:
        if not self.autotick or not self.clock.is_real:
            return 0.05
        now = self.clock.now()
        wakeups = [t for s in self.sessions if (t := s.next_wakeup(now)) is not None]
        if not wakeups:
            return 0.05
        return min(max(min(wakeups) - now, 0.0005), 0.05)

    # ---- one round ----------------------------------------------------------------------------
    def _round(self, now: float) -> int:
        due = []
        for s in self.sessions:
            try:
                if s.poll(now):
                    due.append(s)
            except Exception as exc:  # a broken session must not stop the others
                s.fail(exc)
        for start in range(0, len(due), self.max_batch):
            self._step(due[start : start + self.max_batch])
        return len(due)

    def _step(self, batch: Sequence[SteppedSession]) -> None:
        items: list[tuple[SteppedSession, StepInput]] = []
        for s in batch:
            try:
                items.append((s, s.take()))
            except Exception as exc:
                s.fail(exc)
        if not items:
            return
        try:
            self._forward(items)
        except Exception as exc:
            if len(items) == 1:
                items[0][0].fail(exc)
                return
            for item in items:  # isolate the culprit
                try:
                    self._forward([item])
                except Exception as exc1:
                    item[0].fail(exc1)

    def _forward(self, items: list[tuple[SteppedSession, StepInput]]) -> None:
        states = [s.state for s, _ in items]
        if any(st is None for st in states):
            live = [it for it, st in zip(items, states) if st is not None]
            if len(live) < len(items):
                if live:
                    self._forward(live)
                return
        windows = torch.from_numpy(np.stack([step.window for _, step in items]))[:, None]
        noise = torch.stack([step.noise for _, step in items])  # (B, 1, aux)
        state = states[0] if len(states) == 1 else StreamState.stack(states)  # type: ignore[arg-type]
        frames, new_state = self.model.forward_chunk(state, windows, noise)  # type: ignore[arg-type]
        self.steps += 1
        images = frames_to_uint8(frames[:, 0].permute(0, 2, 3, 1))
        ready = self.clock.now()
        for k, (s, step) in enumerate(items):
            own = new_state if len(items) == 1 else new_state.select(k)
            old = s.state
            own = StreamState(old.identity if old is not None else own.identity, own.content_h, own.noise_h)
            try:
                s.deliver(step, np.ascontiguousarray(images[k]), own, ready)
            except Exception as exc:  # its renderer broke: only it fails (the batch is not
                s.fail(exc)  # stepped again, which would give the others a frame twice)
