"""The comparator works for any two runners: here two real ONNX Runtime sessions (FP32 vs modelopt INT8)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from _qdq_models import SIZE, fp32_conv_onnx, int8_conv_onnx
from edge.runtime.base import Runner
from edge.runtime.compare import compare_runners, compare_scores
from edge.spec import ModelCard


class _Ort(Runner):
    """A minimal real ONNX Runtime runner (CPU) so this test does not depend on edge.runtime.ort."""

    def __init__(self, path, opt_level):
        so = ort.SessionOptions()
        so.graph_optimization_level = opt_level
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        self.card = ModelCard.from_json(props["ffd.card"])
        self.name = f"ort-{opt_level.name}"

    def _infer(self, batch):  # Runner.infer checked the batch already
        return self.sess.run(None, {"input": batch})[0].reshape(-1)


def test_compare_fp32_vs_int8_and_two_optimisation_levels():
    x = np.random.default_rng(1).standard_normal((12, 3, SIZE, SIZE)).astype(np.float32)
    a = _Ort(fp32_conv_onnx(), ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    b = _Ort(fp32_conv_onnx(), ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    same = compare_runners(a, b, x, atol=1e-5)
    assert same["ok"] and same["label_agreement"] == 1.0 and same["n"] == 12
    q = _Ort(int8_conv_onnx(), ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    r = compare_runners(a, q, x, atol=0.05)
    assert 0 < r["max_abs_diff"] < 0.05 and r["ok"], r  # INT8 differs, but little
    assert 0.0 <= r["label_agreement"] <= 1.0 and len(r["disagree_idx"]) == round((1 - r["label_agreement"]) * 12)


def test_one_comparator_for_backend_export_and_int8_reports():
    """compare_scores is what compare_runners, export parity and the INT8 report return: one key set, one label rule."""
    import pytest

    from calib.quantize import compare as int8_compare
    from edge.errors import ConfigError

    card = ModelCard("m", threshold=0.5, uncertain_band=0.1)
    ref, got = np.array([0.1, 0.45, 0.7, 0.9]), np.array([0.1, 0.62, 0.7, 0.3])
    r = compare_scores(ref, got, card, atol=0.5)
    # 0.45 is "uncertain" and 0.62 "fake" under the band; 0.9 vs 0.3 is fake vs real
    assert r["label_agreement"] == 0.5 and r["disagree_idx"] == [1, 3] and r["n"] == 4
    assert r["max_abs_diff"] == pytest.approx(0.6) and r["atol"] == 0.5 and r["ok"] is False
    q = int8_compare(ref, got, card, None)
    assert {k: q[k] for k in r if k in q} == {k: r[k] for k in q} and set(r) - set(q) == {"atol", "ok"}
    assert compare_scores([], [], card)["label_agreement"] == 1.0
    with pytest.raises(ConfigError):
        compare_scores([0.1], [0.1, 0.2], card)
