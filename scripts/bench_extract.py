"""Face-extraction numbers for docs/faces.md: detection rate per detector and files/s per worker count.

    python scripts/bench_extract.py [--shared ../shared] [--workers 1 2]

Runs :func:`edge.faces.extract.extract_faces` into temporary folders (nothing is kept) and
prints a Markdown table. Detection rate = images with at least one face / images.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from edge.faces.extract import extract_faces
from edge.spec import PreprocessSpec


def run(src: Path, detector: str, workers: int, model: Path | None) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        s = extract_faces(src, out, spec=PreprocessSpec(detector=detector), detector_model=model,
                          workers=workers, progress=False)
        dt = time.perf_counter() - t0
    return (s.files - s.no_face - s.errors) / max(s.files, 1), s.files / dt, s.files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    data, model = a.shared / "data", a.shared / "models" / "face_detection_yunet.onnx"
    sets = {"london_faces/neutral": data / "london_faces" / "neutral",
            "interfaces_cc0/img_500": data / "interfaces_cc0" / "img_500",
            "ciplab full_160 (real+fake)": data / "ciplab_real_fake_160" / "full_160"}
    print(f"cpus: {os.cpu_count()}\n")
    print("| images | files | YuNet found | Haar found | YuNet files/s (-j 0) | Haar files/s (-j 0) |")
    print("|---|---|---|---|---|---|")
    for name, src in sets.items():
        yr, ys, n = run(src, "yunet", 0, model)
        hr, hs, _ = run(src, "haar", 0, None)
        print(f"| {name} | {n} | {yr:.1%} | {hr:.1%} | {ys:.1f} | {hs:.1f} |")
    print("\n| london_faces (all 6 folders), YuNet | files | files/s |\n|---|---|---|")
    for w in a.workers:
        _, speed, n = run(data / "london_faces", "yunet", w, model)
        print(f"| -j {w} | {n} | {speed:.1f} |")


if __name__ == "__main__":
    main()
