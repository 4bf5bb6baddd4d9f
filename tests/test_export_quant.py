"""Export -> calibration set -> INT8 (both flavours) on a tiny student and real faces from ../shared."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge.errors import CalibrationError, ConfigError, ModelError
from edge.runtime import open_runner
from edge.spec import META_KEY, ModelCard, PreprocessSpec
from tests.conftest import ROOT, make_tiny_onnx

SIZE = 64
pytestmark = pytest.mark.filterwarnings("ignore::calib.calibset.SmallCalibrationSetWarning")


def _faces(shared):
    return [shared / "data" / "london_faces" / "neutral"]


def _crops(shared):
    return [shared / "data" / "ciplab_real_fake_160" / "face_crops" / "real"]


def _eval(shared):
    return [shared / "data" / "ciplab_real_fake_160" / "full_160"]


_CENTRE = {}


def make_ckpt(path, seed: int = 0):
    """A student_tiny checkpoint whose scores spread around 0.5 on real faces (wide random head, centred bias)."""
    import torch

    from calib.calibset import collect_faces
    from edge.spec import preprocess
    from tests.conftest import SHARED
    from train.checkpoint import save_checkpoint
    from train.registry import create_model

    spec = PreprocessSpec(size=SIZE)
    if "x" not in _CENTRE:
        _CENTRE["x"] = torch.from_numpy(preprocess(collect_faces(_faces(SHARED), spec, 16, seed=5)[0], spec))
    torch.manual_seed(seed)
    m = create_model("student_tiny").eval()
    with torch.no_grad():
        m.head.fc.weight.mul_(300.0)
        d = m(_CENTRE["x"])
        m.head.fc.bias[1] -= float((d[:, 1] - d[:, 0]).median())
    card = ModelCard("student_tiny", spec, threshold=0.5, version="test")
    return save_checkpoint(path, m, card)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, shared, yunet_model):
    """One export, one calibration set, one quantization to both flavours, shared by the tests below."""
    from calib.calibset import build_calibset
    from calib.export import export_onnx
    from calib.quantize import quantize_onnx

    d = tmp_path_factory.mktemp("pipe")
    ckpt = make_ckpt(d / "tiny.pt")
    exp = export_onnx(ckpt, d / "tiny.onnx", parity_data=_faces(shared), parity_n=16, verbose=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        manifest = build_calibset(d / "tiny.onnx", _faces(shared), d / "calib", n=32, crops=_crops(shared))
        report = quantize_onnx(d / "tiny.onnx", d / "calib", d / "q", target="both", eval_data=_eval(shared),
                               eval_n=48, verbose=False)
    return {"dir": d, "ckpt": ckpt, "export": exp, "manifest": manifest, "report": report, "warnings": w}


def test_export_graph_names_metadata_and_parity(pipeline):
    m = onnx.load(str(pipeline["dir"] / "tiny.onnx"))
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["score", "features"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, SIZE, SIZE]  # dynamic batch
    assert len(m.graph.output[0].type.tensor_type.shape.dim) == 1  # (N,)
    assert not any(n.op_type in ("BatchNormalization", "Constant") for n in m.graph.node)  # folded before Q/DQ
    props = {p.key: p.value for p in m.metadata_props}
    card = ModelCard.from_json(props[META_KEY])
    assert card.name == "student_tiny" and card.spec.size == SIZE and card.version == "test"
    assert json.loads(props["ffd.producer"])["model_name"] == "student_tiny"
    p = pipeline["export"]["parity"]
    assert p["ok"] and p["n"] == 16 and p["max_abs_diff"] <= 1e-4 and p["label_agreement"] == 1.0
    # the ONNX runs through the runner at any batch size
    with open_runner(pipeline["dir"] / "tiny.onnx") as r:
        assert r.infer(np.zeros((3, 3, SIZE, SIZE), np.float32)).shape == (3,)


def test_export_parity_is_enforced_and_needs_real_faces(pipeline, tmp_path, shared):
    from calib.export import check_parity, export_onnx, prob_fake_module
    from train.checkpoint import load_checkpoint

    with pytest.raises(ConfigError, match="parity"):
        export_onnx(pipeline["ckpt"], tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    # another model's PyTorch scores must not pass as parity with this ONNX
    other, card, _ = load_checkpoint(make_ckpt(tmp_path / "other.pt", seed=1))
    x = np.load(pipeline["dir"] / "calib" / "calib.npy")[:8]
    p = check_parity(prob_fake_module(other), pipeline["dir"] / "tiny.onnx", card, x)
    assert not p["ok"] and p["max_abs_diff"] > 1e-3
    with pytest.raises(ModelError, match="disagree"):  # a negative tolerance can never be met
        export_onnx(pipeline["ckpt"], tmp_path / "y.onnx", parity_data=_faces(shared), parity_n=4, atol=-1.0,
                    verbose=False)


def test_calibset_manifest_and_refusals(pipeline, tmp_path):
    from calib.calibset import SmallCalibrationSetWarning, build_calibset, load_calibset

    m = pipeline["manifest"]
    spec = PreprocessSpec(size=SIZE)
    assert m["count"] == 32 and m["fingerprint"] == spec.fingerprint() and len(m["sha256"]) == 64
    assert len(m["per_source"]) == 2 and min(m["per_source"].values()) >= 10  # round-robin over both sources
    assert m["pseudo_fake"] == 8 and m["real"] == 24  # train.sbi present: 25 % self-blended
    assert any(issubclass(w.category, SmallCalibrationSetWarning) for w in pipeline["warnings"])
    x, _ = load_calibset(pipeline["dir"] / "calib", spec)
    assert x.shape == (32, 3, SIZE, SIZE) and x.dtype == np.float32 and x.std() > 0.1
    with pytest.raises(CalibrationError, match="another spec") as e:
        load_calibset(pipeline["dir"] / "calib", spec.replace(size=32))
    assert "ffd calib build" in e.value.fix
    with pytest.raises(CalibrationError, match="not a calibration set"):
        load_calibset(tmp_path)
    empty = tmp_path / "empty_src"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="no face"):
        build_calibset(pipeline["dir"] / "tiny.onnx", [empty], tmp_path / "c0", n=8)
    with pytest.raises(CalibrationError, match="no calibration data"):
        build_calibset(pipeline["dir"] / "tiny.onnx", [], tmp_path / "c1", n=8)
    # a changed calib.npy fails its checksum; an empty one is refused
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(pipeline["dir"] / "calib", bad)
    np.save(bad / "calib.npy", np.zeros((0, 3, SIZE, SIZE), np.float32))
    with pytest.raises(CalibrationError, match="checksum"):
        load_calibset(bad, spec)
    from calib.calibset import sha256_file

    man = json.loads((bad / "manifest.json").read_text())
    man["sha256"] = sha256_file(bad / "calib.npy")
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CalibrationError, match="empty"):
        load_calibset(bad, spec)


def test_quantize_both_flavours(pipeline):
    r = pipeline["report"]
    assert set(r["int8"]) == {"trt", "cpu"}
    assert r["fp32"]["auc"] is not None and "48 labelled faces" in r["evaluation"]
    with open_runner(pipeline["dir"] / "tiny.onnx") as fp:
        x = np.load(pipeline["dir"] / "calib" / "calib.npy")
        s32 = fp.infer(x)
    assert s32.std() > 0.05 and 0.05 < (s32 > 0.5).mean() < 0.95  # spread: agreement is not trivially true
    for k, want in (("trt", "modelopt-qdq-int8-fp16"), ("cpu", "ort-static-qdq-u8s8-per-channel")):
        a = r["int8"][k]
        assert a["flavour"] == want
        assert a["nodes"]["quantize_linear"] > 0 and a["nodes"]["dequantize_linear"] > 0
        assert len(a["nodes"]["quantized_compute"]) >= 3
        with open_runner(a["path"]) as q:
            card = q.card
            s8 = q.infer(x)
        assert card.extra["int8_flavour"] == want and card.spec == PreprocessSpec(size=SIZE)
        assert card.extra["calibration"]["count"] == 32 and card.threshold == 0.5
        # no --method: each flavour's own calibration, recorded in its card and the report
        assert card.extra["calibration"]["method"] == a["method"] == {"trt": "entropy", "cpu": "percentile"}[k]
        assert np.abs(s8 - s32).max() < 0.08 and np.corrcoef(s8, s32)[0, 1] > 0.98
        assert a["label_agreement"] >= 0.9 and a["max_abs_diff"] < 0.1
    saved = json.loads(open(r["report_path"]).read())
    assert saved["int8"]["cpu"]["flavour"] == "ort-static-qdq-u8s8-per-channel"


def test_quantize_refusals(pipeline, tmp_path, shared):
    from calib.calibset import build_calibset
    from calib.quantize import quantize_onnx

    d = pipeline["dir"]
    with pytest.raises(ModelError, match="already quantized"):
        quantize_onnx(pipeline["report"]["int8"]["cpu"]["path"], d / "calib", tmp_path, target="cpu")
    bare = make_tiny_onnx(tmp_path / "bare.onnx", size=SIZE, card=False)
    with pytest.raises(ModelError, match="model card"):
        quantize_onnx(bare, d / "calib", tmp_path, target="cpu")
    with pytest.raises(CalibrationError, match="no calibration set"):
        quantize_onnx(d / "tiny.onnx", None, tmp_path, target="cpu")
    with pytest.raises(ConfigError, match="entropy"):
        quantize_onnx(d / "tiny.onnx", d / "calib", tmp_path, target="trt", method="percentile")
    other = make_tiny_onnx(tmp_path / "o32.onnx", size=32)  # another spec (size 32)
    with pytest.raises(CalibrationError, match="another spec"):
        quantize_onnx(other, d / "calib", tmp_path, target="cpu")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not onnx at all")
    with pytest.raises(ModelError, match="not a readable ONNX"):
        quantize_onnx(corrupt, d / "calib", tmp_path, target="cpu")
    # percentile calibration (ONNX Runtime) on a set whose size has no even batch split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_calibset(d / "tiny.onnx", _faces(shared), tmp_path / "c17", n=17, pseudo_fake=0)
        r = quantize_onnx(d / "tiny.onnx", tmp_path / "c17", tmp_path / "q", target="cpu", method="percentile",
                          cpu_format="qoperator", verbose=False)
    assert r["int8"]["cpu"]["nodes"]["integer_ops"].get("QLinearConv", 0) >= 3


def test_calibration_child_killed_names_the_memory_fix(pipeline, tmp_path):
    """The ONNX Runtime calibration child killed by SIGKILL (what the kernel's OOM killer does: 512 faces at
    224 px outgrew 22 GB) is one error naming the calibration set and the fix, not "failed: (no output)"."""
    import signal
    import threading

    from calib.quantize import quantize_onnx

    d, me, killed = pipeline["dir"], os.getpid(), []

    def kill_child():  # the real child process, killed as the OOM killer kills it
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for st in Path("/proc").glob("[0-9]*/status"):
                try:
                    ppid = int(next(ln for ln in st.read_text().splitlines() if ln.startswith("PPid:")).split()[1])
                    cmd = (st.parent / "cmdline").read_bytes()
                except (OSError, StopIteration, ValueError):
                    continue
                if ppid == me and b"_ort_static_worker" in cmd:
                    os.kill(int(st.parent.name), signal.SIGKILL)
                    killed.append(int(st.parent.name))
                    break
            time.sleep(0.02)

    q = tmp_path / "q"
    q.mkdir()
    previous = q / "tiny.int8-cpu.onnx"  # what an earlier run left there: the user's file, kept as it was
    previous.write_bytes(b"an earlier run's artefact")
    t = threading.Thread(target=kill_child, daemon=True)
    t.start()
    with pytest.raises(ModelError, match=r"killed by SIGKILL \(most likely out of memory\)") as e:
        quantize_onnx(d / "tiny.onnx", d / "calib", q, target="cpu", verbose=False)
    t.join(5)
    assert killed and "ffd calib build --n" in str(e.value) and str(d / "calib") in str(e.value)
    assert sorted(q.iterdir()) == [previous] and previous.read_bytes() == b"an earlier run's artefact"


def _ffd(*args):
    p = subprocess.run([sys.executable, "-m", "ffd", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return p


def test_cli_chain_export_calib_quantize_detect(tmp_path, shared, yunet_model):
    ckpt = make_ckpt(tmp_path / "s.pt")
    out = _ffd("export", ckpt, "-o", tmp_path / "s.onnx", "--parity-data", _faces(shared)[0], "--parity-n", 8)
    assert "parity vs PyTorch on 8 real faces" in out.stdout and "ok" in out.stdout
    out = _ffd("calib", "build", "-m", tmp_path / "s.onnx", "-o", tmp_path / "calib", "--data", _faces(shared)[0],
               "--crops", _crops(shared)[0], "--n", 24)
    assert "24 faces" in out.stdout and "warning:" in out.stderr
    out = _ffd("quantize", tmp_path / "s.onnx", "--calib", tmp_path / "calib", "--target", "cpu",
               "--eval", _eval(shared)[0], "--eval-n", 16)
    assert "int8-cpu" in out.stdout and (tmp_path / "s.int8-cpu.onnx").is_file()
    out = _ffd("detect", _faces(shared)[0] / "001_03.jpg", shared / "data" / "london_faces" / "smiling",
               "-m", tmp_path / "s.int8-cpu.onnx", "-o", tmp_path / "d.jsonl", "--max-faces", 1)
    recs = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    faces = [r for r in recs if r.get("face") is not None]
    assert len(faces) >= 10 and all(r["face"] == 0 and r["label"] in ("real", "fake") for r in faces)
