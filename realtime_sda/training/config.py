"""The training configuration: one JSON file, stored as a plain dict inside every checkpoint."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.config import SDAConfig
from ..errors import TrainConfigError

__all__ = ["TrainConfigError", "TrainConfig", "MODEL_FIELDS"]

#: SDAConfig fields a training config may set (mean_face comes from the dataset; img_size,
#: audio_rate and video_rate, when not set, too: see :meth:`TrainConfig.model_config`).
MODEL_FIELDS = tuple(f.name for f in fields(SDAConfig) if f.name != "mean_face")


@dataclass
class TrainConfig:
    """Everything a training run needs. Loss weights and learning rates default to the paper's
    (Vougioukas et al., IJCV 2019): frame 1, sync 0.8, sequence 0.2, L1 600; Adam with 1e-4
    for the generator and frame discriminator, 1e-5 for the others."""

    data: str = ""
    out: str = "runs/sda"
    model: dict[str, Any] = field(default_factory=dict)  # SDAConfig fields (MODEL_FIELDS)
    w_frame: float = 1.0
    w_sync: float = 0.8
    w_seq: float = 0.2
    w_l1: float = 600.0
    w_l1_face: float = 0.0  # L1 over the whole frame (not in the paper; helps short runs)
    w_l1_eyes: float = 0.0  # L1 over the eyes and brows (not in the paper; with blink_rate)
    blink_rate: float = 0.0  # >0: blink-conditioned noise at this many blinks/s (blinks.py)
    blink_crops: float = 0.0  # fraction of training windows placed to hold a blink onset
    w_blink_code: float = 0.0  # noise GRU's first output follows the eyelids (with blink_rate)
    init_from: str = ""  # checkpoint (path or registry name) to start the networks from
    lr_gen: float = 1e-4
    lr_frame: float = 1e-4
    lr_seq: float = 1e-5
    lr_sync: float = 1e-5
    lr_noise: float = 0.0  # learning rate of the noise GRU (0: lr_gen); see blinks.py
    betas: tuple[float, float] = (0.5, 0.999)
    disc_width: float = 0.25  # channel multiplier of the discriminators (1 = 64 base channels)
    sync_frames: int = 5  # mouth frames the sync discriminator sees (0.2 s at 25 fps)
    batch_size: int = 4
    clip_frames: int = 16
    steps: int = 1000
    sample_every: int = 200
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # mixed precision, used only on CUDA
    threads: int = 0  # torch CPU threads (0: leave torch's default)
    train_split: str = "train"
    max_minutes: float = 0.0  # stop (after a checkpoint) when this much wall time has passed

    def dataset_model_settings(self) -> dict[str, Any]:
        """The model settings the dataset fixes, from its ``meta.json``: ``img_size``,
        ``audio_rate`` and ``video_rate`` (its ``fps``); empty when ``data`` has none."""
        meta_path = Path(self.data) / "meta.json" if self.data else None
        if meta_path is None or not meta_path.is_file():
            return {}
        from .dataset import read_meta

        meta = read_meta(self.data)
        out: dict[str, Any] = {}
        if "img_size" in meta:
            out["img_size"] = [int(v) for v in meta["img_size"]]
        if "audio_rate" in meta:
            out["audio_rate"] = int(meta["audio_rate"])
        if "fps" in meta:
            fps = float(meta["fps"])
            out["video_rate"] = int(fps) if fps.is_integer() else fps
        return out

    def model_config(self, mean_face: Any) -> SDAConfig:
        """The model's :class:`SDAConfig`: the ``model`` settings given, and for those left
        out, the dataset's (``img_size``, ``audio_rate``, ``video_rate`` from its
        ``meta.json``; ``mean_face`` is passed in from it), then SDAConfig's defaults."""
        unknown = sorted(set(self.model) - set(MODEL_FIELDS))
        if unknown:
            raise TrainConfigError(f"unknown model setting(s) {unknown}; allowed: {list(MODEL_FIELDS)}")
        values = {**self.dataset_model_settings(), **self.model}
        if "audio_rate" in values and "audio_feat_samples" not in values:
            values["audio_feat_samples"] = int(round(values["audio_rate"] * values.get("audio_feat_len", 0.2)))
        try:
            return SDAConfig(mean_face=mean_face, **values)
        except (TypeError, ValueError) as exc:
            raise TrainConfigError(f"invalid model settings {values}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TrainConfigError(f"unknown training setting(s) {unknown}; allowed: {sorted(names)}")
        cfg = cls(**d)
        for f in fields(cls):  # coerce numbers and flags to their field's type, or say which is wrong
            default, value = getattr(cls(), f.name), getattr(cfg, f.name)
            kind = type(default)
            if kind in (int, float, bool, str) and not isinstance(value, kind):
                ok = kind is float and isinstance(value, int) and not isinstance(value, bool)
                if not ok:
                    raise TrainConfigError(f"setting {f.name!r} must be {kind.__name__}, got {value!r}")
                setattr(cfg, f.name, float(value))
        if not isinstance(cfg.model, dict):
            raise TrainConfigError(f"setting 'model' must be an object of SDAConfig fields, got {cfg.model!r}")
        cfg.betas = (float(cfg.betas[0]), float(cfg.betas[1]))
        if cfg.clip_frames < cfg.sync_frames + cfg.sync_frames // 2 + 1:
            raise TrainConfigError(
                f"clip_frames ({cfg.clip_frames}) is too short for off-sync pairs of sync_frames ({cfg.sync_frames}); "
                f"use at least {cfg.sync_frames + cfg.sync_frames // 2 + 1}"
            )
        if not 0.0 <= cfg.blink_rate < 0.5 * float(cfg.model.get("video_rate", 25.0)):
            raise TrainConfigError(f"blink_rate must be 0 (off) or a rate in blinks per second such as 0.3, got {cfg.blink_rate}")
        if not 0.0 <= cfg.blink_crops <= 1.0:
            raise TrainConfigError(f"blink_crops is a fraction of windows in [0, 1], got {cfg.blink_crops}")
        if cfg.batch_size < 2:
            raise TrainConfigError("batch_size must be at least 2 (BatchNorm needs more than one sample)")
        return cfg

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "TrainConfig":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise TrainConfigError(f"training config '{p}' does not exist") from None
        except json.JSONDecodeError as exc:
            raise TrainConfigError(f"training config '{p}' is not valid JSON: {exc}") from None
        if not isinstance(d, dict):
            raise TrainConfigError(f"training config '{p}' must be a JSON object")
        cfg = cls.from_dict(d)
        base = p.parent
        if cfg.data and not Path(cfg.data).is_absolute():
            cfg.data = str(base / cfg.data)
        if cfg.out and not Path(cfg.out).is_absolute():
            cfg.out = str(base / cfg.out)
        return cfg
