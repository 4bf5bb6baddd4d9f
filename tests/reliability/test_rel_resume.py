"""``ffd screen`` SIGKILLed at seeded random points several times, then resumed: every file ends
with exactly one row, no finished row is lost or redone, and the SQLite file stays intact."""
from __future__ import annotations

import sqlite3

import pytest

from harness import kill_resume
from media import write_face_video
from rel_fixtures import rel_corpus, rel_model  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def archive(tmp_path_factory, rel_corpus):
    """24 short face videos plus the broken files of the corpus (errors are rows too)."""
    import cv2

    _, entries = rel_corpus
    d = tmp_path_factory.mktemp("killarch")
    faces = [cv2.imread(str(e.path)) for e in entries if e.name in ("face.jpg", "rgba.png")]
    for i in range(24):
        write_face_video(d / f"v{i:02d}.mp4", faces, n_frames=24, fps=12, size=(320, 240))
    for e in entries:
        if e.expect == "error":
            (d / f"bad_{e.name}").write_bytes(e.path.read_bytes())
    return d


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_random_sigkill_and_resume(archive, rel_model, tmp_path, seed):
    db = tmp_path / "screen.sqlite"
    files = sorted(p for p in archive.iterdir() if p.is_file())
    res = kill_resume(archive, rel_model, db, seed=seed, kills=4, frames=8, report=tmp_path / "r.html")
    runs = res["runs"]
    assert res["kills"] >= 2, runs  # 4 attempted; one can miss when a run ends within its random 0-0.3 s
    assert any(r["rows_before"] < r["rows"] < res["files"] for r in runs if r["kill"]), runs  # killed mid-run
    assert all(r["integrity_ok"] for r in runs), runs
    assert not any(r["traceback"] for r in runs), runs
    assert res["rows_lost"] == 0, res["lost"]
    final = runs[-1]
    assert final["rc"] == 0, final
    # exactly one row per file, and the final run skipped every row it found
    rows = res["final_rows"]
    assert sorted(rows) == sorted(str(p.resolve()) for p in files)
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM results").fetchone() == (len(files),) * 2
    assert final["summary"]["skipped"] == runs[-2]["rows"]
    assert final["summary"]["skipped"] + final["summary"]["screened"] == len(files)
    bad = {str((archive / f"bad_{n}").resolve()) for n in ("zero.jpg", "text.mp4", "audio_only.mp4")}
    assert all(rows[p]["status"] == "error" for p in bad)
    assert sum(r["status"] == "done" for r in rows.values()) == 24
    assert (tmp_path / "r.html").is_file()
