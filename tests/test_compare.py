"""The comparator works for any two runners: here two real ONNX Runtime sessions (FP32 vs modelopt INT8)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from _qdq_models import SIZE, fp32_conv_onnx, int8_conv_onnx
from edge.runtime.base import Runner
from edge.runtime.compare import compare_runners
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
    assert same["ok"] and same["agreement"] == 1.0 and same["n"] == 12
    q = _Ort(int8_conv_onnx(), ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    r = compare_runners(a, q, x, atol=0.05)
    assert 0 < r["max_abs_diff"] < 0.05 and r["ok"], r  # INT8 differs, but little
    assert 0.0 <= r["agreement"] <= 1.0 and len(r["disagree_idx"]) == round((1 - r["agreement"]) * 12)
