"""``ffd detect``: score every face in images, folders, videos, cameras and streams; one JSON line per face.

The command checks option conflicts and calls :func:`edge.detect.detect_sources`, which sends
images and folders to :func:`edge.detect.detect_paths` and videos, cameras and streams to
the pipelined loop (:func:`edge.detect.detect_stream`), all with one detector.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.settings import option  # one range check for every numeric option (one-line errors)

from .options import Backend, ConnectTimeout, Decoder, DetectorModel

Sources = Annotated[list[str], typer.Argument(
    help="Images, folders (their images, then their videos), videos, cameras (/dev/videoN, csi://N), streams "
         "(rtsp://, http://) or a GStreamer pipeline.")]
Model = Annotated[Path, typer.Option("--model", "-m",
                                     help="Model: .onnx (from `ffd export`/`ffd quantize`) or .engine.")]
Output = Annotated[Optional[Path], typer.Option(
    "--output", "-o", help="JSON-lines file (default: stdout); replaced when the run ends, kept if it fails to start.")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", callback=option("--batch-size", "batch_size"),
                                        help="Faces per inference batch.")]
MaxFaces = Annotated[Optional[int], typer.Option("--max-faces", callback=option("--max-faces", "max_faces"),
                                                 help="Keep the N largest faces per image.")]
Threads = Annotated[Optional[int], typer.Option(
    "--threads", callback=option("--threads", "threads"),
    help="ONNX Runtime intra-op threads (dropped when auto runs TensorRT; refused with --backend trt).")]
VideoOut = Annotated[Optional[Path], typer.Option("--save-video", help="Videos/cameras: write an annotated video.")]
Show = Annotated[bool, typer.Option("--show", help="Videos/cameras: overlay window (when a display exists).")]
Every = Annotated[int, typer.Option("--every", callback=option("--every", "every"),
                                    help="Videos/cameras: detect on every k-th frame.")]
MaxFrames = Annotated[Optional[int], typer.Option("--max-frames", callback=option("--max-frames", "max_frames"),
                                                  help="Videos/cameras: stop after N frames.")]
DetSize = Annotated[Optional[int], typer.Option(
    "--det-size", callback=option("--det-size", "det_max_side"),
    help="Videos/cameras: detector input, longer side in px (default 640; 320 is ~4x faster).")]
Live = Annotated[Optional[bool], typer.Option(
    "--live/--no-live", help="Drop frames when behind (default: on for cameras/streams, off for files).")]
Serve = Annotated[Optional[str], typer.Option(
    "--serve", metavar="[HOST:]PORT",
    help="Videos/cameras: live browser view (annotated stream, faces, /api/state) on http://HOST:PORT/; HOST "
         "defaults to 127.0.0.1 (this machine only), 0.0.0.0 serves every interface; port 0 picks a free one. "
         "Needs the serve extra (aiohttp).")]


def register(app: typer.Typer) -> None:
    @app.command("detect")
    def detect(sources: Sources, model: Model, output: Output = None, backend: Backend = "auto",
               detector_model: DetectorModel = None, batch_size: BatchSize = 32, max_faces: MaxFaces = None,
               threads: Threads = None, save_video: VideoOut = None, show: Show = False, every: Every = 1,
               max_frames: MaxFrames = None, live: Live = None, det_size: DetSize = None,
               connect_timeout: ConnectTimeout = None, serve: Serve = None, decoder: Decoder = None,
               heatmaps: Annotated[Optional[Path], typer.Option(
                   "--heatmaps", metavar="DIR",
                   help="Write a heatmap overlay (where the model saw the forgery) per face at or above the "
                        "threshold into DIR; existing files are never overwritten. Needs a model exported with "
                        "its 'features' output (`ffd export`, the default for the students).")] = None):
        """Score every face (P(fake) and a label per the model's threshold) as JSON lines."""
        from edge.errors import ConfigError
        from edge.detect import detect_sources, source_kind

        if save_video and sum(source_kind(s) != "images" for s in sources) > 1:
            raise ConfigError("--save-video takes one video or camera source")
        summary = detect_sources(sources, model, output, backend=backend, detector_model=detector_model,
                                 batch_size=batch_size, max_faces=max_faces, threads=threads,
                                 log=lambda line: typer.echo(line, err=True), video_out=save_video, display=show,
                                 every=every, max_frames=max_frames, live=live, det_max_side=det_size,
                                 connect_timeout_s=connect_timeout, serve=serve, heatmaps=heatmaps)
        typer.echo(f"{summary}" + (f" -> {output}" if output else ""), err=True)
