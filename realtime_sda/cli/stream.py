"""``realtime-sda preview`` and ``realtime-sda vcam``: a live talking face from a microphone or
an audio file, shown in a window (with its sound) or sent to a virtual webcam."""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from typing import Any

from .animate import LIVE_SIZE, add_photo_options, photo_options

__all__ = ["register", "run_preview", "run_vcam"]


def _common(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--mic", action="store_true", help="take speech from a microphone")
    src.add_argument("--audio", metavar="FILE", help="take speech from an audio file (played in real time)")
    src.add_argument("--list-devices", action="store_true", help="list the microphones and exit")
    p.add_argument("--avatar", metavar="IMAGE", default=None,
                   help="still image of a face (default: the bundled avatar, when installed)")
    add_photo_options(p, live=True)
    p.add_argument("--model", default=None, help="model name or checkpoint path (default: 'default')")
    p.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:N (default: cuda if present)")
    p.add_argument("--bf16", action="store_true", help="run the generator in bfloat16 (faster on some CPUs/GPUs)")
    p.add_argument("--seed", type=int, default=None, help="noise seed (same seed and audio, same frames)")
    p.add_argument("--lookahead-ms", type=float, default=None,
                   help="audio look-ahead in ms (default and maximum: the model's own, 80 ms for GRID); "
                   "less means lower latency and lower quality")
    p.add_argument("--grace-ms", type=float, default=100.0,
                   help="how late audio may be before a frame is made with silence instead (default 100)")
    p.add_argument("--max-lag-frames", type=int, default=2,
                   help="when the picture falls this many frames behind (slow machine), skip ahead to the "
                   "present (default 2; 0 never skips, so the picture may lag)")
    p.add_argument("--mic-device", default=None, help="microphone index or name (see --list-devices)")
    p.add_argument("--mic-rate", type=int, default=None, help="capture rate in Hz (default: the device's)")
    p.add_argument("--scale", type=int, default=None,
                   help="enlarge the picture this many times (default 1 for a photo, 3 for --crop)")
    p.add_argument("--record", metavar="OUT.mp4", default=None, help="also record the stream (H.264 + AAC)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="live talking face in a window, from a microphone or an audio file")
    _common(p)
    p.add_argument("--no-sound", action="store_true", help="do not play the sound")
    p.set_defaults(func=run_preview)
    v = sub.add_parser("vcam", help="live talking face as a virtual webcam (v4l2loopback / OBS)")
    _common(v)
    v.add_argument("--vcam-device", default=None, help="virtual camera device, e.g. /dev/video10")
    v.set_defaults(func=run_vcam)


def _mic_device(value: str | None) -> Any:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def _scale(args: argparse.Namespace) -> int:
    """The window/camera enlargement: 3 for the model's small crop, 1 for a whole photo."""
    from ..errors import RealtimeSDAError

    if args.scale is not None and args.scale < 1:
        raise RealtimeSDAError(f"--scale must be a whole number >= 1, got {args.scale}")
    if args.scale is not None:
        return int(args.scale)
    return 1 if photo_options(args)["full_frame"] and args.avatar is not None else 3


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    """(model, still tensor) from the command line; the still is the bundled avatar's
    aligned crop unless an --avatar photo is given (then the whole photo, unless --crop)."""
    import torch

    from ..checkpoints.loading import load_model
    from ..media.face import prepare_still

    model = load_model(args.model or "default", device=args.device)
    if args.bf16:
        model.set_inference_dtype(torch.bfloat16)
    if args.avatar is not None and photo_options(args)["full_frame"]:
        return model, None  # the whole photo: prepared by the worker (InferenceWorker.prepare_photo)
    avatar, aligned = args.avatar, args.aligned
    if avatar is None:
        from ..media.image import default_avatar_path

        avatar, aligned = default_avatar_path(), True
    return model, prepare_still(avatar, model.config, aligned=aligned)


def _source(args: argparse.Namespace) -> Any:
    from ..streaming.sources import FileSource, MicrophoneSource

    if args.mic:
        return MicrophoneSource(_mic_device(args.mic_device), args.mic_rate)
    return FileSource(args.audio, realtime=True)


def _list_devices() -> int:
    from ..streaming.sources import list_input_devices

    devices = list_input_devices()
    print("\n".join(devices) if devices else "no input devices found")
    return 0


async def _stream(args: argparse.Namespace, sinks: list[Any]) -> Any:
    from ..streaming import InferenceWorker, StreamPipeline
    from ..streaming.sinks import RecorderSink

    source = _source(args)  # device errors before the model loads
    model, still = _load(args)
    if args.record:
        sinks.append(RecorderSink(args.record))
    worker = InferenceWorker(model)
    await worker.start()
    try:
        renderer = None
        options = photo_options(args)
        if still is None:
            # --size is the size; by default the photo's own, at most LIVE_SIZE (a small
            # photo enlarged would only cost time: a 112 px crop at 512 px ran at 16 fps)
            renderer, still = await worker.prepare_photo(args.avatar, face=options["face"], size=options["size"],
                                                         max_side=LIVE_SIZE)
        session = await worker.open_session(
            still, seed=args.seed, lookahead_ms=args.lookahead_ms, realtime=True, grace_ms=args.grace_ms,
            catchup_frames=args.max_lag_frames if args.max_lag_frames > 0 else None, renderer=renderer,
        )
        def started() -> None:
            h, w = session.frame_size
            print(
                f"streaming: {w}x{h} at {model.config.video_rate} fps, "
                f"look-ahead {session.lookahead_ms:g} ms; press q in the window or Ctrl+C to stop",
                file=sys.stderr,
            )

        return await StreamPipeline(session, source, sinks).run(duration=args.duration, on_started=started)
    finally:
        await worker.stop()


def _report(snap: Any) -> None:
    print(
        f"{snap.frames} frames, {snap.fps:.1f} fps, latency p50 {snap.latency_p50_ms:.0f} ms / "
        f"p99 {snap.latency_p99_ms:.0f} ms, silence {snap.silence_frames}, skipped {snap.skipped_frames}, "
        f"dropped {snap.dropped_frames}, overflow {snap.overflow_frames}"
    )


def run_preview(args: argparse.Namespace) -> int:
    if args.list_devices:
        return _list_devices()
    from ..streaming.sinks import PreviewSink

    # the window lives on the main thread (Qt wants it there); the stream runs beside it
    sink = PreviewSink(scale=_scale(args), sound=not args.no_sound, main_thread=True)
    box: dict[str, Any] = {}

    def stream() -> None:
        try:
            box["snap"] = asyncio.run(_stream(args, [sink]))
        except BaseException as exc:  # re-raised on the main thread
            box["error"] = exc

    thread = threading.Thread(target=stream, name="sda-stream")
    thread.start()
    try:
        sink.host(give_up=lambda: not thread.is_alive())
    except KeyboardInterrupt:
        sink.request_stop()
    finally:
        sink.request_stop()
        thread.join()
    if "error" in box:
        raise box["error"]
    _report(box["snap"])
    return 0


def run_vcam(args: argparse.Namespace) -> int:
    if args.list_devices:
        return _list_devices()
    from ..streaming.sinks import VirtualCameraSink

    _report(asyncio.run(_stream(args, [VirtualCameraSink(args.vcam_device, scale=_scale(args))])))
    return 0
