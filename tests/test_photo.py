"""The whole-photo output: the user's photo at its size, only the face region changing, the
mouth following the model's own crop, the group-photo face choice, streaming equal to
offline. Photos: scikit-image's astronaut (a NASA portrait in the public domain, shipped in
that package) and compositions of it; speech from espeak-ng (installed by .ci/install)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from realtime_sda import VideoAnimator
from realtime_sda.errors import RealtimeSDAError
from realtime_sda.media.face import detect_faces, landmarks_in_box
from realtime_sda.photo import CropLandmarker, output_size
from realtime_sda.photo.landmarks import mouth_gap


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from realtime_sda.media.speech import synthesize_speech

    return synthesize_speech("Hello there, this is the talking photo. We open and close the mouth.",
                             tmp_path_factory.mktemp("tts") / "speech.wav")


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory):
    """About a second of speech, for the CLI runs that only check what they write."""
    from realtime_sda.media.speech import synthesize_speech

    return synthesize_speech("Hello there, good day.", tmp_path_factory.mktemp("tts") / "short.wav")


@pytest.fixture(scope="module")
def animator():
    return VideoAnimator("default", gpu=-1)


@pytest.fixture(scope="module")
def full_and_crop(animator, astronaut, speech):
    full, _ = animator(astronaut, speech, seed=3, full_frame=True)
    crop, _ = animator(astronaut, speech, seed=3)
    return full, crop


def test_output_size_keeps_the_aspect_and_is_even():
    assert output_size(620, 540) == (620, 540)
    assert output_size(890, 1280) == (890, 1280)
    assert output_size(2204, 970) == (1280, 562)  # the long side capped at 1280
    assert output_size(2204, 970, size=512) == (512, 224)
    h, w = output_size(513, 301)
    assert h % 2 == 0 and w % 2 == 0 and abs(w / h - 301 / 513) < 0.01
    with pytest.raises(RealtimeSDAError):
        output_size(100, 100, size=4)


def test_full_frame_is_the_photo_with_only_the_face_moving(full_and_crop, astronaut):
    from PIL import Image

    full, crop = full_and_crop
    photo = np.asarray(Image.open(astronaut).convert("RGB"))
    assert full.shape[1:] == (3, 512, 512) and crop.shape[1:] == (3, 64, 48)
    assert len(full) == len(crop)
    left, top, right, bottom = detect_faces(photo)[0]
    cx, cy, bw, bh = (left + right) / 2, (top + bottom) / 2, right - left, bottom - top
    frames = full.transpose(0, 2, 3, 1)
    for k, exact in ((1.5, True), (1.0, False)):  # outside 3x the face box untouched, 2x nearly
        far = np.ones(photo.shape[:2], bool)
        far[max(0, int(cy - k * bh)):int(cy + k * bh), max(0, int(cx - k * bw)):int(cx + k * bw)] = False
        change = np.abs(frames[:, far].astype(int) - photo[far].astype(int))
        assert change.max() == 0 if exact else change.mean() < 0.5
    mouth = slice(int(cy + 0.2 * bh), bottom + bh // 4), slice(left, right)
    change = np.abs(frames[:, mouth[0], mouth[1]].astype(int) - photo[mouth].astype(int)).mean(axis=(1, 2, 3))
    assert np.percentile(change, 90) > 3.0  # the mouth region moves


def test_mouth_follows_the_models_crop(full_and_crop, animator, astronaut):
    """r >= 0.8 between the mouth opening measured (dlib) in the full photo and in the model's
    own crop, same audio and seed: the motion is the model's."""
    from PIL import Image

    full, crop = full_and_crop
    cfg = animator.config
    meter = CropLandmarker(cfg.mean_face, cfg.img_size)
    model_gap = np.array([mouth_gap(meter(np.ascontiguousarray(c.transpose(1, 2, 0)))) for c in crop])
    box = detect_faces(np.asarray(Image.open(astronaut).convert("RGB")))[0]
    photo_gap = np.array([mouth_gap(landmarks_in_box(np.ascontiguousarray(f.transpose(1, 2, 0)), box)) for f in full])
    r = np.corrcoef(model_gap, photo_gap)[0, 1]
    assert r >= 0.8, r
    iod = np.linalg.norm(np.subtract(*landmarks_in_box(np.asarray(Image.open(astronaut).convert("RGB")), box)[[45, 36]]))
    assert (np.percentile(photo_gap, 90) - np.percentile(photo_gap, 10)) / iod > 0.05  # visibly opens


def test_mouth_pixels_measure_the_opening_where_lip_points_cannot(animator):
    """The pixel measure of the model's mouth (for crops too rough for dlib's lip points):
    about 0 at rest, rising with a taller dark gap where the mean face's mouth is, about 1
    at the syllable signal's p90; None when the mouth's pixels never move."""
    from realtime_sda.photo.mouthpixels import MouthPixels

    cfg = animator.config
    h, w = cfg.img_size
    rng = np.random.default_rng(0)
    face = rng.integers(90, 170, (h, w, 3)).astype(np.uint8)
    x0, y0, x1, y1 = MouthPixels.mouth_box(cfg.mean_face, (h, w))
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and y0 > h // 2  # the lower face

    def opened(rows: int) -> np.ndarray:
        out = np.clip(face.astype(int) + rng.integers(-2, 3, face.shape), 0, 255).astype(np.uint8)  # shimmer
        mid = (y0 + y1) // 2
        out[mid - rows // 2 : mid + (rows + 1) // 2, x0 + 2 : x1 - 2] = 20  # the dark gap
        return out

    rest = np.stack([opened(0) for _ in range(12)])
    speech = np.stack([opened(k % 5) for k in range(40)])
    pixels = MouthPixels.calibrate(cfg.mean_face, (h, w), rest, speech)
    assert pixels is not None
    levels = [pixels(opened(rows)) for rows in range(5)]
    assert levels[0] < 0.05 and all(a < b for a, b in zip(levels, levels[1:])) and 0.7 < levels[4] < 1.5, levels
    assert MouthPixels.calibrate(cfg.mean_face, (h, w), rest, np.stack([opened(0) for _ in range(40)])) is None


def test_a_tight_crop_opens_its_mouth_past_the_edge(animator, astronaut):
    """A face cut off by the photo's bottom edge (as in a tight 112x112 crop): the warp is
    held around the face's whole area, also past the edge, so the lower lip still moves down."""
    from PIL import Image

    from realtime_sda.photo.render import MouthPose
    from realtime_sda.photo.setup import photo_renderer

    rgb = np.asarray(Image.open(astronaut).convert("RGB"))
    x0, y0, x1, y1 = detect_faces(rgb)[0]
    marks = landmarks_in_box(rgb, (x0, y0, x1, y1))
    bottom = int(marks[57, 1] + 0.6 * (marks[8, 1] - marks[57, 1]))  # the chin cut off
    side = bottom - int(marks[19, 1]) + 20
    cx = int(marks[30, 0])
    tight = np.ascontiguousarray(rgb[bottom - side : bottom, cx - side // 2 : cx + side // 2])
    renderer, _ = photo_renderer(animator.model, tight)
    assert renderer.rig.anchors[:, 1].max() > tight.shape[0]  # held below the edge, not on it
    rest = renderer.render(MouthPose(0.0, 0.0, 0.0))
    talking = renderer.render(MouthPose(renderer.neutral.opening_scale, 0.0, 0.0))
    lip = renderer.rig.landmarks[57]
    box = detect_faces(tight)[0]
    moved = landmarks_in_box(talking, box)[57, 1] - landmarks_in_box(rest, box)[57, 1]
    assert moved > 0.05 * renderer.rig.eye_distance, (moved, lip)


def test_group_photo_picks_the_face(animator, astronaut, speech, tmp_path):
    from PIL import Image

    face = Image.open(astronaut).convert("RGB").crop((120, 20, 320, 240))
    group = Image.new("RGB", (640, 300), (90, 90, 100))
    group.paste(face, (10, 40))
    group.paste(face.resize((150, 165)), (400, 60))
    path = tmp_path / "group.png"
    group.save(path)
    boxes = detect_faces(np.asarray(group))
    assert len(boxes) == 2 and boxes[0][0] < 300 < boxes[1][0]  # largest first: the left one
    job = animator.animate(path, speech, seed=1, full_frame=True, face=1)
    frames = np.concatenate(list(job)).transpose(0, 2, 3, 1)
    photo = np.asarray(group)
    assert frames.shape[1:3] == (300, 640)
    assert np.array_equal(frames[:, :, :300], np.broadcast_to(photo[:, :300], frames[:, :, :300].shape))
    assert np.abs(frames[:, :, 380:].astype(int) - photo[:, 380:]).max() > 20
    with pytest.raises(RealtimeSDAError, match="has 2 face"):
        animator.animate(path, speech, full_frame=True, face=2)


def test_live_photo_size_is_a_cap_never_an_enlargement(animator, astronaut, tmp_path):
    """Live paths (preview, vcam: ``max_side``) show a photo at its own size up to the cap: a
    small photo is not enlarged (that only costs time), a large one is scaled down to it."""
    from PIL import Image

    from realtime_sda.streaming import InferenceWorker

    small = tmp_path / "small.png"
    Image.open(astronaut).resize((200, 200)).save(small)

    async def run():
        async with InferenceWorker(animator.model) as worker:
            kept, _ = await worker.prepare_photo(small, max_side=512)
            capped, _ = await worker.prepare_photo(astronaut, max_side=320)
            exact, _ = await worker.prepare_photo(small, size=300, max_side=512)  # --size: that size
            return kept.size, capped.size, exact.size

    assert asyncio.run(run()) == ((200, 200), (320, 320), (300, 300))


def test_streaming_full_frame_equals_offline(animator, astronaut, speech, full_and_crop):
    from realtime_sda.media.audio import load_audio
    from realtime_sda.streaming import InferenceWorker

    full, _ = full_and_crop

    async def run():
        async with InferenceWorker(animator.model) as worker:
            renderer, still = await worker.prepare_photo(astronaut)
            session = await worker.open_session(still, seed=3, realtime=False, renderer=renderer)
            assert session.frame_size == (512, 512)
            session.push_audio(load_audio(speech, None, animator.audio_rate), animator.audio_rate)
            session.end_audio()
            return [f.image async for f in session.frames(maxsize=100000)]

    live = np.stack(asyncio.run(run()))
    assert live.shape == full.transpose(0, 2, 3, 1).shape
    diff = np.abs(live.astype(int) - full.transpose(0, 2, 3, 1).astype(int)).mean(axis=(1, 2, 3))
    # the crops agree to a level of rounding; a rare frame's landmarks can move by a pixel then
    assert np.mean(diff == 0) > 0.95 and diff.max() < 1.0


def test_cli_animate_defaults_to_the_whole_photo_and_lists_faces(astronaut, short_speech, tmp_path, cli):
    import av

    out = tmp_path / "talk.mp4"

    def run(*a: str):
        return cli(a, timeout=300)

    res = run("animate", str(astronaut), str(short_speech), "-o", str(out), "--quiet", "--size", "256")
    assert res.returncode == 0, res.stderr
    with av.open(str(out)) as c:
        assert (c.streams.video[0].height, c.streams.video[0].width) == (256, 256)
        assert len(c.streams.audio) == 1
    res = run("faces", str(astronaut))
    assert res.returncode == 0 and "--face 0" in res.stdout
    res = run("animate", str(astronaut), str(short_speech), "-o", str(out), "--crop", "--face", "1")
    assert res.returncode != 0 and "Traceback" not in res.stderr and "--crop" in res.stderr


def test_photo_measures_tell_a_still_video_from_a_talking_one(full_and_crop, animator, astronaut, speech, tmp_path):
    """The evaluate measures on a real run: the photo repeated (no motion) against the
    animation, same audio; both encoded as animate writes them."""
    from realtime_sda.media.video import VideoWriter
    from realtime_sda.photo.measure import photo_measures

    full, _ = full_and_crop
    _, audio = animator(astronaut, speech, seed=3)
    n = 60  # the first 2.4 s (the measures take ~70 ms a frame)
    full, audio = full[:n], audio[: n * animator.audio_rate // int(animator.video_rate)]
    paths = {}
    for name, video in (("still", np.repeat(_photo(astronaut)[None], len(full), axis=0)), ("talking", full)):
        paths[name] = tmp_path / f"{name}.mp4"
        with VideoWriter(paths[name], animator.video_rate, video.shape[2:], audio, animator.audio_rate) as w:
            w.write(video)
    still, talking = photo_measures(astronaut, paths["still"]), photo_measures(astronaut, paths["talking"])
    print("still", still, "talking", talking)
    assert still["faces_found"] == talking["faces_found"] == len(full)
    assert still["identity"] < 0.1 and still["mouth_motion"] < 0.02 and still["steadiness"] < 0.5
    assert still["blinks_per_s"] == 0
    assert 0.9 < still["sharpness"] < 1.1 and still["stillness"] < 3.0  # the encoder's own loss
    assert talking["mouth_motion"] > 0.05 > still["mouth_motion"]
    assert talking["identity"] < 0.6 and talking["lip_sync"] > 0.3  # the same person, lips with the sound


def _photo(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)


def test_cli_evaluate_photos(astronaut, short_speech, tmp_path, cli):
    import json

    out = tmp_path / "eval.json"
    res = cli(["evaluate", "--model", "default", "--photos", str(astronaut), "--speech", str(short_speech), "--out", str(out)],
              timeout=300)
    assert res.returncode == 0, res.stderr
    result = json.loads(out.read_text())
    assert result["photos"] == 1 and result["per_photo"][0]["size"] == [512, 512]
    assert set(result["mean"]) == {"identity", "lip_sync", "mouth_motion", "blinks_per_s", "sharpness", "steadiness", "stillness"}
    assert "identity" in res.stdout
    res = cli(["evaluate", "--model", "default", "--photos", str(astronaut)], timeout=120)
    assert res.returncode != 0 and "--speech" in res.stderr and "Traceback" not in res.stderr
