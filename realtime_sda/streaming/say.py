"""Text in: a session speaks text, sentence by sentence, through a pluggable local TTS.

:class:`Speaker` (one per session, ``session.speaker()``; ``session.say(text)`` uses it)
splits each text into sentences (:func:`split_sentences`), synthesises them one at a time
off the event loop and pushes each into the session as soon as it is made, so the first
sentence plays while the next ones are still being synthesised. The session queues the
audio (program-pushed, played at real time); the speaker keeps at most ``lead_s`` seconds
waiting there before it pushes the next sentence, so an interrupt has little to drop and the
queue stays far inside ``max_queued_s``. When nothing more is pending it calls
``session.pause_audio()``: the face idles at once, with no frozen frame.

The engine is any callable ``tts(text, voice) -> (pcm, rate)`` (:data:`TextToSpeech`);
:class:`EspeakTTS` (espeak-ng, through :func:`~realtime_sda.media.speech.synthesize_speech`)
is the default. ``session.interrupt()`` drops every pending text (their
:class:`Utterance` end as ``"interrupted"``) and the queued audio.

Bounds: a text of at most :data:`MAX_TEXT_CHARS` characters, at most ``max_pending``
texts waiting (a further ``say`` raises :class:`SayError`, nothing is dropped silently).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import tempfile
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import numpy as np

from ..errors import RealtimeSDAError
from .tasks import cancel_and_wait


class SpeechTarget(Protocol):
    """What a :class:`Speaker` needs of its session (an ``AvatarSession``; session.py makes
    the speaker, so this module does not import it)."""

    id: int
    config: Any
    closed: bool
    finished: bool
    queue_limit: int | None

    @property
    def next_index(self) -> int: ...
    @property
    def audio_end(self) -> int: ...
    def push_audio(self, pcm: np.ndarray, rate: int) -> None: ...
    async def wait_writable(self, max_buffered_s: float = 0.5) -> None: ...
    def pause_audio(self) -> None: ...
    def interrupt(self) -> float: ...
    def use_queued_audio(self) -> None: ...
    def subscribe(self, maxsize: int = 2, counted: bool = True) -> Any: ...
    def unsubscribe(self, q: Any) -> None: ...

__all__ = [
    "TextToSpeech", "EspeakTTS", "Speaker", "Utterance", "SayError", "split_sentences",
    "MAX_TEXT_CHARS", "check_voice", "SpeechTarget",
]

log = logging.getLogger(__name__)

#: ``tts(text, voice) -> (pcm, rate)``: PCM of any dtype, (n,) or (n, channels), at ``rate`` Hz
TextToSpeech = Callable[[str, Optional[str]], "tuple[np.ndarray, int]"]

#: the longest text one ``say`` takes (about four minutes of speech)
MAX_TEXT_CHARS = 5000
_VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+\-]{0,39}$")
_ids = itertools.count(1)


class SayError(RealtimeSDAError, ValueError):
    """A text that cannot be spoken (empty, too long, bad voice) or too many waiting."""


def check_voice(voice: str | None) -> str | None:
    """``voice`` if it looks like an espeak-ng voice name (``en-us``, ``en+f3``, ``de``)."""
    if voice is not None and not (isinstance(voice, str) and _VOICE.match(voice)):
        raise SayError(f"voice must be a voice name such as 'en-us', 'en+f3' or 'de', got {str(voice)[:40]!r}")
    return voice


def split_sentences(text: str, max_chars: int = 240) -> list[str]:
    """``text`` cut into sentences (after . ! ? and at line breaks); a sentence longer than
    ``max_chars`` is cut at its last comma or space before that, so no piece takes long to
    synthesise. Empty pieces are left out."""
    out: list[str] = []
    for part in re.split(r"(?<=[.!?\u2026])[\"')\]]*\s+|[\r\n]+", text):
        part = " ".join(part.split())
        while len(part) > max_chars:
            cut = part.rfind(", ", 0, max_chars)
            cut = cut + 1 if cut > 0 else part.rfind(" ", 0, max_chars)
            if cut <= 0:
                cut = max_chars
            out.append(part[:cut].strip())
            part = part[cut:].strip()
        if part:
            out.append(part)
    return out


class EspeakTTS:
    """espeak-ng as a :data:`TextToSpeech`: ``voice`` (default for calls without one) and
    ``speed`` in words per minute. Raises MissingDependencyError without espeak-ng."""

    def __init__(self, voice: str = "en-us", speed: int = 165) -> None:
        self.voice = check_voice(voice) or "en-us"
        self.speed = int(speed)

    def __call__(self, text: str, voice: str | None = None) -> tuple[np.ndarray, int]:
        from ..media.audio import decode_audio, to_float_mono
        from ..media.speech import synthesize_speech

        # the text is espeak-ng's last argument: one starting with '-' would read as an option
        text = text.lstrip("-\u2013\u2014 \t")
        if not text:
            return np.zeros(0, np.float32), 16000
        with tempfile.TemporaryDirectory(prefix="sda-say-") as tmp:
            wav = synthesize_speech(text, Path(tmp) / "say.wav", voice=check_voice(voice) or self.voice, speed=self.speed)
            pcm, rate = decode_audio(wav)
        return to_float_mono(pcm), rate


class Utterance:
    """One ``say``: its sentences, where its audio sits on the session's master clock
    (``start_sample``, ``end_sample``) and its state: ``pending``, ``speaking`` (being
    synthesised and queued), ``queued`` (all of it waits in or has passed through the
    session), ``interrupted`` or ``failed`` (``error``)."""

    def __init__(self, speaker: "Speaker", text: str, voice: str | None, sentences: list[str]) -> None:
        self.id = next(_ids)
        self.text = text
        self.voice = voice
        self.sentences = sentences
        self.state = "pending"
        self.error: BaseException | None = None
        self.start_sample: int | None = None
        self.end_sample: int | None = None
        self.sentences_queued = 0
        self._speaker = speaker
        self._done: asyncio.Future[None] = speaker.loop.create_future()

    def _finish(self, state: str, error: BaseException | None = None) -> None:
        """Set the final state (event-loop thread)."""
        if self._done.done():
            return
        self.state, self.error = state, error
        self._done.set_result(None)

    async def queued(self) -> bool:
        """Wait until all its audio is queued; False when it was interrupted or failed."""
        await asyncio.shield(self._done)
        return self.state == "queued"

    async def spoken(self, poll_s: float = 0.02) -> bool:
        """Wait until the session has made the frames of all its audio; False when it was
        interrupted, failed, or the session closed first."""
        if not await self.queued():
            return False
        session = self._speaker.session
        stride = session.config.stride
        end = self.end_sample or 0

        def shown() -> bool:
            return session.next_index * stride >= end

        q = session.subscribe(maxsize=1, counted=False)  # woken by each frame made
        try:
            while not shown() and self.state == "queued" and not session.closed:
                try:
                    await asyncio.wait_for(q.get(), poll_s * 25)
                except asyncio.TimeoutError:
                    continue  # e.g. the worker paused: look again
                except Exception:  # the session ended
                    break
        finally:
            session.unsubscribe(q)
        return self.state == "queued" and shown()

    def __repr__(self) -> str:
        return f"Utterance({self.id}, {self.state}, {len(self.sentences)} sentences)"


class Speaker:
    """Speaks texts into one session (see the module doc). Made on the event loop that will
    run it (``session.speaker()``); ``say`` there, ``drop_pending`` from any thread."""

    def __init__(self, session: SpeechTarget, tts: TextToSpeech | None = None, *,
                 lead_s: float = 1.5, max_pending: int = 16) -> None:
        if getattr(session, "queue_limit", 0) is None:
            # a live session drops audio queued ahead; make it a queued one (only before any audio)
            try:
                session.use_queued_audio()
            except RealtimeSDAError:
                raise SayError(
                    f"session {session.id} takes live audio (a microphone): say() needs one opened with "
                    "max_backlog_ms=None") from None
        self.session = session
        self.tts: TextToSpeech = tts or EspeakTTS()
        self.lead_s = float(lead_s)
        self.max_pending = int(max_pending)
        self.loop = asyncio.get_running_loop()
        self._pending: deque[Utterance] = deque()
        self._current: Utterance | None = None
        self._unspoken: deque[Utterance] = deque(maxlen=max_pending + 1)  # queued, maybe not shown yet
        self._generation = 0  # bumped by every interrupt: work started before it is discarded
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """A text is being synthesised or waits to be."""
        return self._current is not None or bool(self._pending)

    def say(self, text: str, voice: str | None = None) -> Utterance:
        """Queue ``text`` to be spoken after the texts already waiting (event-loop thread)."""
        if not isinstance(text, str):
            raise SayError(f"say() needs a string, got {type(text).__name__}")
        if len(text) > MAX_TEXT_CHARS:
            raise SayError(f"the text is {len(text)} characters long: say at most {MAX_TEXT_CHARS} at once")
        sentences = split_sentences(text)
        if not sentences:
            raise SayError("nothing to say: the text is empty")
        if len(self._pending) >= self.max_pending:
            raise SayError(f"{len(self._pending)} texts already wait to be spoken: wait for them, or interrupt()")
        if self.session.closed:
            raise SayError(f"session {self.session.id} is closed")
        utt = Utterance(self, text, check_voice(voice), sentences)
        self._pending.append(utt)
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._run(), name=f"speaker-{self.session.id}")
        self._wake.set()
        return utt

    def interrupt(self) -> float:
        """Stop now: pending texts and the session's queued audio are dropped (see
        ``AvatarSession.interrupt``). Returns the seconds of audio dropped."""
        return self.session.interrupt()

    def drop_pending(self) -> int:
        """End every pending text (and the one being spoken) as interrupted; work already
        started for them is discarded. Any thread. Returns how many were dropped."""
        self._generation += 1
        dropped = [u for u in (self._current, *self._pending) if u is not None]
        self._pending.clear()
        self._current = None
        for utt in dropped:
            self._on_loop(utt._finish, "interrupted")
        shown = self.session.next_index * self.session.config.stride
        for utt in tuple(self._unspoken):  # queued whole, but its audio is dropped with the queue
            if (utt.end_sample or 0) > shown and utt.state == "queued":
                utt.state = "interrupted"
                dropped.append(utt)
        self._unspoken.clear()
        return len(dropped)

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            if asyncio.get_running_loop() is self.loop:
                fn(*args)
                return
        except RuntimeError:
            pass
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def _synthesise(self, sentence: str, voice: str | None) -> tuple[np.ndarray, int]:
        """One sentence at the model's rate (resampled whole, so nothing of its tail waits in
        a streaming resampler for the next push). Runs in a worker thread."""
        from ..media.audio import resample, to_float_mono

        pcm, rate = self.tts(sentence, voice)
        mono = to_float_mono(np.asarray(pcm))
        out_rate = self.session.config.audio_rate
        if int(rate) != out_rate and mono.size:
            mono = resample(mono, int(rate), out_rate).astype(np.float32, copy=False)
        return mono, out_rate

    async def _run(self) -> None:
        session = self.session
        while not session.closed:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            utt = self._pending.popleft()
            self._current, gen = utt, self._generation
            utt.state = "speaking"
            try:
                for sentence in utt.sentences:
                    try:
                        pcm, rate = await asyncio.to_thread(self._synthesise, sentence, utt.voice)
                    except Exception as exc:  # the engine failed: this text only
                        log.warning("say #%d failed: %s", utt.id, exc)
                        utt._finish("failed", exc)
                        break
                    await session.wait_writable(self.lead_s)
                    if gen != self._generation:
                        break  # interrupted meanwhile: drop what was made
                    if utt.start_sample is None:
                        utt.start_sample = session.audio_end
                    session.push_audio(pcm, rate)
                    utt.end_sample = session.audio_end
                    utt.sentences_queued += 1
            except RuntimeError as exc:  # SessionClosedError: closed, or its audio ended
                utt._finish("failed", exc)
                self.drop_pending()
                return
            except RealtimeSDAError as exc:  # AudioQueueFullError (a clip over max_queued_s), bad PCM
                utt._finish("failed", exc)
            if gen == self._generation:
                utt._finish("queued")
                if utt.state == "queued":
                    self._unspoken.append(utt)
                self._current = None
                if not self._pending:
                    session.pause_audio()

    async def close(self, timeout: float = 5.0) -> None:
        """Drop what is pending and stop the speaking task."""
        self.drop_pending()
        task, self._task = self._task, None
        await cancel_and_wait(task, timeout)
