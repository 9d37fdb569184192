"""Audio ring buffer that cuts a live stream into the model's overlapping windows.

Coordinates are those of the *padded* signal of the offline cut: the buffer starts with
``config.pad_left`` zeros, so window ``k`` is ``padded[k*stride : k*stride + feat]`` exactly as
offline, sample for sample. :meth:`AudioRingBuffer.flush` appends the ``pad_right`` zeros of the
offline cut, after which exactly ``config.num_frames(n)`` windows have been produced for ``n``
input samples.

Capacity policy: the buffer holds ``capacity`` samples. A write that would overwrite audio the
next window still needs drops the oldest unread audio in whole strides (those windows are never
produced) and counts it in :attr:`overflow_samples` / :attr:`overflow_windows`. The copy loops
are numba kernels (``cache=True``), so a write or a read costs a few microseconds.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["AudioRingBuffer"]

# meta layout (int64): total samples written, start of the next window, overflow samples
_TOTAL, _READ, _OVER = 0, 1, 2


@njit(cache=True, nogil=True)
def _commit(meta: np.ndarray, n: int, cap: int, stride: int) -> int:
    """Count ``n`` new samples; when unread audio was overwritten, skip the reader forward in
    whole windows (drop-oldest) and count the overflow. Returns the windows dropped."""
    new_total = meta[_TOTAL] + n
    dropped = 0
    oldest = new_total - cap  # first sample still held
    if meta[_READ] < oldest:
        dropped = (oldest - meta[_READ] + stride - 1) // stride
        meta[_OVER] += dropped * stride
        meta[_READ] += dropped * stride
    meta[_TOTAL] = new_total
    return dropped


@njit(cache=True, nogil=True)
def _write(buf: np.ndarray, meta: np.ndarray, x: np.ndarray, stride: int) -> int:
    """Append ``x``; returns how many windows were dropped to make room."""
    cap = buf.shape[0]
    n = x.shape[0]
    total = meta[_TOTAL]
    start = 0
    if n > cap:  # only the last `cap` samples can survive
        start = n - cap
    pos = (total + start) % cap
    for j in range(start, n):
        buf[pos] = x[j]
        pos += 1
        if pos == cap:
            pos = 0
    return _commit(meta, n, cap, stride)


@njit(cache=True, nogil=True)
def _write_zeros(buf: np.ndarray, meta: np.ndarray, n: int, stride: int) -> int:
    cap = buf.shape[0]
    total = meta[_TOTAL]
    m = min(n, cap)
    pos = (total + n - m) % cap
    for _ in range(m):
        buf[pos] = 0.0
        pos += 1
        if pos == cap:
            pos = 0
    return _commit(meta, n, cap, stride)


@njit(cache=True, nogil=True)
def _read(buf: np.ndarray, start: int, valid: int, out: np.ndarray) -> None:
    """out[:valid] = samples from ``start``; out[valid:] = 0."""
    cap = buf.shape[0]
    pos = start % cap
    for j in range(valid):
        out[j] = buf[pos]
        pos += 1
        if pos == cap:
            pos = 0
    for j in range(valid, out.shape[0]):
        out[j] = 0.0


class AudioRingBuffer:
    """Bounded single-channel float32 buffer yielding a ``feat``-sample window every ``stride``.

    ``lookahead`` (samples past the end of a window's own frame, at most ``pad_right``) trades
    quality for latency: a window is ready once audio up to ``(k+1)*stride + lookahead`` of the
    signal is in, and the part of the window beyond that point is always zero (so results do
    not depend on timing). Not thread-safe: the session guards it with a lock.
    """

    def __init__(
        self,
        feat: int,
        stride: int,
        pad_left: int,
        pad_right: int,
        capacity: int | None = None,
        lookahead: int | None = None,
    ) -> None:
        if stride <= 0 or feat < stride or pad_left < 0 or pad_right < 0:
            raise ValueError(f"invalid window geometry feat={feat} stride={stride} pads={pad_left},{pad_right}")
        self.feat, self.stride = int(feat), int(stride)
        self.pad_left, self.pad_right = int(pad_left), int(pad_right)
        self.lookahead = self.pad_right if lookahead is None else int(lookahead)
        if not 0 <= self.lookahead <= self.pad_right:
            raise ValueError(f"lookahead must be within [0, {self.pad_right}] samples, got {self.lookahead}")
        cap = int(capacity) if capacity is not None else 8 * self.feat
        if cap < self.feat + self.stride:
            raise ValueError(f"capacity {cap} must hold at least one window plus a stride ({self.feat + self.stride})")
        self.capacity = cap
        self._buf = np.zeros(cap, dtype=np.float32)
        self._meta = np.zeros(3, dtype=np.int64)
        self.windows_read = 0
        self.overflow_windows = 0
        self.ended = False
        _write_zeros(self._buf, self._meta, self.pad_left, self.stride)

    # ---- positions (padded coordinates) ----------------------------------------------------
    @property
    def total(self) -> int:
        """Samples written so far, including the left padding."""
        return int(self._meta[_TOTAL])

    @property
    def read_pos(self) -> int:
        """Padded position of the next window's first sample."""
        return int(self._meta[_READ])

    @property
    def overflow_samples(self) -> int:
        return int(self._meta[_OVER])

    @property
    def valid(self) -> int:
        """Samples of a window taken from the stream (the rest is zero-filled look-ahead)."""
        return self.feat - (self.pad_right - self.lookahead)

    def needed_total(self) -> int:
        """``total`` at which the next window becomes ready."""
        return self.read_pos + (self.feat if self.ended else self.valid)

    def missing(self) -> int:
        """Samples still to come before the next window is ready (0 when it is)."""
        return max(self.needed_total() - self.total, 0)

    def ready(self) -> int:
        """How many windows can be read now."""
        end = self.feat if self.ended else self.valid
        avail = self.total - self.read_pos - end
        return 0 if avail < 0 else avail // self.stride + 1

    # ---- writing -------------------------------------------------------------------------
    def write(self, samples: np.ndarray) -> int:
        """Append model-rate float32 mono samples; returns windows dropped by overflow."""
        if self.ended:
            raise ValueError("the stream was flushed; no more audio can be written")
        x = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return 0
        dropped = int(_write(self._buf, self._meta, x, self.stride))
        self.overflow_windows += dropped
        return dropped

    def write_silence(self, n: int) -> int:
        """Append ``n`` zeros (used to keep a stalled live stream moving)."""
        if n <= 0 or self.ended:
            return 0
        dropped = int(_write_zeros(self._buf, self._meta, int(n), self.stride))
        self.overflow_windows += dropped
        return dropped

    def flush(self) -> None:
        """End of stream: append the right zero padding so the last windows can be read."""
        if not self.ended:
            self.write_silence(self.pad_right)
            self.ended = True

    # ---- reading -------------------------------------------------------------------------
    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """The next window (``feat`` float32 samples); raises if it is not ready."""
        if self.ready() < 1:
            raise ValueError(f"no window ready: {self.missing()} more samples are needed")
        if out is None:
            out = np.empty(self.feat, dtype=np.float32)
        _read(self._buf, self.read_pos, self.valid, out)
        self._meta[_READ] += self.stride
        self.windows_read += 1
        return out

    def drop_unread(self) -> int:
        """Forget the audio written beyond the next window's start (an interrupt): the next
        write continues from ``read_pos``, as if that audio had never come. Returns the
        samples forgotten. After :meth:`flush`, nothing is left to read either."""
        n = self.total - self.read_pos
        if n > 0:
            self._meta[_TOTAL] = self.read_pos
        return max(n, 0)

    def skip(self, windows: int) -> int:
        """Drop the audio of up to ``windows`` windows unread (never past the written audio);
        returns how many were skipped."""
        n = max(0, min(int(windows), (self.total - self.read_pos) // self.stride))
        self._meta[_READ] += n * self.stride
        return n
