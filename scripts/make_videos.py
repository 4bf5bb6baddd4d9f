"""Write a small archive of demo videos from the sample faces in ../shared (never committed).

Half the videos show real faces (london_faces/smiling), half the hand-made face-swap composites
of ciplab_real_fake_160 (fake). Used by scripts/demo.sh to have something to ``ffd screen``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from media import write_face_video  # noqa: E402  (the same writer the tests use)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=6, help="number of videos (half real, half fake)")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--fps", type=float, default=10)
    ap.add_argument("--size", default="1280x720", help="WxH")
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("FFD_SHARED", ROOT.parent / "shared")))
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    real = sorted((a.shared / "data/london_faces/smiling").glob("*.jpg"))
    fake = sorted((a.shared / "data/ciplab_real_fake_160/full_160/fake").glob("*.jpg"))
    if not real or not fake:
        sys.exit(f"error: sample faces not found under {a.shared}; fix: set FFD_SHARED or --shared")
    a.out.mkdir(parents=True, exist_ok=True)
    for i in range(a.n):
        kind, pool = ("real", real) if i % 2 == 0 else ("fake", fake)
        images = [pool[(i * 3 + k) % len(pool)] for k in range(3)]
        p = write_face_video(a.out / f"{kind}_{i:02d}.mp4", images, n_frames=a.frames, fps=a.fps, size=(w, h))
        print(p)


if __name__ == "__main__":
    main()
