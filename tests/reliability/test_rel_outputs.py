"""Class 1 of issue 15: outputs that overwrite inputs or each other (data loss).

Rules (:mod:`edge.outputs`): no output path may equal an input (real paths: symlinks and hard
links too) or another output, and no output folder may lie inside an input folder or around
it; reports, exports and JSON files are written to a temporary file and renamed when complete;
``ffd detect -o`` is written to a temporary file renamed at the end, so a failed start leaves
an existing file as it was; ``ffd faces extract --overwrite`` removes only the crops its manifest
lists; crop names are unique by construction.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import pytest

from harness import run_ffd
from media import write_face_video
from rel_fixtures import rel_model  # noqa: F401 - fixture

from edge.errors import ConfigError
from edge.outputs import atomic_open, atomic_write_text, check_outputs


def _digest(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture
def photo(tmp_path, london_neutral) -> Path:
    p = tmp_path / "photo.jpg"
    shutil.copy(london_neutral[0], p)
    return p


# --- the helper ----------------------------------------------------------------------------------
def test_check_outputs_refuses_an_input_its_links_and_each_other(tmp_path):
    a = tmp_path / "a.jpg"
    a.write_bytes(b"x")
    (tmp_path / "link.jpg").symlink_to(a)
    os.link(a, tmp_path / "hard.jpg")
    for out in (a, tmp_path / "link.jpg", tmp_path / "hard.jpg", tmp_path / "sub" / ".." / "a.jpg"):
        with pytest.raises(ConfigError) as e:
            check_outputs([a], {"-o": out})
        assert "a.jpg" in str(e.value) and "-o" in str(e.value) and e.value.fix
    with pytest.raises(ConfigError, match="same file"):
        check_outputs([a], {"--export": tmp_path / "s.json", "--db": tmp_path / "s.json"})
    check_outputs([a, None, "rtsp://cam/1", "0"], {"-o": tmp_path / "out.jsonl", "--x": None})  # fine


def test_check_outputs_folders_may_not_nest(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for out in (src, src / "crops", src / "a" / "b"):
        with pytest.raises(ConfigError, match="OUT"):
            check_outputs([src], {"OUT": out}, folders=("OUT",))
    with pytest.raises(ConfigError, match="around"):
        check_outputs([src / "x.jpg"], {"OUT": tmp_path}, folders=("OUT",))
    check_outputs([src], {"OUT": tmp_path / "photos_crops"}, folders=("OUT",))  # a sibling is fine
    with pytest.raises(ConfigError, match="read as an input"):  # a media output inside the input folder
        check_outputs([src], {"--save-video": src / "annotated.mp4"})
    check_outputs([src], {"-o": src / "faces.jsonl"})  # not media: never read back, harmless


def test_atomic_write_keeps_the_old_file_on_a_full_disk(tmp_path, monkeypatch):
    f = tmp_path / "report.html"
    f.write_text("good old report")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("edge.outputs.os.fsync", full)
    with pytest.raises(OSError):
        atomic_write_text(f, "x" * 100000)
    assert f.read_text() == "good old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary left
    monkeypatch.undo()
    with pytest.raises(RuntimeError):
        with atomic_open(f) as fh:
            fh.write("half")
            raise RuntimeError("crash mid-write")
    assert f.read_text() == "good old report"
    atomic_write_text(f, "new")
    assert f.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


# --- ffd detect ----------------------------------------------------------------------------------
def test_detect_output_on_the_input_photo_is_refused(photo, rel_model):
    before = _digest(photo)
    r = run_ffd(["detect", photo, "-m", rel_model, "-o", photo])
    assert r.rc == 3 and "error:" in r.stderr and "photo.jpg" in r.stderr and "Traceback" not in r.stderr
    assert _digest(photo) == before


def test_detect_output_on_the_model_is_refused(photo, rel_model, tmp_path):
    from edge.detect import detect_sources

    m = tmp_path / "m.onnx"
    shutil.copy(rel_model, m)
    with pytest.raises(ConfigError, match="m.onnx"):
        detect_sources([str(photo)], m, m)
    assert _digest(m) == _digest(rel_model)


def test_save_video_on_the_clip_being_read_is_refused(tmp_path, london_neutral, rel_model):
    from edge.detect import detect_sources, detect_stream

    clip = write_face_video(tmp_path / "clip.mp4", london_neutral[:2], n_frames=6, fps=6, size=(160, 120))
    before = _digest(clip)
    with pytest.raises(ConfigError, match="clip.mp4"):
        detect_sources([str(clip)], rel_model, video_out=clip)
    with pytest.raises(ConfigError, match="clip.mp4"):
        list(detect_stream(str(clip), rel_model, video_out=tmp_path / "." / "clip.mp4"))
    assert _digest(clip) == before


def test_failed_start_keeps_an_existing_jsonl(photo, tmp_path, rel_model):
    out = tmp_path / "faces.jsonl"
    out.write_text('{"old": 1}\n{"old": 2}\n')
    r = run_ffd(["detect", photo, "-m", tmp_path / "typo.onnx", "-o", out])
    assert r.rc == 3 and "error:" in r.stderr
    assert out.read_text() == '{"old": 1}\n{"old": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.jsonl", "photo.jpg"]  # no temporary left
    from edge.detect import detect_sources

    detect_sources([str(photo)], rel_model, out)  # a run that works replaces it
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert recs and all(r["file"] == str(photo) for r in recs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.jsonl", "photo.jpg"]


# --- ffd screen ----------------------------------------------------------------------------------
@pytest.fixture
def screened(tmp_path, photo, rel_model):
    from edge.screen import screen_archive

    arch = tmp_path / "A"
    arch.mkdir()
    shutil.move(photo, arch / "photo.jpg")
    db = tmp_path / "s.json"
    screen_archive([arch], rel_model, db, progress=False)
    return arch, db


def test_screen_export_or_report_on_the_db_is_refused(screened, rel_model):
    arch, db = screened
    before = _digest(db)
    for opt in ("--export", "--report"):
        r = run_ffd(["screen", arch, "-m", rel_model, "--db", db, opt, db])
        assert r.rc == 3 and "error:" in r.stderr and "s.json" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert _digest(db) == before
    from edge.screen.db import export
    from edge.screen.report import write_report

    with pytest.raises(ConfigError):
        export(db, db)
    with pytest.raises(ConfigError):
        write_report(db, db)
    assert _digest(db) == before


def test_screen_db_on_an_archive_file_is_refused(screened, rel_model):
    from edge.screen import screen_archive

    arch, _ = screened
    before = _digest(arch / "photo.jpg")
    with pytest.raises(ConfigError, match="photo.jpg"):
        screen_archive([arch], rel_model, arch / "photo.jpg", progress=False)
    assert _digest(arch / "photo.jpg") == before


def test_screen_report_on_a_full_disk_keeps_the_previous_report(screened, monkeypatch):
    from edge.screen.db import export
    from edge.screen.report import write_report

    _, db = screened
    rep, exp = db.with_name("r.html"), db.with_name("r.csv")
    write_report(db, rep)
    export(db, exp)
    good_rep, good_exp = rep.read_text(), exp.read_text()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("edge.outputs.os.fsync", full)
    with pytest.raises(ConfigError, match="space"):
        write_report(db, rep)
    with pytest.raises(ConfigError, match="space"):
        export(db, exp)
    assert rep.read_text() == good_rep and exp.read_text() == good_exp


# --- ffd faces extract ---------------------------------------------------------------------------
def test_extract_out_inside_or_equal_to_src_is_refused(tmp_path, london_neutral, yunet_model):
    from edge.faces.extract import extract_faces

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(london_neutral[0], photos / "a.jpg")
    (photos / "crops").mkdir()
    mine = photos / "crops" / "holiday.png"
    shutil.copy(london_neutral[1], mine)
    for out in (photos, photos / "faces"):
        with pytest.raises(ConfigError, match="OUT"):
            extract_faces(photos, out, detector_model=yunet_model, workers=0, progress=False, overwrite=True)
    r = run_ffd(["faces", "extract", photos, photos, "--overwrite", "--detector-model", yunet_model])
    assert r.rc == 3 and "error:" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert mine.is_file() and sorted(p.name for p in photos.iterdir()) == ["a.jpg", "crops"]


def test_extract_overwrite_removes_only_its_own_crops(tmp_path, london_neutral, yunet_model):
    from edge.faces.extract import extract_faces

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    shutil.copy(london_neutral[0], src / "a.jpg")
    extract_faces(src, out, detector_model=yunet_model, workers=0, progress=False, label="real")
    assert (out / "crops" / "a.png").is_file()
    mine = out / "crops" / "keep" / "notes.png"
    mine.parent.mkdir()
    mine.write_bytes(b"the user's file")
    s = extract_faces(src, out, detector_model=yunet_model, workers=0, progress=False, label="real", overwrite=True)
    assert s.faces == 1 and (out / "crops" / "a.png").is_file()
    assert mine.read_bytes() == b"the user's file"


def test_crop_names_are_unique_by_construction(tmp_path, london_neutral, yunet_model):
    from edge.faces.extract import _crop_keys, extract_faces

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.jpg", "a.png", "a_jpg.jpg", "b.jpg"):
        cv2.imwrite(str(src / name), cv2.imread(str(london_neutral[0])))
    out = tmp_path / "out"
    s = extract_faces(src, out, detector_model=yunet_model, workers=0, progress=False, label="real")
    import csv

    rows = list(csv.DictReader((out / "manifest.csv").open()))
    paths = [r["path"] for r in rows if r["path"]]
    assert s.faces == 4 and len(set(paths)) == 4 and all((out / p).is_file() for p in paths)
    assert "crops/b.png" in paths  # names without a clash stay as they were (old manifests resume)
    # a frame or face suffix of another file's name is a clash too
    files = [src / "v.mp4", src / "v_f000003.jpg", src / "two.jpg", src / "two_1.jpg", src / "x" / "a.jpg"]
    keys = _crop_keys(files, src)
    assert len(set(keys)) == len(keys)
    assert keys[0] == "v" and keys[1] != "v_f000003" and keys[3] != "two_1" and keys[4] == "x/a"
    # crop names an earlier run wrote (an OUT made before this rule: a.jpg -> crops/a_jpg.png) are taken too
    k = _crop_keys([src / "a_jpg.jpg", src / "v.mp4", src / "c.jpg"], src, reserved={"a_jpg", "v_f000001"})
    assert k[0] != "a_jpg" and k[1] != "v" and k[2] == "c"
    # resuming the OUT (a second run) adds nothing and breaks nothing
    s2 = extract_faces(src, out, detector_model=yunet_model, workers=0, progress=False, label="real")
    assert s2.skipped == 4 and s2.files == 0
    rows2 = list(csv.DictReader((out / "manifest.csv").open()))
    assert [r["path"] for r in rows2] == [r["path"] for r in rows]


# --- the corpus cases (the reliability summary runs the same) -------------------------------------
def test_output_corpus_cases_lose_nothing(tmp_path, london_neutral, yunet_model, rel_model):
    from corpus import OUTPUT_CASES
    from harness import crop_name_outcomes, output_outcomes, table

    clip = write_face_video(tmp_path / "clip.mp4", london_neutral[:2], n_frames=6, fps=6, size=(160, 120))
    outcomes = output_outcomes(OUTPUT_CASES, image=london_neutral[0], video=clip, model=rel_model, yunet=yunet_model,
                               work=tmp_path / "cases")
    outcomes += crop_name_outcomes(london_neutral[0], yunet_model, tmp_path / "names")
    assert len(outcomes) == len(OUTPUT_CASES) + 2 and all(o.cls == 1 for o in outcomes)
    bad = [o for o in outcomes if not o.ok]
    assert not bad, table(bad)
