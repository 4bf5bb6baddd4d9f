"""TensorRT on a GPU: build a modelopt Q/DQ tiny model, compare with ONNX Runtime, cache, graphs, threads, bench."""
from __future__ import annotations

import numpy as np
import pytest

from _qdq_models import SIZE, int8_conv_onnx
from _threads import run_threads

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    pytest.importorskip("tensorrt", reason="TensorRT not installed (pip install 'ffd-edge[gpu]' / JetPack)")
    pytest.importorskip("pycuda.driver", reason="pycuda not installed")
    from edge.runtime.trt import build_engine

    out = tmp_path_factory.mktemp("trt") / "conv16.int8.engine"
    r = build_engine(int8_conv_onnx(), out, min_batch=1, opt_batch=4, max_batch=8, workspace_mb=64,
                     timing_cache=out.with_suffix(".timing"))
    assert not r.cache_hit and r.engine_path.is_file() and r.sidecar_path.is_file()
    return r


def _batch(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def test_cache_hit_and_rebuild(engine):
    from edge.runtime.trt import build_engine

    again = build_engine(int8_conv_onnx(), engine.engine_path, min_batch=1, opt_batch=4, max_batch=8, workspace_mb=64)
    assert again.cache_hit and again.key == engine.key
    other = build_engine(int8_conv_onnx(), engine.engine_path.with_name("b.engine"), min_batch=1, opt_batch=4,
                         max_batch=16, workspace_mb=64)
    assert not other.cache_hit and other.key != engine.key
    assert engine.engine_path.with_suffix(".timing").stat().st_size > 0  # timing cache persisted


def test_trt_matches_onnx_runtime_and_splits_big_batches(engine):
    from edge.runtime import open_runner
    from edge.runtime.compare import compare_runners

    with open_runner(engine.engine_path, "trt") as trt_r, open_runner(int8_conv_onnx(), "ort") as ort_r:
        assert trt_r.max_batch == 8 and trt_r.card.spec.size == SIZE
        r = compare_runners(trt_r, ort_r, _batch(20), atol=0.05)  # 20 > max batch 8: split into 8+8+4
        assert r["ok"] and r["label_agreement"] >= 0.9, r
        one = trt_r.infer(_batch(1))
        assert one.shape == (1,) and one.dtype == np.float32


def test_cuda_graph_path_matches_plain(engine):
    from edge.runtime.trt import TrtRunner

    x = _batch(10, seed=3)
    with TrtRunner(engine.engine_path) as plain, TrtRunner(engine.engine_path, cuda_graph=True, graph_batch=4) as g:
        a, b = plain.infer(x), g.infer(x)
        b2 = g.infer(x)  # replay
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(b, b2, atol=0)


def test_double_buffering_and_worker_threads(engine):
    from edge.runtime.trt import TrtRunner

    with TrtRunner(engine.engine_path) as r:
        ref = {i: r.infer(_batch(3, seed=i)) for i in range(6)}
        p1 = r.infer_async(_batch(3, seed=0))
        p2 = r.infer_async(_batch(3, seed=1))  # enqueued while p1 runs
        np.testing.assert_allclose(p1.result(), ref[0], atol=1e-6)
        np.testing.assert_allclose(p2.result(), ref[1], atol=1e-6)
        out = {}

        def worker(i):
            for _ in range(5):
                out[i] = r.infer(_batch(3, seed=i))

        held = r.infer_async(_batch(3, seed=0))  # a caller's pending batch holds one buffer set ...
        big = r.infer_async(_batch(20, seed=5)).result()  # ... while a batch over max (8) is split on the other
        np.testing.assert_allclose(held.result(), ref[0], atol=1e-6)
        np.testing.assert_allclose(big, r.infer(_batch(20, seed=5)), atol=1e-6)
        errors = run_threads(worker, 6)
        assert not errors
        for i in range(6):
            np.testing.assert_allclose(out[i], ref[i], atol=1e-6)


def test_mismatching_sidecar_is_refused_before_deserialisation(engine, tmp_path):
    import json
    import shutil

    from edge.errors import EngineMismatchError
    from edge.runtime.engine_cache import cache_key, sidecar_path
    from edge.runtime.trt import TrtRunner

    eng = tmp_path / "old.engine"
    shutil.copy(engine.engine_path, eng)
    d = json.loads(sidecar_path(engine.engine_path).read_text())
    d["inputs"]["env"]["trt_version"] = "9.9.9"
    d["key"] = cache_key(d["inputs"])
    sidecar_path(eng).write_text(json.dumps(d))
    with pytest.raises(EngineMismatchError, match="rebuild"):
        TrtRunner(eng)
    with TrtRunner(eng, rebuild=True) as r:  # the ONNX is known: rebuilt here
        assert r.infer(_batch(2)).shape == (2,)


def test_bench_engine_output(engine):
    from edge.runtime.trt import bench_engine

    b = bench_engine(engine.engine_path, batch_sizes=(1, 8, 64), iters=20, warmup=3)
    assert [r["batch"] for r in b["results"]] == [1, 8] and b["skipped"][0]["batch"] == 64
    lat = b["results"][1]["latency_ms"]
    for k in ("host_wall", "h2d", "gpu_compute", "d2h", "gpu_total"):
        assert {"min", "median", "p90", "p95", "p99"} <= set(lat[k])
    assert b["results"][1]["throughput_per_s"] > 0 and b["tensorrt_version"] and b["gpu"]
    g = bench_engine(engine.engine_path, batch_sizes=(4,), iters=10, warmup=2, cuda_graph=True)
    assert g["cuda_graph"] and "host_wall" in g["results"][0]["latency_ms"]


def test_parser_errors_name_the_node(tmp_path):
    pytest.importorskip("tensorrt")
    pytest.importorskip("pycuda.driver")
    import onnx
    from onnx import TensorProto, helper

    from edge.errors import ModelError
    from edge.runtime.trt import build_engine
    from edge.spec import ModelCard, PreprocessSpec

    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = helper.make_model(helper.make_graph([helper.make_node("Unique", ["input"], ["y"], name="the_unique")], "g",
                                           [inp], [out]), opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(m, {"ffd.card": ModelCard("x", spec=PreprocessSpec(size=8)).to_json()})
    onnx.save(m, str(tmp_path / "u.onnx"))
    with pytest.raises(ModelError, match="the_unique"):
        build_engine(tmp_path / "u.onnx", tmp_path / "u.engine")


def test_auto_backend_builds_once_and_runs_tensorrt(engine, tmp_path):
    """``open_runner(model.onnx)`` on a GPU machine: TensorRT, built into the cache beside the ONNX once."""
    import shutil

    from edge.runtime import open_runner, trt_unusable_reason

    assert trt_unusable_reason() is None
    onnx = tmp_path / "m.int8.onnx"
    shutil.copy(int8_conv_onnx(), onnx)
    with open_runner(onnx) as r, open_runner(onnx, "ort") as ref:
        assert r.name == "trt" and onnx.with_suffix(".engine").is_file()
        np.testing.assert_allclose(r.infer(_batch(5)), ref.infer(_batch(5)), atol=0.05)
    stamp = onnx.with_suffix(".engine").stat().st_mtime_ns
    with open_runner(onnx) as r:  # second open: a cache hit, not a rebuild
        assert r.name == "trt"
    assert onnx.with_suffix(".engine").stat().st_mtime_ns == stamp
    from edge.runtime.trt import build_engine

    build_engine(onnx, min_batch=1, opt_batch=2, max_batch=16, workspace_mb=64)  # built by hand, other profile
    with open_runner(onnx) as r:  # kept, not rebuilt with the defaults
        assert r.name == "trt" and r.max_batch == 16
