"""Run by tests/test_ray.py inside a loopback-only network namespace: the same archive screened
in-process and on a local Ray instance; prints one JSON line comparing the rows."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(tmp: str, faces: list[str], yunet: str) -> None:
    import os

    os.environ["FFD_YUNET_MODEL"] = yunet
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_tiny_onnx
    from media import write_corrupt_files, write_face_video

    from edge.screen import ResultsDB, ScreenSettings, screen_archive

    tmp = Path(tmp)
    arch = tmp / "arch"
    arch.mkdir()
    for i in range(3):
        write_face_video(arch / f"v{i}.mp4", faces[2 * i:2 * i + 2], n_frames=12, fps=6, size=(320, 240))
    bad = write_corrupt_files(tmp / "bad_all")
    (arch / "zero.mp4").write_bytes(b"")
    bad["text_mp4"].rename(arch / "notes.mp4")
    model = make_tiny_onnx(tmp / "tiny.onnx")
    st = ScreenSettings(n_frames=4)
    local = screen_archive([arch], model, tmp / "local.sqlite", settings=st, progress=False)
    on_ray = screen_archive([arch], model, tmp / "ray.sqlite", settings=st, progress=False, ray_address="local")

    def rows(db):
        with ResultsDB(db, readonly=True) as r:
            return {x["path"]: {k: v for k, v in x.items() if k not in ("elapsed_s", "screened_at", "thumb")}
                    for x in r.rows()}

    a, b = rows(tmp / "local.sqlite"), rows(tmp / "ray.sqlite")
    diffs = [(p, k) for p in a for k in a[p] if p not in b or (
        a[p][k] != b[p][k] and not (isinstance(a[p][k], float) and abs(a[p][k] - b[p][k]) < 1e-6))]
    print(json.dumps({"local": local, "ray": on_ray, "n_local": len(a), "n_ray": len(b), "diffs": diffs[:10],
                      "statuses": sorted(x["status"] for x in b.values())}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[3:], sys.argv[2])
