"""``VirtualCameraSink``: frames to a virtual webcam (pyvirtualcam), usable by any video-call
program. Backends: v4l2loopback on Linux, OBS Studio's virtual camera on Windows/macOS."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import DeviceError, require
from ..frames import VideoFrame
from .base import Sink

if TYPE_CHECKING:
    from ..session import AvatarSession
    from ..stats import StreamStats

__all__ = ["VirtualCameraSink", "install_hint"]


def install_hint() -> str:
    if sys.platform.startswith("linux"):
        return (
            "install v4l2loopback and load it: 'sudo apt-get install v4l2loopback-dkms && "
            "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=realtime-sda'"
        )
    return "install OBS Studio (https://obsproject.com), start its Virtual Camera once, then retry"


class VirtualCameraSink(Sink):
    """Send frames (scaled ``scale`` times, nearest) to a virtual camera ``device``."""

    name = "vcam"
    queue_size = 2

    def __init__(self, device: str | None = None, scale: int = 2, backend: str | None = None) -> None:
        self.device = device
        self.scale = max(1, int(scale))
        self.backend = backend
        self._cam: Any = None

    def prepare(self, session: "AvatarSession") -> None:
        """Open the camera now, so a missing backend is reported before streaming starts."""
        pyvirtualcam = require("pyvirtualcam", "stream", "The virtual camera")
        h, w = session.frame_size
        try:
            self._cam = pyvirtualcam.Camera(
                width=w * self.scale, height=h * self.scale, fps=float(session.config.video_rate),
                fmt=pyvirtualcam.PixelFormat.RGB, device=self.device, backend=self.backend,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise DeviceError(f"no virtual camera is available ({exc}). To get one, {install_hint()}.") from None

    @property
    def camera_name(self) -> str | None:
        return None if self._cam is None else self._cam.device

    def write(self, frame: VideoFrame, stats: "StreamStats") -> None:
        img = np.repeat(np.repeat(frame.image, self.scale, axis=0), self.scale, axis=1)
        self._cam.send(np.ascontiguousarray(img))

    def close(self) -> None:
        if self._cam is not None:
            self._cam.close()
            self._cam = None
