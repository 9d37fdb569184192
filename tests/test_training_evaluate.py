"""Evaluation metrics: PSNR/SSIM sanity (and SSIM against scikit-image), the dlib mouth
measure against the synthetic ground truth, blink counting, and the evaluate command."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from realtime_sda.cli import main
from realtime_sda.training.dataset import load_clip, read_index, read_meta
from realtime_sda.training.evaluate import (
    LandmarkMeter,
    count_blinks,
    lip_sync_score,
    mouth_opening,
    psnr,
    ssim,
)
from realtime_sda.training.synth.corpus import CorpusSpec, build_corpus
from testsupport.models import tiny_config, write_random_checkpoint


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"), CorpusSpec(clips=2, seed=21, identities=2))


def test_psnr_and_ssim_sanity():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    assert psnr(img, img) == float("inf")
    assert ssim(img, img) == pytest.approx(1.0)
    shifted = np.clip(img.astype(int) + 10, 0, 255).astype(np.uint8)
    flat = np.full_like(img, 128)
    assert psnr(np.full_like(img, 100), np.full_like(img, 110)) == pytest.approx(20 * np.log10(255 / 10))
    assert psnr(img, shifted) > psnr(img, flat)
    assert 0.5 < ssim(img, shifted) < 1.0
    assert ssim(img, flat) < 0.1


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    ref = metrics.structural_similarity(a, b, data_range=255, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False)
    assert ssim(a, b) == pytest.approx(ref, abs=2e-3)


def test_lip_sync_and_blink_helpers():
    x = np.sin(np.linspace(0, 6, 50))
    assert lip_sync_score(x, x) == pytest.approx(1.0)
    assert lip_sync_score(x, -x) == pytest.approx(-1.0)
    assert lip_sync_score(np.zeros(50), x) == 0.0
    ear = np.full(100, 0.3)
    for start in (10, 40, 80):
        ear[start : start + 3] = 0.1
    assert count_blinks(ear) == 3


def test_dlib_mouth_measure_follows_the_ground_truth(corpus):
    meta = read_meta(corpus)
    meter = LandmarkMeter(np.asarray(meta["mean_face"]), tuple(meta["img_size"]))
    for info in read_index(corpus):
        clip = load_clip(corpus, info.id)
        measured = mouth_opening(np.stack([meter(f) for f in np.asarray(clip["frames"])]))
        truth = mouth_opening(clip["landmarks"])
        assert lip_sync_score(measured, truth) > 0.7


def test_evaluate_command_writes_json(corpus, tmp_path, capsys):
    ckpt = write_random_checkpoint(tmp_path / "tiny.pt", tiny_config(), seed=3)
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--model", str(ckpt), "--data", str(corpus), "--split", "train", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["clips"] == len(read_index(corpus, "train")) >= 1
    mean = result["mean"]
    assert set(mean) >= {"psnr", "ssim", "lip_sync", "blinks_per_s", "real_blinks_per_s"}
    assert 0 < mean["psnr"] < 40 and -1 <= mean["ssim"] < 0.9  # random weights: far from the truth
    assert -1 <= mean["lip_sync"] <= 1
    assert json.loads(capsys.readouterr().out)["psnr"] == pytest.approx(mean["psnr"])
    # a model whose frame size differs from the dataset's is refused with the reason
    big = write_random_checkpoint(tmp_path / "big.pt", dataclasses.replace(tiny_config(), img_size=(96, 72)))
    assert main(["evaluate", "--model", str(big), "--data", str(corpus)]) == 1
    assert "(96, 72)" in capsys.readouterr().err
