"""``AvatarSession``: one live talking face (its audio stream, state, noise and subscribers).

Audio goes in through :meth:`AvatarSession.push_audio` (any thread, never blocks): it is
converted to float32 mono at the model rate by a streaming resampler (soxr HQ, the offline
path's; for live sources a causal FIR that holds back 3 ms, not 13-34) and written into an
:class:`~.ringbuffer.AudioRingBuffer`. The :class:`~.worker.InferenceWorker` thread takes each
ready window, steps the session (batched with the others) and hands the frame to every
subscriber's bounded drop-oldest queue. The session and the worker meet only through
:mod:`.stepping` (the session is a ``SteppedSession``; the worker is two callables to it).

Master clock: the count of model-rate samples in the session's stream (the audio pushed,
plus silence filled in, less audio dropped as backlog). Frame ``i`` covers samples
``[i*stride, (i+1)*stride)`` and has ``pts = i*stride`` (time base 1/rate); indices a
catch-up skipped are never made.

Latency floor: frame ``i`` needs audio up to ``(i+1)*stride + lookahead``; the model's own
look-ahead is ``config.lookahead_samples`` (GRID: 4000 samples, 80 ms). ``lookahead_ms`` may
lower it to trade quality for latency: audio later than that point is treated as silence
(always, so results never depend on timing).

Real-time mode (``realtime=True``) follows a schedule (:mod:`.schedule`) anchored when the session opens (or
at the first audio, if that comes before any frame was made): frame ``i`` is due at
``t0 + ((i+1)*stride + lookahead) / rate``. Before any audio the face idles on silence. A live
source's schedule then moves earlier whenever audio arrives less delayed than ever before
(outside a stall), so frames never wait for a schedule set by a late first packet.

- Pacing: a ready frame is not emitted before it is due (pushed-ahead audio plays at 1x).
- Stall: when a frame's audio is overdue by more than ``grace_ms``, the missing samples are
  filled with silence, so frames keep coming at the video rate. Live sources (those with a
  ``max_backlog_ms``) then stay on the wall clock (:mod:`.livewall`: resumed audio placed at
  its time, late audio that silence stood in for dropped, counted as ``skipped_frames``);
  other producers' audio continues the stream after the silence.
- No backlog (live sources): when more than ``max_backlog_ms`` of audio is ready ahead of the
  schedule (e.g. a stalled source delivering its backlog at once), the oldest of it is dropped
  in whole frames (counted as ``skipped_frames``) instead of becoming latency; it leaves the
  timeline, so the following audio keeps its place on the wall clock.
- Queued (program-pushed audio: ``max_backlog_ms=None``, e.g. text-to-speech, files,
  ``/push``): audio pushed ahead of the schedule waits its turn and plays at real time, none
  of it dropped. At most ``max_queued_s`` (60 s) may wait; ``push_audio`` raises
  :class:`AudioQueueFullError` past that (never a silent drop; ``wait_writable`` waits for
  room). The first frame of audio pushed at once is due at once (its look-ahead is there).
- Catch-up: when steps are slower than real time and the next frame is ``catchup_frames``
  (default 2) or more periods behind schedule while newer windows are ready, a live
  session's timeline jumps to the newest frame due now (counted as ``skipped_frames``), so
  ``pts`` stays on the wall clock and a viewer sees a lower frame rate, not a growing delay.
  A queued session skips nothing: its schedule moves later instead (no burst of late frames
  afterwards). ``None`` disables it.

- Interrupt (``interrupt()``): queued audio is dropped and the next frame's window is
  silence, so its sound is silent, and the model's content memory is set back to its latest
  settled silence (:mod:`.idle`), so the mouth is at rest from that frame on; the session
  then idles (``pause_audio()``: silence at once when due, no grace wait, no frozen frame)
  until the next push, which starts at that frame's own period. Text: ``say()`` (:mod:`.say`).

With ``realtime=False`` frames are made as fast as audio arrives (no pacing, silence or drops):
offline-equivalent output for files. Options are validated by :class:`~.options.SessionOptions`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import threading
from collections import deque
from fractions import Fraction
from typing import TYPE_CHECKING, AsyncIterator

import numpy as np
import torch

from ..core.config import SDAConfig
from ..core.noise import NoiseSource
from ..core.state import StreamState
from ..errors import AudioDecodeError, RealtimeSDAError
from .clock import Clock
from .frames import VideoFrame
from .idle import IdleMemory
from .livewall import WallClockKeeper
from .options import SessionOptions, StreamOptionError
from .queues import EndOfStream, FrameQueue
from .resample import StreamResampler
from .ringbuffer import AudioRingBuffer
from .schedule import EPS as _EPS
from .schedule import RealtimeSchedule
from .stats import StreamStats
from .stepping import StepInput, WorkerLink

if TYPE_CHECKING:
    from .say import Speaker, TextToSpeech, Utterance

__all__ = ["AvatarSession", "AudioQueueFullError", "SessionClosedError", "StreamOptionError"]

_ids = itertools.count(1)


class SessionClosedError(RealtimeSDAError, RuntimeError):
    """Audio was pushed to a session that is closed or whose audio has ended."""


class AudioQueueFullError(RealtimeSDAError, BufferError):
    """Program-pushed audio beyond the session's queue bound (``max_queued_s``); nothing of
    the refused push was queued. Push less at once, or ``await session.wait_writable()``."""


class AvatarSession:
    """A live session; create it with :meth:`InferenceWorker.open_session`.

    ``options`` (a :class:`SessionOptions`, or its fields as keywords) tune the real-time
    rules; ``link`` is how it reaches the worker stepping it (:class:`~.stepping.WorkerLink`;
    none: a session stepped by hand). The worker drives it through the
    :class:`~.stepping.SteppedSession` methods (``poll``, ``next_wakeup``, ``take``,
    ``deliver``, ``fail``), on the inference thread only.
    """

    def __init__(
        self,
        config: SDAConfig,
        state: StreamState,
        options: SessionOptions | None = None,
        *,
        clock: Clock,
        link: WorkerLink | None = None,
        **option_args: object,
    ) -> None:
        opts = options or SessionOptions()
        if option_args:
            opts = dataclasses.replace(opts, **option_args)  # type: ignore[arg-type]
        self.id = next(_ids)
        self.config = config
        self.options = opts
        self.clock = clock
        self._link = link or WorkerLink.detached()
        self.realtime = opts.realtime
        self.seed = opts.seed
        rate, stride = config.audio_rate, config.stride
        look = opts.lookahead_samples(config)
        self.lookahead_samples = look
        #: neighbours of each frame's audio passed along with it (10 ms, within the look-ahead)
        self.audio_pad = min(rate // 100, look, config.pad_left)
        self.grace_s = opts.grace_s
        #: how many periods behind schedule the next frame may be before the timeline jumps
        #: (None: never jump; frames then fall behind the wall clock when steps are slow)
        self.catchup_frames = opts.catchup_frames
        #: turns the model's crop into the frame shown (e.g. a PhotoRenderer: the whole photo);
        #: run on the inference thread, after the step, for each frame
        self.renderer = opts.renderer
        self.max_backlog_frames = opts.max_backlog_frames(config)
        self.time_base = Fraction(1, rate)
        self.stats = StreamStats()
        self.state: StreamState | None = state
        self.frames_emitted = 0  # frames made (indices may have gaps after a catch-up)
        self._offset = 0  # windows of audio removed from the timeline (backlog, overflow)
        self._noise_pos = 0  # frame index the noise source is at
        #: live source (pushed in real time): kept on the wall clock after stalls
        self._live = opts.live
        #: program-pushed audio: samples that may wait beyond the next window (None: live)
        self.queue_limit = None if self._live else opts.queue_capacity(config)
        if self.queue_limit is None:
            capacity = max(int(opts.buffer_s * rate), config.audio_feat_samples + 2 * stride)
        else:  # room for the whole queue, the next window and the end padding: never overwritten
            capacity = self.queue_limit + config.audio_feat_samples + config.pad_right + 2 * stride + rate // 10
        self._ring = AudioRingBuffer(
            config.audio_feat_samples, stride, config.pad_left, config.pad_right,
            capacity=capacity, lookahead=look,
        )
        # live audio goes through the causal FIR (a fixed ~3 ms delay; soxr's block filters
        # hold back 13-34 ms, a packet or two); other streams match the offline path exactly
        self._resampler = StreamResampler(rate, opts.resample_quality or ("causal" if self._live else "HQ"))
        self._noise = NoiseSource(config.aux_latent, opts.seed)
        self._lock = threading.Lock()
        # serialises pushes: the resampler runs under it, outside ``_lock``, so a large push
        # never holds up the inference thread
        self._push_lock = threading.Lock()
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=4096)  # (total after write, time)
        self._subscribers: list[FrameQueue[VideoFrame]] = []
        self.schedule = RealtimeSchedule(
            rate=rate, stride=stride, lookahead=look, t0=clock.now(), grace_s=self.grace_s,
            catchup_frames=self.catchup_frames, max_backlog_frames=self.max_backlog_frames,
        )
        # the live schedule moves earlier at most by the backlog (at least one period) at once
        self._keeper = WallClockKeeper(max_lead_s=max(self.max_backlog_frames or 0, 1) * stride / rate)
        self._audio_ended = False
        self.closed = False
        self.finished = False
        self.error: BaseException | None = None
        #: the producer has nothing more to push for now (pause_audio, interrupt): a due frame
        #: whose audio is missing gets silence at once, not after the grace time
        self._paused = False
        self._speaker: Speaker | None = None  # made by say() / speaker()
        self.interrupts = 0
        self._idle = IdleMemory()  # the model's resting state, put back by interrupt()

    @property
    def _t0(self) -> float:
        """Wall time of master sample 0 (the schedule's start)."""
        return self.schedule.t0

    # ---- producer side (any thread) ----------------------------------------------------------
    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the frames: the renderer's (the whole photo) or the model's crop."""
        size = getattr(self.renderer, "size", None)
        return tuple(size) if size is not None else tuple(self.config.img_size)  # type: ignore[return-value]

    @property
    def lookahead_ms(self) -> float:
        return 1000.0 * self.lookahead_samples / self.config.audio_rate

    def push_audio(self, pcm: np.ndarray, rate: int) -> None:
        """Queue PCM samples ((n,) or (n, channels), any int/float dtype) at ``rate`` Hz.

        Never waits for frames (only for another thread's push in progress). A live source's
        late audio follows the wall-clock rules; program-pushed audio is queued whole: a
        clip pushed at once plays at real time. Raises :class:`AudioQueueFullError` when the
        push would take the queue past ``max_queued_s`` (nothing of it is queued),
        :class:`~realtime_sda.errors.AudioDecodeError` for unusable input (the session and
        the worker are unaffected) and :class:`SessionClosedError` once the session is closed
        or its audio has ended.
        """
        if self.closed or self._audio_ended:
            raise SessionClosedError(
                f"session {self.id} is {'closed' if self.closed else 'at end of audio'}; open a new session"
            )
        if not isinstance(pcm, np.ndarray):
            if isinstance(pcm, torch.Tensor):
                pcm = pcm.detach().cpu().numpy()
            else:
                raise AudioDecodeError(f"push_audio needs a numpy array of samples, not {type(pcm).__name__}")
        with self._push_lock:
            if self.queue_limit is not None:
                self._check_room(pcm, rate)
            samples = self._resampler.process(pcm, rate)
            self._push_resampled(samples)

    def use_queued_audio(self) -> None:
        """Make this session's audio program-pushed (queued, none dropped; as if opened with
        ``max_backlog_ms=None``) for an owner that got it opened as a live source, e.g. the
        server's broadcast. Only before any audio was pushed."""
        with self._push_lock, self._lock:
            if self.queue_limit is not None:
                return
            if self._ring.total != self._ring.pad_left or self._audio_ended or self.frames_emitted:
                raise RealtimeSDAError(f"session {self.id} has already started; open it with max_backlog_ms=None")
            opts = dataclasses.replace(self.options, max_backlog_ms=None)
            cfg = self.config
            self.options, self._live = opts, False
            self.max_backlog_frames = self.schedule.max_backlog_frames = None
            self.queue_limit = opts.queue_capacity(cfg)
            capacity = self.queue_limit + cfg.audio_feat_samples + cfg.pad_right + 2 * cfg.stride + cfg.audio_rate // 10
            self._ring = AudioRingBuffer(cfg.audio_feat_samples, cfg.stride, cfg.pad_left, cfg.pad_right,
                                         capacity=capacity, lookahead=self.lookahead_samples)
            self._resampler = StreamResampler(cfg.audio_rate, opts.resample_quality or "HQ")

    def _check_room(self, pcm: np.ndarray, rate: int) -> None:
        """Refuse a push that would take the queue past its bound (before resampling it)."""
        try:
            incoming = int(math.ceil(len(pcm) * self.config.audio_rate / float(rate)))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            return  # the resampler names what is wrong with it
        with self._lock:
            queued = max(self._ring.total - self._ring.needed_total(), 0)
        limit = self.queue_limit or 0
        if queued + incoming > limit:
            rate_m = self.config.audio_rate
            raise AudioQueueFullError(
                f"session {self.id}: {queued / rate_m:.2f} s of audio already queued, {incoming / rate_m:.2f} s "
                f"more would pass the bound of {limit / rate_m:g} s (max_queued_s); push less at once "
                "or await session.wait_writable() first"
            )

    def _push_resampled(self, samples: np.ndarray) -> None:
        with self._lock:
            now = self.clock.now()
            was_ready = self._ring.ready() > 0
            if self._ring.total == self._ring.pad_left and self.frames_emitted == 0 and samples.size:
                # queued audio pushed at once holds its own look-ahead: its first frame is due now
                self.schedule.start_at_first_audio(now, samples.size, queued=not self._live)
            if samples.size:
                self._paused = False
            if self._live and samples.size:
                samples = self._keep_on_wall(samples, now)
            self._write(samples, now)
            if self._live and samples.size:
                self.schedule.t0 = self._keeper.schedule_start(
                    self.schedule.t0, now - self._master_total() / self.config.audio_rate
                )
            # real time: the worker sleeps until the next due time (or due + grace while the
            # window is incomplete); wake it only when this audio completes the next window or
            # a due frame waits for it (one wake-up per frame, not per chunk)
            wake = not self.realtime or now >= self.due_time() - _EPS or (not was_ready and self._ring.ready() > 0)
        if wake:
            self._link.wake()

    def end_audio(self) -> None:
        """No more audio: flush the resampler and the right zero padding, so the remaining
        frames are made; the frame streams end after the last one."""
        if self.closed or self._audio_ended:
            return
        with self._push_lock, self._lock:
            if self._audio_ended:
                return
            for tail in self._resampler.flush():
                self._write(tail, self.clock.now())
            self._audio_ended = True
            self._ring.flush()
            self._arrivals.append((self._ring.total, self.clock.now()))
        self._link.wake()

    def _write(self, samples: np.ndarray, now: float) -> None:
        if samples.size:
            dropped = self._ring.write(samples)
            self._arrivals.append((self._ring.total, now))
            if dropped:  # overwritten unread audio leaves the timeline
                self._offset += dropped
                self.stats.add(overflow_frames=dropped)

    def _master_total(self) -> int:
        """Samples of the master timeline so far (audio and silence, less what was dropped)."""
        return self._ring.total - self._ring.pad_left - self._offset * self.config.stride

    def _keep_on_wall(self, samples: np.ndarray, now: float) -> np.ndarray:
        """Live sources after a stall (lock held): write the gap the keeper asks for and
        return the part of ``samples`` to write (see :mod:`.livewall`)."""
        stride, before = self.config.stride, self._keeper.dropped
        gap, drop = self._keeper.admit(
            samples.size, self._master_total(), self.schedule.samples_due(now),
            self._ring.capacity - self._ring.feat,
        )
        if gap:
            self._write(np.zeros(gap, np.float32), now)
        if drop:
            self.stats.add(skipped_frames=self._keeper.dropped // stride - before // stride)
        return samples[drop:]

    def buffered_seconds(self) -> float:
        """Audio waiting beyond what the next frame needs (what a fast producer should bound)."""
        with self._lock:
            extra = self._ring.total - self._ring.needed_total()
        return max(extra, 0) / self.config.audio_rate

    async def wait_writable(self, max_buffered_s: float = 0.5) -> None:
        """Back-pressure for producers faster than real time: wait until at most
        ``max_buffered_s`` of audio waits to be shown (e.g. before pushing the next sentence,
        so the queue stays within ``max_queued_s``). Woken by each frame made (each consumes
        audio), never by polling; returns at once when the session ends."""
        if self.closed or self.buffered_seconds() <= max_buffered_s:
            return
        q = self.subscribe(maxsize=1, counted=False)
        try:
            while not self.closed and self.buffered_seconds() > max_buffered_s:
                try:
                    await q.get()
                except Exception:  # the session ended (its error reaches the pusher on push)
                    return
        finally:
            self.unsubscribe(q)

    # ---- speech and interruption (the text side lives in .say) -------------------------------
    @property
    def audio_end(self) -> int:
        """Master sample where the audio pushed so far ends: the frame whose ``pts`` reaches
        it shows what comes after (e.g. the end of a sentence, for segment-end reports)."""
        with self._lock:
            return self._master_total()

    def pause_audio(self) -> None:
        """The producer has nothing more to push for now: once the queued audio has been
        shown, silence stands in at once (not after ``grace_ms``), so the idle face keeps
        its frame rate with no frozen frame. The next push ends the pause. What the
        resampler still holds of the last push is written first (it belongs to that audio)."""
        with self._push_lock, self._lock:
            now = self.clock.now()
            if not self._audio_ended and not self.closed:
                for tail in self._resampler.flush():
                    self._write(tail, now)
            self._paused = True
        self._link.wake()

    def interrupt(self) -> float:
        """Stop speaking now (any thread): audio queued beyond the next frame is dropped,
        the next frame hears silence and its sound is silence, and the model's memory of
        the speech is set back to rest (:mod:`.idle`: the mouth closes at that frame, once
        the session has idled before); pending ``say`` texts are dropped too. Returns the
        seconds dropped."""
        if self._speaker is not None:
            self._speaker.drop_pending()
        with self._push_lock, self._lock:
            if self.closed:
                return 0.0
            ring, now = self._ring, self.clock.now()
            dropped = ring.drop_unread()
            if not ring.ended:
                # the next window's left context is silence too; new audio then starts at the
                # next frame's own period (nothing of it lost in the overlap)
                ring.write_silence(ring.pad_left)
                dropped -= ring.pad_left
            self._arrivals.clear()
            self._arrivals.append((ring.total, now))
            cfg = self.config
            self._resampler = StreamResampler(cfg.audio_rate, self._resampler.quality)
            self._paused = True
            self._idle.arm()  # the mouth returns to rest at the next frame, not over ten
            self.interrupts += 1
        self._link.wake()
        return max(dropped, 0) / self.config.audio_rate

    def speaker(self, tts: "TextToSpeech | None" = None) -> "Speaker":
        """This session's :class:`~.say.Speaker` (made at the first call; ``tts`` replaces
        its engine, espeak-ng by default)."""
        if self._speaker is None:
            from .say import Speaker

            self._speaker = Speaker(self, tts)
        elif tts is not None:
            self._speaker.tts = tts
        return self._speaker

    def say(self, text: str, voice: str | None = None) -> "Utterance":
        """Speak ``text`` (on the event loop): synthesised sentence by sentence by the local
        TTS and queued as it comes, so the first words play before the last are made.
        Returns its :class:`~.say.Utterance` (await ``utterance.queued()`` / ``spoken()``)."""
        return self.speaker().say(text, voice=voice)

    # ---- consumer side -----------------------------------------------------------------------
    def subscribe(self, maxsize: int = 2, counted: bool = True) -> FrameQueue[VideoFrame]:
        """A new bounded queue receiving every later frame (drop-oldest when full). Frames it
        drops count in ``stats.dropped_frames`` unless ``counted`` is False (an internal
        watcher, e.g. :meth:`wait_writable`, whose skipped frames nobody misses)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None

        def dropped(n: int) -> None:
            self.stats.add(dropped_frames=n)

        q: FrameQueue[VideoFrame] = FrameQueue(maxsize, loop, on_drop=dropped if counted else None)
        with self._lock:
            if self.finished or self.closed:
                q.close(self.error)
            else:
                self._subscribers.append(q)
        return q

    def unsubscribe(self, q: FrameQueue[VideoFrame]) -> None:
        with self._lock:
            if q in self._subscribers:
                self._subscribers.remove(q)
        q.close()

    async def frames(self, maxsize: int = 2) -> AsyncIterator[VideoFrame]:
        """Iterate over the frames as they are made (ends after the last one, or on close)."""
        q = self.subscribe(maxsize)
        try:
            while True:
                try:
                    yield await q.get()
                except EndOfStream:
                    return
        finally:
            self.unsubscribe(q)

    async def close(self) -> None:
        """Stop the session: the worker forgets it, its state is freed, streams end."""
        self._close(None)
        if self._speaker is not None:
            await self._speaker.close()
        self._link.release(self)

    def _close(self, error: BaseException | None) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.error = error
            subs, self._subscribers = self._subscribers, []
            self.state = None
        for q in subs:
            q.close(error)

    # ---- the schedule ------------------------------------------------------------------------
    @property
    def next_index(self) -> int:
        """Index of the next frame: the master clock position of the next window, in frames."""
        return self._ring.read_pos // self.config.stride - self._offset

    def due_time(self, index: int | None = None) -> float:
        """Wall time at which frame ``index`` (default: the next) is due in real-time mode."""
        return self.schedule.due_time(self.next_index if index is None else index)

    def _wall_index(self, now: float) -> int:
        """The last frame index due at ``now``."""
        return self.schedule.wall_index(now)

    # ---- SteppedSession: the worker's side (inference thread only; see .stepping) -------------
    def poll(self, now: float) -> bool:
        """Apply the real-time policy; True when the next frame should be made now."""
        if self.closed:
            return False
        with self._lock:
            ring = self._ring
            if not self.realtime:
                ready = ring.ready() > 0
            else:
                sched, i = self.schedule, self.next_index
                if not sched.is_due(i, now):
                    return False
                if ring.ready() == 0 and not ring.ended and (self._paused or sched.is_stalled(i, now)):
                    missing = ring.missing()
                    ring.write_silence(missing)
                    self._arrivals.append((ring.total, now))
                    self._keeper.filled(missing)
                    self.stats.add(silence_frames=1)
                n = ring.ready()
                if not self._live:
                    # queued audio is never skipped: when steps fell behind, the schedule
                    # moves later so the next frame is due now (no burst of late frames)
                    sched.reanchor_if_behind(i, n, now)
                elif skip := sched.catchup(i, n, now):
                    # behind schedule (steps slower than real time): jump the timeline to the
                    # frame due now, skipping the frames in between (pts stay on wall time)
                    jumped = ring.skip(skip)
                    self.stats.add(skipped_frames=jumped)
                    i, n = i + jumped, n - jumped
                if drop := sched.backlog(i, n, now):
                    # audio ahead of schedule (a late burst): drop the oldest of it, keeping
                    # the timeline, so it does not turn into latency
                    dropped = ring.skip(drop)
                    self._offset += dropped
                    self.stats.add(skipped_frames=dropped)
                ready = ring.ready() > 0
            if not ready and ring.ended:
                self._finish_locked()
            return ready

    def _finish_locked(self) -> None:
        self.finished = True
        subs, self._subscribers = self._subscribers, []
        for q in subs:
            q.close()
        self._link.release(self)

    def next_wakeup(self, now: float) -> float | None:
        """When the worker should look at this session again without being notified."""
        if self.closed or self.finished or not self.realtime:
            return None
        i = self.next_index
        with self._lock:
            waiting = self._ring.ready() == 0 and not self._ring.ended and not self._paused
        return self.schedule.next_wakeup(i, waiting)

    def take(self) -> StepInput:
        """The next frame's index, window, noise (1, aux) and the arrival time of the window's
        last needed sample."""
        with self._lock:
            index = self.next_index
            need = self._ring.needed_total()
            window = self._ring.read()
            arrivals = self._arrivals
            while len(arrivals) > 1 and arrivals[0][0] < need:
                arrivals.popleft()
            arrival = arrivals[0][1] if arrivals else self.clock.now()
            if self._idle.armed:
                self.state = self._idle.restore(self.state)
        if index > self._noise_pos:  # frames skipped by a catch-up keep their noise unused
            self._noise.next(index - self._noise_pos)
        self._noise_pos = index + 1
        return StepInput(index, window, self._noise.next(1), arrival)

    def deliver(self, step: StepInput, image: np.ndarray, state: StreamState, ready: float) -> None:
        """Hand the frame made from ``step`` to every subscriber; ``state`` is the session's
        state after it."""
        cfg = self.config
        i, window = step.index, step.window
        if self.renderer is not None:
            image = self.renderer(image)
        frame = VideoFrame(
            index=i,
            pts=i * cfg.stride,
            time_base=self.time_base,
            image=image,
            audio=window[cfg.pad_left : cfg.pad_left + cfg.stride].copy(),
            audio_rate=cfg.audio_rate,
            latency_s=max(ready - step.arrival, 0.0),
            audio_padded=window[cfg.pad_left - pad : cfg.pad_left + cfg.stride + pad].copy() if (pad := self.audio_pad) else None,
            audio_pad=pad,
        )
        with self._lock:
            if self.closed:
                return
            self.state = state
            self._idle.observe(window, state)
            self.frames_emitted += 1
            subs = list(self._subscribers)
        self.stats.frame(ready, frame.latency_s)
        for q in subs:
            q.put(frame)

    def fail(self, error: BaseException) -> None:
        """Close this session with ``error`` (its consumers see it); others go on."""
        self._close(error)
        self._link.release(self)
