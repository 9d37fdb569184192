"""Per-session streaming statistics: latency percentiles, frame rate, drops and overflows."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["StreamStats", "StatsSnapshot"]


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of a session's counters (``asdict`` gives a JSON-ready dict)."""

    frames: int
    fps: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    silence_frames: int  # frames whose audio was overdue and filled with silence
    skipped_frames: int  # frames' worth of late audio dropped to avoid a backlog
    overflow_frames: int  # frames' worth of audio overwritten because the buffer was full
    dropped_frames: int  # frames a slow consumer never took (summed over subscribers)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


class StreamStats:
    """Thread-safe counters; latencies and frame times kept over a bounded recent window."""

    def __init__(self, window: int = 512) -> None:
        self._lock = threading.Lock()
        self._lat: deque[float] = deque(maxlen=window)
        self._times: deque[float] = deque(maxlen=window)
        self.frames = 0
        self.silence_frames = 0
        self.skipped_frames = 0
        self.overflow_frames = 0
        self.dropped_frames = 0

    def frame(self, ready_time: float, latency_s: float) -> None:
        with self._lock:
            self.frames += 1
            self._lat.append(latency_s)
            self._times.append(ready_time)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + int(n))

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            lat = np.asarray(self._lat, dtype=np.float64) * 1000.0
            times = list(self._times)
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            return StatsSnapshot(
                frames=self.frames,
                fps=float(fps),
                latency_p50_ms=float(np.percentile(lat, 50)) if lat.size else 0.0,
                latency_p99_ms=float(np.percentile(lat, 99)) if lat.size else 0.0,
                latency_max_ms=float(lat.max()) if lat.size else 0.0,
                silence_frames=self.silence_frames,
                skipped_frames=self.skipped_frames,
                overflow_frames=self.overflow_frames,
                dropped_frames=self.dropped_frames,
            )
