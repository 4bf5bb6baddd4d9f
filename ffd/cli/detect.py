"""``ffd detect``: score every face in images and folders; one JSON line per face.

Sources are dispatched on their kind (:func:`source_kind`); each kind has one handler that
calls one library function. Images and folders go to :func:`edge.detector.detect_paths`;
videos and cameras are added by the camera pipeline in this same file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer

from .options import Backend, DetectorModel

Sources = Annotated[list[str], typer.Argument(
    help="Images, folders of images, videos, cameras (/dev/videoN, csi://N), streams (rtsp://, http://) "
         "or a GStreamer pipeline.")]
Model = Annotated[Path, typer.Option("--model", "-m", help="Model: .onnx (from `ffd export`/`ffd quantize`) or .engine.")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="JSON-lines file (default: stdout).")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Faces per inference batch.")]
MaxFaces = Annotated[Optional[int], typer.Option("--max-faces", min=1, help="Keep the N largest faces per image.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime intra-op threads.")]


def source_kind(src: str) -> str:
    """``images`` (an image file or a folder) | ``video`` | ``camera`` (a URI or a device)."""
    from edge.media import is_video

    if "://" in src or src.startswith("/dev/video") or src.isdigit() or "!" in src:  # "!": a GStreamer pipeline
        return "camera"
    return "video" if is_video(src) else "images"


def _images(sources: list[str], model: Path, opts: dict) -> Iterator[dict]:
    from edge.detector import detect_paths

    return detect_paths(sources, model, **opts)


def _video(sources: list[str], model: Path, opts: dict) -> Iterator[dict]:
    """Videos, cameras and streams: the pipelined loop (edge.video); fps and per-stage times on stderr."""
    from edge.video import DetectStats, detect_stream

    for src in sources:
        stats = DetectStats()
        yield from detect_stream(src, model, stats=stats, **opts)
        typer.echo(f"{src}: {stats.summary()}", err=True)
        if stats.error:
            from edge.sources import SourceError

            raise SourceError(stats.error, path=src)


# kind -> handler(sources of that kind, model, options) -> records
HANDLERS: dict[str, Callable[[list[str], Path, dict], Iterator[dict]]] = {"images": _images, "video": _video,
                                                                           "camera": _video}
VideoOut = Annotated[Optional[Path], typer.Option("--save-video", help="Videos/cameras: write an annotated video.")]
Show = Annotated[bool, typer.Option("--show", help="Videos/cameras: overlay window (when a display exists).")]
Every = Annotated[int, typer.Option("--every", min=1, help="Videos/cameras: detect on every k-th frame.")]
MaxFrames = Annotated[Optional[int], typer.Option("--max-frames", min=1, help="Videos/cameras: stop after N frames.")]
DetSize = Annotated[Optional[int], typer.Option(
    "--det-size", min=64, help="Videos/cameras: detector input, longer side in px (default 640; 320 is ~4x faster).")]
Live = Annotated[Optional[bool], typer.Option(
    "--live/--no-live", help="Drop frames when behind (default: on for cameras/streams, off for files).")]


def _video_opts(opts: dict, video_opts: dict) -> dict:
    o = {k: v for k, v in opts.items() if k != "intra_op_threads"}
    if "intra_op_threads" in opts:
        o["runner_kw"] = {"intra_op_threads": opts["intra_op_threads"]}
    return {**o, **video_opts}


def register(app: typer.Typer) -> None:
    @app.command("detect")
    def detect(sources: Sources, model: Model, output: Output = None, backend: Backend = "auto",
               detector_model: DetectorModel = None, batch_size: BatchSize = 32, max_faces: MaxFaces = None,
               threads: Threads = None, save_video: VideoOut = None, show: Show = False, every: Every = 1,
               max_frames: MaxFrames = None, live: Live = None, det_size: DetSize = None):
        """Score every face (P(fake) and a label per the model's threshold) as JSON lines."""
        from edge.errors import ConfigError

        by_kind: dict[str, list[str]] = {}
        for s in sources:
            by_kind.setdefault(source_kind(s), []).append(s)
        unsupported = sorted(set(by_kind) - set(HANDLERS))
        if unsupported:
            raise ConfigError(f"ffd detect does not handle {', '.join(unsupported)} sources yet",
                              fix="pass images or folders of images")
        opts = {"backend": backend, "detector_model": detector_model, "batch_size": batch_size,
                "max_faces": max_faces}
        if threads and model.suffix == ".onnx":
            opts["intra_op_threads"] = threads
        video_opts = {"video_out": save_video, "display": show, "every": every, "max_frames": max_frames,
                      "live": live, "det_max_side": det_size}
        if len(by_kind.get("video", [])) + len(by_kind.get("camera", [])) > 1 and save_video:
            raise ConfigError("--save-video takes one video or camera source")
        out = open(output, "w") if output else sys.stdout
        n = {"faces": 0, "fake": 0, "no_face": 0, "errors": 0}
        try:
            for kind, srcs in by_kind.items():
                kind_opts = opts if kind == "images" else _video_opts(opts, video_opts)
                for rec in HANDLERS[kind](srcs, model, kind_opts):
                    out.write(json.dumps(rec) + "\n")
                    if "error" in rec:
                        n["errors"] += 1
                    elif "score" not in rec:  # an image without a face (video records are faces only)
                        n["no_face"] += 1
                    else:
                        n["faces"] += 1
                        n["fake"] += rec["label"] == "fake"
        finally:
            if output:
                out.close()
        typer.echo(f"{n['faces']} faces ({n['fake']} fake), {n['no_face']} files without a face, "
                   f"{n['errors']} unreadable files" + (f" -> {output}" if output else ""), err=True)
