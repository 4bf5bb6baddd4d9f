"""Engine cache without a GPU: key, profile parsing, sidecar validation, the version/GPU-mismatch decision,
and the CLI's errors where TensorRT is absent. The "current environment" is passed in as strings."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import time

import pytest

from _threads import run_threads
from edge.errors import ConfigError, EngineMismatchError, MissingDependencyError, ModelError
from edge.runtime.engine_cache import (BatchProfile, BuildOptions, EngineEnv, cache_key, check_engine_bytes,
                                       check_sidecar, describe_onnx, file_lock, is_cache_hit, key_inputs,
                                       make_sidecar, mismatches, read_sidecar, sidecar_path, write_sidecar)
from edge.spec import ModelCard

ORIN = EngineEnv("10.3.0", "Orin", "8.7")
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _inputs(**over):
    base = dict(onnx_sha256="ab" * 32, profile=BatchProfile(1, 8, 32), options=BuildOptions(), env=ORIN,
                input_name="input")
    base.update(over)
    return key_inputs(**base)


def test_profile_parse_and_validation():
    assert BatchProfile.parse("1:8:32") == BatchProfile(1, 8, 32)
    assert BatchProfile.parse("4") == BatchProfile(4, 4, 4)
    assert str(BatchProfile(2, 4, 8)) == "2:4:8"
    for bad in ("8:4:32", "0:1:2", "a:b:c", "1:2"):
        with pytest.raises(ConfigError):
            BatchProfile.parse(bad)
    mn, op, mx = BatchProfile(1, 8, 32).shapes(("batch", 3, 128, 128))
    assert mn == (1, 3, 128, 128) and op == (8, 3, 128, 128) and mx == (32, 3, 128, 128)
    assert BatchProfile(4, 4, 4).shapes((4, 3, 8, 8))[2] == (4, 3, 8, 8)
    with pytest.raises(ConfigError, match="static batch"):
        BatchProfile(1, 8, 32).shapes((1, 3, 8, 8))
    with pytest.raises(ConfigError, match="only the batch axis"):
        BatchProfile().shapes(("batch", 3, "h", 8))


def test_build_options_validation():
    with pytest.raises(ConfigError, match="fp16"):
        BuildOptions(precision="int8-qdq", fp16=True)
    BuildOptions(precision="fp32", fp16=True)
    for bad in (dict(opt_level=6), dict(workspace_mb=1), dict(precision="int4")):
        with pytest.raises(ConfigError):
            BuildOptions(**bad)


def test_key_covers_every_build_input():
    k = cache_key(_inputs())
    assert k == cache_key(json.loads(json.dumps(_inputs()))) and len(k) == 64
    variants = [
        _inputs(onnx_sha256="cd" * 32),
        _inputs(profile=BatchProfile(1, 8, 16)),
        _inputs(options=BuildOptions(workspace_mb=512)),
        _inputs(options=BuildOptions(opt_level=5)),
        _inputs(options=BuildOptions(precision="fp32", fp16=True)),
        _inputs(env=dataclasses.replace(ORIN, trt_version="10.3.1")),
        _inputs(env=dataclasses.replace(ORIN, gpu_name="Orin Nano")),
        _inputs(env=dataclasses.replace(ORIN, compute_capability="8.6")),
        _inputs(input_name="x"),
    ]
    keys = {cache_key(v) for v in variants}
    assert len(keys) == len(variants) and k not in keys


def test_describe_onnx(tiny_onnx):
    info = describe_onnx(tiny_onnx)
    assert info.input_name == "input" and info.input_shape == ("batch", 3, 32, 32)
    assert info.precision == "fp32" and info.card.name == "tiny_mean" and len(info.sha256) == 64
    from _qdq_models import int8_conv_onnx

    assert describe_onnx(int8_conv_onnx()).precision == "int8-qdq"


def _engine(tmp_path, env=ORIN, data=b"engine-bytes", onnx_path=None):
    import hashlib

    eng = tmp_path / "m.engine"
    eng.write_bytes(data)
    sc = make_sidecar(_inputs(env=env), ModelCard("m", threshold=0.3), hashlib.sha256(data).hexdigest(), onnx_path)
    write_sidecar(eng, sc)
    return eng


def test_sidecar_round_trip_and_cache_hit(tmp_path):
    eng = _engine(tmp_path)
    sc = read_sidecar(eng)
    assert sidecar_path(eng).name == "m.engine.json"
    assert ModelCard.from_dict(sc["card"]).threshold == 0.3 and sc["inputs"]["profile"]["max"] == 32
    assert sc["created"].endswith("Z") and sc["key"] == cache_key(_inputs())
    assert is_cache_hit(eng, cache_key(_inputs()))
    assert not is_cache_hit(eng, cache_key(_inputs(profile=BatchProfile(1, 4, 8))))
    eng.write_bytes(b"other bytes")  # engine replaced behind the sidecar's back
    assert not is_cache_hit(eng, cache_key(_inputs()))
    with pytest.raises(EngineMismatchError, match="does not match its sidecar"):
        check_engine_bytes(eng, sc, eng.read_bytes())


def test_mismatch_is_detected_before_deserialisation(tmp_path, tiny_onnx):
    eng = _engine(tmp_path, onnx_path=tiny_onnx)
    sc = read_sidecar(eng)
    check_sidecar(eng, sc, ORIN)  # same TensorRT and GPU: loadable
    assert mismatches(sc, ORIN) == []
    desktop = EngineEnv("11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0")
    probs = mismatches(sc, desktop)
    assert len(probs) == 3 and "TensorRT 10.3.0" in probs[0]
    with pytest.raises(EngineMismatchError) as e:
        check_sidecar(eng, sc, desktop)
    msg = str(e.value)
    assert "rebuild" in msg and str(tiny_onnx.resolve()) in msg and "--rebuild" in msg
    with pytest.raises(EngineMismatchError, match="TensorRT 10.3.0, this is TensorRT 10.4.0"):
        check_sidecar(eng, sc, dataclasses.replace(ORIN, trt_version="10.4.0"))
    with pytest.raises(EngineMismatchError, match="compute capability"):
        check_sidecar(eng, sc, dataclasses.replace(ORIN, compute_capability="8.9"))


def test_bad_sidecars(tmp_path):
    eng = tmp_path / "x.engine"
    eng.write_bytes(b"x")
    with pytest.raises(ModelError, match="no sidecar"):
        read_sidecar(eng)
    sidecar_path(eng).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_sidecar(eng)
    eng = _engine(tmp_path)
    d = json.loads(sidecar_path(eng).read_text())
    d["inputs"]["env"]["trt_version"] = "10.3.1"  # hand-edited to silence the check
    sidecar_path(eng).write_text(json.dumps(d))
    with pytest.raises(ModelError, match="edited"):
        read_sidecar(eng)


def test_file_lock_excludes_other_writers(tmp_path):
    target = tmp_path / "timing.cache"
    inside, overlaps = [0], [0]

    def work(_):
        for _ in range(5):
            with file_lock(target):
                inside[0] += 1
                if inside[0] > 1:
                    overlaps[0] += 1
                time.sleep(0.002)
                inside[0] -= 1

    assert not run_threads(work, 4)
    assert overlaps[0] == 0 and (tmp_path / "timing.cache.lock").exists()


def test_engine_module_imports_without_tensorrt():
    r = subprocess.run([sys.executable, "-c", "import sys, edge.runtime.trt, edge.runtime.cuda, edge.tools.check_onnx; "
                        "print('tensorrt' in sys.modules, 'pycuda' in sys.modules, 'torch' in sys.modules)"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["False", "False", "False"], r.stderr


def test_cli_help_and_no_tensorrt_error(tiny_onnx, tmp_path):
    for cmd in ("build-engine", "check-onnx"):
        r = subprocess.run([sys.executable, "-m", "ffd", cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "Usage" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ffd", "build-engine", str(tiny_onnx), "--min-batch", "8",
                        "--opt-batch", "4"], capture_output=True, text=True)
    assert r.returncode != 0 and "--min-batch" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ffd", "build-engine", str(tmp_path / "missing.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 3 and "not found" in r.stderr
    if HAS_TRT:
        pytest.skip("TensorRT is installed here; the no-TensorRT error path cannot be shown")
    r = subprocess.run([sys.executable, "-m", "ffd", "build-engine", str(tiny_onnx)], capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 3 and len(lines) == 1, r.stderr
    assert "tensorrt" in lines[0] and "ffd-edge[gpu]" in lines[0] and "JetPack" in lines[0]


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_open_engine_without_tensorrt_is_clear(tmp_path):
    from edge.runtime import open_runner

    eng = _engine(tmp_path)
    with pytest.raises(MissingDependencyError, match="ffd-edge\\[gpu\\]"):
        open_runner(eng)
    with pytest.raises(ModelError, match="no sidecar"):
        (tmp_path / "bare.engine").write_bytes(b"x")
        open_runner(tmp_path / "bare.engine")


def test_an_engine_built_from_the_same_onnx_here_is_reused_whatever_its_profile(tmp_path):
    """What `open_runner(model.onnx)` decides before building: keep a hand-built engine (any profile) when it
    was built from these ONNX bytes on this TensorRT and GPU; rebuild when the ONNX, TensorRT or GPU changed."""
    import hashlib

    from edge.runtime.engine_cache import serves_onnx

    eng = tmp_path / "m.engine"
    eng.write_bytes(b"engine-bytes")
    inputs = _inputs(profile=BatchProfile(1, 4, 16), options=BuildOptions(workspace_mb=64, opt_level=5))
    write_sidecar(eng, make_sidecar(inputs, ModelCard("m"), hashlib.sha256(b"engine-bytes").hexdigest(), None))
    assert serves_onnx(eng, "ab" * 32, ORIN)
    assert not serves_onnx(eng, "cd" * 32, ORIN)  # the ONNX was re-exported
    assert not serves_onnx(eng, "ab" * 32, dataclasses.replace(ORIN, trt_version="10.4.0"))
    assert not serves_onnx(eng, "ab" * 32, dataclasses.replace(ORIN, gpu_name="RTX 4090", compute_capability="8.9"))
    eng.write_bytes(b"other-bytes")  # replaced behind the sidecar's back
    assert not serves_onnx(eng, "ab" * 32, ORIN)
    assert not serves_onnx(tmp_path / "none.engine", "ab" * 32, ORIN)
