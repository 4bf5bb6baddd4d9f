"""Option types shared by several commands (one vocabulary across the CLI)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.settings import option  # one range check for every numeric option (one-line errors)

DetectorModel = Annotated[Optional[Path], typer.Option(
    "--detector-model", envvar="FFD_YUNET_MODEL",
    help="YuNet ONNX file (face_detection_yunet.onnx); env FFD_YUNET_MODEL.")]
Detector = Annotated[str, typer.Option("--detector", help="Face detector: yunet (needs the model file) or haar.")]
Backend = Annotated[str, typer.Option(
    "--backend", help="Runtime backend: auto (TensorRT when it and a GPU are usable, else ONNX Runtime), ort, or trt "
                      "(an .onnx is built once into MODEL.engine).")]
Workers = Annotated[int, typer.Option("--workers", "-j", callback=option("--workers", "workers"),
                                      help="Parallel worker processes (0: in-process).")]


def _use_decoder(value: Optional[str]) -> Optional[str]:
    """--decoder: checked (an unknown or unusable one is one error line), then handed to every reader of this
    run, worker processes included, as FFD_DECODER."""
    if value:
        import os

        from edge.decoders import select_decoder

        select_decoder(value)
        os.environ["FFD_DECODER"] = value.strip().lower()
    return value


Decoder = Annotated[Optional[str], typer.Option(
    "--decoder", callback=_use_decoder,
    help="Video decoding back-end: auto (GStreamer nvv4l2decoder on Jetson, NVDEC with PyNvVideoCodec, else PyAV, "
         "else OpenCV), pyav, opencv, gstreamer or nvdec; env FFD_DECODER. `ffd env` says which is used and why.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
ConnectTimeout = Annotated[Optional[float], typer.Option(
    "--connect-timeout", callback=option("--connect-timeout", "connect_timeout_s"),
    help="Seconds to reach a stream or cluster, all retries included, before a clear error "
         "(default 15; env FFD_CONNECT_TIMEOUT_S).")]
# training commands (ffd train, ffd vit)
Epochs = Annotated[int, typer.Option("--epochs", callback=option("--epochs", "iters"),
                                     help="Passes over the training data.")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", callback=option("--batch-size", "batch_size"),
                                        help="Faces per batch.")]
Lr = Annotated[float, typer.Option("--lr", callback=option("--lr", "positive"),
                                   help="Peak learning rate (AdamW, cosine decay).")]
Device = Annotated[str, typer.Option("--device", help="torch device: auto, cpu, cuda, cuda:N.")]
