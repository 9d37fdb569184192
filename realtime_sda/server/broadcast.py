"""Fan-out of one avatar session's frames to any number of viewers, and the broadcast
avatar: one session driven by pushed audio (``/push``) or an audio file, watched by many.

Pushed audio is program-pushed, not live: the broadcast session queues it (bounded by the
session's ``max_queued_s``, 60 s) and plays it at real time, so a pusher faster than real
time changes nothing for viewers (25 frames/s) and loses nothing; past the bound the pusher
gets a ``queue_full`` error for each refused message. ``/push`` (:meth:`Broadcast.serve_pusher`):
a JSON header ``{"rate": 16000, "channels": 1}``, then binary int16 little-endian PCM
messages of at most :data:`MAX_PUSH_MESSAGE_BYTES`. Decoding and resampling a message run on
the broadcast's own thread, never on the event loop.

Text in: :meth:`Broadcast.say` (``POST /say?text=...&voice=...``) speaks text through the
session's :class:`~realtime_sda.streaming.say.Speaker` (espeak-ng, sentence by sentence);
:meth:`Broadcast.interrupt` (``POST /interrupt``) stops it, or pushed audio, mid-sentence.
The text travels in the query string: the server's HTTP parser (websockets') reads no request
bodies. :func:`answer_say_request` answers both routes (JSON), for app.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..streaming.session import AudioQueueFullError, SessionClosedError
from ..streaming.tasks import cancel_and_wait
from .signaling import error_message
from .tracks import ViewerFeed

__all__ = ["FrameHub", "Broadcast", "FilePlayer", "PushHeaderError", "parse_push_header", "MAX_PUSH_MESSAGE_BYTES",
           "SAY_ROUTES", "answer_say_request"]

log = logging.getLogger(__name__)

#: one binary ``/push`` message at most (32 s of 16 kHz mono, 5.5 s of 48 kHz stereo)
MAX_PUSH_MESSAGE_BYTES = 1 << 20
#: the JSON header at most (a real one is ~30 characters)
MAX_PUSH_HEADER_CHARS = 1024
_HEADER_HELP = 'send {"rate": 16000, "channels": 1}'


class PushHeaderError(ValueError):
    """A ``/push`` header that is not ``{"rate": int, "channels": int}`` within range."""


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PushHeaderError(f"{name} must be a whole number, got {type(value).__name__}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise PushHeaderError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def parse_push_header(raw: str, max_rate: int = 192_000) -> tuple[int, int]:
    """``(rate, channels)`` of a ``/push`` header; :class:`PushHeaderError` for anything else
    (too long, not JSON, Infinity, 1e400, nesting, wrong types, out of range)."""
    if len(raw) > MAX_PUSH_HEADER_CHARS:
        raise PushHeaderError(f"header over {MAX_PUSH_HEADER_CHARS} characters")
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested JSON
        raise PushHeaderError(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict) or "rate" not in header:
        raise PushHeaderError("not a JSON object with a rate")
    rate, channels = _whole(header["rate"], "rate"), _whole(header.get("channels", 1), "channels")
    if not (8000 <= rate <= max_rate and 1 <= channels <= 8):
        raise PushHeaderError(f"rate must be 8000..{max_rate} Hz and channels 1..8, got {rate} and {channels}")
    return rate, channels


class FrameHub:
    """Reads one session's frames (a named task) and hands each to every registered viewer
    feed. ``ViewerFeed.put`` never blocks, so one slow viewer cannot hold up the others."""

    def __init__(self, session: Any, name: str) -> None:
        self.session = session
        self.name = name
        self._feeds: set[ViewerFeed] = set()
        self._task: asyncio.Task[None] | None = None
        self.frames = 0
        self.last_latency_s = float("nan")
        self.cut_index = -1  # frames before it were made before an interrupt: not sent

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.name}-fanout")

    def add(self, feed: ViewerFeed) -> None:
        self._feeds.add(feed)

    def remove(self, feed: ViewerFeed) -> None:
        self._feeds.discard(feed)

    @property
    def viewers(self) -> int:
        return len(self._feeds)

    def interrupt(self, first_index: int) -> None:
        """The session was interrupted: frames before ``first_index`` (the first one made
        after it) are not sent, and every viewer drops what it holds (event-loop thread)."""
        self.cut_index = int(first_index)
        for feed in tuple(self._feeds):
            feed.interrupt()

    async def _run(self) -> None:
        try:
            async for frame in self.session.frames():
                if frame.index < self.cut_index:
                    continue  # speech made before an interrupt, still in the session's queue
                self.frames += 1
                self.last_latency_s = float(frame.latency_s)
                for feed in tuple(self._feeds):
                    feed.put(frame)
        finally:
            for feed in tuple(self._feeds):
                feed.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Cancel the fan-out task (bounded) and end every viewer's tracks."""
        task, self._task = self._task, None
        await cancel_and_wait(task, timeout)
        for feed in tuple(self._feeds):
            feed.close()
        self._feeds.clear()


class FilePlayer:
    """Pushes an audio file into a session in real time (20 ms chunks, looping)."""

    def __init__(self, session: Any, path: Path, loop: bool = True) -> None:
        from ..media.audio import decode_audio, to_float_mono

        signal, rate = decode_audio(path)
        self.signal = to_float_mono(signal)
        self.rate = int(rate)
        self.session = session
        self.loop = loop
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="broadcast-file")

    #: seconds pushed ahead of real time (the session queues them), so a busy event loop
    #: never starves the session of its audio
    lead_s = 0.2

    async def _run(self) -> None:
        chunk = max(self.rate // 50, 1)
        start, sent = time.monotonic(), 0
        while True:
            for pos in range(0, len(self.signal), chunk):
                self.session.push_audio(self.signal[pos : pos + chunk], self.rate)
                sent += min(chunk, len(self.signal) - pos)
                wait = start + sent / self.rate - self.lead_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            if not self.loop:
                return

    async def close(self, timeout: float = 5.0) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task, timeout)


class Broadcast:
    """ONE avatar session that many viewers watch; fed by ``/push`` clients or a file.

    Its audio is program-pushed: the session is made a queued one if it was opened as a live
    source (open it with ``max_backlog_ms=None``)."""

    def __init__(self, session: Any, audio_file: Path | None = None,
                 max_message_bytes: int = MAX_PUSH_MESSAGE_BYTES) -> None:
        self.session = session
        if getattr(session, "queue_limit", 0) is None:
            session.use_queued_audio()
        session.pause_audio()  # idle on silence from the first frame, until audio comes
        self.hub = FrameHub(session, "broadcast")
        self.player = FilePlayer(session, audio_file) if audio_file is not None else None
        self.pusher_active = False
        self.max_message_bytes = int(max_message_bytes)
        # decoding and resampling of pushed messages: off the event loop, in order, and not
        # in the default pool that encodes every viewer's video
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="broadcast-push")

    def start(self) -> None:
        self.hub.start()
        if self.player is not None:
            self.player.start()

    def push(self, pcm: np.ndarray, rate: int) -> None:
        """Queue decoded audio (raises :class:`AudioQueueFullError` past the bound)."""
        self.session.push_audio(pcm, rate)

    def _push_pcm16(self, raw: bytes, rate: int, channels: int) -> None:
        """One binary message: int16 little-endian PCM -> mono -> the session (own thread)."""
        frame = 2 * channels
        data = np.frombuffer(raw, dtype="<i2", count=len(raw) // frame * channels)
        if data.size:
            pcm = data.reshape(-1, channels).mean(axis=1, dtype=np.float32) / np.float32(32767.0)
            self.session.push_audio(pcm, rate)

    def _queue_full_text(self) -> str:
        limit = getattr(self.session.options, "max_queued_s", 0)
        return (f"{self.session.buffered_seconds():.1f} s of audio already wait to be shown (at most {limit:g} s): "
                "this message was not queued; push in real time, or wait and send it again")

    async def serve_pusher(self, ws: Any, max_rate: int = 192_000) -> None:
        """Serve one ``/push`` connection: one source at a time (``busy`` for a second one);
        ``bad_message`` for a bad header or audio before one, ``too_large`` for a message over
        ``max_message_bytes``, ``queue_full`` for one past the queue's bound (each refused
        message is answered and skipped; the connection stays open)."""
        if self.pusher_active:
            await ws.send(error_message("busy", "another source is already pushing audio"))
            await ws.close(1013, "busy")
            return
        self.pusher_active = True
        loop = asyncio.get_running_loop()
        try:
            rate: int | None = None
            channels = 1
            async for raw in ws:
                if isinstance(raw, str):
                    try:
                        rate, channels = parse_push_header(raw, max_rate)
                    except PushHeaderError as exc:
                        rate = None
                        await ws.send(error_message("bad_message", f"bad header ({exc}): {_HEADER_HELP}"))
                    continue
                if rate is None:
                    await ws.send(error_message("bad_message", f"audio before the header: {_HEADER_HELP} first"))
                    continue
                if len(raw) > self.max_message_bytes:
                    await ws.send(error_message(
                        "too_large", f"audio message of {len(raw)} bytes refused: send at most "
                        f"{self.max_message_bytes} bytes a message (e.g. 20 ms each)"))
                    continue
                try:
                    await loop.run_in_executor(self._executor, self._push_pcm16, raw, rate, channels)
                except AudioQueueFullError:
                    await ws.send(error_message("queue_full", self._queue_full_text()))
                except SessionClosedError:
                    await ws.send(error_message("ended", "the broadcast has ended"))
                    return
        except Exception as exc:  # a connection error ends this pusher only
            log.debug("push ended: %r", exc)
        finally:
            self.pusher_active = False

    # ---- text in and interruption ------------------------------------------------------------
    def say(self, text: str, voice: str | None = None) -> Any:
        """Speak ``text`` (queued after texts already waiting); returns its
        :class:`~realtime_sda.streaming.say.Utterance`. Refused (:class:`~realtime_sda.streaming.say.SayError`)
        while a ``/push`` source or the audio file drives the avatar."""
        from ..streaming.say import SayError

        if self.pusher_active or self.player is not None:
            raise SayError("the broadcast is driven by " + ("a /push source" if self.pusher_active else "an audio file")
                           + ": say() works when nothing else pushes audio")
        return self.session.say(text, voice=voice)

    def interrupt(self) -> float:
        """Stop speaking now (texts and pushed audio), for the viewers too: what their
        tracks hold is dropped, so they hear silence at the next packet. Returns the seconds
        of audio dropped."""
        dropped = float(self.session.interrupt())
        self.hub.interrupt(self.session.next_index)
        return dropped

    async def close(self, timeout: float = 5.0) -> None:
        if self.player is not None:
            await self.player.close(timeout)
        await self.hub.close(timeout)
        await asyncio.wait_for(self.session.close(), timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)


#: the HTTP routes :func:`answer_say_request` answers
SAY_ROUTES = ("/say", "/interrupt")


def answer_say_request(broadcast: Broadcast | None, path: str, method: str, query: dict[str, list[str]], *,
                       allowed: bool) -> tuple[int, dict[str, Any]]:
    """``(HTTP status, JSON body)`` for ``POST /say?text=...&voice=...`` and ``POST /interrupt``.
    ``allowed``: the caller's origin and token checks passed (a cross-site page must not make
    the avatar speak)."""
    from ..streaming.say import SayError

    if method != "POST":
        return 405, {"error": "method", "message": f"use POST {path}"}
    if not allowed:
        return 403, {"error": "forbidden", "message": "wrong or missing token (?token=...), or a request from another origin"}
    if broadcast is None:
        return 404, {"error": "no_broadcast", "message": "this server runs no broadcast: start it with --broadcast"}
    if path == "/interrupt":
        return 200, {"ok": True, "dropped_s": round(broadcast.interrupt(), 3)}
    texts = query.get("text") or []
    voices: list[str | None] = [*query.get("voice", [])] or [None]
    if len(texts) != 1 or len(voices) != 1:
        return 400, {"error": "bad_request", "message": "give one text: POST /say?text=Hello%20there (and at most one voice=)"}
    try:
        utt = broadcast.say(texts[0], voice=voices[0])
    except SayError as exc:
        busy = broadcast.pusher_active or broadcast.player is not None
        return (409 if busy else 400), {"error": "busy" if busy else "bad_text", "message": str(exc)}
    return 200, {"ok": True, "id": utt.id, "sentences": len(utt.sentences)}
