"""Face alignment with the real dlib models: detection, landmarks, the similarity transform,
the warp, and the errors for images without a face."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realtime_sda.errors import FaceNotFoundError
from realtime_sda.media import face
from realtime_sda.media.face import (
    ALIGN_POINTS,
    align_face,
    detect_faces,
    detect_landmarks,
    prepare_still,
    similarity_transform,
    warp_affine,
)
from testsupport.models import grid_config, tiny_config

IDX = list(ALIGN_POINTS)


def skimage_image(name: str) -> Path:
    """An image shipped inside the installed scikit-image wheel (no download)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.is_file():
        pytest.skip(f"{name} is not shipped with this scikit-image")
    return path


def test_models_load_from_the_installed_package_once():
    assert face.landmark_model_path().name == "shape_predictor_68_face_landmarks.dat"
    assert face.dlib_models() is face.dlib_models()


@pytest.mark.parametrize("source", ["avatar", "astronaut"])
def test_alignment_puts_the_five_points_on_the_mean_face(source, request):
    if source == "avatar":
        path = request.getfixturevalue("face_image")
    else:
        path = skimage_image("astronaut.png")
    cfg = grid_config()
    lm = detect_landmarks(path)
    assert lm.shape == (68, 2) and lm.dtype == np.float64
    aligned = align_face(path, cfg)
    assert aligned.shape == (128, 96, 3) and aligned.dtype == np.uint8
    # Landmarks found again on the aligned output lie on the mean face's points.
    again = detect_landmarks(aligned)
    err = np.linalg.norm(again[IDX] - cfg.mean_face[IDX], axis=1)
    assert err.max() < 4.0, err


def test_small_images_are_searched_at_higher_resolution(face_image):
    small = Image.open(face_image).convert("RGB").resize((48, 64))
    boxes = detect_faces(small)
    assert boxes, "a 48x64 face should be found after upsampling"
    lm = detect_landmarks(np.asarray(small))
    assert (lm[:, 0].min() > -10) and (lm[:, 0].max() < 58)


def test_the_largest_of_several_faces_is_used():
    img = np.asarray(Image.open(skimage_image("astronaut.png")).convert("RGB"))
    crop = img[40:260, 140:320]  # the face, 220 x 180
    small = np.asarray(Image.fromarray(crop).resize((120, 146)))
    canvas = np.full((400, 700, 3), 200, np.uint8)
    canvas[20:166, 20:140] = small
    canvas[100:320, 400:580] = crop
    boxes = detect_faces(canvas)
    assert len(boxes) == 2
    lm = detect_landmarks(canvas)
    assert lm[IDX, 0].min() > 400 and lm[IDX, 1].min() > 100  # on the big face


@pytest.mark.parametrize("kind", ["noise", "chelsea", "coffee"])
def test_no_face_raises_a_clear_error(kind):
    if kind == "noise":
        image = np.random.default_rng(0).integers(0, 256, (200, 160, 3), dtype=np.uint8)
    else:
        image = skimage_image(f"{kind}.png")
    with pytest.raises(FaceNotFoundError, match="aligned"):
        align_face(image, grid_config())
    with pytest.raises(FaceNotFoundError):
        prepare_still(image, tiny_config())


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(3)
    th, s, t = 0.4, 1.7, np.array([5.0, -11.0])
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    src = rng.uniform(0, 100, (5, 2))
    dst = s * src @ rot.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:2, :2], s * rot, atol=1e-10)
    np.testing.assert_allclose(m[:2, 2], t, atol=1e-8)
    # With noise it is the least-squares fit: no reflection, residual below the noise.
    noisy = dst + rng.normal(0, 0.5, dst.shape)
    m = similarity_transform(src, noisy)
    assert np.linalg.det(m[:2, :2]) > 0
    fit = src @ m[:2, :2].T + m[:2, 2]
    assert np.sqrt(((fit - noisy) ** 2).sum(1).mean()) < 1.0
    # A mirrored target still gives a proper rotation (never a reflection).
    assert np.linalg.det(similarity_transform(src, src * [-1, 1])[:2, :2]) > 0
    with pytest.raises(ValueError):
        similarity_transform(src, dst[:3])


def test_warp_affine_uses_pixel_centres():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    shift = np.array([[1, 0, -3], [0, 1, -5], [0, 0, 1]], float)  # input (x, y) -> (x-3, y-5)
    out = warp_affine(rgb, shift, (30, 20))
    np.testing.assert_array_equal(out, rgb[5:35, 3:23])
    identity = warp_affine(rgb, np.eye(3), (40, 30))
    np.testing.assert_array_equal(identity, rgb)
    # Scaling by 2 about the origin (pixel centres at integers): output (2i, 2j) = input (i, j).
    up = warp_affine(rgb, np.diag([2.0, 2.0, 1.0]), (40, 30))
    np.testing.assert_array_equal(up[::2, ::2][:10], rgb[:20:1][:10, :15])


def test_aligned_true_only_resizes(face_image):
    cfg = tiny_config()
    still = prepare_still(face_image, cfg, aligned=True)
    expected = np.asarray(Image.open(face_image).convert("RGB").resize((48, 64), Image.BILINEAR))
    assert still.shape == (1, 3, 64, 48) and still.dtype == torch.float32
    np.testing.assert_allclose(still[0].permute(1, 2, 0).numpy(), (expected / 255.0 - 0.5) / 0.5, atol=1e-6)
    assert float(still.min()) >= -1.0 and float(still.max()) <= 1.0
