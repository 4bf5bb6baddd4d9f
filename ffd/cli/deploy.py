"""Deployment commands: ``ffd export``, ``ffd calib build``, ``ffd quantize`` (see docs/deploy.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.settings import option  # one range check for every numeric option (one-line errors)

from .options import DetectorModel, Seed

ParityData = Annotated[Optional[list[Path]], typer.Option(
    "--parity-data", envvar="FFD_PARITY_DATA",
    help="Face images (folders) or a calibration dir for the ONNX-vs-PyTorch parity check; env FFD_PARITY_DATA.")]


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(ckpt: Annotated[Path, typer.Argument(help="Checkpoint from `ffd train`/`ffd distill`.")],
               output: Annotated[Optional[Path], typer.Option("--output", "-o",
                                                              help="ONNX path (default: CKPT.onnx).")] = None,
               opset: Annotated[int, typer.Option("--opset", min=13, help="ONNX opset.")] = 17,
               batch: Annotated[Optional[int], typer.Option("--batch", callback=option("--batch", "batch_size"),
                                                            help="Fixed batch size (default: dynamic).")] = None,
               parity_data: ParityData = None,
               parity_n: Annotated[int, typer.Option("--parity-n", callback=option("--parity-n", "count"),
                                                     help="Faces in the parity check.")] = 32,
               atol: Annotated[float, typer.Option("--atol", callback=option("--atol", lo=0.0, hi=1.0),
                                                   help="Max |P(fake) diff| ONNX vs PyTorch.")] = 1e-4,
               detector_model: DetectorModel = None,
               heatmap: Annotated[Optional[bool], typer.Option(
                   "--heatmap/--no-heatmap",
                   help="Second output 'features' for class-activation heatmaps (default: on when the head is "
                        "global-average-pool + linear; --heatmap requires it).")] = None):
        """Export a checkpoint to ONNX (P(fake) output, model card in the metadata) and check parity on real faces."""
        from calib.export import export_onnx

        export_onnx(ckpt, output, opset=opset, batch=batch, parity_data=parity_data, parity_n=parity_n, atol=atol,
                    detector_model=detector_model, heatmap=heatmap)

    calib_app = typer.Typer(help="Calibration sets for INT8 quantization.", no_args_is_help=True)
    app.add_typer(calib_app, name="calib")

    @calib_app.command("build")
    def calib_build(
            model: Annotated[Path, typer.Option("--model", "-m",
                                                help="The .onnx (or checkpoint) whose spec crops the faces.")],
            output: Annotated[Path, typer.Option("--output", "-o", help="Directory for calib.npy + manifest.json.")],
            data: Annotated[Optional[list[Path]], typer.Option(
                "--data", help="Folder of face images (faces detected); repeat.")] = None,
            crops: Annotated[Optional[list[Path]], typer.Option(
                "--crops", help="Folder of ready face crops (resized); repeat.")] = None,
            n: Annotated[int, typer.Option("--n", callback=option("--n", "count"),
                                           help="Faces to select (>= 128 recommended).")] = 512,
            pseudo_fake: Annotated[float, typer.Option("--pseudo-fake", min=0.0, max=0.9,
                                                       help="Fraction of self-blended pseudo-fakes.")] = 0.25,
            detector_model: DetectorModel = None, seed: Seed = 0):
        """Select calibration faces from real data, preprocessed exactly with the model's spec."""
        from calib.calibset import build_calibset

        m = build_calibset(model, data or [], output, n=n, crops=crops or [], pseudo_fake=pseudo_fake,
                           detector_model=detector_model, seed=seed)
        typer.echo(f"{m['count']} faces ({m['real']} real, {m['pseudo_fake']} pseudo-fake) -> {output} "
                   f"(spec {m['fingerprint']}, sha256 {m['sha256'][:12]})")

    @app.command("quantize")
    def quantize(
            onnx_path: Annotated[Path, typer.Argument(help="FP32 ONNX from `ffd export`.")],
            calib: Annotated[Path, typer.Option("--calib", help="Calibration dir from `ffd calib build`.")],
            output: Annotated[Optional[Path], typer.Option(
                "--output", "-o", help="Output directory (default: beside the ONNX).")] = None,
            target: Annotated[str, typer.Option(
                "--target", help="trt (Model Optimizer Q/DQ), cpu (ONNX Runtime U8S8) or both.")] = "both",
            method: Annotated[Optional[str], typer.Option(
                "--method", help="Calibration of both flavours: entropy, max, percentile (cpu only). "
                                 "Default: entropy for trt, percentile for cpu (measured: README, INT8).")] = None,
            exclude_op: Annotated[Optional[list[str]], typer.Option(
                "--exclude-op", help="Op type kept in float; repeat.")] = None,
            exclude_node: Annotated[Optional[list[str]], typer.Option(
                "--exclude-node", help="Node name kept in float; repeat.")] = None,
            high_precision: Annotated[str, typer.Option(
                "--high-precision", help="trt: dtype of non-INT8 ops, fp16 (TensorRT) or fp32.")] = "fp16",
            cpu_format: Annotated[str, typer.Option("--cpu-format", help="cpu: qdq or qoperator.")] = "qdq",
            eval_data: Annotated[Optional[list[Path]], typer.Option(
                "--eval", help="Folder with real/ and fake/ images for the AUC report; repeat.")] = None,
            eval_crops: Annotated[Optional[list[Path]], typer.Option(
                "--eval-crops", help="Like --eval, with ready face crops; repeat.")] = None,
            eval_n: Annotated[int, typer.Option("--eval-n", min=2, help="Faces per evaluation source.")] = 256,
            eps: Annotated[Optional[list[str]], typer.Option(
                "--calibration-ep",
                help="trt: execution providers for calibration (default: cuda if present, else cpu).")] = None,
            detector_model: DetectorModel = None):
        """INT8 post-training quantization on a calibration set, with an FP32-vs-INT8 report."""
        from calib.quantize import quantize_onnx

        quantize_onnx(onnx_path, calib, output, target=target, method=method, exclude_op=exclude_op or (),
                      exclude_node=exclude_node or (), high_precision=high_precision, cpu_format=cpu_format,
                      calibration_eps=eps, eval_data=eval_data or (), eval_crops=eval_crops or (),
                      eval_n=eval_n, detector_model=detector_model)
