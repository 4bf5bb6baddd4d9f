"""Runs the bad-input corpus through every entry point and classifies what happened.

Shared by the tests in ``tests/reliability`` and by ``scripts/reliability_report.py``. Each
(input, entry point) pair becomes an :class:`Outcome` whose ``result`` is one of

* ``face`` / ``no_face`` / ``result``: a correct, complete answer (``result`` where faces do
  not apply, e.g. an evaluation report);
* ``error``: a recorded error with a message (an error row/record, or one ``error: ...; fix:``
  line from the CLI with exit status 3, an FfdError, or 2, a Click usage error);
* ``crash``: an unexpected exception, a traceback or ``internal error`` on stderr, an exit
  status other than 0/2/3, a non-FfdError from a library call;
* ``hang``: a subprocess that ran past its timeout;
* ``lost``: an input that produced no row/record at all (nor a "skipped" listing with a reason);
* ``skipped``: an input listed as not scored, with its reason (a format without a decoder, a loop);
* ``wrong``: a result that is there but false (a 10240 s duration for a 1 s clip).

:func:`judge` says whether a result is acceptable for the entry's expectation.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parents[2]
FFD = [sys.executable, "-m", "ffd"]
BAD = ("crash", "hang", "lost", "wrong")
USAGE_ERROR, USER_ERROR = 2, 3  # exit codes of one clear error: Click's usage error, an FfdError (EXIT_USER_ERROR)
CLEAR_ERRORS = (USAGE_ERROR, USER_ERROR)


@dataclass
class CliRun:
    args: list
    rc: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    def problems(self) -> list[str]:
        """What makes this run a crash or a hang (empty: a clean run or one clear error)."""
        out = []
        if self.timed_out:
            out.append(f"timed out after {self.seconds:.0f} s")
        elif self.rc not in (0, *CLEAR_ERRORS):
            out.append(f"exit status {self.rc}")
        if "Traceback" in self.stderr or "Traceback" in self.stdout:
            out.append("traceback shown without --debug")
        if "internal error" in self.stderr:
            out.append("internal error")
        if "\x1b" in self.stderr or "\x1b" in self.stdout:  # a file name's ESC sequence reached the terminal
            out.append("raw control character (ESC) printed")
        if self.rc in CLEAR_ERRORS:
            errs = [ln for ln in self.stderr.splitlines() if ln.startswith("error: ")]
            if len(errs) != 1:
                out.append(f"exit {self.rc} without exactly one 'error: ...' line: {self.stderr[-300:]!r}")
        return out

    def error_line(self) -> str:
        return next((ln for ln in self.stderr.splitlines() if ln.startswith("error: ")), "")

    def failure(self) -> tuple[str, str]:
        """``(hang|crash, problems)`` of a run that has :meth:`problems`."""
        return ("hang" if self.timed_out else "crash"), "; ".join(self.problems())

    def outcome(self, ok_detail: str = "exit 0") -> tuple[str, str]:
        """``(result, detail)`` of the run as a whole: its failure, ``error`` with the one error line
        (exit 3 or 2), or ``result``."""
        if self.problems():
            return self.failure()
        return ("error", self.error_line()) if self.rc in CLEAR_ERRORS else ("result", ok_detail)


def _missing(run: CliRun, what: str) -> tuple[str, str]:
    """An entry without a row/record: the run's crash or hang if it had one, else ``lost``."""
    return run.failure() if run.problems() else ("lost", what)


def _ffd_env(env: dict | None = None) -> dict:
    """The environment of an ``ffd`` subprocess: this one plus ``env``, never ``FFD_DEBUG``."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("FFD_DEBUG", None)
    full_env.setdefault("PYTHONPATH", str(ROOT))
    return full_env


def run_ffd(args: Sequence, timeout: float = 300, env: dict | None = None) -> CliRun:
    """``python -m ffd ARGS`` in a subprocess (never ``--debug``), killed after ``timeout``."""
    args = [str(a) for a in args]
    t0 = time.perf_counter()
    try:
        p = subprocess.run([*FFD, *args], cwd=ROOT, env=_ffd_env(env), capture_output=True, text=True, timeout=timeout)
        return CliRun(args, p.returncode, p.stdout, p.stderr, time.perf_counter() - t0)
    except subprocess.TimeoutExpired as e:
        def s(x):
            return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
        return CliRun(args, None, s(e.stdout), s(e.stderr), time.perf_counter() - t0)


@dataclass
class Outcome:
    entry: str
    entry_point: str
    expect: str
    result: str
    detail: str = ""
    cls: int = 0  # issue 15 class (corpus.CLASSES); 0: not classified
    ok: bool = field(init=False, default=False)

    def __post_init__(self):
        self.ok = judge(self.expect, self.result)


def call_outcome(fn, accepted: str) -> tuple[str, str]:
    """Run one library call that must refuse its input: ("error", why) for a typed error,
    ("result", accepted) when it went through, ("crash", what) for anything else (a TypeError or
    ValueError is exactly what must not happen)."""
    from edge.errors import FfdError

    try:
        fn()
        return "result", accepted
    except FfdError as e:
        return "error", f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001
        return "crash", f"{type(e).__name__}: {e}"


def judge(expect: str, result: str) -> bool:
    if result in BAD:
        return False
    if expect == "any":
        return True
    if expect == "error":
        return result == "error"
    if expect == "skipped":
        return result == "skipped"
    if expect == "result":
        return result in ("face", "no_face", "result")
    return result == expect


def _abs(p: Path) -> str:
    return str(Path(p).absolute())


def _safe(p) -> str:
    """A path as ffd stores it in SQLite/CSV (undecodable bytes of a name as \\xNN)."""
    from edge.inputs import safe_text

    return safe_text(str(p))


# --- ffd faces extract --------------------------------------------------------------------------
def extract_outcomes(corpus: Path, entries, out: Path, *, frames: int = 4, workers: int = 1,
                     timeout: float = 300, env: dict | None = None) -> tuple[list[Outcome], CliRun]:
    run = run_ffd(["faces", "extract", corpus, out, "--frames", frames, "--workers", workers, "--all-faces",
                   "--no-progress"], timeout=timeout, env=env)
    rows: dict[str, list[dict]] = {}
    if (out / "manifest.csv").is_file():
        with open(out / "manifest.csv", newline="") as f:
            for r in csv.DictReader(f):
                rows.setdefault(r["source"], []).append(r)
    skipped: dict[str, str] = {}
    if (out / "skipped.csv").is_file():
        with open(out / "skipped.csv", newline="") as f:
            skipped = {r["path"]: r["reason"] for r in csv.DictReader(f)}
    outcomes = []
    for e in entries:
        rs = rows.get(_safe(_abs(e.path)), [])
        why = skipped.get(_safe(_abs(e.path)))
        if not rs and why:
            res, detail = "skipped", why
        elif not rs:
            res, detail = _missing(run, "no manifest row")
        else:
            n_faces = sum(1 for r in rs if r["path"])
            errors = sorted({r["error"] for r in rs if r["error"] and r["error"] != "no face detected"})
            res = "face" if n_faces else "error" if errors else "no_face"
            detail = f"{n_faces} crops" + (f"; {errors[0]}" if errors else "")
        outcomes.append(Outcome(e.name, "faces extract", e.expect, res, detail, e.cls))
    return outcomes, run


# --- ffd detect -----------------------------------------------------------------------------------
def detect_image_outcomes(corpus: Path, entries, model: Path, out: Path, timeout: float = 300,
                          env: dict | None = None) -> tuple[list[Outcome], CliRun]:
    """``ffd detect FOLDERS -m MODEL -o OUT``: one JSON record per face / faceless / unreadable image (the
    folders' videos are played too, their frame records keyed by ``source``, a broken one an error record)."""
    run = run_ffd(["detect", corpus / "real", corpus / "fake", "-m", model, "-o", out], timeout=timeout, env=env)
    recs: dict[str, list[dict]] = {}
    if out.is_file():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            recs.setdefault(_abs(Path(r["file"] if "file" in r else r["source"])), []).append(r)
    outcomes = []
    for e in entries:
        if e.kind != "image" and e.expect != "skipped":
            continue
        rs = recs.get(_abs(e.path), [])
        if not rs:
            res, detail = _missing(run, "no record")
        elif any("skipped" in r for r in rs):
            res, detail = "skipped", rs[0]["skipped"]
        elif any("error" in r for r in rs):
            res, detail = "error", rs[0]["error"]
        else:
            n = sum(1 for r in rs if r.get("face") is not None)
            res, detail = ("face" if n else "no_face"), f"{n} faces"
        outcomes.append(Outcome(e.name, "detect (image)", e.expect, res, detail, e.cls))
    return outcomes, run


def detect_video_outcomes(entries, model: Path, max_frames: int = 8) -> list[Outcome]:
    """The video path of ``ffd detect`` (:func:`edge.detect.run_detect`), one video at a time, in-process."""
    from edge.detect import run_detect
    from edge.errors import FfdError

    outcomes = []
    for e in entries:
        if e.kind != "video" or e.expect == "skipped":
            continue
        try:
            st = run_detect(str(e.path), str(model), max_frames=max_frames, runner_kw={"intra_op_threads": 1})
            if st.faces:
                res, detail = "face", f"{st.faces} faces in {st.frames_processed} frames; end {st.end}"
            elif st.error or st.end == "error" or st.frames_processed == 0:
                res, detail = "error", st.error or f"end {st.end}, {st.frames_processed} frames"
            else:
                res, detail = "no_face", f"{st.frames_processed} frames; end {st.end}"
        except FfdError as ex:
            res, detail = "error", str(ex)
        except Exception as ex:  # noqa: BLE001 - exactly what the suite looks for
            res, detail = "crash", f"{type(ex).__name__}: {ex}"
        outcomes.append(Outcome(e.name, "detect (video)", e.expect, res, detail, e.cls))
    return outcomes


# --- ffd screen -----------------------------------------------------------------------------------
def screen_rows(db: Path) -> dict[str, dict]:
    if not db.is_file():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        return {r["path"]: dict(r) for r in con.execute(
            "SELECT path, status, error, error_type, faces_seen, n_frames, screened_at, score, duration_s "
            "FROM results")}
    finally:
        con.close()


def integrity_ok(db: Path) -> bool:
    con = sqlite3.connect(str(db))
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def screen_outcomes(corpus: Path, entries, model: Path, db: Path, *, report: Path | None = None, frames: int = 4,
                    workers: int = 1, timeout: float = 300, env: dict | None = None) -> tuple[list[Outcome], CliRun]:
    args = ["screen", corpus, "-m", model, "--db", db, "--frames", frames, "--workers", workers, "--no-progress"]
    if report is not None:
        args += ["--report", report]
    run = run_ffd(args, timeout=timeout, env=env)
    rows = screen_rows(db)
    try:
        summary = json.loads(run.stdout.strip().splitlines()[0])
    except (ValueError, IndexError):
        summary = {}
    skipped = {d["path"]: d["reason"] for d in summary.get("ignored_files", [])}
    outcomes = []
    for e in entries:
        r = rows.get(_safe(e.path.resolve()))
        if r is None and _safe(e.path) in skipped:
            res, detail = "skipped", skipped[_safe(e.path)]
        elif r is None:
            res, detail = _missing(run, "no row")
        else:
            res = {"done": "face", "no_face": "no_face", "error": "error"}[r["status"]]
            detail = f"{r['faces_seen']} faces in {r['n_frames']} frames" + (f"; {r['error']}" if r["error"] else "")
            if e.max_duration_s is not None and (r["duration_s"] or 0) > e.max_duration_s:
                res, detail = "wrong", f"duration recorded as {r['duration_s']} s ({detail})"
        outcomes.append(Outcome(e.name, "screen", e.expect, res, detail, e.cls))
    return outcomes, run


# --- ffd eval -----------------------------------------------------------------------------------
def eval_image_outcomes(entries, ckpt: Path, good: Sequence[Path], work: Path) -> list[Outcome]:
    """Per image entry: a real/ fake/ folder dataset (good faces + the entry in real/) through
    :func:`train.evaluate.evaluate`. A report is a correct result; FfdError a recorded error."""
    import shutil

    from edge.errors import FfdError
    from train.evaluate import evaluate

    outcomes = []
    for i, e in enumerate(x for x in entries if x.kind == "image" and x.path.is_file()):
        d = work / f"ds{i}"
        for sub, files in (("real", good[:2]), ("fake", good[2:4])):
            (d / sub).mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy(f, d / sub / Path(f).name)
        shutil.copy(e.path, d / "real" / ("entry" + e.path.suffix))
        try:
            rep = evaluate(ckpt, d, batch_size=8)
            res, detail = "result", f"frame AUC {rep['frame']['auc']:.3f} on {rep['frame'].get('n', '?')} faces"
        except FfdError as ex:
            res, detail = "error", str(ex)
        except Exception as ex:  # noqa: BLE001
            res, detail = "crash", f"{type(ex).__name__}: {ex}"
        expect = "error" if e.expect == "error" else "any" if e.expect in ("any", "skipped") else "result"
        outcomes.append(Outcome(e.name, "eval (folder dataset)", expect, res, detail, e.cls))
        shutil.rmtree(d, ignore_errors=True)
    return outcomes


# --- loaders ------------------------------------------------------------------------------------
def loader_outcomes(model_entries, marker: Path | None = None) -> list[Outcome]:
    """``open_runner`` for ONNX/engines (plus the engine-cache sidecar check), ``load_checkpoint``
    for checkpoints: every broken model must be a ModelError-like FfdError; nothing executes."""

    outcomes = []
    for m in model_entries:
        calls = []
        if m.kind in ("onnx", "engine") and m.check == "infer":  # opens; its first batch breaks the contract
            calls.append(("open_runner + infer", lambda p=m.path: _infer_once(p)))
            calls.append(("ForgeryDetector.classify_crops", lambda p=m.path: _classify_once(p)))
        elif m.kind in ("onnx", "engine"):
            from edge.runtime import open_runner

            calls.append(("open_runner", lambda p=m.path: open_runner(p).close()))
        if m.kind == "detector":
            from edge.faces import FaceDetector

            calls.append(("FaceDetector(yunet)", lambda p=m.path: FaceDetector("yunet", p)))
        if m.kind == "engine":
            from edge.runtime.engine_cache import EngineEnv, check_sidecar, read_sidecar

            here = EngineEnv(trt_version="10.3.0", gpu_name="NVIDIA Orin", compute_capability="8.7")
            calls.append(("engine_cache.check_sidecar", lambda p=m.path: check_sidecar(p, read_sidecar(p), here)))
        if m.kind == "ckpt":
            from train.checkpoint import load_checkpoint

            calls.append(("load_checkpoint", lambda p=m.path: load_checkpoint(p)))
        for name, fn in calls:
            res, detail = call_outcome(fn, "loaded (should have been refused)")
            if marker is not None and marker.exists():
                res, detail = "crash", f"the pickle executed code: {marker} was created"
            outcomes.append(Outcome(m.name, name, "error", res, detail, m.cls))
    return outcomes


def _infer_once(path: Path) -> None:
    import numpy as np

    from edge.runtime import open_runner

    with open_runner(path) as r:
        s = r.card.spec.size
        r.infer(np.random.default_rng(0).normal(size=(5, 3, s, s)).astype(np.float32))


def _classify_once(path: Path) -> None:
    import numpy as np

    from edge import ForgeryDetector

    with ForgeryDetector(path, "ort") as fd:
        fd.classify_crops([np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(3)])


def cli_model_outcomes(model_entries, images: Path, data: Path, timeout: float = 120,
                       good_model: Path | None = None) -> list[Outcome]:
    """Broken models on the command line: ``ffd detect -m`` (ONNX/engines), ``ffd eval`` (checkpoints),
    ``ffd detect -m GOOD --detector-model`` (detectors). A model refused only at its first batch must
    not have written a single score."""
    outcomes = []
    for m in model_entries:
        if m.kind == "ckpt":
            run = run_ffd(["eval", m.path, data], timeout=timeout)
            ep = "ffd eval CKPT"
        elif m.kind == "detector":
            if good_model is None:
                continue
            run = run_ffd(["detect", images, "-m", good_model, "--detector-model", m.path], timeout=timeout)
            ep = "ffd detect --detector-model"
        else:
            run = run_ffd(["detect", images, "-m", m.path], timeout=timeout)
            ep = "ffd detect -m"
        res, detail = run.outcome()
        if '"score"' in run.stdout:
            res, detail = "result", f"scores were written with a model that breaks the contract: {run.stdout[:80]!r}"
        outcomes.append(Outcome(m.name, ep, "error", res, detail, m.cls))
    return outcomes


# --- class 4: bad settings on the command line ---------------------------------------------------
def settings_outcomes(cases, *, images: Path, video: Path, model: Path, classifier: Path, work: Path,
                      ckpt: Path | None = None, timeout: float = 120, jobs: int = 2) -> list[Outcome]:
    """Each :class:`corpus.SettingCase` as an ``ffd`` subprocess: a clear error is exit 3 with one
    ``error:`` line naming the setting, and nothing written under its output folder."""
    import re
    from concurrent.futures import ThreadPoolExecutor

    def one(case) -> Outcome:
        out = work / re.sub(r"[^A-Za-z0-9]+", "_", case.name).strip("_")
        out.mkdir(parents=True, exist_ok=True)
        fill = {"images": images, "video": video, "model": model, "classifier": classifier, "out": out,
                "ckpt": ckpt if ckpt is not None else work / "missing.pt"}
        args = [str(a).format(**fill) for a in case.args]
        env = {k: str(v).format(**fill) for k, v in case.env}
        run = run_ffd(args, timeout=timeout, env=env)
        res, detail = run.outcome()
        made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
        if res == "error" and case.names not in run.error_line():
            res, detail = "result", f"the error does not name {case.names}: {run.error_line()[:120]}"
        elif res == "result":
            detail = f"accepted (exit {run.rc}); {run.stderr.strip()[-120:]}"
        if made and res == "error":
            res, detail = "result", f"refused, but wrote {made[:3]} first"
        return Outcome(case.name, "ffd (bad setting)", "error", res, detail, case.cls)

    with ThreadPoolExecutor(jobs) as ex:
        return list(ex.map(one, cases))


def library_settings_outcomes(model: Path, video: Path) -> list[Outcome]:
    """The same settings refused by the library functions the CLI calls (ConfigError, before any work)."""
    import math


    def screen_settings(**kw):
        from edge.screen import ScreenSettings

        ScreenSettings(**kw)

    def ort(**kw):
        from edge.runtime import open_runner

        open_runner(model, "ort", **kw).close()

    def detector(**kw):
        from edge import ForgeryDetector

        ForgeryDetector(model, "ort", **kw).close()

    def reader(timeout_s):
        from edge.media import VideoReader

        with VideoReader(video, timeout_s=timeout_s):
            pass

    def env_timeout(value):
        import os

        from edge.media import decode_timeout_s

        old = os.environ.get("FFD_DECODE_TIMEOUT_S")
        os.environ["FFD_DECODE_TIMEOUT_S"] = value
        try:
            decode_timeout_s()
        finally:
            if old is None:
                os.environ.pop("FFD_DECODE_TIMEOUT_S")
            else:
                os.environ["FFD_DECODE_TIMEOUT_S"] = old

    cases = [
        ("ScreenSettings(every_s=nan)", lambda: screen_settings(every_s=math.nan)),
        ("ScreenSettings(every_s=inf)", lambda: screen_settings(every_s=math.inf)),
        ("ScreenSettings(every_s=0)", lambda: screen_settings(every_s=0.0)),
        ("ScreenSettings(max_faces=10**6)", lambda: screen_settings(max_faces=10**6)),
        ("open_runner(intra_op_threads=100000)", lambda: ort(intra_op_threads=100000)),
        ("open_runner(intra_op_threads=2000)", lambda: ort(intra_op_threads=2000)),
        ("open_runner(inter_op_threads=-1)", lambda: ort(inter_op_threads=-1)),
        ("open_runner(max_batch=10**9)", lambda: ort(max_batch=10**9)),
        ("ForgeryDetector(batch_size=10**9)", lambda: detector(batch_size=10**9)),
        ("ForgeryDetector(det_max_side=nan)", lambda: detector(det_max_side=math.nan)),
        ("VideoReader(timeout_s=inf)", lambda: reader(math.inf)),
        ("VideoReader(timeout_s=nan)", lambda: reader(math.nan)),
        ("decode_timeout_s(FFD_DECODE_TIMEOUT_S=inf)", lambda: env_timeout("inf")),
        ("decode_timeout_s(FFD_DECODE_TIMEOUT_S=0)", lambda: env_timeout("0")),
    ]
    outcomes = []
    for name, fn in cases:
        res, detail = call_outcome(fn, "accepted")
        outcomes.append(Outcome(name, "library (bad setting)", "error", res, detail, 4))
    return outcomes


# --- class 8: the HTML report ------------------------------------------------------------------------
HOSTILE_FIELD = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&'
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "p", "table", "tr", "th", "td", "img", "svg",
                "rect", "line", "polyline", "circle"}


def hostile_report_rows(db: Path) -> list[str]:
    """Rewrite rows of the screening database ``db`` so that every field the report shows holds HTML (SQLite
    stores text in INTEGER/REAL columns as given); returns the names of the fields written."""
    con = sqlite3.connect(str(db))
    fields = ["path", "label", "faces_seen", "n_frames", "error", "error_type", "model_id", "score", "threshold",
              "evidence", "thumb", "aggregation"]
    try:
        with con:
            paths = [r[0] for r in con.execute("SELECT path FROM results ORDER BY path")]
            for i, p in enumerate(paths):
                h = HOSTILE_FIELD + f"#{i}"
                con.execute(
                    "UPDATE results SET path=?, label=?, faces_seen=?, n_frames=?, error=?, error_type=?, model_id=?, "
                    "score=?, threshold=?, evidence=?, thumb=?, aggregation=? WHERE path=?",
                    (p + h, h, h, h, h, h, h, h if i % 2 else 0.7, h,
                     json.dumps([{"frame": h, "t": h, "score": h, "faces": h, "box": h}]) if i % 2 else h,
                     h if i % 3 == 0 else None, h, p))
            # a row whose every field is present and well-formed except one number made huge / NaN-like text
            con.execute("UPDATE results SET score='NaN', threshold='1e999' "
                        "WHERE rowid = (SELECT MIN(rowid) FROM results)")
    finally:
        con.close()
    return fields


def check_report_html(html_text: str) -> list[str]:
    """What is wrong with a report page: markup from the data (a tag, an attribute or a ``javascript:`` URL
    that ffd does not write), a missing Content-Security-Policy that forbids scripts, or a CSP whose style
    hash does not match the page's stylesheet."""
    import base64
    import hashlib
    from html.parser import HTMLParser

    problems: list[str] = []
    csp: list[str] = []
    styles: list[str] = []

    class P(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self._in_style = False

        def handle_starttag(self, tag, attrs):
            if tag not in ALLOWED_TAGS:
                problems.append(f"unexpected <{tag}> tag")
            for k, v in attrs:
                if k.startswith("on"):
                    problems.append(f"event handler attribute {k}= on <{tag}>")
                if k in ("src", "href") and v and not v.startswith("data:image/jpeg;base64,"):
                    problems.append(f"{k}={v[:40]!r} on <{tag}>")
            if tag == "meta" and dict(attrs).get("http-equiv", "").lower() == "content-security-policy":
                csp.append(dict(attrs).get("content", ""))
            self._in_style = tag == "style"

        def handle_endtag(self, tag):
            self._in_style = False

        def handle_data(self, data):
            if self._in_style:
                styles.append(data)

    P().feed(html_text)
    if "<script" in html_text.lower():
        problems.append("a <script in the page")
    if len(csp) != 1:
        problems.append(f"{len(csp)} Content-Security-Policy meta tags (want 1)")
    else:
        pol = {d.split()[0]: d.split()[1:] for d in csp[0].split(";") if d.strip()}
        if pol.get("default-src") != ["'none'"]:
            problems.append(f"CSP default-src is {pol.get('default-src')}, not 'none'")
        if pol.get("script-src", ["'none'"]) != ["'none'"]:
            problems.append(f"CSP allows scripts: {pol.get('script-src')}")
        want = [f"'sha256-{base64.b64encode(hashlib.sha256(st.encode()).digest()).decode()}'" for st in styles]
        if pol.get("style-src") != want:
            problems.append(f"CSP style-src {pol.get('style-src')} does not match the page's stylesheet {want}")
    return problems


REPORT_FIELDS = ("path", "label", "faces_seen", "n_frames", "error", "error_type", "model_id", "score", "threshold",
                 "evidence", "thumb", "aggregation", "status_text")


def _report_of(db: Path, out: Path, name: str, what: str) -> Outcome:
    from edge.errors import FfdError
    from edge.screen.report import write_report

    try:
        html_text = write_report(db, out).read_text(encoding="utf-8")
    except FfdError as e:
        return Outcome(name, "screen report", "result", "error", str(e), 8)
    except Exception as e:  # noqa: BLE001
        return Outcome(name, "screen report", "result", "crash", f"{type(e).__name__}: {e}", 8)
    problems = check_report_html(html_text)
    res = "result" if not problems else "crash"
    return Outcome(name, "screen report", "result", res, "; ".join(problems[:4]) if problems else what, 8)


def report_outcomes(db: Path, out: Path) -> list[Outcome]:
    """Class 8: the report of a real screening database whose rows hold HTML -- in one field at a time, then in
    every field at once -- must show it as text, with its CSP, and never fail."""
    outcomes = []
    for name in REPORT_FIELDS:  # not `field`: dataclasses.field is imported here
        one = out.with_name(f"{out.stem}_{name}.sqlite")
        src, dst = sqlite3.connect(str(db)), sqlite3.connect(str(one))
        src.backup(dst)
        src.close()
        with dst:
            if name == "path":
                dst.execute("UPDATE results SET path = path || ?", (HOSTILE_FIELD,))
            elif name == "status_text":  # a bad JSON evidence and a text threshold on an error row
                dst.execute("UPDATE results SET evidence = '[[[', threshold = 'x' WHERE rowid % 2 = 0")
            else:
                dst.execute(f"UPDATE results SET {name} = ?", (HOSTILE_FIELD,))
        dst.close()
        outcomes.append(_report_of(one, out.with_name(f"{out.stem}_{name}.html"), f"hostile {name}",
                                   f"{name} shown as text"))
    hostile_report_rows(db)
    outcomes.append(_report_of(db, out, "hostile db rows (every field)", "every field escaped"))
    return outcomes


# --- summary --------------------------------------------------------------------------------------
def summarize(outcomes: Iterable[Outcome], rows_lost: int = 0, rss: dict | None = None) -> dict:
    outcomes = list(outcomes)
    s = {
        "inputs_tried": len(outcomes),
        "clear_errors": sum(o.result == "error" for o in outcomes),
        "correct_results": sum(o.ok and o.result != "error" for o in outcomes),
        "crashes": sum(o.result in ("crash", "hang") for o in outcomes),
        "hangs": sum(o.result == "hang" for o in outcomes),
        "lost": sum(o.result == "lost" for o in outcomes),
        "wrong": sum(not o.ok for o in outcomes),
        "rows_lost": rows_lost,
    }
    if rss is not None:
        s["rss_drift_mb"] = rss.get("drift_mb")
        s["rss"] = rss
    s["by_class"] = by_class(outcomes)
    s["outcomes"] = [asdict(o) for o in outcomes]
    return s


def by_class(outcomes: Iterable[Outcome]) -> dict[int, dict]:
    """The summary counts per issue 15 class (0: outcomes without a class)."""
    out: dict[int, dict] = {}
    for o in outcomes:
        c = out.setdefault(o.cls, {"tried": 0, "clear_errors": 0, "correct_results": 0, "crashes": 0, "hangs": 0,
                                   "lost": 0, "wrong": 0})
        c["tried"] += 1
        c["clear_errors"] += o.result == "error"
        c["correct_results"] += o.ok and o.result != "error"
        c["crashes"] += o.result in ("crash", "hang")
        c["hangs"] += o.result == "hang"
        c["lost"] += o.result == "lost"
        c["wrong"] += not o.ok
    return dict(sorted(out.items()))


def class_table(outcomes: Iterable[Outcome], names: dict[int, str] | None = None) -> str:
    """Counts per class, one row per class of ``names`` (all of them, zeros where no case exists yet)."""
    keys = ("tried", "clear_errors", "correct_results", "crashes", "hangs", "lost", "wrong")
    counts = by_class(outcomes)
    rows = sorted(set(names or {}) | set(counts))
    lines = [f"{'class':5} {'':44} " + " ".join(f"{k:>15}" for k in keys)]
    for c in rows:
        name = (names or {}).get(c, "(unclassified)" if c == 0 else "")
        got = counts.get(c)
        if got is None:
            lines.append(f"{c:<5} {name[:44]:44} " + f"{0:>15}" + "   (no cases yet)")
        else:
            lines.append(f"{c:<5} {name[:44]:44} " + " ".join(f"{got[k]:>15}" for k in keys))
    return "\n".join(lines)


def table(outcomes: Iterable[Outcome]) -> str:
    lines = [f"{'cls':3} {'input':34} {'entry point':26} {'expect':8} {'result':8} ok  detail"]
    for o in outcomes:
        lines.append(f"{o.cls:<3} {o.entry[:34]:34} {o.entry_point[:26]:26} {o.expect:8} {o.result:8} "
                     f"{'y' if o.ok else 'N'}   {o.detail[:90]}")
    return "\n".join(lines)


# --- crash-resume ---------------------------------------------------------------------------------
def _count_rows(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet, or schema not written yet
        return 0


def kill_resume(archive: Path, model: Path, db: Path, *, seed: int = 0, kills: int = 4, frames: int = 6,
                timeout: float = 240, report: Path | None = None) -> dict:
    """Start ``ffd screen`` and SIGKILL its whole process group at seeded random points, ``kills``
    times, then run it to the end. A kill point is a random number of rows still to come (plus a
    random 0-0.3 s), or, for about one kill in five, a random moment of the start-up. Every row
    seen after a kill must survive unchanged; returns what happened (``rows_lost`` must be 0)."""
    import random
    import signal

    from edge.screen import discover

    n_files = len(discover([archive]))
    rng = random.Random(seed)
    env = _ffd_env()
    seen: dict[str, str] = {}  # path -> screened_at of every row seen after a kill
    log = []
    lost: set[str] = set()
    for k in range(kills + 1):
        workers = rng.choice([0, 1, 2])
        args = [*FFD, "screen", str(archive), "-m", str(model), "--db", str(db), "--frames", str(frames),
                "--workers", str(workers), "--no-progress"] + (["--report", str(report)] if report else [])
        final = k == kills
        have = _count_rows(db) if db.exists() else 0
        early = rng.random() < 0.2
        # at most half of the remaining rows, so that later kills still land mid-run
        target = None if final or early or have >= n_files - 1 else \
            have + rng.randint(1, max(1, (n_files - 1 - have) // 2))
        startup_delay = rng.uniform(0.1, 1.5) if early else None
        extra = rng.uniform(0.0, 0.3)
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        killed_at = None
        try:
            if not final and (target is not None or startup_delay is not None):
                while proc.poll() is None and time.perf_counter() - t0 < timeout:
                    if startup_delay is not None and time.perf_counter() - t0 >= startup_delay:
                        break
                    if target is not None and _count_rows(db) >= target:
                        time.sleep(extra)
                        break
                    time.sleep(0.02)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)  # the screen process and its workers (own session)
                    killed_at = _count_rows(db)
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        rows = screen_rows(db)
        for p, at in seen.items():
            if rows.get(p, {}).get("screened_at") != at:
                lost.add(p)
        entry = {"run": k, "workers": workers, "kill": None if killed_at is None else
                 ("start-up" if early else f"after row {target}+{extra:.2f}s"),
                 "seconds": round(time.perf_counter() - t0, 2), "rc": proc.returncode, "rows_before": have,
                 "rows": len(rows), "integrity_ok": integrity_ok(db) if db.exists() else True,
                 "traceback": "Traceback" in err}
        if killed_at is None:
            entry["stderr_tail"] = err[-400:]
            try:
                entry["summary"] = json.loads(out.strip().splitlines()[0])
            except (ValueError, IndexError):
                entry["summary"] = None
        log.append(entry)
        seen.update({p: r["screened_at"] for p, r in rows.items()})
    return {"files": n_files, "runs": log, "kills": sum(1 for e in log if e["kill"] is not None),
            "rows_lost": len(lost), "lost": sorted(lost), "final_rows": screen_rows(db),
            "integrity_ok": integrity_ok(db)}


# --- soak -----------------------------------------------------------------------------------------
def loop_source(path: Path):
    """A :class:`edge.stream.sources.Source` that plays a video file over and over (decoding every pass)."""
    from edge.stream.sources import EndOfStream, FileSource, Frame, Source

    class LoopSource(Source):
        def __init__(self):
            self.uri, self.live, self.passes, self._n = f"loop:{path}", False, 0, 0
            self._src = FileSource(path)
            self.fps, self.size = self._src.fps, self._src.size

        def read(self, timeout_s=None):
            try:
                fr = self._src.read(timeout_s)
            except EndOfStream:
                self._src.close()
                self._src, self.passes = FileSource(path), self.passes + 1
                fr = self._src.read(timeout_s)
            self._n += 1
            return Frame(fr.image, self._n - 1, (self._n - 1) / (self.fps or 25.0), self.uri)

        def close(self):
            self._src.close()

    return LoopSource()


def rss_drift(samples: list[tuple[int, float]], warmup: int) -> dict:
    after = [r for n, r in samples if n >= warmup]
    if len(after) < 2:
        raise ValueError(f"too few RSS samples after warm-up: {samples}")
    return {"warm_mb": round(after[0], 1), "end_mb": round(after[-1], 1), "max_mb": round(max(after), 1),
            "drift_mb": round(after[-1] - after[0], 1), "samples": [(n, round(r, 1)) for n, r in samples]}


def soak_detector(video: Path, model: Path, frames: int = 1200, warmup: int = 300, every: int = 100,
                  backend: str = "auto", **runner_kw) -> dict:
    """``ForgeryDetector.process`` frame by frame on a looped video: RSS after warm-up vs at the end."""
    from edge.tools.bench import current_rss_mb
    from edge.forgery import ForgeryDetector

    src = loop_source(video)
    samples, faces = [], 0
    t0 = time.perf_counter()
    with ForgeryDetector(model, backend, **runner_kw) as fd:
        for i in range(1, frames + 1):
            faces += len(fd.process(src.read().image))
            if i % every == 0:
                samples.append((i, current_rss_mb()))
    src.close()
    out = rss_drift(samples, warmup)
    out.update(what="ForgeryDetector.process (looped video)", frames=frames, warmup=warmup, faces=faces,
               passes=src.passes, fps=round(frames / (time.perf_counter() - t0), 1))
    return out


def soak_pipeline(video: Path, model: Path, frames: int = 1200, warmup: int = 300, every: int = 100,
                  **runner_kw) -> dict:
    """The ``ffd detect`` video pipeline (:func:`edge.detect.run_detect`) on a looped video, ``frames`` frames."""
    from edge.detect import run_detect

    src = loop_source(video)
    t0 = time.perf_counter()
    st = run_detect(src, str(model), max_frames=frames, rss_every=every, runner_kw=runner_kw)
    src.close()
    out = rss_drift(st.rss_mb, warmup)
    out.update(what="ffd detect pipeline (edge.detect.run_detect, looped video)", frames=st.frames_processed,
               warmup=warmup, faces=st.faces, passes=src.passes, end=st.end,
               fps=round(st.frames_processed / (time.perf_counter() - t0), 1))
    return out


# --- class 1: outputs that overwrite inputs or each other ---------------------------------------------
def _snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (symlinks as their target) under ``folder``."""
    import hashlib

    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def output_outcomes(cases, *, image: Path, video: Path, model: Path, yunet: Path, work: Path,
                    timeout: float = 120, jobs: int = 2) -> list[Outcome]:
    """Each :class:`corpus.OutputCase` as an ``ffd`` subprocess in a fresh folder: a clear error
    (exit 3, one ``error:`` line) with every file of the folder as it was; any change is ``lost``."""
    import re
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    def one(case) -> Outcome:
        w = work / re.sub(r"[^A-Za-z0-9]+", "_", case.name).strip("_")
        shutil.rmtree(w, ignore_errors=True)
        w.mkdir(parents=True)
        for rel, what in case.setup:
            p = w / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if what.startswith("link:"):
                p.symlink_to(w / what[5:])
            elif what in ("image", "crop"):
                shutil.copy(image, p)
            elif what == "video":
                shutil.copy(video, p)
            elif what == "model":
                shutil.copy(model, p)
            elif what == "text":
                p.write_text('{"old": 1}\n{"old": 2}\n')
            elif what == "db":
                con = sqlite3.connect(p)
                con.execute("CREATE TABLE t (x)")
                con.execute("INSERT INTO t VALUES (42)")
                con.commit()
                con.close()
        before = _snapshot(w)
        fill = {"w": w, "model": model, "yunet": yunet}
        run = run_ffd([str(a).format(**fill) for a in case.args], timeout=timeout)
        res, detail = run.outcome()
        after = _snapshot(w)
        changed = sorted(k for k in before if after.get(k) != before[k])
        if changed:
            res, detail = "lost", f"changed or removed {changed[:3]} (exit {run.rc})"
        elif res == "result":
            detail = f"accepted (exit {run.rc}); {run.stderr.strip()[-120:]}"
        return Outcome(case.name, "ffd (output on an input)", "error", res, detail, case.cls)

    with ThreadPoolExecutor(jobs) as ex:
        return list(ex.map(one, cases))


def crop_name_outcomes(image: Path, yunet: Path, work: Path) -> list[Outcome]:
    """Class 1 on success paths: ``a.jpg``, ``a.png``, ``a_jpg.jpg`` get one crop each, and
    ``--overwrite`` keeps a file under ``OUT/crops`` that the run did not make."""
    import shutil

    import cv2

    from edge.errors import FfdError
    from edge.faces.extract import extract_faces

    src, out = work / "names", work / "names_out"
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    src.mkdir(parents=True)
    for n in ("a.jpg", "a.png", "a_jpg.jpg"):
        cv2.imwrite(str(src / n), cv2.imread(str(image)))
    outcomes = []
    try:
        extract_faces(src, out, detector_model=yunet, workers=0, progress=False, label="real")
        rows = list(csv.DictReader((out / "manifest.csv").open()))
        paths = [r["path"] for r in rows if r["path"]]
        ok = len(paths) == 3 and len(set(paths)) == 3
        outcomes.append(Outcome("a.jpg + a.png + a_jpg.jpg", "faces extract (crop names)", "result",
                                "result" if ok else "lost", f"{len(set(paths))} crops for {len(paths)} rows", 1))
        mine = out / "crops" / "mine" / "keep.png"
        mine.parent.mkdir(parents=True)
        mine.write_bytes(b"user file")
        extract_faces(src, out, detector_model=yunet, workers=0, progress=False, label="real", overwrite=True)
        kept = mine.is_file() and mine.read_bytes() == b"user file"
        outcomes.append(Outcome("--overwrite with a user file in OUT/crops", "faces extract --overwrite", "result",
                                "result" if kept else "lost", "kept" if kept else "deleted the user's file", 1))
    except FfdError as e:
        outcomes.append(Outcome("crop names / --overwrite", "faces extract", "result", "error", e.message, 1))
    return outcomes


# --- class 3 (names on the terminal) and class 5: failures recorded as results ---------------------------
def terminal_name_outcomes(work: Path, model: Path) -> list[Outcome]:
    """A file name full of ESC sequences in a CLI error line and in a detect log: escaped, never raw."""
    work.mkdir(parents=True, exist_ok=True)
    evil = work / "x\x1b[2J\x1b]0;pwned\x07"
    (work / "bad\x1b[31m.mp4").write_text("not a video")
    out = []
    for name, args in (("missing source named with ESC sequences", ["faces", "extract", evil, work / "o"]),
                       ("broken video named with ESC sequences", ["detect", work / "bad\x1b[31m.mp4", "-m", model])):
        run = run_ffd([*args, "--no-progress"] if args[0] == "faces" else args, timeout=120)
        res, detail = run.outcome()
        out.append(Outcome(name, f"ffd {args[0]} (terminal)", "error", res, detail[:120], 3))
    return out


def run_error_outcomes(archive: Path, model: Path, other_weights: Path, classifier: Path, yunet: Path,
                       work: Path) -> list[Outcome]:
    """Class 5: a run whose own settings are wrong (a detector that is not one, a decode timeout too short)
    stops with one error and records nothing; the re-run with the right settings screens every file; a
    re-run with other weights (same model card) or another detector never reuses rows; a transient error
    row is retried. ``archive``: a folder of videos/images that all decode."""
    work.mkdir(parents=True, exist_ok=True)
    n = len([p for p in archive.iterdir() if p.is_file()])

    def screen(db, *extra, env=None, m=model):
        run = run_ffd(["screen", archive, "-m", m, "--db", db, "--workers", "0", "--no-progress", "--frames", "4",
                       *extra], timeout=300, env=env)
        try:
            return run, json.loads(run.stdout.splitlines()[0])
        except (ValueError, IndexError):
            return run, None

    def case(name, bad_run, db, good_extra=(), good_env=None) -> Outcome:
        """The bad run: refused (one error, no rows), or rows of which no error would be kept by a re-run
        (transient kinds only); then the run with the right settings ends with a result for every file."""
        from edge.screen.db import TRANSIENT_ERRORS

        first, _ = bad_run
        if first.problems():
            return Outcome(name, "ffd screen (run-level error)", "result", *first.failure(), 5)
        kept = [r for r in screen_rows(db).values() if r["status"] == "error" and r["error_type"] not in
                TRANSIENT_ERRORS]
        run, s = screen(db, *good_extra, env=good_env)
        final = screen_rows(db)
        ok = not kept and run.rc == 0 and len(final) == n and all(r["status"] != "error" for r in final.values())
        how = f"refused ({first.error_line()[:50]})" if first.rc else f"exit 0, {len(kept)} error rows kept"
        return Outcome(name, "ffd screen (run-level error)", "result", "result" if ok else "wrong",
                       f"{how}, then {sum(r['status'] != 'error' for r in final.values())} of {n} with a result", 5)

    out = []
    db = work / "wrong_detector.sqlite"
    out.append(case("wrong --detector-model, then the right one", screen(db, "--detector-model", classifier), db,
                    ("--detector-model", yunet)))
    db = work / "timeout.sqlite"
    out.append(case("FFD_DECODE_TIMEOUT_S=1e-6, then the default", screen(
        db, "--detector-model", yunet, env={"FFD_DECODE_TIMEOUT_S": "0.000001"}), db, ("--detector-model", yunet)))
    db = work / "weights.sqlite"
    screen(db, "--detector-model", yunet)
    run, s = screen(db, "--detector-model", yunet, m=other_weights)
    ok = s is not None and s["skipped"] == 0 and s["screened"] == n
    out.append(Outcome("re-run with other weights (same card)", "ffd screen (resume)", "result",
                       "result" if ok else "wrong", f"{s and s['skipped']} of {n} rows reused", 5))
    with sqlite3.connect(db) as con:  # as if one file had timed out in the last run
        victim = con.execute("SELECT path FROM results ORDER BY path LIMIT 1").fetchone()[0]
        con.execute("UPDATE results SET status='error', error='decoding took longer than 300 s', "
                    "error_type='DecodeTimeoutError', score=NULL WHERE path=?", (victim,))
    run, s = screen(db, "--detector-model", yunet, m=other_weights)
    ok = s is not None and s["screened"] == 1 and s["skipped"] == n - 1
    out.append(Outcome("a timed-out row, re-run", "ffd screen (resume)", "result", "result" if ok else "wrong",
                       f"{s and s['screened']} re-screened, {s and s['skipped']} kept", 5))
    return out


# --- class 6: streams (and clusters) that never answer ------------------------------------------
class SilentServer:
    """A loopback TCP server that accepts every connection and never sends a byte (a hung RTSP/HTTP
    server or cluster head): ``with SilentServer() as port: ...``; ``accepted`` counts connections."""

    def __init__(self):
        import socket
        import threading

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.accepted = 0
        self._conns: list = []
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self._sock.accept()
            except OSError:  # closed
                return
            self.accepted += 1
            self._conns.append(c)  # held open, never answered

    def __enter__(self) -> int:
        self._thread.start()
        return self.port

    def __exit__(self, *exc) -> None:
        self._sock.close()
        for c in self._conns:
            c.close()


def free_port() -> int:
    """A loopback port where nothing listens (bound once, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_outcomes(model: Path, media: Path, work: Path, *, connect_timeout_s: float = 2.0, limit_s: float = 30.0,
                    ray: bool | None = None) -> list[Outcome]:
    """Class 6: ``ffd detect`` on an RTSP and an HTTP server that accept and never answer, and on a
    port where nothing listens; ``ffd screen --ray`` at a silent and at a closed address. Each must
    end with one clear error well within ``limit_s`` (the deadline is ``--connect-timeout``, or
    ``FFD_CONNECT_TIMEOUT_S`` for one case). ``ray``: run the ``--ray`` cases (default: when ray is
    installed; they need it, as the command does); ``media``: what ``ffd screen`` screens there."""
    import importlib.util

    if ray is None:
        ray = importlib.util.find_spec("ray") is not None
    work.mkdir(parents=True, exist_ok=True)
    t = f"{connect_timeout_s:g}"
    outcomes = []

    def judge_run(name: str, entry_point: str, args, env=None) -> Outcome:
        run = run_ffd(args, timeout=limit_s, env=env)
        res, detail = run.outcome()
        if res == "result":
            res, detail = "crash", f"exit {run.rc} without an error: {run.stderr.strip()[-120:]}"
        elif res == "error":
            detail = f"{run.seconds:.1f} s: {run.error_line()[:100]}"
            if run.seconds > limit_s:
                res, detail = "hang", f"took {run.seconds:.0f} s"
        return Outcome(name, entry_point, "error", res, detail, 6)

    with SilentServer() as port:
        for url in (f"rtsp://127.0.0.1:{port}/live", f"http://127.0.0.1:{port}/clip.mp4"):
            outcomes.append(judge_run(f"silent server {url.split(':')[0]}", "ffd detect",
                                      ["detect", url, "-m", model, "--connect-timeout", t]))
        outcomes.append(judge_run("silent rtsp, FFD_CONNECT_TIMEOUT_S", "ffd detect",
                                  ["detect", f"rtsp://127.0.0.1:{port}/env", "-m", model],
                                  env={"FFD_CONNECT_TIMEOUT_S": t}))
        if ray:
            outcomes.append(judge_run("silent Ray address", "ffd screen --ray",
                                      ["screen", media, "-m", model, "--db", work / "silent.sqlite", "--no-progress",
                                       "--ray", f"127.0.0.1:{port}", "--connect-timeout", t]))
    closed = free_port()
    outcomes.append(judge_run("nothing listens (rtsp)", "ffd detect",
                              ["detect", f"rtsp://127.0.0.1:{closed}/x", "-m", model, "--connect-timeout", t]))
    if ray:
        outcomes.append(judge_run("nothing listens (--ray 127.0.0.1:1)", "ffd screen --ray",
                                  ["screen", media, "-m", model, "--db", work / "closed.sqlite", "--no-progress",
                                   "--ray", "127.0.0.1:1", "--connect-timeout", t]))
    return outcomes


# --- class 7: SIGTERM and SIGINT ------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """``(state, ppid, pgrp, session)`` of a process from /proc, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid`` (a child started with ``start_new_session``)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _proc_stat(int(d.name))
            if st is not None and st[3] == sid and st[0] not in ("Z", "X"):
                out.append(int(d.name))
    return out


def worker_processes(pid: int) -> list[int]:
    """Live multiprocessing workers (``spawn_main``) whose parent is ``pid`` (not the resource tracker)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _proc_stat(int(d.name))
            if st is not None and st[1] == pid and st[0] not in ("Z", "X"):
                with contextlib.suppress(OSError):
                    if b"spawn_main" in (d / "cmdline").read_bytes():
                        out.append(int(d.name))
    return out


def _manifest_sources(manifest: Path) -> list[str]:
    try:
        with manifest.open(newline="") as f:
            return [r["source"] for r in csv.DictReader(f)]
    except (OSError, KeyError, csv.Error):
        return []


def interrupt_run(args: Sequence, sig: int, ready, *, group: bool = False, timeout: float = 180,
                  workers: int = 0) -> dict:
    """Start ``ffd ARGS`` in its own session, wait until ``ready()`` is true (and ``workers`` worker
    processes run), send ``sig`` -- to the process alone (``kill PID``, ``docker stop``) or to its
    whole process group (``group``: what Ctrl-C in a terminal does) -- and wait for it to end.

    Returns ``rc``, ``stderr``, ``seconds`` (signal to exit), ``workers_seen`` (worker processes
    before the signal), ``left`` (processes of its session still alive 10 s after it ended) and
    ``signalled`` (False when it finished before ``ready()``)."""
    import signal

    proc = subprocess.Popen([*FFD, *map(str, args)], cwd=ROOT, env=_ffd_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.perf_counter()
    seen: list[int] = []
    signalled = False
    try:
        while proc.poll() is None and time.perf_counter() - t0 < timeout:
            seen = worker_processes(proc.pid)
            if ready() and len(seen) >= workers:
                break
            time.sleep(0.05)
        t_sig = time.perf_counter()
        if proc.poll() is None:
            (os.killpg if group else os.kill)(proc.pid, sig)
            signalled = True
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return {"rc": None, "stderr": err, "stdout": out, "seconds": time.perf_counter() - t0, "left": [],
                "workers_seen": len(seen), "workers_wanted": workers, "signalled": signalled}
    seconds = time.perf_counter() - t_sig
    left = session_processes(proc.pid)
    deadline = time.perf_counter() + 10  # the resource tracker exits when it reads EOF: give it a moment
    while left and time.perf_counter() < deadline:
        time.sleep(0.1)
        left = session_processes(proc.pid)
    for pid in left:  # do not leave them behind the test either
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return {"rc": proc.returncode, "stderr": err, "stdout": out, "seconds": seconds, "left": left,
            "workers_seen": len(seen), "workers_wanted": workers, "signalled": signalled}


def judge_interrupt(r: dict, sig: int, kept: bool, kept_what: str) -> tuple[str, str]:
    """``(result, detail)`` of :func:`interrupt_run`: ``result`` when it exited 128+sig with one line, no
    traceback, no process left and what was finished ``kept``; else ``crash``/``hang``/``lost``."""
    lines = [ln for ln in r["stderr"].splitlines() if ln.strip()]
    if r["rc"] is None:
        return "hang", f"still running {r['seconds']:.0f} s after the signal"
    if not r["signalled"]:
        return "crash", "the run finished before it could be signalled (make the input bigger)"
    problems = []
    if r["rc"] != 128 + sig:
        problems.append(f"exit {r['rc']}, not {128 + sig}")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr: {r['stderr'][-300:]!r}")
    if "Traceback" in r["stderr"]:
        problems.append("a traceback")
    if r["left"]:
        problems.append(f"{len(r['left'])} processes left running")
    if r["workers_seen"] < r.get("workers_wanted", 0):
        problems.append(f"signalled with {r['workers_seen']} of {r['workers_wanted']} workers running (a weak test)")
    if problems:
        return "crash", "; ".join(problems)
    if not kept:
        return "lost", f"finished work not kept: {kept_what}"
    return "result", f"exit {r['rc']} in {r['seconds']:.1f} s, {r['workers_seen']} workers stopped; {lines[0][:90]}"


def screen_signal_case(archive: Path, model: Path, work: Path, sig: int, group: bool, *, det=(), frames: int = 12,
                       workers: int = 2) -> list[Outcome]:
    """Class 7, ``ffd screen -j N``: ``sig`` once a first row is committed, then the re-run (see
    :func:`signal_outcomes`)."""
    import signal

    from edge.screen import discover

    n_files = len(discover([archive]))
    name = signal.Signals(sig).name + (" to the group (Ctrl-C)" if group else " to the process")
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"screen_{int(sig)}.sqlite"
    for p in work.glob(f"screen_{int(sig)}.sqlite*"):
        p.unlink()
    args = ["screen", archive, "-m", model, "--db", db, "--frames", frames, "-j", workers, "--no-progress", *det]
    r = interrupt_run(args, sig, lambda: _count_rows(db) >= 1, group=group, workers=workers)
    rows = _count_rows(db)
    kept = r["signalled"] and rows >= 1 and integrity_ok(db) and \
        f"{rows} of {n_files} files screened this run, saved in" in r["stderr"]
    res, detail = judge_interrupt(r, sig, kept, f"{rows} rows in the db; {r['stderr'][-160:]!r}")
    outcomes = [Outcome(f"{name}, {rows}/{n_files} rows", f"ffd screen -j {workers}", "result", res, detail, 7)]
    if res == "result":
        again = run_ffd(args, timeout=300)
        done = screen_rows(db)
        ok = again.rc == 0 and not again.problems() and len(done) == n_files
        outcomes.append(Outcome(f"re-run after {signal.Signals(sig).name}", "ffd screen (resume)", "result",
                                "result" if ok else "lost", f"exit {again.rc}, {len(done)}/{n_files} rows", 7))
    return outcomes


def extract_signal_case(archive: Path, work: Path, sig: int, group: bool, *, det=(), frames: int = 12,
                        workers: int = 2) -> list[Outcome]:
    """Class 7, ``ffd faces extract -j N``: ``sig`` once a first file is in the manifest, then the re-run."""
    import shutil
    import signal

    from edge.screen import discover

    n_files = len(discover([archive]))
    name = signal.Signals(sig).name + (" to the group (Ctrl-C)" if group else " to the process")
    out = work / f"faces_{int(sig)}"
    shutil.rmtree(out, ignore_errors=True)
    manifest = out / "manifest.csv"
    args = ["faces", "extract", archive, out, "--frames", frames, "-j", workers, "--no-progress", *det]
    r = interrupt_run(args, sig, lambda: len(set(_manifest_sources(manifest))) >= 1, group=group, workers=workers)
    listed = set(_manifest_sources(manifest))
    rows = []
    with contextlib.suppress(OSError), manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    crops_ok = all((out / row["path"]).is_file() for row in rows if row.get("path"))
    kept = r["signalled"] and len(listed) >= 1 and crops_ok and \
        f"{len(listed)} of {n_files} files extracted this run, listed in" in r["stderr"]
    res, detail = judge_interrupt(r, sig, kept, f"{len(listed)} sources in the manifest, crops ok {crops_ok}")
    outcomes = [Outcome(f"{name}, {len(listed)}/{n_files} files", f"ffd faces extract -j {workers}", "result", res,
                        detail, 7)]
    if res == "result":
        again = run_ffd(args, timeout=300)
        with manifest.open(newline="") as f:
            rows = list(csv.DictReader(f))
        srcs = {row["source"] for row in rows}
        keys = [(row["source"], row.get("frame", ""), row.get("face_index", "")) for row in rows]
        ok = again.rc == 0 and not again.problems() and len(srcs) == n_files and len(keys) == len(set(keys))
        outcomes.append(Outcome(f"re-run after {signal.Signals(sig).name}", "faces extract (resume)", "result",
                                "result" if ok else "lost", f"exit {again.rc}, {len(srcs)}/{n_files} files, "
                                f"{len(keys) - len(set(keys))} duplicate rows", 7))
    return outcomes


def signal_outcomes(archive: Path, model: Path, work: Path, *, yunet: Path | None = None, frames: int = 12,
                    workers: int = 2) -> list[Outcome]:
    """Class 7: SIGTERM (``kill PID``) and SIGINT to the process group (Ctrl-C) during ``ffd screen -j N``
    and ``ffd faces extract -j N`` once a first row is finished; then a re-run completes the rest. Each
    interrupted run must exit 143/130 with one line and no process left, with the finished rows in the
    db / manifest; the re-run must exit 0 with one row per file (screen) / every file once (extract)."""
    import signal

    det = ("--detector-model", yunet) if yunet else ()
    outcomes = []
    for sig, group in ((signal.SIGTERM, False), (signal.SIGINT, True)):
        outcomes += screen_signal_case(archive, model, work, sig, group, det=det, frames=frames, workers=workers)
        outcomes += extract_signal_case(archive, work, sig, group, det=det, frames=frames, workers=workers)
    return outcomes
