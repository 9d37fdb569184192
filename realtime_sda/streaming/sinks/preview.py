"""``PreviewSink``: the face in an OpenCV window with a status bar (fps, latency, drops), and
its sound played through sounddevice in step with the picture.

GUI toolkits want one thread: with ``main_thread=True`` the window runs in the thread that
calls :meth:`PreviewSink.host` (the command does this on the main thread), otherwise on the
sink's own thread.

Sync: each frame's own audio slice is written to the output stream (a blocking write) just
before the frame is shown, so the picture follows the sound card's clock. A missing sound
device only disables sound (with a warning); a missing display is a clear error.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ...errors import DeviceError, require
from ..frames import VideoFrame
from ..resample import StreamResampler
from .base import Sink

if TYPE_CHECKING:
    from ..session import AvatarSession
    from ..stats import StreamStats

__all__ = ["PreviewSink", "STATUS_BAR_HEIGHT", "compose"]

STATUS_BAR_HEIGHT = 20
_PLAYBACK_RATE = 48000


def compose(image: np.ndarray, scale: int, status: str) -> np.ndarray:
    """RGB frame -> BGR canvas: the frame scaled ``scale`` times (nearest neighbour, so every
    model pixel stays exact) above a status bar with ``status``."""
    import cv2

    face = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    h, w = face.shape[:2]
    canvas = np.zeros((h + STATUS_BAR_HEIGHT, max(w, 1), 3), np.uint8)
    canvas[:h, :w] = face[:, :, ::-1]
    cv2.putText(canvas, status, (3, h + STATUS_BAR_HEIGHT - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


class PreviewSink(Sink):
    """Show frames in a window titled ``title``; ``q``/Esc or closing the window stops."""

    name = "preview"
    queue_size = 2

    def __init__(self, title: str = "realtime-sda", scale: int = 3, sound: bool = True, main_thread: bool = False) -> None:
        self.title = title
        self.external_thread = main_thread
        self._runner: Any = None
        self._attached = threading.Event()
        self.scale = max(1, int(scale))
        self.sound = sound
        self._stop = False
        self._out: Any = None
        self.sound_error: str | None = None

    def prepare(self, session: "AvatarSession") -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise DeviceError(
                "no display for the preview window (DISPLAY is not set). Run it on a desktop, with "
                "'xvfb-run realtime-sda preview ...' for a virtual one, or use 'realtime-sda vcam' / --record."
            )
        cv2 = require("cv2", "stream", "The preview window")
        gui = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
        if gui is not None and gui.group(1).upper() == "NONE":
            raise DeviceError(
                "this OpenCV build has no GUI (opencv-python-headless); for the preview window run "
                "'pip uninstall opencv-python-headless && pip install opencv-python'"
            )

    def open(self, session: "AvatarSession") -> None:
        import cv2

        fonts, current = "/usr/share/fonts/truetype/dejavu", os.environ.get("QT_QPA_FONTDIR", "")
        if not os.path.isdir(current) and os.path.isdir(fonts):
            os.environ["QT_QPA_FONTDIR"] = fonts  # OpenCV's Qt ships no fonts: quiets its warnings

        cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no toolbar
        if self.sound:
            self._open_sound()

    def _open_sound(self) -> None:
        try:
            from ..sources import import_sounddevice

            sd = import_sounddevice()
            self._out = sd.OutputStream(samplerate=_PLAYBACK_RATE, channels=1, dtype="float32", latency="low")
            self._out.start()
            self._resampler = StreamResampler(_PLAYBACK_RATE)
        except Exception as exc:  # no speaker: keep the picture going
            self._out = None
            self.sound_error = str(exc)
            print(f"realtime-sda: warning: no sound ({exc}); showing the picture only", file=sys.stderr)

    def write(self, frame: VideoFrame, stats: "StreamStats") -> None:
        import cv2

        if self._out is not None:
            try:
                self._out.write(self._resampler.process(frame.audio, frame.audio_rate)[:, None])
            except Exception as exc:
                self.sound_error = str(exc)
                self._out = None
        snap = stats.snapshot()
        status = (
            f"{snap.fps:4.1f} fps  lat {snap.latency_p50_ms:3.0f}/{snap.latency_p99_ms:3.0f} ms  "
            f"drop {snap.dropped_frames + snap.skipped_frames}  #{frame.index}"
        )
        cv2.imshow(self.title, compose(frame.image, self.scale, status))
        key = cv2.waitKey(5) & 0xFF  # also lets Qt paint (1 ms is too short on a busy machine)
        if key in (ord("q"), 27):
            self._stop = True
        elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self._stop = True

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def request_stop(self) -> None:
        """Stop the stream (as if the window were closed); callable from any thread."""
        self._stop = True

    def attach(self, runner: Any) -> None:
        self._runner = runner
        self._attached.set()

    def host(self, give_up: Callable[[], bool], poll_s: float = 0.05) -> None:
        """With ``main_thread=True``: run the window in the calling (main) thread once the
        pipeline has started, until the stream ends; returns early when ``give_up()``."""
        while not self._attached.wait(poll_s):
            if give_up():
                return
        self._runner.run_here()

    def close(self) -> None:
        import cv2

        if self._out is not None:
            try:
                self._out.stop()
                self._out.close()
            finally:
                self._out = None
        cv2.destroyAllWindows()
        for _ in range(3):
            cv2.waitKey(1)
