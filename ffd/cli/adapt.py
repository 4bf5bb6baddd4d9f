"""``ffd adapt``: adapt a checkpoint to a new forgery type from target data only (FReTAL)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.settings import option  # one range check for every numeric option (one-line errors)

from .options import Device, Seed


def register(app: typer.Typer) -> None:
    @app.command("adapt")
    def adapt_cmd(
        ckpt: Annotated[Path, typer.Argument(help="Checkpoint to adapt (it becomes the frozen teacher).")],
        target: Annotated[Path, typer.Option("--target", help="Target-domain training data (folder, CSV or "
                                             "extraction folder). The only data adaptation reads.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Adapted checkpoint to write.")],
        method: Annotated[str, typer.Option("--method", help="fretal (CE + logit KD + representation "
                                            "transfer), finetune (CE) or finetune-kd (CE + logit KD).")] = "fretal",
        shots: Annotated[Optional[int], typer.Option("--shots", callback=option("--shots", "count"),
                                                     help="Target training samples per class "
                                                     "(default: all of the training split).")] = None,
        epochs: Annotated[int, typer.Option("--epochs", callback=option("--epochs", "iters"),
                                            help="Passes over the target training set.")] = 10,
        lr: Annotated[float, typer.Option("--lr", callback=option("--lr", "positive"),
                                          help="AdamW learning rate.")] = 1e-4,
        temperature: Annotated[float, typer.Option(
            "--temperature", callback=option("--temperature", lo=1e-3, hi=1000.0), help="KD temperature T.")] = 20.0,
        alpha: Annotated[float, typer.Option("--alpha", callback=option("--alpha", "probability"),
                                             help="Weight of logit KD; CE gets 1 - alpha.")] = 0.5,
        beta: Annotated[float, typer.Option("--beta", callback=option("--beta", "positive"),
                                            help="Weight of the representation transfer loss.")] = 1.0,
        batch_size: Annotated[int, typer.Option(
            "--batch-size", callback=option("--batch-size", lo=2, hi=4096, integer=True),
            help="Mini-batch size.")] = 32,
        val: Annotated[float, typer.Option("--val", callback=option("--val", "fraction"),
                                           help="Fraction of target groups held out to "
                                           "re-calibrate the threshold.")] = 0.2,
        keep: Annotated[str, typer.Option("--keep", help="best: the epoch with the best target-validation "
                                          "AUC; last: the final weights.")] = "best",
        source_eval: Annotated[Optional[Path], typer.Option("--source-eval", help="Source-domain set for the "
                                                            "forgetting report only (read after training).")] = None,
        target_eval: Annotated[Optional[Path], typer.Option("--target-eval", help="Target-domain test set for "
                                                            "the forgetting report.")] = None,
        seed: Seed = 0,
        device: Device = "auto",
    ):
        """Adapt CKPT to a new forgery type with FReTAL (Kim et al., CVPR-W 2021) without the source data."""
        from train.adapt import adapt_and_report

        res = adapt_and_report(ckpt, target, out, source_eval=source_eval, target_eval=target_eval,
                               method=method, shots=shots, epochs=epochs, lr=lr, temperature=temperature,
                               alpha=alpha, beta=beta, batch_size=batch_size, val_fraction=val, keep=keep, seed=seed,
                               device=device)
        typer.echo(f"adapted checkpoint: {res['checkpoint']}")
        for f in res["report_files"]:
            typer.echo(f"forgetting report: {f}")
        if res["report"] is not None:
            typer.echo(res["markdown"])
