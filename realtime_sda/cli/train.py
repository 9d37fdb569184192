"""``realtime-sda train | synth | prepare | evaluate``: making and scoring models."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 64x48 (height x width), got {text!r}") from None
    return h, w


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model from a JSON config (resumes from the out dir)",
                       description="Train an SDA model. CONFIG is a JSON object of TrainConfig fields "
                       "(data, out, model, loss weights, learning rates, batch_size, clip_frames, steps, ...); "
                       "training resumes from the last checkpoint in its out directory.")
    p.add_argument("config", help="training config (JSON)")
    p.add_argument("--steps", type=int, help="override the number of steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("synth", help="write a synthetic talking-face corpus (espeak-ng + procedural faces)")
    p.add_argument("dst", help="output dataset folder")
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--identities", type=int, help="number of people (default about clips / 6, 2 to 40)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of identities held out")
    p.add_argument("--img-size", type=_size, default=(64, 48), help="frame size HxW (default 64x48)")
    p.add_argument("--audio-rate", type=int, default=16000)
    p.add_argument("--photos", type=int, default=0,
                   help="how many identities are photographs (scikit-image's astronaut, varied) instead of drawn faces")
    p.set_defaults(func=_synth)

    p = sub.add_parser("prepare", help="build a dataset from talking-face videos (GRID or CREMA-D layout)")
    p.add_argument("src", help="folder of videos (audio embedded, or a .wav with the same name)")
    p.add_argument("dst", help="output dataset folder")
    p.add_argument("--img-size", type=_size, default=(64, 48))
    p.add_argument("--audio-rate", type=int, default=16000)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--model", help="take img_size, audio_rate, fps and mean face from this checkpoint")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of speakers (sub-folders) held out")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("evaluate", help="score a model: on a dataset (PSNR, SSIM, lip-sync, blinks) or on photos "
                       "plus speech (identity, lip-sync, motion, sharpness, steadiness, stillness)")
    p.add_argument("--model", required=True, help="model name or checkpoint path")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", help="dataset folder (ground-truth videos)")
    what.add_argument("--photos", nargs="+", metavar="PHOTO", help="photos to animate with --speech (no ground truth needed)")
    p.add_argument("--speech", metavar="AUDIO", help="speech for --photos")
    p.add_argument("--seed", type=int, default=0, help="noise seed for --photos (default 0)")
    p.add_argument("--split", default="test")
    p.add_argument("--max-clips", type=int, default=0)
    p.add_argument("--out", help="write the results here as JSON")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from ..training.config import TrainConfig
    from ..training.loop import train

    cfg = TrainConfig.load(args.config)
    if args.steps is not None:
        cfg.steps = args.steps
    path = train(cfg, show_progress=not args.no_progress)
    print(f"checkpoint: {path}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..training.synth.corpus import CorpusSpec, build_corpus

    spec = CorpusSpec(clips=args.clips, seed=args.seed, identities=args.identities, test_fraction=args.test_fraction,
                      img_size=args.img_size, audio_rate=args.audio_rate, photos=args.photos)
    with tqdm(total=args.clips, desc="synth", unit="clip") as bar:
        build_corpus(args.dst, spec, progress=lambda i, n: bar.update(1))
    print(f"wrote {args.clips} clips to {args.dst}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from ..training.prepare import PrepareSpec, prepare_dataset

    spec = PrepareSpec(img_size=args.img_size, audio_rate=args.audio_rate, fps=args.fps, test_fraction=args.test_fraction)
    if args.model:
        from ..checkpoints.loading import load_model

        cfg = load_model(args.model).config
        spec.img_size, spec.audio_rate, spec.fps, spec.mean_face = cfg.img_size, cfg.audio_rate, float(cfg.video_rate), cfg.mean_face
    report = prepare_dataset(args.src, args.dst, spec)
    print(f"wrote {len(report.written)} clips to {args.dst}; skipped {len(report.skipped)} "
          f"(listed in {args.dst}/skipped.txt)")
    return 0 if report.written else 1


def _evaluate(args: argparse.Namespace) -> int:
    if args.photos:
        from ..errors import RealtimeSDAError
        from ..photo.measure import evaluate_photos

        if not args.speech:
            raise RealtimeSDAError("--photos needs --speech AUDIO (the speech to animate them with)")
        result = evaluate_photos(args.model, args.photos, args.speech, seed=args.seed, device=args.device, out=args.out)
        for row in result["per_photo"]:
            print(f"{row['photo']}: identity {row['identity']:.2f}, lip-sync r {row['lip_sync']:.2f}, mouth motion "
                  f"{row['mouth_motion']:.3f}, sharpness {row['sharpness']:.2f}, steadiness {row['steadiness']:.2f}, "
                  f"stillness {row['stillness']:.1f} ({row['size'][1]}x{row['size'][0]})")
        print(json.dumps(result["mean"], indent=1))
        return 0
    from ..training.evaluate import evaluate_model

    result = evaluate_model(args.model, args.data, args.split, args.max_clips, out=args.out, device=args.device)
    print(json.dumps(result["mean"], indent=1))
    return 0
