"""Helpers shared by the experiment scripts (not part of the package)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def extract(src: Path, out: Path, spec, yunet: Path, label: str | None) -> list:
    """Face crops of ``src`` in ``out`` (extracted once; a re-run resumes) -> their samples."""
    from edge.faces.extract import extract_faces
    from train.data import load_samples

    if not (out / "manifest.csv").is_file():
        s = extract_faces(src, out, spec=spec, detector_model=yunet, label=label, workers=0, progress=False)
        log(f"extracted {src}: {s}")
    return load_samples(out)


def real_faces(shared: Path, work: Path, spec, yunet: Path) -> list:
    """Real face crops of london_faces (neutral + smiling) and interfaces_cc0, grouped by identity."""
    from dataclasses import replace

    data = shared / "data"
    out = []
    for name, src in (("london_neutral", data / "london_faces" / "neutral"),
                      ("london_smiling", data / "london_faces" / "smiling"),
                      ("interfaces", data / "interfaces_cc0" / "img_500")):
        for s in extract(src, work / "crops" / name, spec, yunet, "real"):
            stem = Path(s.source or s.path).stem
            ident = f"london:{stem.split('_')[0]}" if name.startswith("london") else f"interfaces:{stem}"
            out.append(replace(s, group=ident, label=0))
    return out
