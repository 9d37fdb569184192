"""``realtime-sda demo``: speak a sentence with espeak-ng and animate the bundled avatar with
the embedded default model: the whole offline job, out of the box."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

__all__ = ["register"]

DEFAULT_TEXT = "Hello! I am a talking face, animated live from the sound of speech."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="animate the bundled avatar photo with synthetic speech (default model)")
    p.add_argument("-o", "--output", default="demo.mp4", help="output mp4 (default demo.mp4)")
    p.add_argument("--text", default=DEFAULT_TEXT, help="what the avatar says")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice, e.g. en-us, en+f3, de")
    p.add_argument("--model", default="default", help="model name or checkpoint path")
    p.add_argument("--avatar", default=None, help="face image (default: the bundled avatar)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)")
    p.add_argument("--seed", type=int, default=0, help="noise seed: the same seed gives the same video (default 0)")
    p.add_argument("--precision", choices=["float32", "bfloat16", "auto"], default=None,
                   help="the generator's arithmetic: float32 (default), bfloat16, or auto (bfloat16 where the "
                        "CPU computes it natively: about 2x faster, frames within about one level of float32's)")
    p.add_argument("--scale", type=float, default=None, help="enlarge the frames in the mp4")
    p.add_argument("--crop", action="store_true",
                   help="output the model's aligned face crop instead of the whole (bundled or --avatar) photo")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..animator import VideoAnimator
    from ..media.image import default_avatar_path
    from ..media.speech import synthesize_speech
    from ..media.video import even_size

    avatar = Path(args.avatar) if args.avatar else default_avatar_path()
    animator = VideoAnimator(model_path=args.model, gpu=None, device=args.device, precision=args.precision)  # CUDA when present
    with tempfile.TemporaryDirectory(prefix="realtime-sda-demo-") as tmp:
        wav = synthesize_speech(args.text, Path(tmp) / "speech.wav", voice=args.voice)
        if args.crop:
            video, audio = animator(str(avatar), str(wav), aligned=args.avatar is None, seed=args.seed)
        else:
            video, audio = animator(str(avatar), str(wav), seed=args.seed, full_frame=True)
    animator.save_video(video, audio, args.output, scale=args.scale)
    h, w = even_size(*video.shape[2:], args.scale)  # what the file holds
    print(f"wrote {args.output}: {video.shape[0]} frames of {w}x{h} at {animator.config.video_rate} fps")
    return 0
