"""``realtime-sda animate IMAGE AUDIO -o OUT.mp4`` (or ``IMAGE --text "..."``): the offline
job from the command line.

Frames are encoded as they are generated, so memory stays flat however long the audio is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

__all__ = ["register", "default_model", "add_photo_options", "photo_options", "LIVE_SIZE"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("animate", help="animate a still face with a speech clip into an mp4")
    p.add_argument("image", help="still image of a face (png, jpg, bmp...)")
    p.add_argument("audio", nargs="?", default=None,
                   help="speech audio (wav, flac, mp3, ogg, m4a...); or leave it out and give --text")
    p.add_argument("--text", default=None,
                   help="speak this text with espeak-ng instead of an audio file (exactly one of AUDIO or --text)")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice for --text, e.g. en-us, en+f3, de")
    p.add_argument("-o", "--output", required=True, help="output .mp4 file (H.264 + AAC)")
    p.add_argument(
        "--model", default=None,
        help="model name (default, grid, timit, crema) or checkpoint path "
        "(default: 'default', else 'grid' if installed; see 'realtime-sda models')",
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present, else cpu)")
    add_photo_options(p)
    p.add_argument("--seed", type=int, default=None, help="noise seed (same seed, same video)")
    p.add_argument("--precision", choices=["float32", "bfloat16", "auto"], default=None,
                   help="the generator's arithmetic: float32 (default), bfloat16, or auto (bfloat16 where the "
                        "CPU computes it natively: about 2x faster, frames within about one level of float32's)")
    p.add_argument("--scale", type=float, default=None, help="enlarge the frames in the mp4 by this factor")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


#: the long side of live whole-photo video when none is asked for: real time on 2 CPU cores
LIVE_SIZE = 512


def add_photo_options(p: argparse.ArgumentParser, live: bool = False) -> None:
    """The options that choose between the whole photo (default) and the model's crop."""
    p.add_argument("--crop", action="store_true",
                   help="output the model's aligned face crop (what the original library made) instead of the whole photo")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help=(f"long side of the live photo in pixels (default: the photo's, at most {LIVE_SIZE}: real time "
                         "on 2 CPU cores)") if live
                   else "long side of the output photo in pixels (default: the photo's, at most 1280)")
    p.add_argument("--face", type=int, default=0, metavar="N",
                   help="which face of a group photo to animate: 0 = the largest (see 'realtime-sda faces PHOTO')")
    p.add_argument("--aligned", action="store_true",
                   help="the image is already an aligned face crop: only resize it (implies --crop)")


def photo_options(args: argparse.Namespace) -> dict:
    """``full_frame``, ``face``, ``size`` for the animator or a session, checked."""
    from ..errors import RealtimeSDAError

    crop = bool(args.crop or args.aligned)
    if crop and (args.size is not None or args.face):
        raise RealtimeSDAError("--size and --face choose the whole-photo output; leave them out with --crop/--aligned")
    if args.face < 0:
        raise RealtimeSDAError(f"--face must be 0 or more (0 is the largest face), got {args.face}")
    return {"full_frame": not crop, "face": args.face, "size": args.size}


def default_model() -> str:
    """'default' if installed, else 'grid' if installed, else 'default' (whose error says
    where to get a model)."""
    from ..checkpoints.registry import resolve_model
    from ..errors import ModelNotFoundError

    for name in ("default", "grid"):
        try:
            resolve_model(name)
            return name
        except ModelNotFoundError:
            continue
    return "default"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..animator import VideoAnimator
    from ..errors import RealtimeSDAError
    from ..media.video import VideoWriter

    if args.scale is not None and not args.scale > 0:
        raise RealtimeSDAError(f"--scale must be a positive number, got {args.scale}")
    if (args.audio is None) == (args.text is None):
        raise RealtimeSDAError("give exactly one of AUDIO (a speech file) or --text \"what to say\"")
    options = photo_options(args)
    animator = VideoAnimator(model_path=args.model or default_model(), gpu=None, device=args.device,
                             precision=args.precision)
    if args.aligned:
        from ..media.face import aligned_crop_doubt

        doubt = aligned_crop_doubt(args.image, animator.config)
        if doubt:
            print(f"realtime-sda: warning: --aligned: {doubt}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="realtime-sda-animate-") as tmp:
        audio = args.audio
        if args.text is not None:
            from ..media.speech import synthesize_speech

            audio = str(synthesize_speech(args.text, Path(tmp) / "speech.wav", voice=args.voice))
        job = animator.animate(args.image, audio, aligned=args.aligned, seed=args.seed, **options)
    h, w = job.size
    with VideoWriter(
        args.output, animator.video_rate, (h, w), job.audio, animator.audio_rate, args.scale
    ) as writer, tqdm(
        total=job.num_frames, unit="frame", desc="animating", disable=args.quiet, file=sys.stderr
    ) as bar:
        for chunk in job:
            writer.write(chunk)
            bar.update(len(chunk))
    h, w = writer.size
    print(f"wrote {args.output}: {job.num_frames} frames of {w}x{h} at {animator.video_rate} fps")
    return 0
