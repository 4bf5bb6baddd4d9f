"""`ffd check-onnx`: the GPU-free TensorRT-readiness check, on real tiny models (modelopt Q/DQ included)."""
from __future__ import annotations

import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from _qdq_models import bypass_dq, fp32_conv_onnx, int8_conv_onnx
from conftest import make_tiny_onnx
from edge.tools.check_onnx import TRT_10_3_OPS, check_onnx
from edge.errors import ModelError


def _checks(rep, level):
    return [(f.check, f.message) for f in rep.findings if f.level == level]


def test_tiny_fp32_model_is_ready(tiny_onnx):
    rep = check_onnx(tiny_onnx)
    assert rep.ok and not rep.quantized and rep.opset == 17, rep.format()
    assert "OK" in rep.format()


def test_missing_card_and_size_mismatch(tmp_path):
    rep = check_onnx(make_tiny_onnx(tmp_path / "nocard.onnx", card=False))
    assert not rep.ok and any(c == "metadata" for c, _ in _checks(rep, "error"))
    m = onnx.load(str(make_tiny_onnx(tmp_path / "t.onnx", size=32)))
    from edge.spec import ModelCard, PreprocessSpec

    helper.set_model_props(m, {"ffd.card": ModelCard("x", spec=PreprocessSpec(size=64)).to_json()})
    onnx.save(m, str(tmp_path / "mismatch.onnx"))
    rep = check_onnx(tmp_path / "mismatch.onnx")
    assert any("64x64" in msg for _, msg in _checks(rep, "error"))


def test_modelopt_int8_model_is_ready():
    rep = check_onnx(int8_conv_onnx())
    assert rep.quantized and rep.ok, rep.format()
    # the classifier head (Gemm 16->1) stays FP32 at the end of the INT8 region: a warning, not an error
    assert any(c == "qdq" and "Gemm" in m for c, m in _checks(rep, "warning"))


def test_unquantized_conv_between_int8_layers_is_an_island(tmp_path):
    m = bypass_dq(onnx.load(str(int8_conv_onnx())), "/c2/Conv")
    onnx.save(m, str(tmp_path / "island.onnx"))
    rep = check_onnx(tmp_path / "island.onnx")
    errs = _checks(rep, "error")
    assert not rep.ok and any("FP32 island" in msg and "/c2/Conv" in msg for _, msg in errs), rep.format()
    r = subprocess.run([sys.executable, "-m", "ffd", "check-onnx", str(tmp_path / "island.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "FP32 island" in r.stdout and "NOT READY" in r.stdout


def test_half_quantized_conv_is_an_error(tmp_path):
    m = bypass_dq(onnx.load(str(int8_conv_onnx())), "/c3/Conv", which=(1,))
    onnx.save(m, str(tmp_path / "half.onnx"))
    rep = check_onnx(tmp_path / "half.onnx")
    assert any("unquantized weight" in msg for _, msg in _checks(rep, "error")), rep.format()


def test_nonzero_zero_point_is_an_error(tmp_path):
    m = onnx.load(str(int8_conv_onnx()))
    zp = next(i for i in m.graph.initializer if i.name.endswith("zero_point") and i.data_type == TensorProto.INT8)
    arr = onnx.numpy_helper.to_array(zp).copy()
    arr[...] = 3
    zp.CopyFrom(onnx.numpy_helper.from_array(arr, zp.name))
    onnx.save(m, str(tmp_path / "zp.onnx"))
    assert any("zero point" in msg for _, msg in _checks(check_onnx(tmp_path / "zp.onnx"), "error"))


def _graph_with(tmp_path, op, opset=17, in_dims=("batch", 3, 8, 8), name="m.onnx", domain=""):
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(in_dims))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["input"], ["y"], name=f"the_{op}", domain=domain)
    m = helper.make_model(helper.make_graph([node], "g", [inp], [out]), opset_imports=[helper.make_opsetid("", opset)])
    from edge.spec import ModelCard, PreprocessSpec

    helper.set_model_props(m, {"ffd.card": ModelCard("x", spec=PreprocessSpec(size=8)).to_json()})
    onnx.save(m, str(tmp_path / name))
    return check_onnx(tmp_path / name)


def test_ops_outside_trt_10_3(tmp_path):
    assert "Conv" in TRT_10_3_OPS and "QuantizeLinear" in TRT_10_3_OPS and "Unique" not in TRT_10_3_OPS
    rep = _graph_with(tmp_path, "Unique")
    assert any(c == "ops" and "Unique" in m for c, m in _checks(rep, "error"))
    rep = _graph_with(tmp_path, "Gelu", opset=20)
    assert rep.ok and any("Gelu" in m for _, m in _checks(rep, "warning"))


def test_opset_and_axes(tmp_path):
    assert any(c == "opset" for c, _ in _checks(_graph_with(tmp_path, "Relu", opset=21), "error"))
    assert any(c == "axes" for c, _ in _checks(_graph_with(tmp_path, "Relu", in_dims=(None, 3, 8, 8)), "error"))
    assert any(c == "axes" for c, _ in _checks(_graph_with(tmp_path, "Relu", in_dims=("b", 3, "h", 8)), "error"))
    rep = _graph_with(tmp_path, "Relu", in_dims=(1, 3, 8, 8))
    assert rep.ok and any("static batch" in m for _, m in _checks(rep, "warning"))


def test_unreadable_and_missing(tmp_path):
    with pytest.raises(ModelError):
        check_onnx(tmp_path / "nope.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError):
        check_onnx(tmp_path / "bad.onnx")


def test_fp32_conv_model_is_ready():
    rep = check_onnx(fp32_conv_onnx())
    assert rep.ok and not rep.quantized, rep.format()
