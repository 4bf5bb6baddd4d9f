"""Engine commands: ``ffd build-engine`` (TensorRT) and ``ffd check-onnx`` (no GPU needed). See docs/tensorrt.md."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.runtime import engine_cache as ec  # pure Python: the builder's defaults, one place
from edge.settings import option  # one range check for every numeric option (one-line errors)

OnnxArg = Annotated[Path, typer.Argument(help="ONNX model (from `ffd export` / `ffd quantize`).")]


def register(app: typer.Typer) -> None:
    @app.command("build-engine")
    def build_engine(
        onnx: OnnxArg,
        output: Annotated[Optional[Path], typer.Option(
            "--output", "-o", help="Engine path (default: ONNX.engine).")] = None,
        min_batch: Annotated[int, typer.Option("--min-batch", callback=option("--min-batch", "engine_batch"),
                                               help="Smallest batch of the profile.")] = ec.DEFAULT_MIN_BATCH,
        opt_batch: Annotated[int, typer.Option("--opt-batch", callback=option("--opt-batch", "engine_batch"),
                                               help="Batch TensorRT tunes kernels for.")] = ec.DEFAULT_OPT_BATCH,
        max_batch: Annotated[int, typer.Option("--max-batch", callback=option("--max-batch", "engine_batch"),
                                               help="Largest batch (bigger ones are split).")] = ec.DEFAULT_MAX_BATCH,
        workspace_mb: Annotated[int, typer.Option("--workspace-mb", callback=option("--workspace-mb", "workspace_mb"),
                                                  help="Builder workspace limit in MiB.")] = ec.DEFAULT_WORKSPACE_MB,
        opt_level: Annotated[int, typer.Option(
            "--opt-level", min=0, max=5, help="Builder optimisation level 0-5.")] = ec.DEFAULT_OPT_LEVEL,
        fp16: Annotated[bool, typer.Option("--fp16", help="FP16 build of a non-quantized model.")] = False,
        timing_cache: Annotated[Optional[Path], typer.Option(
            "--timing-cache", help="Persisted timing cache file (shared, locked).")] = None,
        rebuild: Annotated[bool, typer.Option(
            "--rebuild", help="Build even when a matching cached engine exists.")] = False,
        device: Annotated[int, typer.Option("--device", callback=option("--device", "device"),
                                            help="CUDA device index.")] = 0,
    ):
        """Build a TensorRT engine (strongly typed; Q/DQ carries INT8) plus its JSON sidecar; reuse it when cached."""
        from edge.runtime.trt import build_engine as build

        r = build(onnx, output, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                  workspace_mb=workspace_mb, opt_level=opt_level, fp16=fp16, timing_cache=timing_cache,
                  rebuild=rebuild, device=device)
        what = "cached (inputs unchanged)" if r.cache_hit else f"built in {r.seconds:.1f} s"
        typer.echo(f"{r.engine_path}: {what}; {r.env.describe()}; sidecar {r.sidecar_path}")

    @app.command("check-onnx")
    def check_onnx(onnx: OnnxArg):
        """Check, without a GPU, that TensorRT 10.3 (JetPack 6) will build the ONNX as intended; exit 1 if not."""
        from edge.tools.check_onnx import check_onnx as check

        report = check(onnx)
        typer.echo(report.format())
        if not report.ok:
            raise typer.Exit(1)
