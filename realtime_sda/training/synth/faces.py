"""Procedural face identities: a canonical iBUG-68 landmark layout, per-identity variations
of it, and the static (non-animated) layer of each face drawn with numpy and PIL.

The canonical layout (:data:`TEMPLATE`) is the mean face every synthetic frame is aligned to:
the landmarks of one aligned GRID-style face, mirrored and averaged so it is symmetric. The
five alignment points (33, 36, 39, 42, 45) are identical for every identity, so synthetic
frames are aligned exactly as a real corpus would be after the similarity warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "TEMPLATE",
    "MIRROR",
    "ALIGN_POINTS",
    "canonical_landmarks",
    "Identity",
    "random_identity",
    "render_static",
]

#: Landmarks (x / width, y / height) of an aligned face in a 4:3 portrait frame (iBUG order).
_RAW = np.array([
    [0.135, 0.445], [0.146, 0.521], [0.153, 0.602], [0.167, 0.68], [0.194, 0.758], [0.247, 0.826],
    [0.312, 0.888], [0.41, 0.94], [0.528, 0.958], [0.656, 0.948], [0.764, 0.901], [0.851, 0.836],
    [0.913, 0.755], [0.955, 0.669], [0.962, 0.576], [0.965, 0.484], [0.979, 0.393], [0.167, 0.341],
    [0.198, 0.294], [0.271, 0.276], [0.351, 0.279], [0.424, 0.299], [0.573, 0.294], [0.649, 0.26],
    [0.74, 0.247], [0.826, 0.26], [0.878, 0.307], [0.503, 0.359], [0.503, 0.417], [0.507, 0.471],
    [0.507, 0.529], [0.424, 0.578], [0.465, 0.594], [0.51, 0.602], [0.562, 0.591], [0.608, 0.576],
    [0.253, 0.383], [0.295, 0.354], [0.361, 0.352], [0.41, 0.383], [0.358, 0.396], [0.295, 0.401],
    [0.625, 0.372], [0.681, 0.339], [0.743, 0.336], [0.785, 0.362], [0.75, 0.383], [0.684, 0.383],
    [0.378, 0.716], [0.424, 0.685], [0.476, 0.669], [0.514, 0.68], [0.559, 0.672], [0.615, 0.688],
    [0.674, 0.716], [0.615, 0.745], [0.559, 0.753], [0.51, 0.755], [0.472, 0.753], [0.42, 0.74],
    [0.403, 0.714], [0.476, 0.701], [0.514, 0.706], [0.559, 0.701], [0.646, 0.714], [0.556, 0.714],
    [0.51, 0.719], [0.472, 0.714],
])

#: Index of each landmark's mirror image (left/right swapped).
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)

#: The points used to align faces (nose base, eye corners), as in the original library.
ALIGN_POINTS = (33, 36, 39, 42, 45)


def _symmetric(raw: np.ndarray) -> np.ndarray:
    mirrored = raw[MIRROR].copy()
    mirrored[:, 0] = 1.0 - mirrored[:, 0]
    out = (raw + mirrored) / 2.0
    out[:, 0] += 0.5 - out[27:31, 0].mean()  # centre the nose line
    return out


TEMPLATE = _symmetric(_RAW)


def canonical_landmarks(img_size: tuple[int, int]) -> np.ndarray:
    """The mean face for an (H, W) image: (68, 2) float64 pixel coordinates (x, y)."""
    h, w = img_size
    return TEMPLATE * np.array([w, h], dtype=np.float64)


@dataclass
class Identity:
    """Appearance parameters of one synthetic person (all colours RGB 0-255)."""

    index: int
    landmarks: np.ndarray  # (68, 2) unit coordinates of the neutral face
    skin: np.ndarray
    hair: np.ndarray
    hair_style: str  # "bald", "short", "fringe", "long"
    iris: np.ndarray
    lips: np.ndarray
    background: tuple[np.ndarray, np.ndarray]
    clothes: np.ndarray
    brow_thickness: float
    max_open: float  # jaw drop at full opening, fraction of the image height
    texture_seed: int
    photo: np.ndarray | None = None  # an aligned photograph (uint8 H x W x 3) used as the static layer


_SKINS = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 128], [198, 134, 92],
                   [160, 102, 66], [120, 74, 48], [88, 56, 38]], dtype=np.float64)
_HAIRS = np.array([[20, 16, 14], [58, 38, 24], [110, 72, 40], [176, 130, 72],
                   [220, 190, 130], [150, 60, 30], [120, 120, 120]], dtype=np.float64)
_IRISES = np.array([[70, 45, 25], [40, 90, 140], [70, 110, 60], [110, 85, 50]], dtype=np.float64)


def random_identity(rng: np.random.Generator, index: int) -> Identity:
    """Draw one identity: skin tone, face shape, eyes, brows, hair, lips, colours."""
    lm = TEMPLATE.copy()
    cx = 0.5
    jaw = np.arange(0, 17)
    lm[jaw, 0] = cx + (lm[jaw, 0] - cx) * rng.uniform(0.9, 1.04)  # face width
    chin = rng.uniform(-0.02, 0.015)
    lm[4:13, 1] += chin * np.sin(np.linspace(0.2, np.pi - 0.2, 9))  # chin length
    brow = rng.uniform(-0.025, 0.015)
    lm[17:27, 1] += brow
    mouth = np.arange(48, 68)
    mw = rng.uniform(0.85, 1.12)
    lm[mouth, 0] = cx + (lm[mouth, 0] - cx) * mw
    my = lm[mouth, 1].mean()
    lm[mouth, 1] = my + (lm[mouth, 1] - my) * rng.uniform(0.8, 1.3) + rng.uniform(-0.01, 0.01)
    nose = [31, 32, 34, 35]
    lm[nose, 0] = cx + (lm[nose, 0] - cx) * rng.uniform(0.85, 1.2)
    eye_open = rng.uniform(0.8, 1.25)
    for lid in ([37, 38, 40, 41], [43, 44, 46, 47]):
        ey = lm[[36, 39] if lid[0] == 37 else [42, 45], 1].mean()
        lm[lid, 1] = ey + (lm[lid, 1] - ey) * eye_open
    skin_i = rng.uniform(0, len(_SKINS) - 1)
    lo = int(skin_i)
    skin = _SKINS[lo] + (skin_i - lo) * (_SKINS[min(lo + 1, len(_SKINS) - 1)] - _SKINS[lo])
    skin = np.clip(skin * rng.uniform(0.93, 1.05, 3), 0, 255)
    hair = np.clip(_HAIRS[rng.integers(len(_HAIRS))] * rng.uniform(0.8, 1.2), 0, 255)
    lips = np.clip(skin * np.array([0.85, 0.55, 0.55]) + rng.uniform(-15, 15, 3), 0, 255)
    bg_a = rng.uniform(20, 235, 3)
    bg_b = np.clip(bg_a + rng.uniform(-60, 60, 3), 0, 255)
    return Identity(
        index=index, landmarks=lm, skin=skin, hair=hair,
        hair_style=str(rng.choice(["bald", "short", "short", "fringe", "long", "long"])),
        iris=np.clip(_IRISES[rng.integers(len(_IRISES))] * rng.uniform(0.8, 1.2), 0, 255),
        lips=lips, background=(bg_a, bg_b), clothes=rng.uniform(10, 230, 3),
        brow_thickness=float(rng.uniform(0.012, 0.03)), max_open=float(rng.uniform(0.055, 0.085)),
        texture_seed=int(rng.integers(2**31)),
    )


def _col(c: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(round(v)) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def _pts(a: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in a]


def _head_outline(p: np.ndarray) -> np.ndarray:
    """Jaw points followed by a forehead arc closing the head outline (pixel coords)."""
    left, right = p[0], p[16]
    cx, cy = (left + right) / 2
    rx = (right[0] - left[0]) / 2 * 1.02
    ry = cy - (p[19, 1] + p[24, 1]) / 2 + 0.55 * rx
    t = np.linspace(0, np.pi, 24)
    arc = np.c_[cx + rx * np.cos(t), cy - ry * np.sin(t)]
    return np.concatenate([p[:17], arc[1:-1]])


def render_static(ident: Identity, size: tuple[int, int]) -> np.ndarray:
    """The parts of the face that do not animate (background, hair, skin, ears, nose, brows),
    drawn at pixel size (H, W). Returns float32 (H, W, 3) in 0-255. Eyes and mouth are drawn
    per frame by :mod:`.animate`."""
    h, w = size
    if ident.photo is not None:
        return np.asarray(Image.fromarray(ident.photo).resize((w, h), Image.BICUBIC), dtype=np.float32)
    p = ident.landmarks * np.array([w, h])
    rng = np.random.default_rng(ident.texture_seed)
    yy = np.linspace(0, 1, h)[:, None, None]
    a, b = ident.background
    img = Image.fromarray(np.uint8(np.broadcast_to(a * (1 - yy) + b * yy, (h, w, 3)).clip(0, 255)))
    d = ImageDraw.Draw(img)
    head = _head_outline(p)
    face_w = p[16, 0] - p[0, 0]
    # shoulders and neck
    d.ellipse([p[0, 0] - 0.5 * face_w, p[8, 1] + 0.02 * h, p[16, 0] + 0.5 * face_w, p[8, 1] + 0.9 * h],
              fill=_col(ident.clothes))
    d.rectangle([p[5, 0], p[3, 1], p[11, 0], h], fill=_col(ident.skin * 0.78))
    if ident.hair_style == "long":
        d.ellipse([p[0, 0] - 0.12 * face_w, p[19, 1] - 0.45 * face_w, p[16, 0] + 0.12 * face_w, p[8, 1] + 0.05 * h],
                  fill=_col(ident.hair * 0.85))
    for side, sgn in ((p[2], -1), (p[14], 1)):  # ears
        d.ellipse([side[0] - 0.07 * face_w + sgn * 0.02 * face_w, side[1] - 0.13 * face_w,
                   side[0] + 0.07 * face_w + sgn * 0.02 * face_w, side[1] + 0.05 * face_w],
                  fill=_col(ident.skin * 0.9))
    d.polygon(_pts(head), fill=_col(ident.skin))
    arr = np.asarray(img, dtype=np.float32).copy()
    # shading: darker towards the face outline, warm cheeks, fine skin noise
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon(_pts(head), fill=255)
    m = np.asarray(mask.filter(ImageFilter.GaussianBlur(0.02 * w)), dtype=np.float32)[..., None] / 255
    xs = (np.arange(w)[None, :] - p[27, 0]) / (face_w / 2)
    ys = (np.arange(h)[:, None] - p[30, 1]) / (0.6 * face_w)
    shade = 1.0 - 0.28 * np.clip(xs**2 + 0.5 * ys**2, 0, 1.5)
    arr = arr * (1 - m * (1 - shade[..., None]))
    for c in (p[2] * 0.35 + p[31] * 0.65, p[14] * 0.35 + p[35] * 0.65):
        r2 = ((np.arange(w)[None, :] - c[0]) ** 2 + (np.arange(h)[:, None] - c[1]) ** 2) / (0.09 * face_w) ** 2
        arr[..., 0] += 10 * np.exp(-r2) * m[..., 0]
    noise = rng.normal(0, 1, (h // 4 + 1, w // 4 + 1)).astype(np.float32)
    noise = np.asarray(Image.fromarray(noise, mode="F").resize((w, h), Image.BILINEAR))
    arr += 4.0 * noise[..., None] * m
    img = Image.fromarray(np.uint8(arr.clip(0, 255)))
    d = ImageDraw.Draw(img)
    # hair on top of the head
    if ident.hair_style != "bald":
        line = p[19, 1] - (0.16 if ident.hair_style != "fringe" else 0.07) * face_w
        top = head[head[:, 1] < line + 0.15 * face_w]
        cap = np.concatenate([[[p[0, 0] - 0.03 * face_w, line + 0.05 * face_w]], top[::-1] if top[0, 0] > top[-1, 0] else top,
                              [[p[16, 0] + 0.03 * face_w, line + 0.05 * face_w]]])
        cap = np.concatenate([cap, [[p[16, 0] + 0.06 * face_w, -0.1 * h], [p[0, 0] - 0.06 * face_w, -0.1 * h]]])
        d.polygon(_pts(cap), fill=_col(ident.hair))
        d.chord([p[0, 0] - 0.02 * face_w, line - 0.12 * face_w, p[16, 0] + 0.02 * face_w, line + 0.12 * face_w],
                0, 180, fill=_col(ident.hair))
        if ident.hair_style == "long":
            for x0 in (p[0, 0] - 0.1 * face_w, p[16, 0] - 0.02 * face_w):
                d.rectangle([x0, line, x0 + 0.12 * face_w, p[4, 1]], fill=_col(ident.hair * 0.92))
    # brows
    bt = max(1, int(round(ident.brow_thickness * h)))
    for idx in (range(17, 22), range(22, 27)):
        d.line(_pts(p[list(idx)]), fill=_col(ident.hair * 0.6 + ident.skin * 0.1), width=bt, joint="curve")
    # nose: soft side shadows, nostrils, tip highlight
    dark = _col(ident.skin * 0.72)
    d.line(_pts(p[[28, 29, 31]] + [-0.03 * face_w, 0]), fill=_col(ident.skin * 0.88), width=max(1, bt // 2))
    d.line(_pts(p[[28, 29, 35]] + [0.03 * face_w, 0]), fill=_col(ident.skin * 0.88), width=max(1, bt // 2))
    for i in (32, 34):
        c = p[i] + [0, -0.008 * h]
        d.ellipse([c[0] - 0.025 * face_w, c[1] - 0.01 * h, c[0] + 0.025 * face_w, c[1] + 0.008 * h], fill=dark)
    d.arc([p[31, 0], p[30, 1] - 0.02 * h, p[35, 0], p[33, 1] + 0.005 * h], 20, 160, fill=dark, width=max(1, bt // 2))
    out = np.asarray(img.filter(ImageFilter.GaussianBlur(0.004 * w)), dtype=np.float32)
    return out
