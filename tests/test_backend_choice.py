"""``backend="auto"``: which runner runs a model, without a GPU.

The decision (:func:`edge.runtime.select.auto_backend`) is a pure function of the file, whether
TensorRT + pycuda + a GPU are usable, and the model card, so every branch is shown here; the
probe itself (:func:`trt_unusable_reason`) runs for real and, on this machine, says why not.
The TensorRT side of the chosen path runs in tests/test_trt_gpu.py where a GPU exists.
"""
from __future__ import annotations

import importlib.util

import numpy as np

import pytest

from conftest import make_tiny_onnx
from edge.errors import ConfigError, MissingDependencyError
from edge.runtime import auto_backend, open_runner, trt_unusable_reason
from edge.runtime.base import CPU_ONLY_TARGET
from edge.spec import ModelCard, PreprocessSpec

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None


def _card(**extra) -> ModelCard:
    return ModelCard("tiny_mean", spec=PreprocessSpec(size=32), extra=extra)


def test_auto_backend_decisions(tmp_path):
    onnx, engine = tmp_path / "m.onnx", tmp_path / "m.engine"
    assert auto_backend(engine, "tensorrt is not installed")[0] == "trt"  # an engine only runs on TensorRT
    backend, why = auto_backend(onnx, "no CUDA device is visible", _card())
    assert backend == "ort" and "no CUDA device" in why
    assert auto_backend(onnx, None, _card())[0] == "trt"
    assert auto_backend(onnx, None, _card(int8_target="tensorrt"))[0] == "trt"
    backend, why = auto_backend(onnx, None, _card(int8_target=CPU_ONLY_TARGET))
    assert backend == "ort" and "int8-trt" in why


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and pycuda are installed here")
def test_probe_says_why_trt_is_unusable_here():
    reason = trt_unusable_reason()
    assert reason is not None and ("tensorrt" in reason or "pycuda" in reason) and "ffd-edge[gpu]" in reason


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and pycuda are installed here")
def test_auto_falls_back_to_ort_and_drops_trt_options(tiny_onnx, caplog):
    caplog.set_level("INFO", logger="edge.runtime.select")
    with open_runner(tiny_onnx, "auto", device=0, cuda_graph=True) as r:  # TensorRT options: ignored by ORT
        assert r.name == "ort" and r.infer(np.zeros((2, 3, 32, 32), np.float32)).shape == (2,)
    assert any("backend for tiny.onnx: ort" in m for m in caplog.messages)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and pycuda are installed here")
def test_explicit_trt_on_onnx_builds_through_the_cache_and_says_what_is_missing(tiny_onnx):
    with pytest.raises(MissingDependencyError, match=r"ffd-edge\[gpu\]"):
        open_runner(tiny_onnx, "trt")
    assert not tiny_onnx.with_suffix(".engine").exists()  # nothing half-written


def test_cpu_int8_flavour_is_refused_by_the_builder_before_tensorrt(tmp_path):
    """ORT's U8S8 INT8 cannot build (TensorRT takes symmetric INT8): said before TensorRT is touched."""
    from edge.runtime.trt import build_engine

    m = make_tiny_onnx(tmp_path / "s.int8-cpu.onnx", card=_card(int8_target=CPU_ONLY_TARGET,
                                                                int8_flavour="ort-static-qdq-u8s8"))
    with pytest.raises(ConfigError, match="int8-trt") as e:
        build_engine(m)
    assert "u8s8" in str(e.value)


def test_bench_trt_skips_the_cpu_flavour_with_a_note(tmp_path):
    from edge.tools.bench_pipeline import run_bench

    m = make_tiny_onnx(tmp_path / "s.int8-cpu.onnx", card=_card(int8_target=CPU_ONLY_TARGET))
    res = run_bench([m], ["ort", "trt"], batch_sizes=(1,), out_dir=tmp_path / "b", iters=3)
    assert [r["backend"] for r in res["classifier"]] == ["ort"]
    assert any("does not build for TensorRT" in n for n in res["notes"])


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and pycuda are installed here")
def test_bench_keeps_ort_figures_when_trt_is_unavailable_and_errors_when_nothing_ran(tiny_onnx, tmp_path):
    from edge.tools.bench_pipeline import run_bench

    res = run_bench([tiny_onnx], ["ort", "trt"], batch_sizes=(1, 4), out_dir=tmp_path / "b", iters=3)
    assert [r["batch"] for r in res["classifier"]] == [1, 4] and {r["backend"] for r in res["classifier"]} == {"ort"}
    assert any(n.startswith("tiny.onnx/trt: skipped") and "ffd-edge[gpu]" in n for n in res["notes"])
    assert "tiny.onnx/trt: skipped" in (tmp_path / "b" / "bench.md").read_text()
    with pytest.raises(MissingDependencyError):
        run_bench([tiny_onnx], ["trt"], batch_sizes=(1,), out_dir=tmp_path / "c", iters=3)
