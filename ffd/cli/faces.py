"""``ffd faces``: face extraction (``extract``) and self-blended pseudo-fakes (``blend``).

Commands hang off :data:`faces_app`, which :func:`register` adds to the root app.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.settings import option  # one range check for every numeric option (one-line errors)
from edge.spec import MARGIN_RANGE, SIZE_RANGE

from .options import Detector, DetectorModel, Workers

faces_app = typer.Typer(no_args_is_help=True, help="Face crops and pseudo-fakes for training.")


Src = Annotated[Path, typer.Argument(help="An image, a video, or a folder of them (searched recursively).")]
ExtractOut = Annotated[Path, typer.Argument(help="Output folder: crops/, manifest.csv, spec.json.")]
Label = Annotated[Optional[str], typer.Option(
    "--label", help="real or fake for every file (default: from a real/fake or FF++/Celeb-DF folder name).")]
Frames = Annotated[Optional[int], typer.Option(
    "--frames", callback=option("--frames", "frames"), help="Frames per video, spread uniformly (default 32).")]
Every = Annotated[Optional[int], typer.Option("--every", callback=option("--every", "every"),
                                              help="Every k-th frame instead of --frames.")]
AllFaces = Annotated[bool, typer.Option("--all-faces", help="Keep every face (named _<index>), not only the largest.")]
Margin = Annotated[float, typer.Option("--margin", callback=option("--margin", lo=MARGIN_RANGE[0], hi=MARGIN_RANGE[1]),
                                       help="Crop side / larger side of the face box.")]
Size = Annotated[int, typer.Option("--size",
                                   callback=option("--size", lo=SIZE_RANGE[0], hi=SIZE_RANGE[1], integer=True),
                                   help="Crop side in pixels.")]
CropMode = Annotated[str, typer.Option("--crop", help="square (box x margin) or align5 (5-point similarity).")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Start OUT again (deletes the crops its manifest lists, and the manifest; nothing else).")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]
Landmarks = Annotated[Optional[Path], typer.Option(
    "--landmarks", envvar="FFD_LANDMARK_MODEL",
    help="OpenSeeFace landmark ONNX (openseeface_lm_model0_opt.onnx): 66 dense points per face for SBI masks "
         "(a landmark file beside an image wins); env FFD_LANDMARK_MODEL. Missing: a warning, ellipse masks.")]


@faces_app.command("extract")
def extract(src: Src, out: ExtractOut, label: Label = None, frames: Frames = None, every: Every = None,
            all_faces: AllFaces = False, margin: Margin = 1.3, size: Size = 128, crop: CropMode = "square",
            detector: Detector = "yunet", detector_model: DetectorModel = None, workers: Workers = None,
            overwrite: Overwrite = False, progress: Progress = True, landmarks: Landmarks = None):
    """Detect, crop and list faces: writes OUT/crops/*.png, manifest.csv, spec.json, landmarks.json; re-runs resume."""
    from edge.errors import ConfigError
    from edge.faces.extract import DEFAULT_FRAMES, extract_faces
    from edge.spec import PreprocessSpec

    if frames is not None and every is not None:
        raise ConfigError("--frames and --every exclude each other", fix="give one of them")
    spec = PreprocessSpec(detector=detector, crop_mode=crop, margin=margin, size=size)
    summary = extract_faces(src, out, spec=spec, detector_model=detector_model, label=label,
                            n_frames=frames or DEFAULT_FRAMES, every=every, policy="all" if all_faces else "largest",
                            workers=workers, progress=progress, overwrite=overwrite, landmark_model=landmarks)
    typer.echo(str(summary))


@faces_app.command("blend")
def blend(
    src: Annotated[Path, typer.Argument(
        help="An extraction folder (from `ffd faces extract`) or a folder of real face crops.")],
    out: Annotated[Path, typer.Argument(help="Output folder: *_sbi.png, *_mask.png and manifest.csv.")],
    n: Annotated[int, typer.Option("--n", callback=option("--n", "count"),
                                   help="Number of pseudo-fakes to write.")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same images).")] = 0,
):
    """Write self-blended pseudo-fakes (SBI, Shiohara & Yamasaki 2022) and their masks for inspection."""
    from train.sbi import write_blends

    manifest = write_blends(src, out, n=n, seed=seed)
    typer.echo(f"wrote {manifest}")


def register(app: typer.Typer) -> None:
    app.add_typer(faces_app, name="faces", help="Face crops and pseudo-fakes for training.")
