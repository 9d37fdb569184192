"""Checkpoint files in the original layout: GRID-size files in the legacy and zip formats load
strictly and match the published tensor list; saving round-trips; the safe loader refuses
everything that is not a checkpoint, without running it; every error is clear."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from realtime_sda import load_model
from realtime_sda.checkpoints.format import read_checkpoint, write_checkpoint
from realtime_sda.core.config import ORIGINAL_KEYS
from realtime_sda.core.model import SDAModel
from realtime_sda.errors import (
    CheckpointFormatError,
    LFSPointerError,
    ModelNotFoundError,
    RealtimeSDAError,
    StateDictMismatchError,
)
from testsupport.models import grid_config, tiny_config, write_random_checkpoint

LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:cfd703ecb1bbbb2a81ea62a0df948627a6e4e6481e9c444fccb4a41701867ca7\n"
    b"size 221179358\n"
)


def _grid_layout() -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
    """The GRID checkpoint's tensor list as the model code builds it: {part: {key: (shape,
    dtype)}}, in order. (That this is the published list is test_engine's
    ``test_grid_layout_matches_the_published_tsv``, where ../shared is present.)"""
    model = SDAModel(grid_config())
    return {
        part: {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()}
        for part, sd in model.state_dicts().items()
    }


@pytest.fixture(scope="module")
def grid_checkpoint_zip(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("zip") / "grid_random.pt", grid_config(), seed=2)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_grid_size_files_have_the_grid_layout(fmt, request):
    path = request.getfixturevalue("grid_checkpoint_legacy" if fmt == "legacy" else "grid_checkpoint_zip")
    with open(path, "rb") as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"
    assert is_zip == (fmt == "zip")
    expected = _grid_layout()
    ckpt = read_checkpoint(path)
    assert set(ORIGINAL_KEYS) <= set(ckpt)
    assert isinstance(ckpt["mean_face"], np.ndarray) and ckpt["mean_face"].dtype == np.float64
    assert ckpt["mean_face"].shape == (68, 2)
    assert tuple(ckpt["img_size"]) == (128, 96) and ckpt["audio_rate"] == 50000 and ckpt["video_rate"] == 25
    assert ckpt["audio_feat_samples"] == 10000 and ckpt["sequential_noise"] is True
    for part, keys in expected.items():
        got = ckpt[part]
        assert list(got) == list(keys), part  # same keys, same order
        for key, (shape, dtype) in keys.items():
            assert tuple(got[key].shape) == shape, key
            assert str(got[key].dtype).replace("torch.", "") == dtype, key
    model = load_model(path)  # strict
    assert sum(p.numel() for p in model.parameters()) > 50_000_000


def test_round_trip_is_exact(tmp_path, grid_checkpoint_legacy):
    model = load_model(grid_checkpoint_legacy)
    for legacy in (True, False):
        out = model.save(tmp_path / f"copy_{legacy}.dat", extra={"note": "round trip"}, legacy=legacy)
        again = load_model(out)
        assert again.extra == {"note": "round trip"}
        for part in ("encoder", "encoder_id", "generator"):
            a, b = getattr(model, part).state_dict(), getattr(again, part).state_dict()
            assert list(a) == list(b)
            for k in a:
                assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        ca, cb = model.config, again.config
        assert isinstance(cb.mean_face, np.ndarray) and cb.mean_face.dtype == np.float64
        assert np.array_equal(ca.mean_face, cb.mean_face)
        for field in ("img_size", "audio_rate", "video_rate", "audio_feat_len", "audio_feat_samples",
                      "id_enc_dim", "rnn_gen_dim", "aud_enc_dim", "aux_latent", "sequential_noise", "width"):
            assert getattr(ca, field) == getattr(cb, field), field


def test_safe_mode_needs_our_allow_list(grid_checkpoint_legacy):
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(grid_checkpoint_legacy, map_location="cpu", weights_only=True)
    assert isinstance(read_checkpoint(grid_checkpoint_legacy)["mean_face"], np.ndarray)


def test_missing_model_lists_places_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("REALTIME_SDA_MODELS", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError) as err:
        load_model("crema")
    text = str(err.value)
    assert str(tmp_path / "mine" / "crema.dat") in text
    assert str(tmp_path / "cache" / "realtime-sda" / "models" / "crema.pt") in text
    assert "git lfs pull" in text and "put it at" in text
    with pytest.raises(ModelNotFoundError, match="realtime-sda models"):
        load_model(tmp_path / "nothing.pt")
    with pytest.raises(ModelNotFoundError, match="folder"):
        load_model(tmp_path)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, RealtimeSDAError)


def test_lfs_pointer(tmp_path, monkeypatch):
    monkeypatch.setenv("REALTIME_SDA_MODELS", str(tmp_path))
    (tmp_path / "grid.dat").write_bytes(LFS_POINTER)
    assert len(LFS_POINTER) == 134
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the pointer gets its error, not a hash warning
        with pytest.raises(LFSPointerError, match="git lfs pull"):
            load_model("grid")


def test_truncated_and_empty_files(tmp_path):
    for legacy in (True, False):
        full = write_random_checkpoint(tmp_path / f"full_{legacy}.pt", tiny_config(), legacy=legacy)
        data = full.read_bytes()
        for frac in (0.5, 0.9):
            cut = tmp_path / f"cut_{legacy}_{frac}.pt"
            cut.write_bytes(data[: int(len(data) * frac)])
            with pytest.raises(CheckpointFormatError, match="truncated or corrupt"):
                load_model(cut)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointFormatError, match="empty"):
        load_model(empty)


def test_foreign_pickles(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointFormatError, match="lacks the state dict"):
        load_model(tmp_path / "other.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointFormatError, match="list"):
        load_model(tmp_path / "list.pt")
    (tmp_path / "text.pt").write_text("hello\n")
    with pytest.raises(CheckpointFormatError):
        load_model(tmp_path / "text.pt")
    # Values missing from an otherwise well-formed dict.
    ckpt = read_checkpoint(write_random_checkpoint(tmp_path / "t.pt", tiny_config()))
    del ckpt["aux_latent"]
    torch.save(ckpt, tmp_path / "noaux.pt")
    with pytest.raises(CheckpointFormatError, match="aux_latent"):
        load_model(tmp_path / "noaux.pt")


class _Payload:
    """Unpickling this would create a file: the loader must refuse it without running it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("how", ["zip", "legacy", "raw-pickle"])
def test_malicious_pickle_is_not_executed(tmp_path, how):
    marker = tmp_path / "pwned"
    ckpt = read_checkpoint(write_random_checkpoint(tmp_path / "t.pt", tiny_config()))
    ckpt["mean_face"] = _Payload(marker)
    path = tmp_path / "evil.pt"
    if how == "raw-pickle":
        path.write_bytes(pickle.dumps(ckpt, protocol=2))
    else:
        torch.save(ckpt, path, _use_new_zipfile_serialization=how == "zip")
    assert not marker.exists()
    with pytest.raises(CheckpointFormatError, match="does not allow"):
        load_model(path)
    assert not marker.exists()


def test_mismatched_shapes_are_named(tmp_path):
    ckpt = read_checkpoint(write_random_checkpoint(tmp_path / "t.pt", tiny_config()))
    top = {k: v for k, v in ckpt.items() if k not in ("encoder", "encoder_id", "generator")}
    sds = {k: dict(ckpt[k]) for k in ("encoder", "encoder_id", "generator")}
    sds["generator"]["dcl.5.weight"] = torch.zeros(3, 3, 4, 4)
    del sds["encoder"]["rnn.bias_hh_l1"]
    path = write_checkpoint(tmp_path / "bad.pt", top, sds)
    with pytest.raises(StateDictMismatchError) as err:
        load_model(path)
    text = str(err.value)
    assert "dcl.5.weight" in text and "(3, 3, 4, 4)" in text
    assert "missing 'rnn.bias_hh_l1'" in text and "2 mismatches" in text


def test_known_name_with_a_different_hash_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("REALTIME_SDA_MODELS", str(tmp_path))
    write_random_checkpoint(tmp_path / "timit.dat", tiny_config(), legacy=True)
    with pytest.warns(UserWarning, match="differs from it"):
        model = load_model("timit")
    assert model.config.img_size == (64, 48)
    with pytest.warns(UserWarning, match="published 'timit'"):
        load_model(tmp_path / "timit.dat")  # by path: compared by its file name, too
    other = write_random_checkpoint(tmp_path / "mine.dat", tiny_config())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(other)  # not a published name: nothing to compare, no warning
