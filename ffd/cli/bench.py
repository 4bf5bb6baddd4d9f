"""``ffd bench``: classifier backends × precisions × batch sizes, and the end-to-end pipeline
(edge.tools.bench_pipeline)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.settings import option  # one range check for every numeric option (one-line errors)

from .options import DetectorModel


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        models: Annotated[list[Path], typer.Argument(help="Models to compare (.onnx: fp32/fp16/int8; .engine).")],
        backend: Annotated[list[str], typer.Option("--backend", help="ort and/or trt (repeat).")] = ["ort"],  # noqa: B006
        batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")] = "1,8,32",
        threads: Annotated[Optional[list[int]], typer.Option(
            "--threads", callback=option("--threads", "threads"),
            help="ONNX Runtime intra-op threads (repeat to compare).")] = None,
        video: Annotated[Optional[Path], typer.Option(
            "--video", help="Also time the end-to-end pipeline on this video (detection on every frame).")] = None,
        frames: Annotated[int, typer.Option("--frames", callback=option("--frames", "max_frames"),
                                            help="Pipeline: frames to process.")] = 300,
        iters: Annotated[int, typer.Option("--iters", callback=option("--iters", "iters"),
                                           help="Timed calls per batch size.")] = 50,
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder for bench.json/.md/.png.")] = Path("bench_out"),
        compare: Annotated[bool, typer.Option("--compare", help="Add a side-by-side table of all configs.")] = False,
        cuda_graph: Annotated[bool, typer.Option(
            "--cuda-graph", help="TensorRT: replay a captured CUDA graph per batch (host wall time only).")] = False,
        detector_model: DetectorModel = None,
    ):
        """Benchmark: latency percentiles, throughput and memory per config; pipeline fps and stage times."""
        from edge.tools.bench_pipeline import run_bench
        from edge.errors import ConfigError

        try:
            sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
        except ValueError as e:
            raise ConfigError(f"--batch-sizes must be integers like 1,8,32, got {batch_sizes!r}") from e
        sizes = option("--batch-sizes", "batch_size")(sizes)
        res = run_bench(models, backend, sizes, threads or [None], video, out, iters=iters, max_frames=frames,
                        compare=compare, detector_model=detector_model, cuda_graph=cuda_graph)
        typer.echo((Path(out) / "bench.md").read_text())
        typer.echo(f"-> {', '.join(res['files'])}", err=True)
