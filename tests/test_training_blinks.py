"""Blink-conditioned noise (training/blinks.py): blinks found from landmarks, noise that
explains them yet keeps the inference prior exactly, and a training run that uses it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from realtime_sda import load_model
from realtime_sda.core.config import NOISE_STD
from realtime_sda.training.blinks import (
    blink_noise,
    blink_spans,
    blink_targets,
    closure_track,
    count_blinks,
    eye_aspect_ratio,
    eye_box,
    onset_threshold,
)
from realtime_sda.training.config import TrainConfig, TrainConfigError
from realtime_sda.training.dataset import ClipDataset, load_clip, read_index
from realtime_sda.training.loop import train
from realtime_sda.training.losses import blink_code_loss
from realtime_sda.training.synth.animate import blink_track
from realtime_sda.training.synth.corpus import CorpusSpec, build_corpus
from realtime_sda.training.synth.faces import canonical_landmarks

TINY_MODEL = {"img_size": [64, 48], "audio_rate": 16000, "audio_feat_samples": 3200, "id_enc_dim": 16,
              "rnn_gen_dim": 24, "aud_enc_dim": 20, "aux_latent": 6, "width": 0.125}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"), CorpusSpec(clips=3, seed=3, identities=2))


def _blinking_marks(closure: np.ndarray) -> np.ndarray:
    """The canonical face with both eyes' lids pulled to their centre line by ``closure``."""
    base = canonical_landmarks((64, 48)).astype(np.float64)
    marks = np.repeat(base[None], len(closure), axis=0)
    for eye in (slice(36, 42), slice(42, 48)):
        centre = base[eye, 1].mean()
        marks[:, eye, 1] = centre + (base[eye, 1] - centre) * (1 - 0.95 * closure[:, None])
    return marks


def test_blink_spans_find_each_blink_from_its_first_moving_frame():
    closure = blink_track(250, 25.0, np.random.default_rng(1))
    starts = [i for i in range(250) if closure[i] > 0 and (i == 0 or closure[i - 1] == 0)]
    spans = blink_spans(_blinking_marks(closure))
    assert [a for a, _ in spans] == starts
    assert all(closure[a:b].min() > 0 for a, b in spans)
    assert count_blinks(eye_aspect_ratio(_blinking_marks(closure))) == len(starts)
    track = closure_track(_blinking_marks(closure), spans)
    np.testing.assert_allclose(track, 0.95 * closure, atol=0.03)  # the lids close to 5% of their height


def test_blink_targets_mark_onsets_and_unexplained_frames():
    spans = [(3, 8), (20, 25)]
    onsets, explained = blink_targets(spans, 4, 16)  # frames 4..19: the first blink began before them
    assert onsets.tolist() == [0.0] * 16  # the onset at 20 is just outside
    assert explained.tolist() == [0.0] * 4 + [1.0] * 12
    onsets, explained = blink_targets(spans, 0, 16)
    assert np.flatnonzero(onsets).tolist() == [3] and explained.all()


def test_onset_threshold_gives_the_rate():
    tau = onset_threshold(0.3, 25.0, NOISE_STD)
    p = 1 - float(torch.special.ndtr(torch.tensor(tau / NOISE_STD, dtype=torch.float64)))
    assert p == pytest.approx(0.3 / 25.0, rel=1e-6)
    with pytest.raises(ValueError):
        onset_threshold(20.0, 25.0, NOISE_STD)


def test_conditioned_noise_explains_onsets_and_keeps_the_prior():
    """Onsets drawn as the model says (each frame with p = rate / fps), then noise conditioned
    on them: the noise has exactly the prior's distribution, so inference sees what training saw."""
    tau = onset_threshold(0.3, 25.0, NOISE_STD)
    g = torch.Generator().manual_seed(0)
    onsets = (torch.rand(200, 1000, generator=g) < 0.3 / 25.0).float()
    z = blink_noise(onsets, torch.ones(200), 6, NOISE_STD, tau, g)
    first = z[..., 0]
    assert bool((first[onsets > 0] > tau).all()) and bool((first[onsets == 0] <= tau).all())
    qs = torch.tensor([0.01, 0.1, 0.5, 0.9, 0.99, 0.999])
    expected = torch.special.ndtri(qs) * NOISE_STD
    np.testing.assert_allclose(torch.quantile(first.flatten()[:1_000_000], qs).numpy(), expected.numpy(), atol=0.01)
    assert float(z[..., 1:].std()) == pytest.approx(NOISE_STD, rel=0.01)
    free = blink_noise(torch.zeros(50, 1000), torch.zeros(50), 6, NOISE_STD, tau, g)[..., 0]
    assert float((free > tau).float().mean()) == pytest.approx(0.3 / 25.0, rel=0.15)  # unknown: the plain prior


def test_eye_box_covers_the_eyes():
    face = canonical_landmarks((64, 48))
    top, bottom, left, right = eye_box(face, (64, 48))
    eyes = face[36:48]
    assert top <= eyes[:, 1].min() and bottom > eyes[:, 1].max()
    assert left <= eyes[:, 0].min() and right > eyes[:, 0].max()
    assert bottom <= 64 // 2 + 4  # the upper face, not the mouth


def test_dataset_windows_carry_blinks(corpus):
    ds = ClipDataset(corpus, None, 16, 3200, (64, 48), seed=0, blink_crops=1.0)
    with_blinks = [i for i, c in enumerate(ds.clips) if blink_spans(load_clip(corpus, c.id)["landmarks"])]
    assert with_blinks, "the synthetic clips blink"
    for _ in range(10):
        item = ds[with_blinks[0]]
        assert item["onsets"].shape == (16,) and float(item["onsets"][:11].sum()) >= 1.0
        assert float(item["blinks_known"]) == 1.0


def test_training_with_blink_noise_from_a_checkpoint(corpus, tmp_path):
    base = {"data": str(corpus), "model": TINY_MODEL, "batch_size": 2, "clip_frames": 16, "sample_every": 0,
            "checkpoint_every": 10, "log_every": 1, "disc_width": 0.125, "lr_gen": 1e-3, "threads": 1}
    first = train(TrainConfig.from_dict({**base, "out": str(tmp_path / "a"), "steps": 2}), show_progress=False)
    cfg = TrainConfig.from_dict({**base, "out": str(tmp_path / "b"), "steps": 10, "blink_rate": 0.3,
                                 "blink_crops": 0.5, "w_l1_face": 100.0, "w_l1_eyes": 100.0, "w_blink_code": 10.0,
                                 "lr_noise": 5e-3, "init_from": str(first)})
    frozen = TrainConfig.from_dict({**cfg.to_dict(), "out": str(tmp_path / "c"), "steps": 1, "lr_gen": 0.0,
                                    "lr_noise": 0.0})
    start = load_model(train(frozen, show_progress=False))  # lr 0: the networks are those of init_from
    src = load_model(first)
    for part in ("encoder", "encoder_id", "generator"):  # weights (BatchNorm statistics move in train mode)
        for a, b in zip(getattr(src, part).parameters(), getattr(start, part).parameters()):
            torch.testing.assert_close(a, b)
    out = load_model(train(cfg, show_progress=False))
    assert out.extra["train_config"]["blink_rate"] == 0.3
    state = torch.load(tmp_path / "b" / "train_state.pt", weights_only=True)
    assert [g["lr"] for g in state["optimizers"]["gen"]["param_groups"]] == [1e-3, 5e-3]  # the noise GRU's own rate
    log = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 10 and all(np.isfinite(r["l1_eyes"]) and np.isfinite(r["blink_code"]) for r in log)


def test_blink_settings_are_checked(corpus, tmp_path):
    with pytest.raises(TrainConfigError, match="blink_rate"):
        TrainConfig.from_dict({"data": str(corpus), "blink_rate": 30.0})
    with pytest.raises(TrainConfigError, match="blink_crops"):
        TrainConfig.from_dict({"data": str(corpus), "blink_crops": 2.0})
    cfg = TrainConfig.from_dict({"data": str(corpus), "out": str(tmp_path / "x"), "model": {**TINY_MODEL, "width": 0.25},
                                 "init_from": str(tmp_path / "missing.pt"), "steps": 1})
    with pytest.raises(Exception, match="missing.pt"):
        train(cfg, show_progress=False)
    assert read_index(corpus)


def test_blink_rate_without_landmarks_is_a_clear_error(corpus, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(corpus, bare)
    for marks in bare.glob("clips/*/landmarks.npy"):
        marks.unlink()
    cfg = TrainConfig.from_dict({"data": str(bare), "out": str(tmp_path / "x"), "model": TINY_MODEL, "steps": 1,
                                 "blink_rate": 0.3})
    with pytest.raises(TrainConfigError, match="landmarks.*set blink_rate to 0"):
        train(cfg, show_progress=False)


def test_noise_gru_learns_to_blink_at_the_prior_rate():
    """The mechanism on its own: a noise GRU trained with the blink-code term on conditioned
    noise follows the eyelids, and fed plain prior noise it then blinks at the chosen rate."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    fps, rate, aux = 25.0, 0.3, 6
    tau = onset_threshold(rate, fps, NOISE_STD)
    shape = torch.tensor([0.45, 1.0, 1.0, 0.6, 0.25])

    def episode(b: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        onsets = (torch.rand(b, t, generator=g) < rate / fps).float()
        closure = torch.zeros(b, t + len(shape))
        for i, j in onsets.nonzero().tolist():
            closure[i, j : j + len(shape)] = torch.maximum(closure[i, j : j + len(shape)], shape)
        return onsets, closure[:, :t]

    gru = torch.nn.GRU(aux, aux, batch_first=True)
    opt = torch.optim.Adam(gru.parameters(), lr=1e-2)
    for _ in range(600):
        onsets, closure = episode(16, 50)
        z = blink_noise(onsets, torch.ones(16), aux, NOISE_STD, tau, g)
        code = torch.tanh(gru(z)[0])
        loss = blink_code_loss(code, closure, torch.ones_like(closure))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        onsets, closure = episode(64, 250)
        code = torch.tanh(gru(blink_noise(onsets, torch.ones(64), aux, NOISE_STD, tau, g))[0])[..., 0]
        assert np.corrcoef(code.flatten().numpy(), closure.flatten().numpy())[0, 1] > 0.8
        free = torch.tanh(gru(torch.randn(64, 2500, aux, generator=g) * NOISE_STD)[0])[..., 0]
        shut = (free > 0.5).float()
        blinks = float((shut[:, 1:] * (1 - shut[:, :-1])).sum()) / (64 * 2500 / fps)
    assert 0.2 <= blinks <= 0.4, blinks  # the chosen 0.3 per second
