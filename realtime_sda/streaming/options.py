"""A session's options, validated once: :class:`SessionOptions`.

``InferenceWorker.open_session(still, **options)`` takes the same names as keywords
(:class:`SessionOptionArgs` types them); :class:`~.session.AvatarSession` keeps the
validated dataclass as ``session.options``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, TypedDict

import numpy as np

from ..core.config import SDAConfig
from ..errors import RealtimeSDAError
from .resample import QUALITIES

__all__ = ["SessionOptions", "SessionOptionArgs", "SessionMoreArgs", "StreamOptionError"]


class StreamOptionError(RealtimeSDAError, ValueError):
    """A session option (look-ahead, grace, backlog, buffer size) is out of range."""


@dataclass(frozen=True)
class SessionOptions:
    """How one session runs (see :mod:`.session` for the real-time rules they tune).

    Every value is checked here (:class:`StreamOptionError`), except ``lookahead_ms``, whose
    bound is the model's own look-ahead (:meth:`lookahead_samples`).
    """

    #: noise seed (None: random)
    seed: int | None = None
    #: look-ahead in ms, at most the model's own (None: the model's); later audio is silence
    lookahead_ms: float | None = None
    #: follow the wall clock (pacing, stalls, backlog, catch-up); False: as fast as audio comes
    realtime: bool = True
    #: how long a due frame waits for its audio before silence stands in for it
    grace_ms: float = 100.0
    #: a live source (microphone, browser): audio ready ahead of the schedule beyond this is
    #: dropped. None: program-pushed audio (text-to-speech, files, ``/push``), queued and
    #: played at real time, none dropped (bounded by ``max_queued_s``)
    max_backlog_ms: float | None = 120.0
    #: live sources: ring buffer capacity in seconds (overwrite-oldest beyond it)
    buffer_s: float = 10.0
    #: program-pushed audio: at most this many seconds wait to be shown; ``push_audio`` raises
    #: :class:`~.session.AudioQueueFullError` beyond it (``wait_writable`` waits for room)
    max_queued_s: float = 60.0
    #: periods behind schedule before the timeline jumps to the frame due now (None: never)
    catchup_frames: int | None = 2
    #: the streaming resampler's quality (None: "causal" for live sources, else "HQ")
    resample_quality: str | None = None
    #: turns the model's crop into the frame shown (e.g. a PhotoRenderer: the whole photo);
    #: run on the inference thread, after the step, for each frame
    renderer: Callable[[np.ndarray], np.ndarray] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "realtime", bool(self.realtime))
        if self.catchup_frames is not None and self.catchup_frames < 1:
            raise StreamOptionError(f"catchup_frames must be at least 1 (or None), got {self.catchup_frames}")
        if self.grace_ms < 0 or self.buffer_s <= 0 or (self.max_backlog_ms is not None and self.max_backlog_ms < 0):
            raise StreamOptionError(
                f"grace_ms ({self.grace_ms}) and max_backlog_ms ({self.max_backlog_ms}) must be >= 0 and "
                f"buffer_s ({self.buffer_s}) > 0"
            )
        if not (self.max_queued_s > 0 and math.isfinite(self.max_queued_s)):
            raise StreamOptionError(f"max_queued_s must be a positive number of seconds, got {self.max_queued_s}")
        if self.resample_quality is not None and self.resample_quality not in QUALITIES:
            raise StreamOptionError(
                f"resample_quality must be one of {', '.join(QUALITIES)}, got {self.resample_quality!r}"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def lookahead_samples(self, config: SDAConfig) -> int:
        """The look-ahead in model-rate samples (checked against the model's own)."""
        rate, floor = config.audio_rate, config.lookahead_samples
        look = floor if self.lookahead_ms is None else int(round(float(self.lookahead_ms) * rate / 1000.0))
        if not 0 <= look <= floor:
            raise StreamOptionError(
                f"lookahead_ms must be between 0 and the model's own look-ahead "
                f"{1000.0 * floor / rate:g} ms, got {self.lookahead_ms}"
            )
        return look

    def max_backlog_frames(self, config: SDAConfig) -> int | None:
        if self.max_backlog_ms is None:
            return None
        return max(0, math.ceil(float(self.max_backlog_ms) * config.audio_rate / 1000.0 / config.stride))

    @property
    def grace_s(self) -> float:
        return max(float(self.grace_ms), 0.0) / 1000.0

    @property
    def live(self) -> bool:
        """A live source (pushed in real time): kept on the wall clock after stalls, late
        audio dropped. Otherwise the audio is program-pushed: queued, none dropped."""
        return self.realtime and self.max_backlog_ms is not None

    def queue_capacity(self, config: SDAConfig) -> int:
        """Model-rate samples of program-pushed audio that may wait beyond the next window."""
        return int(math.ceil(float(self.max_queued_s) * config.audio_rate))


class SessionMoreArgs(TypedDict, total=False):
    """The keywords of ``open_session(still, seed, lookahead_ms, realtime, **more)``: the
    fields of :class:`SessionOptions` that are not its named parameters."""

    grace_ms: float
    max_backlog_ms: float | None
    buffer_s: float
    max_queued_s: float
    catchup_frames: int | None
    resample_quality: str | None
    renderer: Callable[[np.ndarray], np.ndarray] | None


class SessionOptionArgs(SessionMoreArgs, total=False):
    """All of :class:`SessionOptions`' fields as keywords (a test checks that the two list
    the same names)."""

    seed: int | None
    lookahead_ms: float | None
    realtime: bool
