"""What the framework adapters share, with no framework imported: a session's frames at
another size, frame rate and sample rate, and which frames belong to a speech segment.

- :class:`FrameFormat`: the picture resized to the framework's size (RGB or RGBA bytes), each
  frame's own audio period resampled to its rate and channel count (int16 interleaved), and
  how many output frames each model frame stands for at its frame rate.
- :class:`Segments`: the speech segments on the session's master clock (samples). A frame is
  *audible* while it overlaps a segment: only then does an adapter send its sound, so an idle
  face sends pictures only (as the frameworks expect between utterances), and a segment's end
  is reported once the frame that reaches it was made.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

__all__ = ["FrameFormat", "Segments"]


class FrameFormat:
    """A session's frames as a framework wants them: ``width`` x ``height`` pictures at
    ``fps``, sound at ``sample_rate`` Hz with ``channels`` channels. ``None`` keeps the
    session's own size and the model's frame rate."""

    def __init__(self, session: Any, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, sample_rate: int = 24000, channels: int = 1) -> None:
        cfg = session.config
        h, w = session.frame_size
        self.width, self.height = int(width or w), int(height or h)
        self.fps = float(fps or cfg.video_rate)
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        if self.width < 2 or self.height < 2 or not 1 <= self.fps <= 120:
            raise ValueError(f"the avatar's video must be at least 2x2 pixels at 1-120 frames/s, "
                             f"got {self.width}x{self.height} at {self.fps:g}")
        if not (8000 <= self.sample_rate <= 192000 and 1 <= self.channels <= 2):
            raise ValueError(f"the avatar's audio must be 8000-192000 Hz, 1 or 2 channels, "
                             f"got {self.sample_rate} Hz, {self.channels} channels")
        self.video_rate = float(cfg.video_rate)

    def image(self, frame: Any, alpha: bool = False) -> np.ndarray:
        """The frame's picture at the output size, (H, W, 3) RGB or (H, W, 4) RGBA uint8."""
        img = np.asarray(frame.image)
        if img.shape[:2] != (self.height, self.width):
            import cv2

            shrink = img.shape[0] > self.height
            img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if alpha:
            img = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
        return np.ascontiguousarray(img)

    def repeats(self, index: int) -> int:
        """Output frames that model frame ``index`` stands for (1 when the rates match)."""
        if self.fps == self.video_rate:
            return 1
        ratio = self.fps / self.video_rate
        return math.floor((index + 1) * ratio + 1e-9) - math.floor(index * ratio + 1e-9)

    def audio(self, frame: Any) -> np.ndarray:
        """The frame's own audio period at the output rate: int16, interleaved channels."""
        import soxr

        from ..media.audio import to_int16

        rate, out = int(frame.audio_rate), self.sample_rate
        n = round(len(frame.audio) * out / rate)
        pad = int(frame.audio_pad)
        if rate == out:
            pcm = np.asarray(frame.audio, np.float32)
        elif frame.audio_padded is not None and (pad * out) % rate == 0:
            # the frame with its neighbours from its window: no streaming filter holds back any of it
            res = soxr.resample(np.asarray(frame.audio_padded, np.float32), rate, out, quality="HQ")
            lo = pad * out // rate
            pcm = res[lo : lo + n]
        else:
            pcm = soxr.resample(np.asarray(frame.audio, np.float32), rate, out, quality="HQ")
        if len(pcm) != n:
            pcm = np.resize(pcm, n) if len(pcm) else np.zeros(n, np.float32)
        pcm16 = to_int16(pcm).reshape(-1)
        return np.repeat(pcm16, self.channels) if self.channels > 1 else pcm16


class Segments:
    """Speech segments on the master clock (model-rate samples); event-loop thread only."""

    def __init__(self, max_segments: int = 256) -> None:
        # [start, end]; end None while the segment is open. Bounded: the oldest goes first
        self._segs: deque[list[int | None]] = deque(maxlen=max_segments)

    @property
    def open(self) -> bool:
        return bool(self._segs) and self._segs[-1][1] is None

    def begin(self, position: int) -> None:
        """Audio of a segment is about to be pushed at ``position`` (opens one if none is)."""
        if not self.open:
            self._segs.append([position, None])

    def end(self, position: int) -> None:
        """The open segment ends at ``position`` (an empty one if none was open)."""
        if self.open:
            self._segs[-1][1] = max(position, self._segs[-1][0] or 0)
        else:
            self._segs.append([position, position])

    def clear(self) -> int:
        """Forget every segment (an interrupt: none of them ends normally)."""
        n = len(self._segs)
        self._segs.clear()
        return n

    def step(self, start: int, stop: int) -> tuple[bool, int]:
        """For the frame covering master samples ``[start, stop)``: (audible, segments that
        ended with it). Ended segments are forgotten."""
        audible = any(s < stop and (e is None or e > start) for s, e in self._segs)  # type: ignore[operator]
        ended = 0
        while self._segs and self._segs[0][1] is not None and self._segs[0][1] <= stop:
            self._segs.popleft()
            ended += 1
        return audible, ended
