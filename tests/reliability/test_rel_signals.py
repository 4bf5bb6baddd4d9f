"""Class 7 of issue 15: signals. SIGTERM (``kill PID``, ``docker stop``) and SIGINT (Ctrl-C, sent to
the whole process group) during ``ffd screen -j 2`` and ``ffd faces extract -j 2`` stop the workers,
keep every finished row, print one line and exit 143/130; a re-run completes the rest. Real
processes and real signals; the processes left are read from /proc."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from harness import ROOT, _count_rows, extract_signal_case, interrupt_run, screen_signal_case, table
from media import write_face_video
from rel_fixtures import rel_model  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def busy_archive(tmp_path_factory, london_neutral):
    """16 short videos: long enough with -j 2 on a small machine to be signalled mid-run."""
    d = tmp_path_factory.mktemp("sigarch")
    for i in range(16):
        write_face_video(d / f"v{i:02d}.mp4", london_neutral[i % 8:i % 8 + 2], n_frames=24, fps=12, size=(480, 360))
    return d


CASES = [pytest.param(signal.SIGTERM, False, id="SIGTERM-kill-pid"),
         pytest.param(signal.SIGINT, True, id="SIGINT-ctrl-c-group")]


@pytest.mark.parametrize("sig,group", CASES)
def test_screen_stops_its_workers_keeps_rows_and_resumes(busy_archive, rel_model, yunet_model, tmp_path, sig, group):
    outcomes = screen_signal_case(busy_archive, rel_model, tmp_path, sig, group,
                                  det=("--detector-model", yunet_model))
    assert len(outcomes) == 2 and all(o.cls == 7 for o in outcomes), "\n" + table(outcomes)
    bad = [o for o in outcomes if not o.ok]
    assert not bad, "\n" + table(outcomes)


@pytest.mark.parametrize("sig,group", CASES)
def test_extract_stops_its_workers_keeps_the_manifest_and_resumes(busy_archive, yunet_model, tmp_path, sig, group):
    outcomes = extract_signal_case(busy_archive, tmp_path, sig, group, det=("--detector-model", yunet_model))
    assert len(outcomes) == 2 and all(o.cls == 7 for o in outcomes), "\n" + table(outcomes)
    bad = [o for o in outcomes if not o.ok]
    assert not bad, "\n" + table(outcomes)


def _py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_a_signal_inside_a_critical_section_is_raised_at_its_end():
    p = _py("""
        import os, signal
        from edge.signals import Interrupted, deferred, handle_signals
        done = []
        with handle_signals():
            try:
                with deferred():
                    os.kill(os.getpid(), signal.SIGTERM)
                    done.append("row committed")  # still runs: the signal waits for the end of the section
                raise SystemExit("not raised")
            except Interrupted as e:
                e.add_note("1 row kept")
                print(done, e.exit_code, e.line())
        print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
        """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["['row committed'] 143 terminated (SIGTERM): 1 row kept", "True"]


def test_in_process_screen_too(busy_archive, rel_model, yunet_model, tmp_path):
    """-j 0 (no worker processes): SIGTERM stops the loop between files, the rows so far are kept."""
    db = tmp_path / "s.sqlite"
    r = interrupt_run(["screen", busy_archive, "-m", rel_model, "--db", db, "--frames", 12, "-j", 0, "--no-progress",
                       "--detector-model", yunet_model], signal.SIGTERM, lambda: _count_rows(db) >= 1)
    assert r["signalled"] and r["rc"] == 143 and not r["left"], r
    assert r["stderr"].strip().splitlines() == [r["stderr"].strip()] and "Traceback" not in r["stderr"]
    assert r["stderr"].startswith(f"terminated (SIGTERM): {_count_rows(db)} of 16 files screened this run, saved in")
