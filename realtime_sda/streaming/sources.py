"""Audio sources feeding a session: an audio file (PyAV, paced in real time or as fast as
possible) and a microphone (sounddevice/PortAudio, any device and rate). Programs (e.g. a TTS
engine) push PCM directly with :meth:`AvatarSession.push_audio`.

A source is an object with ``async run(session)`` that pushes audio until it is done (then
calls ``session.end_audio()`` when ``end_session`` is true) or is cancelled.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..errors import AudioDecodeError, DeviceError, MissingDependencyError, require
from .clock import Clock, SystemClock

if TYPE_CHECKING:
    from .session import AvatarSession

__all__ = ["FileSource", "MicrophoneSource", "iter_audio_file", "import_sounddevice", "list_input_devices"]


def iter_audio_file(path: str | os.PathLike[str], chunk_s: float = 0.02) -> Iterator[tuple[np.ndarray, int]]:
    """Decode an audio file incrementally -> (float32 (n, channels), rate) chunks of ~chunk_s
    (the decoding is :func:`~realtime_sda.media.audio.iter_decoded_audio`)."""
    from ..media.audio import iter_decoded_audio

    pending: list[np.ndarray] = []
    size, rate = 0, 0

    def cut() -> Iterator[tuple[np.ndarray, int]]:
        block = np.concatenate(pending)
        step = max(1, int(round(chunk_s * rate)))
        for k in range(0, block.shape[0], step):
            yield block[k : k + step], rate

    for block, rate in iter_decoded_audio(path):
        pending.append(block)
        size += block.shape[0]
        if size >= chunk_s * rate:
            yield from cut()
            pending, size = [], 0
    if pending:
        yield from cut()


class FileSource:
    """Push an audio file into a session.

    ``realtime=True``: each ``chunk_ms`` chunk is pushed when it would have been recorded
    (paced on ``clock``); otherwise as fast as the session consumes it (at most
    ``max_buffered_s`` ahead, so nothing overflows).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        realtime: bool = True,
        chunk_ms: float = 20.0,
        clock: Clock | None = None,
        end_session: bool = True,
        max_buffered_s: float = 0.5,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise AudioDecodeError(f"audio file '{self.path}' does not exist; give a wav, flac, mp3, ogg or m4a file.")
        self.realtime = realtime
        self.chunk_s = chunk_ms / 1000.0
        self.clock = clock or SystemClock()
        self.end_session = end_session
        self.max_buffered_s = max_buffered_s
        self.samples_pushed = 0

    async def run(self, session: "AvatarSession") -> None:
        start: float | None = None
        elapsed = 0.0
        for pcm, rate in iter_audio_file(self.path, self.chunk_s):
            if start is None:  # pace from the first chunk (opening the file may take a while)
                start = self.clock.now() - pcm.shape[0] / rate
            elapsed += pcm.shape[0] / rate
            if self.realtime:
                await self.clock.sleep_until(start + elapsed)
            else:
                await session.wait_writable(self.max_buffered_s)
            if session.closed:
                return
            session.push_audio(pcm, rate)
            self.samples_pushed += pcm.shape[0]
        if self.end_session:
            session.end_audio()


def import_sounddevice() -> Any:
    """The sounddevice module, or a clear error naming what to install."""
    try:
        return require("sounddevice", "stream", "Microphone input and audio playback")
    except MissingDependencyError:
        raise
    except OSError as exc:  # sounddevice imports, but the PortAudio library is missing
        raise DeviceError(
            f"the PortAudio library is missing ({exc}). Install it: Debian/Ubuntu "
            "'sudo apt-get install libportaudio2', macOS 'brew install portaudio'."
        ) from None


def list_input_devices() -> list[str]:
    """'index: name (channels, rate)' for every input device PortAudio sees."""
    sd = import_sounddevice()
    return [
        f"{i}: {d['name']} ({d['max_input_channels']} ch, {d['default_samplerate']:.0f} Hz)"
        for i, d in enumerate(sd.query_devices())
        if d["max_input_channels"] > 0
    ]


class MicrophoneSource:
    """Capture a microphone with PortAudio and push it into a session.

    ``device``: index or name (default: the system's default input); ``rate``: capture rate
    (default: the device's own). The PortAudio callback only copies into a bounded queue
    (``queue_s`` seconds; drop-oldest, counted in :attr:`dropped_blocks`); a task on the event
    loop moves the blocks into the session.
    """

    def __init__(
        self,
        device: int | str | None = None,
        rate: int | None = None,
        block_ms: float = 20.0,
        queue_s: float = 0.5,
    ) -> None:
        self.sd = import_sounddevice()
        sd = self.sd
        try:
            info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            available = "; ".join(list_input_devices()) or "none"
            raise DeviceError(
                f"no usable microphone{'' if device is None else f' {device!r}'} ({exc}). Input devices: "
                f"{available}. Connect a microphone, choose an input device (CLI: --mic-device), or use an audio file."
            ) from None
        self.device = device
        self.device_name = str(info["name"])
        self.rate = int(rate or info["default_samplerate"])
        self.blocksize = max(1, int(self.rate * block_ms / 1000.0))
        self._blocks: deque[np.ndarray] = deque(maxlen=max(1, int(queue_s * 1000.0 / block_ms)))
        self.dropped_blocks = 0
        self.blocks_read = 0
        self.bad_blocks = 0  # blocks with non-finite samples, zeroed
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if len(self._blocks) == self._blocks.maxlen:
            self.dropped_blocks += 1
        block = indata[:, 0].copy()
        if not np.isfinite(block).all():  # a glitching driver must not end the session
            self.bad_blocks += 1
            np.nan_to_num(block, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        self._blocks.append(block)
        loop, event = self._loop, self._event
        if loop is not None and event is not None and not event.is_set():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass

    async def run(self, session: "AvatarSession") -> None:
        sd = self.sd
        self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
        try:
            stream = sd.InputStream(
                device=self.device, samplerate=self.rate, blocksize=self.blocksize,
                channels=1, dtype="float32", callback=self._callback,
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise DeviceError(
                f"could not open microphone '{self.device_name}' at {self.rate} Hz ({exc}); "
                "try another --device or --mic-rate."
            ) from None
        try:
            stream.start()
            while not session.closed:
                await self._event.wait()
                self._event.clear()
                while self._blocks:
                    block = self._blocks.popleft()
                    self.blocks_read += 1
                    session.push_audio(block, self.rate)
        finally:
            stream.abort()
            stream.close()
            self._loop = self._event = None
