"""Training: discriminator shapes, a short overfit run lowers the L1 loss and writes a
checkpoint load_model reads, resuming continues the run, config errors are clear."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from realtime_sda import load_model
from realtime_sda.cli import main
from realtime_sda.training.config import TrainConfig, TrainConfigError
from realtime_sda.training.dataset import ClipDataset, DatasetFormatError, clip_windows
from realtime_sda.training.frame_disc import FrameDiscriminator
from realtime_sda.training.loop import train
from realtime_sda.training.losses import l1_lower_face, sync_slices
from realtime_sda.training.sequence_disc import SequenceDiscriminator
from realtime_sda.training.sync_disc import SyncDiscriminator, mouth_region, sync_audio
from realtime_sda.training.synth.corpus import CorpusSpec, build_corpus

TINY_MODEL = {"img_size": [64, 48], "audio_rate": 16000, "audio_feat_samples": 3200, "id_enc_dim": 16,
              "rnn_gen_dim": 24, "aud_enc_dim": 20, "aux_latent": 6, "width": 0.125}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"), CorpusSpec(clips=3, seed=7, identities=2))


def _config(corpus, out, **kw) -> TrainConfig:
    base = {"data": str(corpus), "out": str(out), "model": TINY_MODEL, "batch_size": 2, "clip_frames": 8,
            "steps": 40, "sample_every": 20, "checkpoint_every": 20, "log_every": 1, "disc_width": 0.125,
            "lr_gen": 1e-3, "threads": 1, "seed": 0}
    base.update(kw)
    return TrainConfig.from_dict(base)


def test_discriminator_output_shapes():
    b, t, h, w, feat = 3, 7, 64, 48, 3200
    frames, still = torch.randn(b, t, 3, h, w), torch.randn(b, 3, h, w)
    windows = torch.randn(b, t, feat)
    assert FrameDiscriminator((h, w), 0.125)(still, frames[:, 0]).shape == (b, 1)
    assert SequenceDiscriminator((h, w), 16000, 0.125)(frames, windows).shape == (b, 1)
    sync = SyncDiscriminator((h, w), 16000, frames=5, width=0.125)
    mouths = mouth_region(frames[:, :5])
    assert mouths.shape == (b, 5, 3, 32, 36)
    audio = sync_audio(windows[:, :5], 640, 1280)
    assert audio.shape == (b, 5 * 640)
    assert sync(mouths, audio).shape == (b, 1)


def test_sync_audio_is_the_audio_under_the_frames():
    audio = np.arange(640 * 10, dtype=np.float32)
    win = torch.from_numpy(clip_windows(audio, 2, 5, 640, 3200))[None]
    np.testing.assert_array_equal(sync_audio(win, 640, 1280)[0].numpy(), audio[2 * 640 : 7 * 640])
    s = sync_slices(8, 5, 640, 1280, torch.Generator().manual_seed(0))
    assert abs(s.a - s.b) >= 3


def test_l1_looks_at_the_lower_half_only():
    real = torch.zeros(1, 2, 3, 8, 6)
    fake = real.clone()
    fake[..., :4, :] = 1.0  # upper half differs: no loss
    assert float(l1_lower_face(fake, real)) == 0.0
    fake[..., 4:, :] = 0.5
    assert float(l1_lower_face(fake, real)) == pytest.approx(0.5)


def test_training_lowers_l1_writes_loadable_checkpoint_and_resumes(corpus, tmp_path):
    cfg = _config(corpus, tmp_path / "run")
    path = train(cfg, show_progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    l1 = np.array([r["l1"] for r in log])
    assert len(l1) == 40
    assert l1[-8:].mean() < 0.8 * l1[:8].mean(), l1
    assert all(np.isfinite(r[k]) for r in log for k in ("d_frame", "d_seq", "d_sync", "g_frame", "g_seq", "g_sync"))
    model = load_model(path)
    assert model.config.img_size == (64, 48) and model.config.width == 0.125
    assert model.extra["step"] == 40 and model.extra["train_config"]["lr_gen"] == 1e-3
    frames = model.generate(torch.zeros(1, 3, 64, 48), torch.zeros(1, 4, 3200), torch.zeros(1, 4, 6))
    assert frames.shape == (1, 4, 3, 64, 48)
    assert (tmp_path / "run" / "samples" / "step_000040.png").is_file()
    import av

    with av.open(str(tmp_path / "run" / "samples" / "step_000040.mp4")) as box:
        assert box.streams.video[0].codec_context.width == 2 * 2 * 48  # real | generated, x2
        assert box.streams.audio  # the clip's speech rides along
    # resume: the same out dir continues from step 40 with the saved optimizer and RNG state
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert state["step"] == 40
    train(_config(corpus, tmp_path / "run", steps=44, lr_gen=5e-4), show_progress=False)
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert state["optimizers"]["gen"]["param_groups"][0]["lr"] == 5e-4  # the config sets the rate
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log[-4:]] == [41, 42, 43, 44]
    assert load_model(path).extra["step"] == 44


def test_config_errors_are_clear(corpus, tmp_path, capsys):
    with pytest.raises(TrainConfigError, match="unknown training setting"):
        TrainConfig.from_dict({"data": "x", "learning_rate": 1})
    with pytest.raises(TrainConfigError, match="unknown model setting"):
        TrainConfig.from_dict({"model": {"size": 3}}).model_config(np.zeros((68, 2)))
    with pytest.raises(TrainConfigError, match="'steps' must be int"):
        TrainConfig.from_dict({"steps": "many"})
    assert TrainConfig.from_dict({"lr_gen": 1}).lr_gen == 1.0
    with pytest.raises(TrainConfigError, match="batch_size"):
        _config(corpus, tmp_path, batch_size=1)
    with pytest.raises(DatasetFormatError, match="img_size"):
        ClipDataset(corpus, "train", 8, 3200, img_size=(128, 96))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": str(tmp_path / "missing"), "out": str(tmp_path / "o")}))
    assert main(["train", str(bad), "--no-progress"]) == 1
    assert "no meta.json" in capsys.readouterr().err
    bad.write_text("{not json")
    assert main(["train", str(bad)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_model_settings_left_out_come_from_the_dataset(corpus):
    """A config without img_size / audio_rate / video_rate takes them from meta.json."""
    from realtime_sda.training.dataset import read_meta

    meta = read_meta(corpus)
    cfg = TrainConfig.from_dict({"data": str(corpus), "model": {"width": 0.125}})
    mcfg = cfg.model_config(np.asarray(meta["mean_face"]))
    assert tuple(mcfg.img_size) == tuple(meta["img_size"]) and mcfg.audio_rate == meta["audio_rate"]
    assert float(mcfg.video_rate) == float(meta["fps"])
    assert mcfg.audio_feat_samples == int(round(meta["audio_rate"] * 0.2))
    given = TrainConfig.from_dict({"data": str(corpus), "model": {"audio_rate": 8000}})
    assert given.model_config(np.asarray(meta["mean_face"])).audio_rate == 8000  # what is given wins
