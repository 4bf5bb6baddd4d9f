"""Class 8 of issue 15: the HTML report. Every field of every row (path, label, counts, score, threshold,
evidence, errors, model id, thumbnail) is escaped or checked as a number, and the page carries a
Content-Security-Policy meta tag that forbids scripts (the page needs none) and anything external."""
from __future__ import annotations

import sqlite3

import pytest

from harness import HOSTILE_FIELD, check_report_html, hostile_report_rows, report_outcomes, run_ffd
from rel_fixtures import rel_corpus, rel_model  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def screened(tmp_path_factory, rel_corpus, rel_model):
    """A real screening database of the corpus' real/ half (made by `ffd screen`)."""
    folder, _ = rel_corpus
    db = tmp_path_factory.mktemp("report") / "s.sqlite"
    run = run_ffd(["screen", folder / "real", "-m", rel_model, "--db", db, "--frames", "2", "--workers", "0",
                   "--no-progress"], timeout=300)
    assert run.rc == 0, run.stderr[-500:]
    return db


def _copy(db, tmp_path):
    out = tmp_path / "h.sqlite"
    src, dst = sqlite3.connect(str(db)), sqlite3.connect(str(out))
    src.backup(dst)
    src.close()
    dst.close()
    return out


def test_every_field_of_a_hostile_row_is_text(screened, tmp_path):
    from edge.screen.report import write_report

    db = _copy(screened, tmp_path)
    hostile_report_rows(db)
    html = write_report(db, tmp_path / "r.html").read_text(encoding="utf-8")
    assert check_report_html(html) == []
    assert "<script>alert(1)</script>" not in html and "<img src=x onerror" not in html
    n_rows = sqlite3.connect(str(db)).execute("SELECT COUNT(*) FROM results").fetchone()[0]
    # path, label, faces_seen, n_frames, error, error_type (and model id, score text) of every row, as text
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6 * n_rows


@pytest.mark.parametrize("field", ["faces_seen", "n_frames", "label", "path", "error", "error_type", "model_id",
                                   "score"])
def test_one_hostile_field(screened, tmp_path, field):
    """Each field on its own (the issue's faces_seen and n_frames were inserted raw)."""
    from edge.screen.report import write_report

    db = _copy(screened, tmp_path)
    con = sqlite3.connect(str(db))
    with con:
        if field == "path":
            con.execute("UPDATE results SET path = path || ?", (HOSTILE_FIELD,))
        else:
            con.execute(f"UPDATE results SET {field} = ?", (HOSTILE_FIELD,))
    con.close()
    html = write_report(db, tmp_path / "r.html").read_text(encoding="utf-8")
    assert check_report_html(html) == [], field
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_page_forbids_scripts_and_external_loads(screened, tmp_path):
    from edge.screen.report import write_report

    html = write_report(screened, tmp_path / "r.html").read_text(encoding="utf-8")
    assert check_report_html(html) == []
    head = html[:html.index("</head>")]
    assert head.index("Content-Security-Policy") < head.index("<title>")  # before any content
    assert "script-src 'none'" in head and "default-src 'none'" in head and "img-src data:" in head
    assert "<img" in html  # the thumbnails (data: URLs) are still there


def test_report_outcomes_of_the_summary(screened, tmp_path):
    from harness import REPORT_FIELDS, table

    db = _copy(screened, tmp_path)
    outcomes = report_outcomes(db, tmp_path / "r.html")
    assert len(outcomes) == len(REPORT_FIELDS) + 1
    assert all(o.ok and o.cls == 8 for o in outcomes), "\n" + table(outcomes)
