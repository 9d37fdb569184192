"""Animating a procedural face: speech-driven mouth and blink tracks, landmark motion, a
landmark-driven warp of the face's static layer (the jaw drops, the cheeks follow the lips),
and the eyes and mouth drawn from the moved landmarks, all supersampled and box-filtered."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .faces import Identity, render_static

__all__ = [
    "mouth_tracks",
    "blink_track",
    "head_motion",
    "animate_landmarks",
    "FaceAnimator",
]

_SS = 3  # supersampling factor of the drawing


def _smooth(x: np.ndarray, kernel: tuple[float, ...] = (0.25, 0.5, 0.25)) -> np.ndarray:
    k = np.asarray(kernel)
    r = len(k) // 2
    return np.convolve(np.pad(x, r, mode="edge"), k, mode="valid")


def mouth_tracks(features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mouth opening (0-1) from loudness (less for noisy fricatives) and rounding (-0.4 to 1,
    negative = spread) from a low spectral centroid while voiced."""
    level, cen, noisy = features["level"], features["centroid"], features["noisy"]
    opening = _smooth(np.clip(level**1.2 * (1.0 - 0.6 * noisy), 0, 1))
    voiced = np.clip((level - 0.25) / 0.3, 0, 1)
    rounding = _smooth(np.clip((1400.0 - cen) / 900.0, -0.4, 1.0) * voiced, (0.2, 0.2, 0.2, 0.2, 0.2))
    return opening, rounding


def blink_track(frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Eyelid closure (0 open, 1 closed): one blink every 2-4 s, each about 200 ms."""
    shape = np.array([0.45, 1.0, 1.0, 0.6, 0.25])
    out = np.zeros(frames)
    t = rng.uniform(0.2, 1.8)
    while True:
        start = int(round(t * fps))
        if start >= frames:
            break
        stop = min(frames, start + len(shape))
        out[start:stop] = np.maximum(out[start:stop], shape[: stop - start])
        t += rng.uniform(2.0, 4.0)
    return out


def head_motion(frames: int, fps: float, rng: np.random.Generator, level: np.ndarray) -> np.ndarray:
    """Small smooth head motion per frame: (tx, ty) in face widths, rotation (rad), scale."""
    t = np.arange(frames) / fps
    out = np.zeros((frames, 4))
    amp = (0.012, 0.01, np.deg2rad(1.5), 0.012)
    for j in range(4):
        for _ in range(3):
            f, ph = rng.uniform(0.1, 0.6), rng.uniform(0, 2 * np.pi)
            out[:, j] += amp[j] / 3 * np.sin(2 * np.pi * f * t + ph)
    out[:, 1] += 0.006 * _smooth(level, (0.2,) * 5)  # a slight nod while speaking
    out[:, 3] += 1.0
    return out


def animate_landmarks(
    neutral: np.ndarray, height: float, max_open: float, opening: float, rounding: float, blink: float
) -> np.ndarray:
    """Move a neutral face's (68, 2) pixel landmarks for one frame's mouth and eyelid state."""
    p = neutral.copy()
    jaw = opening * max_open * height
    p[[65, 66, 67], 1] += jaw * np.array([0.9, 1.0, 0.9])
    p[55:60, 1] += jaw * np.array([0.85, 0.95, 1.0, 0.95, 0.85])
    p[[48, 54, 60, 64], 1] += 0.3 * jaw * (1 - max(rounding, 0))
    p[61:64, 1] -= (0.08 + 0.12 * max(rounding, 0)) * jaw
    p[49:54, 1] -= 0.04 * jaw
    k = np.arange(3, 14)
    p[k, 1] += jaw * (0.15 + 0.85 * np.cos((k - 8) / 5.0 * np.pi / 2))
    mouth = np.arange(48, 68)
    cx = neutral[[48, 54], 0].mean()
    p[mouth, 0] = cx + (p[mouth, 0] - cx) * (1.0 - 0.28 * rounding)
    for up, low in ((37, 41), (38, 40), (43, 47), (44, 46)):
        p[up, 1] += blink * (p[low, 1] - p[up, 1]) * 0.95
        p[low, 1] -= blink * 0.05 * (p[low, 1] - neutral[up, 1])
    return p


def _rbf_field(ctrl: np.ndarray, disp: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    """Smooth (h, w, 2) displacement interpolating ``disp`` at ``ctrl`` (Gaussian RBF)."""
    d2 = ((ctrl[:, None] - ctrl[None]) ** 2).sum(-1)
    k = np.exp(-d2 / (2 * sigma**2)) + 1e-3 * np.eye(len(ctrl))
    weights = np.linalg.solve(k, disp)  # (n, 2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    field = np.zeros((h, w, 2))
    for c, wt in zip(ctrl, weights):
        g = np.exp(-((xs - c[0]) ** 2 + (ys - c[1]) ** 2) / (2 * sigma**2))
        field += g[..., None] * wt
    return field


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear sampling of (h, w, 3) ``img`` at float pixel coordinates (edges clamped)."""
    h, w = img.shape[:2]
    x = np.clip(x, 0, w - 1.001)
    y = np.clip(y, 0, h - 1.001)
    x0, y0 = x.astype(np.int32), y.astype(np.int32)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    a, b = img[y0, x0], img[y0, x0 + 1]
    c, d = img[y0 + 1, x0], img[y0 + 1, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _col(c: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(round(v)) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def _pts(a: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in a]


class FaceAnimator:
    """Renders frames of one identity at (H, W): warps the static layer by the landmark
    motion, then draws eyes and mouth from the moved landmarks."""

    def __init__(self, ident: Identity, img_size: tuple[int, int]) -> None:
        self.ident = ident
        self.h, self.w = img_size
        hs, ws = self.h * _SS, self.w * _SS
        self.static = render_static(ident, (hs, ws))
        # neutral landmarks in supersampled pixels (output pixel centres map to block centres)
        self.neutral = self._to_ss(ident.landmarks * np.array([self.w, self.h]))
        n = self.neutral
        anchors = np.concatenate([n[[0, 1, 15, 16]], n[17:48], n[49:54],
                                  [[0, 0], [ws - 1, 0], [0, hs - 1], [ws - 1, hs - 1]]])
        sigma = 0.12 * ws
        moving = np.r_[3:14, 55:60]
        open_pts = animate_landmarks(n, hs, ident.max_open, 1.0, 0.0, 0.0)
        ctrl = np.concatenate([anchors, n[moving]])
        disp = np.concatenate([np.zeros_like(anchors), open_pts[moving] - n[moving]])
        self.open_field = _rbf_field(ctrl, disp, hs, ws, sigma).astype(np.float32)
        round_pts = animate_landmarks(n, hs, ident.max_open, 0.0, 1.0, 0.0)
        mouth = np.r_[48, 54, 55:60]
        ctrl = np.concatenate([anchors, n[3:14], n[mouth]])
        disp = np.concatenate([np.zeros((len(anchors) + 11, 2)), round_pts[mouth] - n[mouth]])
        self.round_field = (0.5 * _rbf_field(ctrl, disp, hs, ws, sigma)).astype(np.float32)
        self.grid_y, self.grid_x = np.mgrid[0:hs, 0:ws].astype(np.float32)

    @staticmethod
    def _to_ss(p: np.ndarray) -> np.ndarray:
        return p * _SS + (_SS - 1) / 2.0

    @staticmethod
    def _from_ss(p: np.ndarray) -> np.ndarray:
        return (p - (_SS - 1) / 2.0) / _SS

    def frame(self, opening: float, rounding: float, blink: float, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame: (H, W, 3) uint8 image and its (68, 2) landmarks in output pixels."""
        ident, hs = self.ident, self.h * _SS
        pts = animate_landmarks(self.neutral, hs, ident.max_open, opening, rounding, blink)
        tx, ty, rot, scale = motion
        face_w = self.neutral[16, 0] - self.neutral[0, 0]
        centre = self.neutral[30]
        cos, sin = np.cos(rot), np.sin(rot)
        # backward map: output pixel -> undo head motion -> undo the landmark warp
        qx, qy = self.grid_x - centre[0] - tx * face_w, self.grid_y - centre[1] - ty * face_w
        px = (cos * qx + sin * qy) / scale + centre[0]
        py = (-sin * qx + cos * qy) / scale + centre[1]
        field = opening * self.open_field + rounding * self.round_field
        fx = _sample(field, px, py)
        base = _sample(self.static, px - fx[..., 0], py - fx[..., 1])
        img = Image.fromarray(np.uint8(base.clip(0, 255)))
        fwd = np.array([[cos, -sin], [sin, cos]]) * scale
        moved = (pts - centre) @ fwd.T + centre + np.array([tx, ty]) * face_w
        self._draw_features(img, moved, face_w * scale)
        arr = np.asarray(img, dtype=np.float32).reshape(self.h, _SS, self.w, _SS, 3).mean(axis=(1, 3))
        return np.uint8(arr.round().clip(0, 255)), self._from_ss(moved)

    def _draw_features(self, img: Image.Image, p: np.ndarray, face_w: float) -> None:
        ident = self.ident
        d = ImageDraw.Draw(img)
        lw = max(1, int(round(0.012 * face_w)))
        if ident.photo is not None:
            self._draw_photo_features(d, p, lw)
            return
        for eye in (np.r_[36:42], np.r_[42:48]):
            e = p[eye]
            layer = Image.new("L", img.size, 0)
            ImageDraw.Draw(layer).polygon(_pts(e), fill=255)
            eye_img = img.copy()
            de = ImageDraw.Draw(eye_img)
            de.polygon(_pts(e), fill=(236, 232, 226))
            c = (e[0] + e[3]) / 2
            r = 0.27 * abs(e[3, 0] - e[0, 0])
            de.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=_col(ident.iris))
            de.ellipse([c[0] - 0.45 * r, c[1] - 0.45 * r, c[0] + 0.45 * r, c[1] + 0.45 * r], fill=(12, 10, 10))
            de.ellipse([c[0] + 0.1 * r, c[1] - 0.5 * r, c[0] + 0.4 * r, c[1] - 0.2 * r], fill=(250, 250, 250))
            img.paste(eye_img, (0, 0), layer)
            d.line(_pts(e[[0, 1, 2, 3]]), fill=_col(ident.skin * 0.25), width=lw + 1, joint="curve")
            d.line(_pts(e[[3, 4, 5, 0]]), fill=_col(ident.skin * 0.6), width=max(1, lw // 2))
            crease = e[[0, 1, 2, 3]] + np.array([0, -0.035 * face_w])
            d.line(_pts(crease), fill=_col(ident.skin * 0.75), width=max(1, lw // 2))
        inner = p[60:68]
        d.polygon(_pts(inner), fill=(45, 12, 18))
        gaps = p[[67, 66, 65], 1] - p[[61, 62, 63], 1]
        if gaps.max() > 1.0:
            teeth = np.concatenate([p[60:65], (p[[63, 62, 61]] + np.c_[np.zeros(3), 0.4 * gaps[::-1]])])
            d.polygon(_pts(teeth), fill=(228, 224, 210))
            tongue = np.concatenate([p[[64, 65, 66, 67, 60]], (p[[61, 62, 63]] + np.c_[np.zeros(3), 0.7 * gaps])])
            d.polygon(_pts(tongue), fill=(150, 60, 70))
        lips = ident.lips
        d.polygon(_pts(np.concatenate([p[48:55], p[[64, 63, 62, 61, 60]]])), fill=_col(lips * 0.92))
        d.polygon(_pts(np.concatenate([p[[54, 55, 56, 57, 58, 59, 48]], p[[60, 67, 66, 65, 64]]])), fill=_col(lips))
        d.line(_pts(p[[60, 61, 62, 63, 64]]), fill=_col(lips * 0.55), width=lw)
        hl = (p[57] * 0.6 + p[66] * 0.4)
        d.ellipse([hl[0] - 0.04 * face_w, hl[1] - 0.008 * face_w, hl[0] + 0.04 * face_w, hl[1] + 0.008 * face_w],
                  fill=_col(lips * 1.15))

    def _draw_photo_features(self, d: ImageDraw.ImageDraw, p: np.ndarray, lw: int) -> None:
        """A photograph keeps its own eyes and lips (moved by the warp); only what the warp
        cannot show is drawn: lids over a closing eye (coloured like the skin above it) and
        the dark gap that opens below the teeth as the jaw drops."""
        n = self.neutral
        for up, brow in ((np.r_[36:40], 19), (np.r_[42:46], 24)):
            if np.abs(p[up] - n[up]).max() > 0.5:
                above = (n[brow] + n[up].mean(axis=0)) / 2
                y, x = int(above[1]), int(above[0])
                colour = self.static[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).mean(axis=0) * 0.85
                d.polygon(_pts(np.concatenate([n[up] + np.array([0, -0.5 * lw]), p[up][::-1]])), fill=_col(colour))
                d.line(_pts(p[up]), fill=_col(colour * 0.3), width=lw + 1)
        if p[66, 1] - n[66, 1] > 1.0:
            upper = np.concatenate([p[[60]], n[[67, 66, 65]], p[[64]]])
            d.polygon(_pts(np.concatenate([upper, p[[65, 66, 67]]])), fill=(45, 12, 18))
