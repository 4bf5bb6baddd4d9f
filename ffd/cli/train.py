"""``ffd train teacher``, ``ffd train student`` and ``ffd eval`` (issue 3).

Thin commands over :func:`train.recipes.train_teacher`, :func:`train.recipes.train_student`
and :func:`train.evaluate.evaluate`, imported inside each command so ``--help`` needs no torch.
:data:`train_app` is the ``ffd train`` group; other areas add commands to it (``ffd train vit``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.settings import option  # one range check for every numeric option (one-line errors)

from .options import BatchSize, Device, Epochs, Lr, Seed

def _models(pattern: str) -> str:
    from train.registry import declared_models

    return ", ".join(declared_models(pattern)) or "see train/models"


TRAIN_HELP = f"Train teachers and distilled students. Registered models: {_models('*')}."
train_app = typer.Typer(no_args_is_help=True, help=TRAIN_HELP)

DataOpt = Annotated[list[str], typer.Option(
    "--data", help="Dataset (repeatable): any layout train.data reads; prefix real:/fake: for a plain image folder.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder: last.pt, best.pt, history.json.")]
Sbi = Annotated[bool, typer.Option("--sbi/--no-sbi", help="Add a self-blended pseudo-fake of every real face.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt if it exists.")]
Val = Annotated[float, typer.Option("--val", callback=option("--val", "fraction"),
                                    help="Validation fraction (group-wise hash split).")]
Test = Annotated[float, typer.Option("--test", callback=option("--test", "fraction"),
                                     help="Held-out test fraction, never trained on.")]
MaxPerClass = Annotated[Optional[int], typer.Option("--max-per-class", callback=option("--max-per-class", "count"),
                                                    help="Cap samples per class (quick runs).")]
Workers = Annotated[int, typer.Option("--workers", "-j", callback=option("--workers", "workers"),
                                      help="DataLoader worker processes.")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
Pretrained = Annotated[str, typer.Option(
    "--pretrained", help="auto (ImageNet weights where the model has them: FFD_WEIGHTS folder, cache or official "
                         "URL), none (random init), or a weight file / folder of weight files.")]
PerEpoch = Annotated[Optional[int], typer.Option(
    "--samples-per-epoch", callback=option("--samples-per-epoch", "count"),
    help="Faces drawn per epoch (balanced per source; default: the training set size).")]
CrossBlend = Annotated[Optional[float], typer.Option(
    "--cross-blend", callback=option("--cross-blend", "probability"),
    help="Share of the self-blends whose source is another person's aligned face (Face X-ray style); "
         "default: the recipe's.")]
Geometric = Annotated[Optional[float], typer.Option(
    "--geometric", callback=option("--geometric", "probability"),
    help="Probability of a small rotation/zoom/shift of each training face (ArchiveAugment.geometric; "
         "default: the recipe's, off; docs/training.md).")]
MaxSteps = Annotated[Optional[int], typer.Option("--max-steps", callback=option("--max-steps", "iters"),
                                                 help="Cap steps per epoch (smoke runs).")]


@train_app.command("teacher")
def teacher(data: DataOpt, out: Out,
            model: Annotated[str, typer.Option(
                "--model", help=f"Registered teacher ({_models('teacher*')}).")] = "teacher_dual_lite2",
            epochs: Epochs = 10, batch_size: BatchSize = 32, lr: Lr = 1e-3,
            size: Annotated[int, typer.Option("--size", min=32, help="Input side in pixels (multiple of 32).")] = 128,
            sbi: Sbi = True, seed: Seed = 0, resume: Resume = False, device: Device = "auto", val: Val = 0.1,
            test: Test = 0.2, max_per_class: MaxPerClass = None, workers: Workers = 0, progress: Progress = True,
            pretrained: Pretrained = "auto", samples_per_epoch: PerEpoch = None, max_steps: MaxSteps = None,
            cross_blend: CrossBlend = None, geometric: Geometric = None):
    """Train the dual-branch (spatial + frequency) teacher; each --data is a source, validated and reported on
    its own."""
    from train.recipes import train_teacher

    res = train_teacher(data, out, model=model, epochs=epochs, batch_size=batch_size, lr=lr, size=size, sbi=sbi,
                        seed=seed, resume=resume, device=device, val=val, test=test, max_per_class=max_per_class,
                        workers=workers, progress=progress, pretrained=pretrained,
                        samples_per_epoch=samples_per_epoch, max_steps_per_epoch=max_steps,
                        **({} if cross_blend is None else {"cross_blend": cross_blend}),
                        **({} if geometric is None else {"geometric": geometric}))
    typer.echo(f"{res['best']}: best val AUC {res['best_auc']:.4f} (mean over sources; epoch {res['best_epoch']})")


@train_app.command("student")
def student(data: DataOpt, out: Out,
            kd: Annotated[str, typer.Option(
                "--kd", help="none, logit, spatial, naive-dual or two-in-one.")] = "two-in-one",
            teacher: Annotated[Optional[Path], typer.Option(
                "--teacher", help="Teacher checkpoint (any --kd but none).")] = None,
            model: Annotated[str, typer.Option(
                "--model", help=f"Registered student ({_models('student*')}, {_models('mobilenet*')}, "
                                f"{_models('efficientnet*')}).")] = "mobilenetv2_100",
            kd_weight: Annotated[float, typer.Option("--kd-weight", callback=option("--kd-weight", "positive"),
                                                     help="Weight of the distillation loss.")] = 1.0,
            epochs: Epochs = 10, batch_size: BatchSize = 32, lr: Lr = 1e-3,
            size: Annotated[Optional[int], typer.Option(
                "--size", min=32, help="Input side (default: the teacher's).")] = None,
            sbi: Sbi = True, seed: Seed = 0, resume: Resume = False, device: Device = "auto", val: Val = 0.1,
            test: Test = 0.2, max_per_class: MaxPerClass = None, workers: Workers = 0, progress: Progress = True,
            pretrained: Pretrained = "auto", samples_per_epoch: PerEpoch = None, max_steps: MaxSteps = None,
            cross_blend: CrossBlend = None, geometric: Geometric = None):
    """Train a single-branch student, distilled from a teacher (two-in-one KD by default)."""
    from train.recipes import train_student

    res = train_student(data, out, kd=kd, teacher=teacher, model=model, kd_weight=kd_weight, epochs=epochs,
                        batch_size=batch_size, lr=lr, size=size, sbi=sbi, seed=seed, resume=resume, device=device,
                        val=val, test=test, max_per_class=max_per_class, workers=workers, progress=progress,
                        pretrained=pretrained, samples_per_epoch=samples_per_epoch, max_steps_per_epoch=max_steps,
                        **({} if cross_blend is None else {"cross_blend": cross_blend}),
                        **({} if geometric is None else {"geometric": geometric}))
    typer.echo(f"{res['best']}: best val AUC {res['best_auc']:.4f} (mean over sources; epoch {res['best_epoch']})")


def eval_command(
        ckpt: Annotated[Path, typer.Argument(help="Checkpoint from `ffd train`.")],
        data: Annotated[list[str], typer.Argument(
            help="Dataset path(s); prefix real:/fake: for a plain image folder.")],
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the report JSON here.")] = None,
        roc: Annotated[Optional[Path], typer.Option("--roc", help="Write an ROC plot PNG here.")] = None,
        split: Annotated[str, typer.Option("--split", help="all, or train/val/test of the group-wise split.")] = "all",
        seed: Seed = 0, val: Val = 0.1, test: Test = 0.2, max_per_class: MaxPerClass = None,
        batch_size: BatchSize = 64, device: Device = "cpu"):
    """Frame- and video-level AUC/ACC/EER/AP per method, params and FLOPs of a checkpoint."""
    import json

    from train.evaluate import evaluate

    rep = evaluate(ckpt, data, out=out, roc=roc, split=split, seed=seed, val=val, test=test, batch_size=batch_size,
                   device=device, max_per_class=max_per_class)
    short = {k: rep[k] for k in ("model", "split", "frame", "video", "per_method", "per_source", "cost")}
    typer.echo(json.dumps(short, indent=1, default=float))


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train", help=TRAIN_HELP, short_help="Train teachers and distilled students.")
    app.command("eval")(eval_command)
