"""``ffd env``: what this machine can run (versions, providers, video back-ends, TensorRT), for bug reports."""
from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("env")
    def env(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a list.")):
        """Versions, ONNX Runtime providers, OpenCV video back-ends, TensorRT usability, the backend `auto` picks."""
        from edge.tools.envinfo import collect_env, format_env

        info = collect_env()
        typer.echo(json.dumps(info, indent=1) if as_json else format_env(info))
