"""``ffd pretrain``, ``ffd calibrate-threshold`` and ``ffd train vit`` (issue 8, FFDBackbone).

Thin commands: each checks command-line conflicts and calls one library function
(:func:`train.mae.pretrain`, :func:`train.threshold.apply_to_checkpoint`,
:func:`train.competitive.train_vit`), imported inside the command so ``--help`` needs no torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.settings import option  # one range check for every numeric option (one-line errors)

from .options import BatchSize, Device, Epochs, Lr, Seed

Data = Annotated[Path, typer.Option("--data", help="Dataset: any layout `train.data.load_samples` reads.")]
ModelName = Annotated[str, typer.Option("--model", help="Registered ViT: vit_tiny_patch8, vit_mini_patch8, ...")]
ImgSize = Annotated[Optional[int], typer.Option("--img-size",
                                                callback=option("--img-size", lo=8, hi=1024, integer=True),
                                                help="Input size (default: the model's).")]


def register(app: typer.Typer) -> None:
    @app.command("pretrain")
    def pretrain(data: Data,
                 output: Annotated[Path, typer.Option("--output", "-o", help="Backbone checkpoint to write.")],
                 model: ModelName = "vit_tiny_patch8", img_size: ImgSize = None,
                 mask_ratio: Annotated[float, typer.Option("--mask-ratio", min=0.0, max=1.0,
                                                           help="Fraction of patches masked.")] = 0.75,
                 epochs: Epochs = 20, batch_size: BatchSize = 64, lr: Lr = 1.5e-4, seed: Seed = 0,
                 device: Device = "auto"):
        """MAE pre-training of a ViT on REAL faces only (fake-labelled samples are dropped)."""
        from train.mae import pretrain as run

        res = run(data, output, model=model, img_size=img_size, mask_ratio=mask_ratio, epochs=epochs,
                  batch_size=batch_size, lr=lr, seed=seed, device=device)
        typer.echo(f"backbone -> {res['path']} ({res['n_images']} real faces, final loss {res['final_loss']:.4f})")

    @app.command("calibrate-threshold")
    def calibrate_threshold(
            ckpt: Annotated[Path, typer.Argument(help="Checkpoint from `ffd train` (its card gets the threshold).")],
            data: Annotated[list[Path], typer.Argument(
                help="Validation data: dataset path(s), each split as training splits it (its val part is used).")],
            rule: Annotated[str, typer.Option("--rule", help="balanced_accuracy or target_fpr.")] = "balanced_accuracy",
            target_fpr: Annotated[float, typer.Option("--target-fpr", min=0.0, max=1.0,
                                                      help="Allowed false-positive rate (rule target_fpr).")] = 0.05,
            uncertain_band: Annotated[Optional[float], typer.Option(
                "--uncertain-band", min=0.0, help="Fixed band half-width (default: chosen from confidence).")] = None,
            min_confident_accuracy: Annotated[float, typer.Option(
                "--min-confident-accuracy", min=0.0, max=1.0,
                help="Balanced accuracy the decisions outside the band must reach.")] = 0.9,
            whole: Annotated[bool, typer.Option(
                "--whole", help="DATA is already a validation set: use all of it.")] = False,
            seed: Seed = 0,
            output: Annotated[Optional[Path], typer.Option("--output", "-o",
                                                           help="Write here (default: update CKPT in place).")] = None):
        """Choose the decision threshold and uncertain band on validation data; store them in the card."""
        from train.threshold import apply_to_checkpoint

        res = apply_to_checkpoint(ckpt, data, rule=rule, target_fpr=target_fpr, uncertain_band=uncertain_band,
                                  min_confident_accuracy=min_confident_accuracy, out=output,
                                  split=None if whole else "val", seed=seed)
        m = res.metrics
        typer.echo(f"threshold {res.threshold:.4f} (band ±{res.uncertain_band:.4f}, rule {m['rule']}): "
                   f"balanced acc {m['balanced_accuracy']:.4f} vs {m['balanced_accuracy_at_0.5']:.4f} at 0.5, "
                   f"FPR {m['fpr']:.4f}, uncertain {m['uncertain_fraction']:.1%} -> {output or ckpt}")

    try:
        from .train import train_app  # B's `ffd train` group; registered before this module
    except ImportError:  # pragma: no cover - until `ffd train` exists
        return

    @train_app.command("vit")
    def train_vit(data: Data, output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint to write.")],
                  model: ModelName = "vit_tiny_patch8", img_size: ImgSize = None,
                  pretrained: Annotated[Optional[Path], typer.Option(
                      "--pretrained", help="Backbone from `ffd pretrain` (MAE on real faces).")] = None,
                  competitive: Annotated[bool, typer.Option(
                      "--competitive", help="Two competing branches; the better one is kept.")] = False,
                  sbi: Annotated[bool, typer.Option(
                      "--sbi/--no-sbi", help="Add self-blended pseudo-fakes of real faces.")] = True,
                  epochs: Epochs = 10, batch_size: BatchSize = 32, lr: Lr = 3e-4, seed: Seed = 0,
                  device: Device = "auto"):
        """Fine-tune a ViT (from scratch, from an MAE backbone, or competitively) on real/fake faces."""
        from train.competitive import train_vit as run

        res = run(data, output, model=model, img_size=img_size, pretrained=pretrained, competitive=competitive,
                  sbi=sbi, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device)
        typer.echo(f"{res['path']}: val AUC {res['metrics'].get('auc', float('nan')):.4f}")
