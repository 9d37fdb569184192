"""The inference worker and sessions: equality with offline generation, batching, isolation,
clean shutdown."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from realtime_sda.core.noise import NoiseSource
from realtime_sda.core.state import IdentityContext
from realtime_sda.errors import AudioDecodeError, ImageDecodeError
from realtime_sda.media.audio import audio_windows
from realtime_sda.media.image import frames_to_uint8
from realtime_sda.streaming import AudioRingBuffer, InferenceWorker, SessionClosedError, VideoFrame
from realtime_sda.streaming.queues import EndOfStream
from testsupport.stepper import Stepper

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _still(model, seed: int) -> torch.Tensor:
    h, w = model.config.img_size
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g) * 2 - 1


def _audio(model, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * model.config.audio_rate) + int(rng.integers(0, model.config.stride))
    t = np.arange(n) / model.config.audio_rate
    return (0.3 * np.sin(2 * np.pi * 180 * t) * rng.uniform(0.2, 1.0, n)).astype(np.float32)


def _offline(model, still, audio, seed, chunk_frames=16) -> torch.Tensor:
    windows = audio_windows(audio, model.config)
    noise = NoiseSource(model.config.aux_latent, seed).next(windows.shape[0])
    return model.generate(still, windows[None], noise[None], chunk_frames=chunk_frames)[0]


def _chunks(n: int, rng: np.random.Generator, hi: int) -> list[tuple[int, int]]:
    cuts = np.sort(rng.integers(0, n, size=max(1, n // max(hi, 1))))
    edges = [0, *cuts.tolist(), n]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:])]


@pytest.mark.parametrize("chunking_seed", [0, 1, 2])
def test_stepper_through_ring_buffer_equals_generate(tiny_model, chunking_seed) -> None:
    """Frame-by-frame stepping on streamed windows == generate (float32, <= 1e-5)."""
    cfg = tiny_model.config
    still, audio = _still(tiny_model, 3), _audio(tiny_model, 1.2, chunking_seed)
    ref = _offline(tiny_model, still, audio, seed=7)
    rng = np.random.default_rng(chunking_seed)
    rb = AudioRingBuffer(cfg.audio_feat_samples, cfg.stride, cfg.pad_left, cfg.pad_right)
    stepper, noise = Stepper(tiny_model, still), NoiseSource(cfg.aux_latent, 7)
    got = []
    for chunk in _chunks(audio.size, rng, hi=int(rng.integers(50, 3000))) + [None]:
        if chunk is None:
            rb.flush()
        else:
            rb.write(audio[chunk[0] : chunk[1]])
        while rb.ready():
            got.append(stepper.step(torch.from_numpy(rb.read())[None], noise.next(1))[0])
    got = torch.stack(got)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() <= 1e-5


def test_stepper_equals_generate_grid_size(grid_model) -> None:
    cfg = grid_model.config
    still, audio = _still(grid_model, 4), _audio(grid_model, 0.5, 5)
    ref = _offline(grid_model, still, audio, seed=11)
    rb = AudioRingBuffer(cfg.audio_feat_samples, cfg.stride, cfg.pad_left, cfg.pad_right)
    stepper, noise = Stepper(grid_model, still), NoiseSource(cfg.aux_latent, 11)
    got = []
    for a, b in _chunks(audio.size, np.random.default_rng(5), hi=4410):
        rb.write(audio[a:b])
        while rb.ready():
            got.append(stepper.step(torch.from_numpy(rb.read())[None], noise.next(1))[0])
    rb.flush()
    while rb.ready():
        got.append(stepper.step(torch.from_numpy(rb.read())[None], noise.next(1))[0])
    got = torch.stack(got)
    assert got.shape == ref.shape == (cfg.num_frames(audio.size), 3, *cfg.img_size)
    assert (got - ref).abs().max().item() <= 1e-5


def _collect(session, maxsize=10_000) -> "asyncio.Task[list[VideoFrame]]":
    """Subscribe now (before any audio is pushed), collect every frame in a task."""
    q = session.subscribe(maxsize)

    async def drain() -> list[VideoFrame]:
        out = []
        while True:
            try:
                out.append(await q.get())
            except EndOfStream:
                return out

    return asyncio.create_task(drain(), name=f"collect-{session.id}")


async def _feed(session, audio, rate, rng, hi) -> None:
    for a, b in _chunks(audio.size, rng, hi):
        session.push_audio(audio[a:b], rate)
        await asyncio.sleep(0)
    session.end_audio()


def test_worker_session_equals_offline_exactly(tiny_model) -> None:
    """Live session (not paced) -> the same uint8 frames, pts and audio slices as offline."""
    cfg = tiny_model.config
    still, audio = _still(tiny_model, 5), _audio(tiny_model, 1.0, 9)
    ref = frames_to_uint8(_offline(tiny_model, still, audio, seed=3, chunk_frames=1).permute(0, 2, 3, 1))

    async def main():
        worker = InferenceWorker(tiny_model)
        await worker.start()
        try:
            session = await worker.open_session(still, seed=3, realtime=False)
            collector = _collect(session)
            await _feed(session, audio, cfg.audio_rate, np.random.default_rng(1), 700)
            with pytest.raises(SessionClosedError, match="at end of audio") as closed:
                session.push_audio(audio[:100], cfg.audio_rate)
            assert not isinstance(closed.value, AudioDecodeError)  # the audio was fine
            return await asyncio.wait_for(collector, 30)
        finally:
            await worker.stop()

    frames = asyncio.run(main())
    assert len(frames) == cfg.num_frames(audio.size) == ref.shape[0]
    for i, f in enumerate(frames):
        assert (f.index, f.pts, f.audio_rate) == (i, i * cfg.stride, cfg.audio_rate)
        assert f.image.dtype == np.uint8 and f.image.shape == (*cfg.img_size, 3)
        np.testing.assert_array_equal(f.image, ref[i])
        own = audio[i * cfg.stride : (i + 1) * cfg.stride]
        np.testing.assert_array_equal(f.audio[: own.size], own)
        assert not f.audio[own.size :].any() and f.latency_s >= 0


def test_int16_stereo_at_other_rate_is_accepted(tiny_model) -> None:
    cfg = tiny_model.config
    pcm = (np.random.default_rng(0).standard_normal((48000, 2)) * 3000).astype(np.int16)

    async def main():
        worker = InferenceWorker(tiny_model)
        await worker.start()
        try:
            session = await worker.open_session(_still(tiny_model, 1), seed=1, realtime=False)
            collector = _collect(session)
            for k in range(0, 48000, 4410):
                session.push_audio(pcm[k : k + 4410], 48000)
            session.end_audio()
            return await asyncio.wait_for(collector, 30)
        finally:
            await worker.stop()

    frames = asyncio.run(main())
    assert len(frames) == cfg.num_frames(cfg.audio_rate)  # 1 s resampled to the model rate


def test_batched_sessions_equal_single_sessions(tiny_model) -> None:
    """Several sessions stepped together in one engine call == each run alone."""
    cfg = tiny_model.config
    specs = [(_still(tiny_model, 10 + k), _audio(tiny_model, 0.8 + 0.2 * k, 20 + k), 30 + k) for k in range(3)]
    refs = [frames_to_uint8(_offline(tiny_model, s, a, seed=sd, chunk_frames=1).permute(0, 2, 3, 1)) for s, a, sd in specs]

    async def main():
        worker = InferenceWorker(tiny_model, max_batch=8)
        await worker.start()
        try:
            sessions = [await worker.open_session(s, seed=sd, realtime=False) for s, _, sd in specs]
            collectors = [_collect(s) for s in sessions]
            # push all the audio first, so that every step finds all sessions due together
            for s, (_, a, _) in zip(sessions, specs):
                s.push_audio(a[: cfg.audio_rate // 2], cfg.audio_rate)
            await asyncio.sleep(0)
            for s, (_, a, _) in zip(sessions, specs):
                s.push_audio(a[cfg.audio_rate // 2 :], cfg.audio_rate)
                s.end_audio()
            return await asyncio.wait_for(asyncio.gather(*collectors), 30), worker.steps
        finally:
            await worker.stop()

    results, steps = asyncio.run(main())
    total = sum(r.shape[0] for r in refs)
    assert steps < total  # batching happened
    for frames, ref in zip(results, refs):
        got = np.stack([f.image for f in frames])
        assert got.shape == ref.shape
        diff = np.abs(got.astype(int) - ref.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # float reassociation across batch sizes only


def test_sessions_join_and_leave_and_bad_input_is_isolated(tiny_model) -> None:
    cfg = tiny_model.config
    still_a, still_b = _still(tiny_model, 1), _still(tiny_model, 2)
    audio_b = _audio(tiny_model, 1.0, 4)
    ref_b = frames_to_uint8(_offline(tiny_model, still_b, audio_b, seed=2, chunk_frames=1).permute(0, 2, 3, 1))

    async def main():
        worker = InferenceWorker(tiny_model)
        await worker.start()
        try:
            a = await worker.open_session(still_a, seed=1, realtime=False)
            qa = a.subscribe(100)
            a.push_audio(_audio(tiny_model, 0.5, 3), cfg.audio_rate)
            with pytest.raises(AudioDecodeError, match="NaN"):
                a.push_audio(np.full(100, np.nan, np.float32), cfg.audio_rate)
            with pytest.raises(AudioDecodeError, match="rate"):
                a.push_audio(np.zeros(100, np.float32), 0)
            with pytest.raises(AudioDecodeError, match="shape"):
                a.push_audio(np.zeros((2, 2, 2), np.float32), cfg.audio_rate)
            with pytest.raises(ImageDecodeError, match="still image"):
                await worker.open_session(torch.zeros(3, 8, 8))
            await asyncio.wait_for(qa.get(), 10)  # a keeps working after bad pushes
            b = await worker.open_session(still_b, seed=2, realtime=False)  # joins while a runs
            collector = _collect(b)
            await a.close()  # leaves while b runs
            assert a not in worker.sessions and a.state is None
            with pytest.raises(SessionClosedError, match="closed"):
                a.push_audio(np.zeros(10, np.float32), cfg.audio_rate)
            # a session whose step fails (an identity of the wrong shape: the model fails) or
            # whose frame cannot be delivered (its renderer raises) is closed with the error;
            # the others, stepped in the same batch, go on with each frame made once
            def broken_renderer(image: np.ndarray) -> np.ndarray:
                raise RuntimeError("this renderer is broken")

            feeding = asyncio.create_task(_feed(b, audio_b, cfg.audio_rate, np.random.default_rng(0), 900))
            d = await worker.open_session(still_a, seed=6, realtime=False, renderer=broken_renderer)
            qd = d.subscribe(10)
            d.push_audio(_audio(tiny_model, 0.5, 7), cfg.audio_rate)
            with pytest.raises(RuntimeError, match="renderer is broken"):
                while True:
                    await asyncio.wait_for(qd.get(), 10)
            bad_identity = IdentityContext(torch.zeros(1, 3), torch.zeros(1, 2, 2, 2), ())
            c = await worker.open_session(bad_identity, seed=5, realtime=False)
            qc = c.subscribe(10)
            c.push_audio(_audio(tiny_model, 0.5, 6), cfg.audio_rate)
            with pytest.raises(RuntimeError):
                while True:
                    await asyncio.wait_for(qc.get(), 10)
            await feeding
            frames_b = await asyncio.wait_for(collector, 30)
            assert worker.running and c not in worker.sessions and d not in worker.sessions
            return frames_b
        finally:
            await worker.stop()

    frames_b = asyncio.run(main())
    np.testing.assert_array_equal(np.stack([f.image for f in frames_b]), ref_b)


def test_stop_leaves_no_thread_or_task(tiny_model) -> None:
    before_threads = set(threading.enumerate())

    async def main():
        before_tasks = asyncio.all_tasks()
        worker = InferenceWorker(tiny_model)
        await worker.start()
        sessions = [await worker.open_session(_still(tiny_model, k), seed=k) for k in range(3)]
        for s in sessions:
            s.push_audio(_audio(tiny_model, 0.3, 1), tiny_model.config.audio_rate)
        q = sessions[0].subscribe(4)
        await asyncio.sleep(0.3)
        await worker.stop(timeout=5.0)
        assert not worker.running and worker.sessions == []
        with pytest.raises(EndOfStream):
            while True:
                q.get_nowait()
        with pytest.raises(Exception, match="not running"):
            await worker.open_session(_still(tiny_model, 0))
        assert asyncio.all_tasks() == before_tasks

    asyncio.run(main())
    assert set(threading.enumerate()) == before_threads


def test_reduced_lookahead_equals_offline_with_zeroed_tail(tiny_model) -> None:
    """lookahead_ms trades quality for latency deterministically: audio past
    (i+1)*stride + lookahead is silence in frame i's window, whatever the timing."""
    cfg = tiny_model.config
    still, audio = _still(tiny_model, 8), _audio(tiny_model, 0.8, 8)
    look = int(0.025 * cfg.audio_rate)  # 25 ms instead of the model's 80 ms
    windows = audio_windows(audio, cfg).clone()
    windows[:, cfg.audio_feat_samples - (cfg.pad_right - look) :] = 0
    noise = NoiseSource(cfg.aux_latent, 4).next(windows.shape[0])
    ref = frames_to_uint8(tiny_model.generate(still, windows[None], noise[None], chunk_frames=1)[0].permute(0, 2, 3, 1))

    async def main():
        worker = InferenceWorker(tiny_model)
        await worker.start()
        try:
            session = await worker.open_session(still, seed=4, lookahead_ms=25, realtime=False)
            collector = _collect(session)
            await _feed(session, audio, cfg.audio_rate, np.random.default_rng(3), 500)
            return await asyncio.wait_for(collector, 30)
        finally:
            await worker.stop()

    frames = asyncio.run(main())
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), ref)
