"""Issue 15 class 3, odd media and names: every rule with real files.

* names: not UTF-8, over NAME_MAX once suffixed, control characters -- stored in a safe form, escaped on
  the terminal, and a re-run resumes instead of crashing at the same file;
* a pixel budget checked against the header before anything is allocated (header bombs, a PNG bomb),
  measured with ``resource.getrusage`` in a subprocess; OpenCV's own limit set before cv2 loads;
* a float TIFF with a NaN is refused, never decoded to black and scored;
* an MP4 whose ``mdhd`` timescale is 0 is not recorded as 10240 s;
* ``.gif``, ``.mts``, ``.avif``, ``.heic``, symlinked sub-folders, loops, FIFOs: every file under the
  input is scored or listed as skipped with a reason, and the summaries count them.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest

from corpus import heic_like, jpeg_claiming, nonutf8_name, png_bomb, png_claiming, set_mp4_timescale
from harness import ROOT, run_ffd, screen_rows
from media import face_canvas, write_face_video
from tests.conftest import make_tiny_onnx

NONUTF8 = nonutf8_name(b"caf\xe9", ".jpg")  # b"caf\xe9.jpg": Latin-1, not UTF-8


@pytest.fixture(scope="module")
def face(london_neutral):
    return face_canvas(cv2.imread(str(london_neutral[0])), (320, 240))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx")


def _write(path, image):
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


# --- names ---------------------------------------------------------------------------------------
def test_safe_text_and_printable():
    from edge.inputs import printable, safe_text

    assert safe_text("plain.jpg") == "plain.jpg" and safe_text("été.jpg") == "été.jpg"
    assert safe_text(NONUTF8) == "caf\\xe9.jpg"
    safe_text(NONUTF8).encode("utf-8")  # storable as text
    assert printable("a\x1b[31mred\x07\r\n.jpg") == "a\\x1b[31mred\\x07\\r\\n.jpg"
    assert printable("x\u202egpj.exe") == "x\\u202egpj.exe"  # a bidi override is escaped too
    assert printable(NONUTF8) == "caf\\xe9.jpg"


def test_non_utf8_name_is_screened_and_resumed(tmp_path, face, model, yunet_model):
    """SQLite cannot store the name as text: the row holds its safe form, and a re-run skips it."""
    src = tmp_path / "arch"
    src.mkdir()
    _write(src / NONUTF8, face)
    _write(src / "plain.jpg", face)
    db = tmp_path / "s.sqlite"
    for attempt in range(2):
        run = run_ffd(["screen", src, "-m", model, "--db", db, "--workers", "0", "--no-progress",
                       "--detector-model", yunet_model], timeout=180)
        assert run.rc == 0 and not run.problems(), run.stderr[-1500:]
        s = json.loads(run.stdout.splitlines()[0])
        assert (s["screened"], s["skipped"]) == ((2, 0) if attempt == 0 else (0, 2)), s
    rows = screen_rows(db)
    mine = rows[str((src / "caf\\xe9.jpg").resolve())]
    assert mine["status"] == "done", mine


def test_non_utf8_and_long_names_are_extracted_and_resumed(tmp_path, face, yunet_model):
    src = tmp_path / "src"
    src.mkdir()
    long_name = "long_" + "y" * 240 + ".jpg"  # 249 bytes: + _f000000_1.png would pass NAME_MAX (255)
    for name in (NONUTF8, long_name, "plain.jpg"):
        _write(src / name, face)
    out = tmp_path / "out"
    args = ["faces", "extract", src, out, "--workers", "0", "--no-progress", "--all-faces",
            "--detector-model", yunet_model]
    run = run_ffd(args, timeout=180)
    assert run.rc == 0 and not run.problems(), run.stderr[-1500:]
    rows = list(csv.DictReader((out / "manifest.csv").open(encoding="utf-8")))
    crops = [r["path"] for r in rows if r["path"]]
    assert len(crops) == 3 and len(set(crops)) == 3, rows
    for c in crops:
        c.encode("utf-8")
        assert (out / c).is_file() and len(os.fsencode((out / c).name)) <= 255
    assert {r["source"] for r in rows} == {str(src / "caf\\xe9.jpg"), str(src / long_name), str(src / "plain.jpg")}
    run = run_ffd(args, timeout=180)  # resumes: every source already in the manifest
    assert run.rc == 0 and not run.problems(), run.stderr[-1500:]
    assert "0 files" in run.stdout and "3 already done" in run.stdout, run.stdout
    assert len(list(csv.DictReader((out / "manifest.csv").open(encoding="utf-8")))) == len(rows)


def test_control_characters_are_escaped_on_the_terminal(tmp_path, face, model):
    evil = tmp_path / "x\x1b[2J\x1b]0;pwned\x07"
    run = run_ffd(["faces", "extract", evil, tmp_path / "out", "--no-progress"], timeout=60)
    assert run.rc not in (0, None) and "\x1b" not in run.stderr and "\x07" not in run.stderr, repr(run.stderr)
    assert "x\\x1b[2J\\x1b]0;pwned\\x07" in run.error_line()
    src = tmp_path / "arch"
    src.mkdir()
    (src / "bad\x1b[31m.mp4").write_text("not a video")
    run = run_ffd(["detect", src / "bad\x1b[31m.mp4", "-m", model], timeout=60)
    assert "\x1b" not in run.stderr + run.stdout, repr(run.stderr)


def test_name_too_long_is_one_clear_error(tmp_path, model):
    run = run_ffd(["screen", tmp_path / ("n" * 300 + ".jpg"), "-m", model, "--db", tmp_path / "s.sqlite",
                   "--no-progress"], timeout=60)
    assert run.rc not in (0, None) and not run.problems(), run.stderr[-800:]
    assert "name" in run.error_line().lower()


# --- pixel budget ---------------------------------------------------------------------------------
_PROBE = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY))  # a runaway decoder fails, not the box
from edge.media import read_image
from edge.errors import FfdError
out = {}
for p in sys.argv[1:]:
    try:
        img = read_image(p)
        out[p] = "decoded %s" % (img.shape,)
    except FfdError as e:
        out[p] = "%s: %s" % (type(e).__name__, e.message)
    except Exception as e:
        out[p] = "CRASH %s: %s" % (type(e).__name__, e)
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # may carry the parent's (fork)
out["peak_mb"] = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")) / 1024
print(json.dumps(out))
"""


def test_header_and_png_bombs_are_refused_before_allocating(tmp_path, face):
    files = {"png_header": png_claiming(30000, 30000), "jpg_header": jpeg_claiming(face, 30000, 30000),
             "png_bomb": png_bomb(20000, 20000)}
    paths = []
    for name, data in files.items():
        p = tmp_path / f"{name}.{name[:3]}"
        p.write_bytes(data)
        assert p.stat().st_size < 200_000
        paths.append(str(p))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FFD_MAX_IMAGE_PIXELS", None)
    r = subprocess.run([sys.executable, "-c", _PROBE, *paths], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]
    out = json.loads(r.stdout)
    for p in paths:
        assert out[p].startswith("InputError") and "too many pixels" in out[p], out
    # the 900 Mpx claims were never allocated: this process's own peak RSS (Linux keeps a forking parent's
    # ru_maxrss across exec, so the high-water mark of this process image is read too)
    assert min(out["maxrss_mb"], out["peak_mb"]) < 400, out


def test_pixel_budget_env_and_opencv_limit(tmp_path, face):
    """FFD_MAX_IMAGE_PIXELS is the budget; importing edge sets OpenCV's own limit before cv2 loads."""
    from edge.errors import ConfigError, InputError
    from edge.media import read_image

    p = _write(tmp_path / "f.jpg", face)
    os.environ["FFD_MAX_IMAGE_PIXELS"] = "1000"
    try:
        with pytest.raises(InputError, match="too many pixels"):
            read_image(p)
        os.environ["FFD_MAX_IMAGE_PIXELS"] = "nan"
        with pytest.raises(ConfigError, match="FFD_MAX_IMAGE_PIXELS"):
            read_image(p)
    finally:
        os.environ.pop("FFD_MAX_IMAGE_PIXELS")
    code = ("import edge, cv2, numpy as np, sys\n"
            "try:\n    cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_COLOR); print('decoded')\n"
            "except cv2.error: print('refused')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FFD_MAX_IMAGE_PIXELS": "1000"}
    env.pop("OPENCV_IO_MAX_IMAGE_PIXELS", None)
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.strip() == "refused", r.stdout + r.stderr[-500:]


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tif", ".ppm", ".pgm", ".jp2", ".gif", ".avif"])
@pytest.mark.parametrize("w,h", [(1, 1), (53, 37), (640, 17)])
def test_image_size_reads_the_header(tmp_path, ext, w, h):
    from edge.inputs import has_image_codec
    from edge.media import image_size

    if ext == ".avif" and not has_image_codec(ext):
        pytest.skip("this OpenCV has no AVIF codec")
    if ext == ".jp2" and min(w, h) < 33:
        w, h = 33 * w, 33 * h  # OpenJPEG's 6 resolution levels need 33+ px a side
    img = np.random.default_rng(w).integers(0, 255, (h, w) if ext == ".pgm" else (h, w, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    assert image_size(buf.tobytes()) == (w, h)
    assert image_size(b"not an image at all") is None and image_size(b"\x89PNG\r\n\x1a\n") is None


# --- float images and durations ---------------------------------------------------------------------
def test_nan_pixel_in_a_float_tiff_is_refused(tmp_path, face):
    from edge.errors import InputError
    from edge.media import read_image

    img = face.astype(np.float32) / 255.0
    cv2.imwrite(str(tmp_path / "ok.tiff"), img)
    assert read_image(tmp_path / "ok.tiff").mean() == pytest.approx(face.mean(), abs=1.0)
    img[5, 7, 2] = np.nan
    cv2.imwrite(str(tmp_path / "nan.tiff"), img)
    with pytest.raises(InputError, match="NaN"):
        read_image(tmp_path / "nan.tiff")
    img[5, 7, 2] = np.inf
    cv2.imwrite(str(tmp_path / "inf.tiff"), img)
    with pytest.raises(InputError, match="infinite"):
        read_image(tmp_path / "inf.tiff")


def test_zero_mdhd_timescale_is_not_a_10240_s_video(decoder, tmp_path, london_neutral, model, yunet_model):
    from edge.media import probe_video

    (tmp_path / "arch").mkdir()
    v = write_face_video(tmp_path / "arch" / "clip.mp4", london_neutral[:2], n_frames=10, fps=10, size=(320, 240))
    assert probe_video(v).duration_s == pytest.approx(1.0)
    set_mp4_timescale(v, 0)
    info = probe_video(v)
    assert info.fps == 0.0 and info.duration_s is None, info  # unknown, not 1/1024 fps and 10240 s
    run = run_ffd(["screen", v.parent, "-m", model, "--db", tmp_path / "s.sqlite", "--workers", "0",
                   "--no-progress", "--detector-model", yunet_model], timeout=120)
    assert run.rc == 0 and not run.problems(), run.stderr[-1500:]
    row = screen_rows(tmp_path / "s.sqlite")[str(v.resolve())]
    assert row["duration_s"] is None or row["duration_s"] < 60, row


# --- every file scored or listed as skipped ----------------------------------------------------------
@pytest.fixture
def odd_folder(tmp_path, london_neutral, face):
    from edge.inputs import has_image_codec

    d = tmp_path / "arch"
    (d / "sub").mkdir(parents=True)
    _write(d / "plain.jpg", face)
    anim = cv2.Animation()
    anim.frames = [face_canvas(cv2.imread(str(london_neutral[i % 2])), (320, 240), (2 * i, 0)) for i in range(4)]
    anim.durations = [100] * 4
    assert cv2.imwriteanimation(str(d / "anim.gif"), anim)
    write_face_video(d / "cam.mts", london_neutral[:2], n_frames=8, fps=10, size=(320, 240))
    if has_image_codec(".avif"):
        cv2.imwrite(str(d / "photo.avif"), face)
    (d / "phone.heic").write_bytes(heic_like())
    (d / "notes.txt").write_text("x")
    (d / ".DS_Store").write_bytes(b"\x00")
    os.mkfifo(d / "pipe.jpg")  # a FIFO named like an image: reading it would block forever
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _write(outside / "linked.jpg", face)
    (d / "sub" / "link").symlink_to(outside, target_is_directory=True)
    (d / "sub" / "loop").symlink_to(d, target_is_directory=True)
    (d / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    return d


def test_listing_accounts_for_every_file(odd_folder):
    from edge import inputs as I
    from edge.inputs import list_inputs

    lst = list_inputs([odd_folder])
    taken = {p.relative_to(odd_folder).as_posix(): k for p, k in lst.files}
    skipped = {p.relative_to(odd_folder).as_posix(): r for p, r in lst.skipped}
    assert taken["anim.gif"] == "video" and taken["cam.mts"] == "video" and taken["plain.jpg"] == "image"
    assert taken["sub/link/linked.jpg"] == "image"  # a symlinked sub-folder is followed
    if I.has_image_codec(".avif"):
        assert taken["photo.avif"] == "image"
    assert skipped == {"phone.heic": I.NO_DECODER, "notes.txt": I.UNSUPPORTED, ".DS_Store": I.HIDDEN,
                       "pipe.jpg": I.NOT_REGULAR, "sub/loop": I.SYMLINK_LOOP, "dangling.jpg": I.BROKEN_LINK}
    assert lst.counts()[I.NO_DECODER] == 1 and "6 skipped" in lst.summary()
    images_only = list_inputs([odd_folder], videos=False)
    assert dict((p.name, r) for p, r in images_only.skipped)["anim.gif"] == I.VIDEO_IN_FOLDER


def test_screen_scores_or_counts_every_file(odd_folder, tmp_path, model, yunet_model):
    from edge.inputs import has_image_codec

    db = tmp_path / "s.sqlite"
    run = run_ffd(["screen", odd_folder, "-m", model, "--db", db, "--workers", "0", "--no-progress",
                   "--detector-model", yunet_model], timeout=240)
    assert run.rc == 0 and not run.problems(), run.stderr[-1500:]
    s = json.loads(run.stdout.splitlines()[0])
    rows = {os.path.basename(p): r for p, r in screen_rows(db).items()}
    want = {"plain.jpg", "anim.gif", "cam.mts", "linked.jpg"} | ({"photo.avif"} if has_image_codec(".avif") else set())
    assert set(rows) == want, rows
    assert all(rows[n]["status"] == "done" for n in want), rows
    assert s["ignored"] == 6 and s["ignored_reasons"]["symlink loop"] == 1, s
    assert {os.path.basename(d["path"]) for d in s["ignored_files"]} == {
        "phone.heic", "notes.txt", ".DS_Store", "pipe.jpg", "loop", "dangling.jpg"}
    assert "6 not screened" in run.stderr


def test_detect_and_extract_list_what_they_skip(odd_folder, tmp_path, model, yunet_model):
    out = tmp_path / "d.jsonl"
    run = run_ffd(["detect", odd_folder, "-m", model, "-o", out, "--detector-model", yunet_model], timeout=240)
    assert run.rc == 0 and not run.problems(), run.stderr[-1500:]
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    skipped = {os.path.basename(r["file"]): r["skipped"] for r in recs if "skipped" in r}
    assert {"phone.heic", "notes.txt", "loop", "pipe.jpg"} <= set(skipped), skipped
    # the folder's videos (an animated GIF, an MTS clip) are played, not skipped: each gets its summary line
    assert not {"anim.gif", "cam.mts"} & set(skipped), skipped
    assert all(f"{v}: " in run.stderr for v in ("anim.gif", "cam.mts")), run.stderr[-1500:]
    assert any(r["file"].endswith("linked.jpg") and r.get("face") is not None for r in recs)
    ext = tmp_path / "ext"
    run = run_ffd(["faces", "extract", odd_folder, ext, "--workers", "0", "--no-progress", "--frames", "2",
                   "--detector-model", yunet_model], timeout=240)
    assert run.rc == 0 and not run.problems(), run.stderr[-1500:]
    listed = {os.path.basename(r["path"]): r["reason"] for r in csv.DictReader((ext / "skipped.csv").open())}
    assert set(listed) == {"phone.heic", "notes.txt", ".DS_Store", "pipe.jpg", "loop", "dangling.jpg"}, listed
    sources = {os.path.basename(r["source"]) for r in csv.DictReader((ext / "manifest.csv").open()) if r["path"]}
    assert {"anim.gif", "cam.mts", "linked.jpg", "plain.jpg"} <= sources
    assert "6 not media" in run.stdout


def test_old_results_database_gains_the_fingerprint_column(tmp_path):
    from edge.screen import ResultsDB

    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE results (path TEXT PRIMARY KEY, size INTEGER, mtime REAL, content_hash TEXT, kind TEXT,
            status TEXT NOT NULL CHECK (status IN ('done', 'no_face', 'error')), score REAL, label TEXT,
            aggregation TEXT, faces_seen INTEGER, n_frames INTEGER, duration_s REAL, error TEXT, error_type TEXT,
            model_id TEXT, threshold REAL, settings TEXT, evidence TEXT, thumb BLOB, elapsed_s REAL,
            screened_at TEXT);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO results (path, status, score) VALUES ('/old/a.mp4', 'done', 0.25);""")
    con.commit()
    con.close()
    with ResultsDB(db) as r:
        rows = list(r.rows())
        assert rows[0]["path"] == "/old/a.mp4" and rows[0]["score"] == 0.25 and rows[0]["fingerprint"] is None
        assert r.finished("any-fingerprint") == {}  # made by unknown settings: never reused
        r.put({"path": NONUTF8, "status": "error", "error": f"cannot decode {NONUTF8}"})
    with ResultsDB(db, readonly=True) as r:
        got = {x["path"]: x for x in r.rows()}
    assert got["caf\\xe9.jpg"]["error"] == "cannot decode caf\\xe9.jpg" and "/old/a.mp4" in got
    shutil.copy(db, tmp_path / "copy.sqlite")  # still a plain, intact SQLite file
    assert sqlite3.connect(tmp_path / "copy.sqlite").execute("PRAGMA integrity_check").fetchone()[0] == "ok"
