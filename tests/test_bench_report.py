"""``ffd bench`` report rendering: the trtexec-style TensorRT table (stage split per batch size).

The rows are given in the shape :func:`edge.tools.bench_pipeline.bench_classifier` writes for the
``trt`` backend (measured ones come from tests/test_trt_gpu.py on a GPU); here only the
rendering is checked, so the figures are made up and say so.
"""
from __future__ import annotations

from edge.tools.bench import percentiles
from edge.tools.bench_pipeline import TRT_STAGES, to_markdown


def _row(batch: int, base_ms: float) -> dict:
    samples = {k: [base_ms * (i + 1) / 10 for i in range(1, 21)] for k in TRT_STAGES}
    return {"config": "student.int8-trt/trt", "precision": "int8", "batch": batch, "backend": "trt",
            "latency_ms": percentiles([base_ms * 3] * 20), "stages_ms": {k: percentiles(v) for k, v in samples.items()},
            "throughput_per_s": batch / (base_ms * 3e-3), "rss_mb": 100.0,
            "engine": {"tensorrt_version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}}


def test_trt_rows_get_a_stage_table_and_ort_rows_do_not():
    ort = {**_row(8, 1.0), "config": "student/ort", "backend": "ort"}
    del ort["stages_ms"], ort["engine"]
    md = to_markdown({"classifier": [_row(1, 0.5), _row(8, 1.0), ort], "notes": []})
    table = md[md.index("TensorRT, ms"):].splitlines()
    rows = [line for line in table if line.startswith("| student")]
    assert len(rows) == 2 and all("TensorRT 10.3.0, Orin (sm 8.7)" in r for r in rows)
    cells = rows[1].split(" | ")
    assert cells[1] == "8" and len(cells[3].split(" / ")) == 5  # H2D: min / median / p90 / p95 / p99
    assert "student/ort" in md and "student/ort" not in "\n".join(table)
