"""``ffd screen ARCHIVE...``: screen videos and images into a resumable SQLite database (edge.screen)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.settings import option  # one range check for every numeric option (one-line errors)

from .options import Backend, ConnectTimeout, Decoder, DetectorModel, Workers


def register(app: typer.Typer) -> None:
    @app.command("screen")
    def screen(
        archive: Annotated[list[Path], typer.Argument(help="Folders (searched recursively) and/or files.")],
        model: Annotated[Path, typer.Option("--model", "-m", help="Model: .onnx or .engine.")],
        db: Annotated[Path, typer.Option("--db", help="SQLite results database (created; resumed if it exists).")]
        = Path("ffd_screen.sqlite"),
        frames: Annotated[Optional[int], typer.Option(
            "--frames", "-n", callback=option("--frames", "frames"),
            help="Frames sampled uniformly per video (default 32).")] = None,
        every_s: Annotated[Optional[float], typer.Option(
            "--every-s", callback=option("--every-s", "every_s"),
            help="Sample one frame every K seconds instead of --frames (e.g. 0.5 = 2 fps).")] = None,
        sample: Annotated[str, typer.Option(
            "--sample", help="Which frames of a video: uniform (--frames N or --every-s K, default) or keyframes "
                             "(only keyframes are decoded; --frames N takes N of them, default all).")] = "uniform",
        aggregate: Annotated[str, typer.Option(
            "--aggregate", help="Video score from frame scores: mean (default), max or topk:K.")] = "mean",
        max_faces: Annotated[int, typer.Option("--max-faces", callback=option("--max-faces", "max_faces"),
                                               help="Largest faces scored per frame.")] = 4,
        workers: Workers = 2,
        backend: Backend = "auto",
        detector_model: DetectorModel = None,
        retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Screen failed files again.")] = False,
        report: Annotated[Optional[Path], typer.Option("--report", help="Write a single-file HTML report.")] = None,
        export: Annotated[Optional[Path], typer.Option("--export", help="Write rows to .csv/.json/.jsonl.")] = None,
        ray: Annotated[Optional[str], typer.Option(
            "--ray", help="Run on Ray: 'local' (start one here), 'auto' or HOST:PORT of a cluster.")] = None,
        connect_timeout: ConnectTimeout = None,
        limit: Annotated[Optional[int], typer.Option("--limit", callback=option("--limit", "count"),
                                                     help="Screen at most N files this run.")] = None,
        progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
        decoder: Decoder = None,
    ):
        """Screen an archive: per-file score, label and evidence in SQLite; resumable; report and export."""
        from edge.errors import ConfigError
        from edge.inputs import printable
        from edge.screen import ScreenSettings, screen_archive

        if frames is not None and every_s is not None:
            raise ConfigError("--frames and --every-s both choose the frames of a video", fix="pass one of them")
        if sample == "keyframes":
            settings = ScreenSettings(n_frames=frames, every_s=every_s, aggregation=aggregate, max_faces=max_faces,
                                      sample=sample)
        else:
            settings = ScreenSettings(n_frames=frames or 32, every_s=every_s, aggregation=aggregate,
                                      max_faces=max_faces, sample=sample)
        s = screen_archive(archive, model, db, settings=settings, workers=workers, backend=backend,
                           detector_model=detector_model, retry_errors=retry_errors, report=report, export=export,
                           ray_address=ray, progress=progress, limit=limit, connect_timeout_s=connect_timeout)
        typer.echo(json.dumps(s))
        ignored = ", ".join(f"{n} {why.split(' (')[0]}" for why, n in s["ignored_reasons"].items())
        typer.echo(f"{s['screened']} files screened ({s['done']} scored, {s['no_face']} without a face, "
                   f"{s['error']} failed), {s['skipped']} already done, {s['ignored']} not screened"
                   f"{f' ({ignored})' if ignored else ''}; {s['video_s']:.0f} video-s in "
                   f"{s['wall_s']:.1f} s = {s['realtime_factor']:.1f}x real time -> {printable(db)}", err=True)
