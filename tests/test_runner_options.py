"""Backend options: ``open_runner`` is the one place that routes them (issue 14's bug).

``ForgeryDetector`` used to set ``providers`` for any ``.onnx`` and ``open_runner`` passed every
option to the chosen backend, so ``--backend trt`` (``ffd detect``, ``ffd screen -j N``) raised
``TypeError: unexpected keyword argument 'providers'`` once the engine was built. The rule
(:func:`edge.runtime.route_options`): an option the running backend takes is passed; an option a
caller layer set on the user's behalf (:class:`edge.runtime.Default`) is dropped where it does
not apply; one the user asked for is dropped under ``backend="auto"`` (it was meant for the
backend that would run) and refused with a :class:`ConfigError` when the user chose the backend
that cannot take it; a name no backend takes is refused. The decision is a pure function, shown
for every backend without TensorRT or CUDA; the ONNX Runtime side runs for real, and the CLI
shows what a user without TensorRT sees.
"""
from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from edge.errors import ConfigError, MissingDependencyError
from edge.runtime import BACKEND_OPTIONS, Default, open_runner, route_options

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None
no_trt = pytest.mark.skipif(HAS_TRT, reason="TensorRT and pycuda are installed here")


def _engine(tmp_path):
    """An engine file with a valid sidecar (the bytes are no engine: TrtRunner needs TensorRT to get further)."""
    from edge.runtime.engine_cache import BatchProfile, BuildOptions, EngineEnv, key_inputs, make_sidecar, write_sidecar
    from edge.spec import ModelCard, PreprocessSpec

    eng, data = tmp_path / "m.engine", b"engine-bytes"
    eng.write_bytes(data)
    inputs = key_inputs("ab" * 32, BatchProfile(1, 8, 32), BuildOptions(), EngineEnv("10.3.0", "Orin", "8.7"), "input")
    write_sidecar(eng, make_sidecar(inputs, ModelCard("m", spec=PreprocessSpec(size=32)),
                                    hashlib.sha256(data).hexdigest(), None))
    return eng


def _ffd_detect(tmp_path, model, *args):
    import cv2

    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 127, np.uint8))
    return subprocess.run([sys.executable, "-m", "ffd", "detect", str(img), "--model", str(model), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


# --- the rule, as a pure function, for every backend ------------------------------------------------
ORT_SIDE = {"providers": Default("auto"), "intra_op_threads": 2}  # a caller's default and the user's --threads
TRT_SIDE = {"device": Default(0), "cuda_graph": True}


def test_route_options_ort():
    assert route_options("ort", {**ORT_SIDE, "max_batch": Default(8)}) == {"providers": "auto", "intra_op_threads": 2,
                                                                           "max_batch": 8}
    assert route_options("ort", {"device": Default(0)}) == {}  # a caller layer's TensorRT default: dropped
    with pytest.raises(ConfigError, match="cuda_graph=True sets TensorRT's CUDA graphs.*ort backend") as e:
        route_options("ort", TRT_SIDE)  # the user asked for a TensorRT option and for ONNX Runtime
    assert "--backend trt" in e.value.fix


def test_route_options_trt():
    assert route_options("trt", {**TRT_SIDE, "providers": Default("auto")}) == {"device": 0, "cuda_graph": True}
    assert route_options("trt", {"card": Default(None), "intra_op_threads": Default(1)}) == {}  # screen's -j default
    for name, value in (("providers", None), ("intra_op_threads", 2), ("card", object())):
        with pytest.raises(ConfigError, match=f"{name}=.*trt backend \\(TensorRT\\)") as e:
            route_options("trt", {name: value})
        assert "--backend ort" in e.value.fix


def test_route_options_auto():
    both = {**ORT_SIDE, **TRT_SIDE}
    assert route_options("auto", both, runs="ort") == {"providers": "auto", "intra_op_threads": 2}
    assert route_options("auto", both, runs="trt") == {"device": 0, "cuda_graph": True}  # the user's --threads too
    with pytest.raises(ValueError, match="runs="):
        route_options("auto", both)


@pytest.mark.parametrize("backend,runs", [("ort", None), ("trt", None), ("auto", "ort"), ("auto", "trt")])
def test_route_options_refuses_what_no_backend_takes(backend, runs):
    for value in (2, Default(2)):  # a typo in a caller layer's default is refused too
        with pytest.raises(ConfigError, match="no backend takes the option 'threads'") as e:
            route_options(backend, {"threads": value}, runs=runs)
        assert "intra_op_threads" in e.value.fix
    with pytest.raises(ValueError):
        route_options("ort", {}, runs="trt")  # asked for one backend, routed to the other: a caller bug


def test_option_tables_are_the_runner_constructors_keywords():
    import inspect

    from edge.runtime.ort import OrtRunner
    from edge.runtime.trt import TrtRunner  # importable without TensorRT

    for backend, cls in (("ort", OrtRunner), ("trt", TrtRunner)):
        params = list(inspect.signature(cls.__init__).parameters)[2:]  # self, path
        assert sorted(params) == sorted(BACKEND_OPTIONS[backend]), backend
    assert not set(BACKEND_OPTIONS["ort"]) & set(BACKEND_OPTIONS["trt"])  # each name has one owner


def test_default_survives_pickling():
    """Screen workers and Ray actors receive runner options pickled."""
    import pickle

    assert pickle.loads(pickle.dumps({"intra_op_threads": Default(1)})) == {"intra_op_threads": Default(1)}


# --- what open_runner does with each kind of option (real files, real ONNX Runtime) -------------------
@pytest.mark.parametrize("option", [{"providers": None}, {"providers": "auto"}, {"intra_op_threads": 1}])
def test_trt_refuses_an_explicit_onnx_runtime_option_before_tensorrt_is_touched(tmp_path, option):
    """The TypeError of the issue, reproduced without TensorRT: ``TrtRunner(path, providers=...)``."""
    eng = _engine(tmp_path)
    with pytest.raises(ConfigError, match=f"{next(iter(option))}.*ONNX Runtime") as e:
        open_runner(eng, "trt", **option)
    assert "--backend ort" in e.value.fix or "auto" in e.value.fix


def test_trt_on_onnx_refuses_before_building(tiny_onnx):
    with pytest.raises(ConfigError, match="providers"):
        open_runner(tiny_onnx, "trt", providers="auto")
    assert not tiny_onnx.with_suffix(".engine").exists()  # refused up front, not after minutes of building


def test_ort_runs_with_its_options_and_drops_tensorrt_defaults(tiny_onnx):
    with open_runner(tiny_onnx, "ort", providers=Default("auto"), intra_op_threads=1, max_batch=Default(2),
                     device=Default(0), cuda_graph=Default(True)) as r:
        assert r.name == "ort" and r.max_batch == 2 and r.infer(np.zeros((3, 3, 32, 32), np.float32)).shape == (3,)


@no_trt
def test_auto_runs_ort_here_with_its_options_and_drops_the_others(tiny_onnx, caplog):
    caplog.set_level("INFO", logger="edge.runtime")
    with open_runner(tiny_onnx, "auto", providers=Default("auto"), max_batch=2, cuda_graph=True) as r:
        assert r.name == "ort" and r.max_batch == 2
    assert any("['cuda_graph']" in m and "dropped" in m for m in caplog.messages)
    with pytest.raises(ConfigError, match="no backend takes"):
        open_runner(tiny_onnx, "auto", intra_op_thread=2)


def test_ort_refuses_an_explicit_tensorrt_option(tiny_onnx):
    with pytest.raises(ConfigError, match="cuda_graph.*TensorRT"):
        open_runner(tiny_onnx, "ort", cuda_graph=True)
    with pytest.raises(ConfigError, match="no backend takes"):
        open_runner(tiny_onnx, "ort", intra_op_thread=2)  # a typo is an error, never silently dropped


@no_trt
def test_forgery_detector_with_trt_gets_the_tensorrt_error_not_a_type_error(tiny_onnx, tmp_path):
    from edge.forgery import ForgeryDetector

    for model in (tiny_onnx, _engine(tmp_path)):  # its providers default is dropped for TensorRT
        with pytest.raises(MissingDependencyError, match=r"ffd-edge\[gpu\]"):
            ForgeryDetector(model, "trt")


# --- the CLI on a machine without TensorRT ------------------------------------------------------------
@no_trt
def test_cli_detect_backend_trt_on_onnx_is_the_one_line_tensorrt_error(tiny_onnx, tmp_path):
    p = _ffd_detect(tmp_path, tiny_onnx, "--backend", "trt")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 3 and len(lines) == 1, p.stderr
    assert lines[0].startswith("error: ") and "tensorrt" in lines[0] and "ffd-edge[gpu]" in lines[0], p.stderr
    assert "TypeError" not in p.stderr and "internal error" not in p.stderr


def test_cli_detect_threads_with_backend_trt_is_refused_in_one_line(tiny_onnx, tmp_path):
    """--threads is ONNX Runtime's: with --backend trt the user asked for both, so say so (before any build)."""
    p = _ffd_detect(tmp_path, tiny_onnx, "--backend", "trt", "--threads", "2")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 3 and len(lines) == 1, p.stderr
    assert lines[0].startswith("error: ") and "intra_op_threads" in lines[0] and "--threads" in lines[0], p.stderr
    assert "TypeError" not in p.stderr and not tiny_onnx.with_suffix(".engine").exists()
