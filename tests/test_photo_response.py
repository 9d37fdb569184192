"""The photo's lip response (realtime_sda.photo.response): the renderer measures how open its
photo's lips look for each opening of the warp, and asks for the opening that looks like the
model's. Unit tests on the curve; then on a real photo (scikit-image's astronaut), also made
soft and small, where the first openings hardly show."""

from __future__ import annotations

import numpy as np
import pytest

from realtime_sda.photo.response import LADDER, LipResponse, measure_response, seen_opening

pytest.importorskip("dlib")


def _marks(opening: float) -> np.ndarray:
    """68 points with the eye corners 100 px apart and the inner lips ``opening`` x 100 apart."""
    m = np.zeros((68, 2))
    m[36], m[45] = (0.0, 0.0), (100.0, 0.0)
    m[62], m[66] = (50.0, 80.0), (50.0, 80.0 + 100.0 * opening)
    return m


def test_seen_opening_is_the_middle_gap_over_the_eye_distance():
    assert seen_opening(_marks(0.13)) == pytest.approx(0.13)


def test_the_curve_keeps_only_steps_that_show_and_inverts():
    # a photo whose lips show nothing for the first 0.06, then follow, then stop at 0.14
    def looks(gap: float) -> float:
        return float(np.clip(gap - 0.06, 0.0, 0.14))

    response = measure_response(lambda gap: np.array([gap]), lambda image: _marks(looks(float(image[0]))), rest=0.0)
    assert response is not None
    assert np.all(np.diff(response.seen) > 0) and np.all(np.diff(response.gaps) > 0)
    assert response.rest == 0.0
    assert response.gap_for(0.05) == pytest.approx(0.11, abs=0.01)  # what looks 0.05 open
    assert response.gap_for(1.0) == pytest.approx(0.2, abs=0.01)  # never past where it stops showing
    assert response.gaps.max() <= LADDER[-1]


def test_lips_that_never_look_open_give_no_curve():
    assert measure_response(lambda gap: np.zeros(1), lambda image: _marks(0.0), rest=0.02) is None


@pytest.fixture(scope="module")
def animator():
    from realtime_sda import VideoAnimator

    return VideoAnimator("default", gpu=-1)


@pytest.fixture(scope="module")
def soft_portrait():
    """The astronaut softened (blurred, then 0.6x): a face whose thin openings hardly read."""
    import cv2
    from skimage import data

    rgb = cv2.GaussianBlur(data.astronaut(), (0, 0), 2.0)
    return np.ascontiguousarray(cv2.resize(rgb, (307, 307), interpolation=cv2.INTER_AREA))


def test_the_renderer_opens_the_lips_as_far_as_they_should_look(animator, soft_portrait):
    from realtime_sda.photo.landmarks import landmarks_at
    from realtime_sda.photo.render import _SEEN_SPAN, MouthPose
    from realtime_sda.photo.setup import photo_renderer

    renderer, _ = photo_renderer(animator.model, soft_portrait)
    response = renderer.response
    assert isinstance(response, LipResponse)
    box = renderer.rig.box

    def looks(pose: MouthPose) -> float:
        return seen_opening(landmarks_at(renderer.render(pose), box))

    usual = MouthPose(renderer.neutral.opening_scale, 0.0, 0.0)  # the model's usual opening
    rest = MouthPose(0.0, 0.0, 0.0)
    wanted = _SEEN_SPAN * float(np.tanh(0.75))
    opened = looks(usual) - looks(rest)
    assert opened == pytest.approx(wanted, abs=0.035), (opened, response)
    # the same renderer taking the warp's opening as it is opens the lips visibly less
    renderer.response = None
    assert looks(usual) - looks(rest) < opened


def test_the_models_opening_is_read_by_the_measure_that_follows_its_speech(animator):
    """On the default model's 48x64 crop the mouth's pixels follow the speech better than
    dlib's lip points, so the renderer reads them; the opening it reads follows the loudness
    of speech it did not calibrate on (recorded-like syllables of another rhythm)."""
    from dataclasses import replace

    from skimage import data

    from realtime_sda.photo.render import frame_loudness
    from realtime_sda.photo.setup import photo_renderer
    from testsupport.media import speech_like

    renderer, _ = photo_renderer(animator.model, data.astronaut())
    assert renderer.neutral.pixels is not None
    rate = animator.audio_rate
    audio = speech_like(seconds=4.0, rate=rate, seed=5)
    crops, _ = animator(renderer.rig.still(animator.config), audio, fs=rate, aligned=True, seed=1)
    loud = frame_loudness(audio.astype(np.float64), rate // 25)

    def follows() -> float:
        opening = np.array([renderer.pose(np.ascontiguousarray(c.transpose(1, 2, 0))).opening for c in crops])
        n = min(len(opening), len(loud))
        return float(np.corrcoef(opening[:n], loud[:n])[0, 1])

    by_pixels = follows()
    renderer.neutral = replace(renderer.neutral, pixels=None)  # the lip points instead
    by_points = follows()
    assert by_pixels > max(by_points, 0.7), (by_pixels, by_points)
