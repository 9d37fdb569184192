"""Before/after contact sheet for the README: scikit-image's astronaut (a NASA portrait in the
public domain) as the default model drew it before (its 48x64 crop, enlarged) and as the
whole-photo output draws it now (four frames of speech). Writes benchmarks/results/photo_sheet.jpg.

usage: python benchmarks/photo_sheet.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from PIL import Image
    from skimage import data

    from realtime_sda import VideoAnimator
    from testsupport.media import speech_like

    animator = VideoAnimator("default", gpu=-1)
    photo = data.astronaut()
    audio = speech_like(seconds=3.0, rate=animator.audio_rate)
    full, _ = animator(photo, audio, fs=animator.audio_rate, seed=1, full_frame=True)
    crop, _ = animator(photo, audio, fs=animator.audio_rate, seed=1)
    opening = np.abs(full.astype(int) - photo.transpose(2, 0, 1)[None]).mean(axis=(1, 2, 3))
    picks = np.argsort(opening)[[0, len(opening) // 2, -len(opening) // 5, -1]]
    face = (slice(30, 250), slice(110, 330))

    def tile(img: np.ndarray) -> Image.Image:
        return Image.fromarray(np.ascontiguousarray(img)).resize((264, 264), Image.LANCZOS)

    before = [tile(photo[face])] + [Image.fromarray(crop[i].transpose(1, 2, 0)).resize((198, 264), Image.NEAREST) for i in picks]
    after = [tile(photo[face])] + [tile(full[i].transpose(1, 2, 0)[face]) for i in picks]
    sheet = Image.new("RGB", (5 * 268, 2 * 268), (255, 255, 255))
    for row, tiles in enumerate((before, after)):
        for col, t in enumerate(tiles):
            sheet.paste(t, (col * 268 + (264 - t.size[0]) // 2, row * 268))
    out = ROOT / "benchmarks" / "results" / "photo_sheet.jpg"
    sheet.save(out, quality=88)
    print(f"wrote {out}: top, the photo then the model's crop (before); bottom, the whole-photo output (after)")


if __name__ == "__main__":
    main()
