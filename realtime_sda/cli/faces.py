"""``realtime-sda faces PHOTO``: the faces found in a photo, numbered as ``--face N`` takes
them (largest first), with their boxes in the photo's own pixels."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faces", help="list the faces in a photo (for --face N)")
    p.add_argument("image", help="photo (png, jpg, bmp...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..media.face import detect_faces
    from ..media.image import load_rgb

    rgb = load_rgb(args.image)
    boxes = detect_faces(rgb)
    h, w = rgb.shape[:2]
    if not boxes:
        print(f"no face found in {args.image} ({w}x{h})")
        return 1
    print(f"{len(boxes)} face(s) in {args.image} ({w}x{h}), largest first:")
    for i, (left, top, right, bottom) in enumerate(boxes):
        print(f"  --face {i}: x {left}..{right}, y {top}..{bottom} ({right - left}x{bottom - top} px)")
    return 0
