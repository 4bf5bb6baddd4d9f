"""The generic training loop: one :func:`fit` for every task (classifier, KD, adaptation, ViT).

Interface (see :mod:`train.task`): a task is an ``nn.Module`` with

* ``forward(batch) -> dict`` of scalar losses, the total under ``"loss"`` (``batch`` is what
  the loader yields, ``(x, y, ...)``; x/y are moved to the device here);
* ``trainable_parameters()`` (what AdamW optimises), its submodules = what is trained and
  resumed (``task.state_dict()``); frozen helpers (teacher) live outside the module tree;
* ``model`` / ``model_name`` / ``model_kwargs``: the network validated (``task.predict(x)``
  -> logits, class 1 = fake) and written into the checkpoints.

:func:`fit` does: seeding (``cfg.seed`` + rank), AdamW + per-step cosine schedule, AMP
(float16 autocast + GradScaler) on CUDA only, gradient clipping, tqdm progress bars, validation
AUC/ACC each epoch, ``last.pt`` every epoch (with ``train_state`` = task state, optimizer,
scheduler, scaler, epoch, best AUC, history and RNG states: ``cfg.resume=True`` continues after
the last finished epoch with the same data order) and ``best.pt`` by validation AUC. Under
``torchrun`` (``WORLD_SIZE > 1``) it initialises the process group (NCCL on CUDA, gloo on
CPU), wraps the task in ``DistributedDataParallel`` (so every trainable submodule is
synchronised) and only rank 0 validates and writes. Loaders built with :func:`make_loader`
shard with ``DistributedSampler`` there and shuffle by ``(seed, epoch)`` otherwise, which is
what makes a resumed run see the same batches as an uninterrupted one.

The checkpoint's :class:`edge.spec.ModelCard` carries ``cfg.spec`` and ``cfg.threshold``
(0.5); ``cfg.threshold_fn(scores, labels) -> float`` (e.g. a wrapper of
:func:`train.threshold.calibrate_threshold`) is the hook that sets it from the validation
scores of the best epoch.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler

from edge.errors import ConfigError, DatasetError, ModelError, TrainingError
from edge.spec import ModelCard, PreprocessSpec

from .checkpoint import read_checkpoint, save_checkpoint
from .metrics import accuracy, auc


@dataclass
class FitConfig:
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 0
    grad_clip: float | None = 5.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # only takes effect on CUDA
    resume: bool = False
    spec: PreprocessSpec = field(default_factory=PreprocessSpec)
    threshold: float = 0.5
    threshold_fn: Callable[[np.ndarray, np.ndarray], float] | None = None
    card_version: str = "0"
    card_extra: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # recorded in the checkpoint
    progress: bool = True
    max_steps_per_epoch: int | None = None  # for smoke runs
    channels_last: bool = True  # NHWC on the CPU: ~15 % faster depthwise-heavy nets with oneDNN (measured)
    log: Callable[[str], None] | None = None


# --- devices, seeds, distributed --------------------------------------------------------------
def resolve_device(device: str = "auto") -> torch.device:
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available", fix="use --device cpu or auto")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    rank, local_rank, world = dist_info()
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


class EpochShuffleSampler(Sampler[int]):
    """Shuffles by ``(seed, epoch)``: the order of an epoch does not depend on earlier epochs."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class WeightedEpochSampler(Sampler[int]):
    """``num_samples`` draws with replacement from per-item ``weights`` (class/source balance),
    seeded by ``(seed, epoch)`` like :class:`EpochShuffleSampler`, so a resumed run draws the same items."""

    def __init__(self, weights, num_samples: int, seed: int = 0):
        w = torch.as_tensor(np.asarray(weights, np.float64))
        if w.ndim != 1 or not torch.isfinite(w).all() or (w < 0).any() or float(w.sum()) <= 0:
            raise DatasetError("sampling weights must be finite, >= 0 and not all zero")
        self.weights, self.num_samples, self.seed, self.epoch = w, int(num_samples), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples


def make_loader(dataset, batch_size: int = 64, train: bool = True, seed: int = 0, num_workers: int = 0,
                sampler: Sampler | None = None) -> DataLoader:
    """Seeded loader; under torchrun the training loader shards with DistributedSampler.
    ``sampler`` (e.g. :class:`WeightedEpochSampler`) replaces the epoch shuffle on one process."""
    if len(dataset) == 0:
        raise DatasetError("cannot build a loader on an empty dataset", fix="check the data paths and split fractions")
    _, _, world = dist_info()
    if train and world > 1:  # DDP shards uniformly; a weighted sampler applies on one process only
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=True, seed=seed)
    elif sampler is None:
        sampler = EpochShuffleSampler(len(dataset), seed, shuffle=train)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=train and len(dataset) > batch_size, persistent_workers=num_workers > 0)


# --- RNG state (weights_only-safe) ------------------------------------------------------------
def _rng_state() -> dict:
    np_state = np.random.get_state()
    py = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                                                      int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py[0], list(py[1]), py[2]]}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))


# --- evaluation inside the loop ----------------------------------------------------------------
@torch.no_grad()
def predict_scores(predict: Callable[[torch.Tensor], torch.Tensor], loader, device: torch.device,
                   amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """-> (P(fake) scores, labels) over a loader of (x, y, ...)."""
    scores, labels = [], []
    for batch in loader:
        x = batch[0].to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            logits = predict(x)
        scores.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
        labels.append(np.asarray(batch[1]))
    return np.concatenate(scores), np.concatenate(labels).astype(np.int64)


def _val_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float, prefix: str = "val") -> dict[str, float]:
    out = {f"{prefix}_acc": accuracy(scores, labels, threshold), f"{prefix}_n": int(len(labels))}
    out[f"{prefix}_auc"] = auc(scores, labels) if len(set(labels.tolist())) == 2 else float("nan")
    return out


def validate(predict, val_loader, device: torch.device, threshold: float, amp: bool = False
             ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """-> (metrics, scores, labels). ``val_loader`` may be a dict name -> loader (one per data
    source): each gets ``val_auc_<name>``/``val_acc_<name>``, and ``val_auc`` is the *mean* of the
    per-source AUCs (source-balanced selection, never a pooled AUC); scores/labels are concatenated."""
    if not isinstance(val_loader, dict):
        scores, labels = predict_scores(predict, val_loader, device, amp)
        return _val_metrics(scores, labels, threshold), scores, labels
    metrics: dict[str, float] = {}
    all_s, all_y, aucs = [], [], []
    for name, loader in val_loader.items():
        s, y = predict_scores(predict, loader, device, amp)
        m = _val_metrics(s, y, threshold, prefix=f"val_{name}")
        metrics.update({f"val_auc_{name}": m[f"val_{name}_auc"], f"val_acc_{name}": m[f"val_{name}_acc"]})
        if math.isfinite(m[f"val_{name}_auc"]):
            aucs.append(m[f"val_{name}_auc"])
        all_s.append(s)
        all_y.append(y)
    scores, labels = np.concatenate(all_s), np.concatenate(all_y)
    metrics["val_auc"] = float(np.mean(aucs)) if aucs else float("nan")
    metrics["val_min_auc"] = float(np.min(aucs)) if aucs else float("nan")
    metrics["val_n"] = int(len(labels))
    return metrics, scores, labels


def _move(batch, device, nhwc: bool = False):
    if isinstance(batch, (list, tuple)):
        return type(batch)(_move(b, device, nhwc) for b in batch)
    if isinstance(batch, dict):
        return {k: _move(v, device, nhwc) for k, v in batch.items()}
    if not torch.is_tensor(batch):
        return batch
    batch = batch.to(device, non_blocking=True)
    return batch.contiguous(memory_format=torch.channels_last) if nhwc and batch.dim() == 4 else batch


def effective_warmup(total: int, warmup: int) -> int:
    """Warm-up steps actually used: at most a tenth of the run, so a short run (the demo's teacher:
    47 steps against a 50-step warm-up) still reaches its peak rate and anneals instead of ending
    at the top of the ramp."""
    return max(0, min(int(warmup), total // 10))


def cosine_lr(step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


# --- the loop -----------------------------------------------------------------------------------
def fit(task: nn.Module, train_loader, val_loader, cfg: FitConfig, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Train ``task`` (see the module docstring); returns ``{best_auc, best_epoch, history, last, best}``."""
    out_dir = Path(out_dir)
    log = cfg.log or (lambda s: None)
    device = resolve_device(cfg.device)
    rank, world, device = _init_distributed(device)
    is_main = rank == 0
    seed_everything(cfg.seed + rank)
    use_amp = cfg.amp and device.type == "cuda"
    if len(train_loader) == 0:
        raise DatasetError("the training split is empty", fix="add data or lower the val/test fractions")

    nhwc = cfg.channels_last and device.type == "cpu"
    task.to(device)
    if nhwc:
        task.to(memory_format=torch.channels_last)
    params = task.trainable_parameters()
    if not params:
        raise ConfigError("the task has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(train_loader)
    if cfg.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total = steps_per_epoch * cfg.epochs
    warmup = effective_warmup(total, cfg.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, total, warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, best_auc, best_epoch, history = 0, -1.0, -1, []
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if cfg.resume and last_path.is_file():
        blob = read_checkpoint(last_path)
        if blob["model_name"] != task.model_name:
            raise ModelError(f"cannot resume: {last_path} holds a {blob['model_name']!r} run, "
                             f"this is {task.model_name!r}",
                             path=last_path, fix="use another --out folder or the matching model")
        ts = blob.get("train_state")
        if not ts:
            raise ModelError("cannot resume: the checkpoint has no train_state", path=last_path,
                             fix="resume from a last.pt written by ffd train")
        task.load_state_dict(ts["task"])
        opt.load_state_dict(ts["optimizer"])
        sched.load_state_dict(ts["scheduler"])
        if use_amp and ts.get("scaler"):
            scaler.load_state_dict(ts["scaler"])
        start_epoch, best_auc, best_epoch = int(ts["epoch"]) + 1, float(ts["best_auc"]), int(ts["best_epoch"])
        history = list(ts.get("history", []))
        _set_rng_state(ts["rng"])
        log(f"resumed from {last_path} after epoch {start_epoch} of {cfg.epochs} (best val AUC {best_auc:.4f})")
    elif cfg.resume:
        log(f"--resume: no {last_path}, starting from scratch")

    step_module: nn.Module = task
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        step_module = DDP(task, device_ids=[device.index] if device.type == "cuda" else None,
                          find_unused_parameters=True)

    def card(threshold: float) -> ModelCard:
        return ModelCard(task.model_name, spec=cfg.spec, threshold=float(threshold), version=cfg.card_version,
                         extra=dict(cfg.card_extra))

    for epoch in range(start_epoch, cfg.epochs):
        for obj in (getattr(train_loader, "sampler", None), getattr(train_loader, "dataset", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        task.train()
        sums: dict[str, float] = {}
        n_steps, t0 = 0, time.time()
        it = train_loader
        if cfg.progress and is_main:
            from tqdm.auto import tqdm

            it = tqdm(train_loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                      dynamic_ncols=True)
        for batch in it:
            if n_steps >= steps_per_epoch:
                break
            batch = _move(batch, device, nhwc)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                losses = step_module(batch)
            # every logged loss in one device->host copy (one sync per step, not one per loss)
            values = dict(zip(losses, torch.stack([torch.as_tensor(v, dtype=torch.float32, device=device).detach()
                                                   for v in losses.values()]).tolist()))
            if not math.isfinite(values["loss"]):
                raise TrainingError(f"the training loss is {values['loss']} at epoch {epoch + 1}, step {n_steps + 1}",
                                    fix="lower --lr (or check the data for NaN/inf values)")
            opt.zero_grad(set_to_none=True)
            scaler.scale(losses["loss"]).backward()
            if cfg.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            n_steps += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            if hasattr(it, "set_postfix"):
                it.set_postfix(loss=f"{sums['loss'] / n_steps:.4f}")
        train_losses = {f"train_{k}": v / max(1, n_steps) for k, v in sums.items()}

        if world > 1:
            import torch.distributed as dist

            dist.barrier()
        if is_main:
            task.eval()
            val_m, scores, labels = validate(task.predict, val_loader, device, cfg.threshold, use_amp)
            metrics = {"epoch": epoch + 1, **train_losses, **val_m, "epoch_seconds": round(time.time() - t0, 2)}
            history.append(metrics)
            improved = math.isfinite(metrics["val_auc"]) and metrics["val_auc"] > best_auc or best_epoch < 0
            if improved:
                best_auc = metrics["val_auc"] if math.isfinite(metrics["val_auc"]) else best_auc
                best_epoch = epoch + 1
            threshold = cfg.threshold
            if improved and cfg.threshold_fn is not None:
                threshold = float(cfg.threshold_fn(scores, labels))
                metrics["threshold"] = threshold
            log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
            train_state = {"epoch": epoch, "task": task.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "scaler": scaler.state_dict() if use_amp else {},
                           "best_auc": float(best_auc), "best_epoch": int(best_epoch), "history": history,
                           "rng": _rng_state()}
            common = dict(model_kwargs=task.model_kwargs, config=cfg.config, metrics=metrics)
            if improved:
                save_checkpoint(best_path, task.model, card(threshold), **common)
            save_checkpoint(last_path, task.model, card(cfg.threshold), train_state=train_state, **common)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
    return {"best_auc": best_auc, "best_epoch": best_epoch, "history": history, "last": str(last_path),
            "best": str(best_path)}
