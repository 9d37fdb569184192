"""The training loop: :func:`setup` (data, networks, optimizers, resume), :func:`train_step`
(a discriminator update and a generator update) and bookkeeping (metrics, samples and
checkpoints at intervals); :func:`train` runs them.

Files in the output directory:

- ``last.pt``: the inference checkpoint (original dict layout, loads with ``load_model``),
  with ``train_config`` (plain dict) and ``step`` as extra keys;
- ``train_state.pt``: discriminators, optimizers, step and random states, for resuming;
- ``metrics.jsonl``: one line of losses per ``log_every`` steps;
- ``samples/step_NNNNNN.png``: real frames (top) over generated frames (bottom), and
  ``samples/step_NNNNNN.mp4``: real | generated with the clip's audio.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..core.config import NOISE_STD
from ..core.model import SDAModel
from .blinks import blink_noise, eye_box, onset_threshold
from .config import TrainConfig, TrainConfigError
from .dataset import ClipDataset, clip_windows, load_clip, read_meta
from .frame_disc import FrameDiscriminator
from .generate import generate_train
from .losses import Discriminators, blink_code_loss, discriminator_losses, generator_losses, sync_slices
from .sequence_disc import SequenceDiscriminator
from .sync_disc import SyncDiscriminator

__all__ = ["train", "setup", "train_step", "TrainingRun", "build_discriminators", "save_sample_grid"]


def build_discriminators(cfg: TrainConfig, model: SDAModel) -> Discriminators:
    mc = model.config
    return Discriminators(
        frame=FrameDiscriminator(mc.img_size, cfg.disc_width),
        seq=SequenceDiscriminator(mc.img_size, mc.audio_rate, cfg.disc_width),
        sync=SyncDiscriminator(mc.img_size, mc.audio_rate, cfg.sync_frames, cfg.disc_width),
    )


def _batch(ds: ClipDataset, size: int, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    items = [ds[int(i)] for i in torch.randint(0, len(ds), (size,), generator=gen)]
    return {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}


def _autocast(device: torch.device, enabled: bool) -> Any:
    if not (enabled and device.type == "cuda"):
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def save_sample_grid(model: SDAModel, data: str | os.PathLike[str], clip_id: str, path: Path,
                     columns: int = 8, seed: int = 0, video: Path | None = None) -> np.ndarray:
    """Generate a whole clip from its first frame and write real (top) over generated
    (bottom) frames, ``columns`` evenly spaced ones, as a PNG; with ``video``, also an MP4 of
    real | generated side by side with the clip's audio. Returns the grid."""
    from PIL import Image

    from ..core.noise import NoiseSource

    was_training = model.training
    model.eval()
    cfg = model.config
    clip = load_clip(data, clip_id)
    frames = np.asarray(clip["frames"])
    t = len(frames)
    windows = torch.from_numpy(clip_windows(np.asarray(clip["audio"]), 0, t, cfg.stride, cfg.audio_feat_samples))
    still = torch.from_numpy(frames[0].copy()).float().div(127.5).sub(1).permute(2, 0, 1)[None].to(model.device)
    noise = NoiseSource(cfg.aux_latent, seed).next(t)[None]
    fake = _to_uint8(model.generate(still, windows[None].to(model.device), noise.to(model.device))[0])
    pick = np.linspace(0, t - 1, min(columns, t)).round().astype(int)
    grid = np.concatenate([np.concatenate(list(frames[pick]), axis=1), np.concatenate(list(fake[pick]), axis=1)], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    if video is not None:
        from ..media.audio import to_int16
        from ..media.video import save_video

        pair = np.concatenate([frames, fake], axis=2).transpose(0, 3, 1, 2)
        pcm = to_int16(np.asarray(clip["audio"]))
        save_video(pair, pcm, video, scale=2.0, video_rate=float(cfg.video_rate), audio_rate=cfg.audio_rate)
    model.train(was_training)
    return grid


def _save(out: Path, cfg: TrainConfig, model: SDAModel, d: Discriminators, opts: dict[str, torch.optim.Optimizer],
          step: int, gen: torch.Generator, ds: ClipDataset) -> None:
    model.save(out / "last.pt", extra={"train_config": cfg.to_dict(), "step": step})
    state = {
        "step": step,
        "discriminators": {name: getattr(d, name).state_dict() for name in ("frame", "seq", "sync")},
        "optimizers": {name: opt.state_dict() for name, opt in opts.items()},
        "torch_rng": torch.get_rng_state(),
        "batch_rng": gen.get_state(),
        "crop_rng": json.dumps(ds.rng.bit_generator.state),
        "train_config": cfg.to_dict(),
    }
    tmp = out / "train_state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / "train_state.pt")


def _resume(out: Path, model: SDAModel, d: Discriminators, opts: dict[str, torch.optim.Optimizer],
            gen: torch.Generator, ds: ClipDataset) -> int:
    from ..checkpoints.format import read_checkpoint

    ckpt = read_checkpoint(out / "last.pt")
    for part in ("encoder", "encoder_id", "generator"):
        getattr(model, part).load_state_dict(ckpt[part])
    state = torch.load(out / "train_state.pt", map_location="cpu", weights_only=True)
    for name in ("frame", "seq", "sync"):
        getattr(d, name).load_state_dict(state["discriminators"][name])
    for name, opt in opts.items():
        saved = state["optimizers"][name]
        if len(saved["param_groups"]) != len(opt.param_groups):  # a run from before lr_noise
            warnings.warn(f"resuming: the {name} optimizer's parameter groups changed; its Adam moments restart", stacklevel=2)
            continue
        opt.load_state_dict(saved)
    torch.set_rng_state(state["torch_rng"])
    gen.set_state(state["batch_rng"])
    ds.rng.bit_generator.state = json.loads(state["crop_rng"])
    return int(state["step"])


def _generator_groups(model: SDAModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The generator's Adam parameter groups: the noise GRU at ``lr_noise`` (when set), the
    rest at ``lr_gen``. The noise GRU is tiny and must learn its blink code in a short run."""
    noise = list(model.generator.rnn_noise.parameters()) if hasattr(model.generator, "rnn_noise") else []
    if not (cfg.lr_noise > 0 and noise):
        return [{"params": list(model.parameters())}]
    ids = {id(p) for p in noise}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": noise, "lr": cfg.lr_noise}]


def _init_from(model: SDAModel, name: str) -> None:
    """Start the networks from another checkpoint of the same shapes (fine-tuning)."""
    from ..checkpoints.loading import load_model
    from ..errors import StateDictMismatchError

    src = load_model(name, "cpu")
    for part in ("encoder", "encoder_id", "generator"):
        try:
            getattr(model, part).load_state_dict(getattr(src, part).state_dict())
        except RuntimeError as exc:
            raise StateDictMismatchError(
                f"init_from {name!r}: its {part} does not fit the configured model ({str(exc).splitlines()[0]}); "
                "set the config's model fields to that checkpoint's (img_size, audio_rate, width, ...)"
            ) from None


@dataclass
class TrainingRun:
    """Everything one training run holds between steps (made by :func:`setup`)."""

    cfg: TrainConfig
    device: torch.device
    model: SDAModel
    d: Discriminators
    opts: dict[str, torch.optim.Optimizer]
    scaler: Any  # torch.amp.GradScaler
    ds: ClipDataset
    gen: torch.Generator  # batches, sync slices and blink noise draw from it, in that order
    out: Path
    step: int
    weights: dict[str, float]
    tau: float | None  # blink onset threshold (None: blinks are learnt only adversarially)
    eyes: Any  # eye box for the eye L1 (None: off)
    sample_clip: str
    started: float = field(default_factory=time.monotonic)


def setup(cfg: TrainConfig) -> TrainingRun:
    """Device, data, networks, optimizers; resumes from ``cfg.out`` when it holds a run."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainConfigError(f"device {cfg.device!r} was asked for but CUDA is not available; use \"device\": \"cpu\"")
    torch.manual_seed(cfg.seed)
    meta = read_meta(cfg.data)
    mcfg = cfg.model_config(np.asarray(meta["mean_face"], dtype=np.float64))
    if mcfg.audio_rate != meta["audio_rate"] or float(mcfg.video_rate) != float(meta["fps"]):
        raise TrainConfigError(
            f"the model wants {mcfg.audio_rate} Hz / {mcfg.video_rate} fps but the dataset has "
            f"{meta['audio_rate']} Hz / {meta['fps']} fps; set model.audio_rate / video_rate to match"
        )
    ds = ClipDataset(cfg.data, cfg.train_split, cfg.clip_frames, mcfg.audio_feat_samples, mcfg.img_size, cfg.seed,
                     blink_crops=cfg.blink_crops)
    if cfg.blink_rate > 0 and not any((ds.root / "clips" / c.id / "landmarks.npy").is_file() for c in ds.clips):
        raise TrainConfigError(
            f"blink_rate needs the clips' landmarks (clips/<id>/landmarks.npy, written by 'realtime-sda synth' and "
            f"'realtime-sda prepare'), and no {cfg.train_split!r} clip in '{cfg.data}' has them; rebuild the dataset "
            "with prepare, or set blink_rate to 0 to learn blinks only adversarially"
        )
    model = SDAModel(mcfg).to(device).train()
    d = build_discriminators(cfg, model)
    for net in (d.frame, d.seq, d.sync):
        net.to(device).train()
    opts = {
        "gen": torch.optim.Adam(_generator_groups(model, cfg), lr=cfg.lr_gen, betas=cfg.betas),
        "frame": torch.optim.Adam(d.frame.parameters(), lr=cfg.lr_frame, betas=cfg.betas),
        "seq": torch.optim.Adam(d.seq.parameters(), lr=cfg.lr_seq, betas=cfg.betas),
        "sync": torch.optim.Adam(d.sync.parameters(), lr=cfg.lr_sync, betas=cfg.betas),
    }
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported())
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    step = 0
    lrs = {"gen": cfg.lr_gen, "frame": cfg.lr_frame, "seq": cfg.lr_seq, "sync": cfg.lr_sync}
    if (out / "last.pt").is_file() and (out / "train_state.pt").is_file():
        step = _resume(out, model, d, opts, gen, ds)
        for name, opt in opts.items():  # the config, not the saved state, sets the rates
            for i, group in enumerate(opt.param_groups):  # the generator's group 1: the noise GRU
                group["lr"] = cfg.lr_noise if (name == "gen" and i == 1) else lrs[name]
    elif cfg.init_from:
        _init_from(model, cfg.init_from)
    tau = onset_threshold(cfg.blink_rate, float(mcfg.video_rate), NOISE_STD) if cfg.blink_rate > 0 else None
    eyes = eye_box(mcfg.mean_face, mcfg.img_size) if cfg.w_l1_eyes > 0 else None
    weights = {"g_frame": cfg.w_frame, "g_seq": cfg.w_seq, "g_sync": cfg.w_sync, "l1": cfg.w_l1, "l1_face": cfg.w_l1_face,
               "l1_eyes": cfg.w_l1_eyes, "blink_code": cfg.w_blink_code}
    return TrainingRun(cfg, device, model, d, opts, scaler, ds, gen, out, step, weights, tau, eyes, ds.clips[0].id)


def train_step(run: TrainingRun) -> dict[str, torch.Tensor]:
    """One step: a batch, a discriminator update, a generator update. Returns the losses
    (``g_total`` and every discriminator and generator term); ``run.step`` counts it."""
    cfg, mcfg, device, opts, scaler, gen = run.cfg, run.model.config, run.device, run.opts, run.scaler, run.gen
    batch = _batch(run.ds, cfg.batch_size, gen, device)
    still, real, windows = batch["still"], batch["frames"], batch["windows"]
    s = sync_slices(cfg.clip_frames, cfg.sync_frames, mcfg.stride, mcfg.pad_left, gen)
    noise = explained = None
    if run.tau is not None:  # noise that explains the real blinks (blinks.py)
        noise = blink_noise(batch["onsets"], batch["blinks_known"], mcfg.aux_latent, NOISE_STD, run.tau, gen)
        explained = batch["explained"]
    codes: dict[str, torch.Tensor] = {}
    with _autocast(device, cfg.amp):
        fake = generate_train(run.model, still, windows, noise, codes)

    # discriminators: real vs generated (and, for sync, vs off-sync audio)
    for opt in opts.values():
        opt.zero_grad(set_to_none=True)
    with _autocast(device, cfg.amp):
        d_losses = discriminator_losses(run.d, still, real, fake, windows, s)
    scaler.scale(sum(d_losses.values())).backward()
    for name in ("frame", "seq", "sync"):
        scaler.step(opts[name])

    # generator: fool every discriminator, and reconstruct the lower face (L1)
    for opt in opts.values():
        opt.zero_grad(set_to_none=True)
    with _autocast(device, cfg.amp):
        g_losses = generator_losses(run.d, still, real, fake, windows, s, explained, run.eyes)
        if explained is not None and cfg.w_blink_code > 0:
            g_losses["blink_code"] = blink_code_loss(codes["noise"], batch["closure"], explained * batch["blinks_known"][:, None])
        g_total = sum(run.weights[k] * v for k, v in g_losses.items())
    scaler.scale(g_total).backward()
    scaler.step(opts["gen"])
    scaler.update()
    run.step += 1
    return {"g_total": g_total, **d_losses, **g_losses}  # type: ignore[dict-item]


def _bookkeep(run: TrainingRun, losses: dict[str, torch.Tensor], log: IO[str], bar: Any) -> bool:
    """Metrics, samples, checkpoints and the time budget after a step; True: stop now."""
    cfg, step = run.cfg, run.step
    if step % cfg.log_every == 0 or step == 1:
        row: dict[str, float] = {"step": step, "time": round(time.monotonic() - run.started, 2)}
        row.update({k: round(float(v.detach()), 5) for k, v in losses.items()})
        log.write(json.dumps(row) + "\n")
        log.flush()
        bar.set_postfix(l1=f"{row['l1']:.4f}", d_frame=f"{row['d_frame']:.3f}")
    out_of_time = cfg.max_minutes > 0 and time.monotonic() - run.started > cfg.max_minutes * 60
    if cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
        png = run.out / "samples" / f"step_{step:06d}.png"
        save_sample_grid(run.model, cfg.data, run.sample_clip, png, video=png.with_suffix(".mp4"))
    if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
        _save_run(run)
    return out_of_time


def _save_run(run: TrainingRun) -> None:
    _save(run.out, run.cfg, run.model, run.d, run.opts, run.step, run.gen, run.ds)


def train(cfg: TrainConfig, show_progress: bool = True) -> Path:
    """Train (or resume training) as ``cfg`` says; returns the path of the last checkpoint."""
    from tqdm import tqdm

    run = setup(cfg)
    log = (run.out / "metrics.jsonl").open("a")
    bar = tqdm(total=cfg.steps, initial=run.step, disable=not show_progress, desc="train", unit="step")
    try:
        while run.step < cfg.steps:
            losses = train_step(run)
            bar.update(1)
            if _bookkeep(run, losses, log, bar):
                break
    finally:
        bar.close()
        log.close()
    if not (run.out / "last.pt").is_file() or run.step % cfg.checkpoint_every:
        _save_run(run)
    return run.out / "last.pt"
