"""ONNX Runtime runner and the embeddable ForgeryDetector on a real tiny ONNX and real faces."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from edge.errors import BackendUnavailableError, ConfigError, ModelError
from edge.runtime import open_runner
from edge.spec import META_KEY, ModelCard, PreprocessSpec, preprocess
from tests.conftest import ROOT, make_tiny_onnx


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_ort_runner_reads_card_and_scores_batch(tiny_onnx):
    with open_runner(tiny_onnx) as r:
        assert r.name == "ort" and r.card.name == "tiny_mean" and r.card.spec.size == 32
        assert r.input_name == "input" and r.input_shape == ("N", 3, 32, 32)
        assert r.providers == ["CPUExecutionProvider"]
        x = np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32)
        y = r.infer(x)
        assert y.shape == (5,) and y.dtype == np.float32
        np.testing.assert_allclose(y, _sigmoid(4.0 * x.reshape(5, -1).mean(1)), rtol=1e-5, atol=1e-6)
        assert r.infer(x[:0]).shape == (0,)
        with pytest.raises(ConfigError, match=r"\(N,3,32,32\)"):
            r.infer(np.zeros((2, 3, 64, 64), np.float32))


def test_ort_runner_chunks_by_max_batch(tiny_onnx):
    x = np.random.default_rng(1).normal(size=(7, 3, 32, 32)).astype(np.float32)
    with open_runner(tiny_onnx, providers="auto", max_batch=3) as r, open_runner(tiny_onnx) as ref:
        assert "CPUExecutionProvider" in r.active_providers
        np.testing.assert_allclose(r.infer(x), ref.infer(x), rtol=1e-6)


def test_infer_is_a_template_that_checks_the_batch_once(tiny_onnx, monkeypatch):
    """``Runner.infer`` / ``infer_async`` check the batch, then call the backend's ``_infer``; chunks are not
    checked again."""
    from edge.runtime.base import Runner

    calls = []
    check = Runner.check_batch
    monkeypatch.setattr(Runner, "check_batch", lambda self, b: calls.append(len(b)) or check(self, b))
    x = np.random.default_rng(2).normal(size=(7, 3, 32, 32))  # float64: the check makes it float32
    with open_runner(tiny_onnx, max_batch=3) as r:
        assert r.infer(x).shape == (7,) and calls == [7]
        assert r.infer_async(x).result().shape == (7,) and calls == [7, 7]
        assert r.infer_async(x[:0]).result().shape == (0,)
    assert "infer" not in vars(type(r)) and "_infer" in vars(type(r))  # the backend implements _infer only


def test_ort_runner_bad_files_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        open_runner(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(ModelError, match="could not load") as e:
        open_runner(corrupt)
    assert "ffd export" in str(e.value)
    bare = make_tiny_onnx(tmp_path / "bare.onnx", card=False)
    with pytest.raises(ModelError, match=META_KEY) as e:
        open_runner(bare)
    assert "ffd export" in e.value.fix
    # an explicit card makes a bare ONNX usable; a card of another size is refused
    with open_runner(bare, card=ModelCard("bare", PreprocessSpec(size=32))) as r:
        assert r.infer(np.zeros((1, 3, 32, 32), np.float32)).shape == (1,)
    with pytest.raises(ModelError, match="spec says"):
        open_runner(bare, card=ModelCard("bare", PreprocessSpec(size=64)))
    with pytest.raises(BackendUnavailableError, match="not available"):
        open_runner(bare, card=ModelCard("bare", PreprocessSpec(size=32)), providers=["NoSuchExecutionProvider"])


def test_forgery_detector_on_london_faces(tmp_path, london_neutral, yunet_model):
    from edge import FaceResult, ForgeryDetector
    from edge.faces import FaceDetector, crop_face

    model = make_tiny_onnx(tmp_path / "m.onnx", size=32, threshold=0.52)
    frames = [cv2.imread(str(f)) for f in london_neutral[:4]]
    with ForgeryDetector(model, detector_model=yunet_model, batch_size=3) as fd:
        batch = fd.process_batch(frames)
        assert len(batch) == 4 and all(len(r) >= 1 for r in batch)
        one = fd.process(frames[0])
        # the same face gets the same score through process() and process_batch()
        assert one[0].score == pytest.approx(batch[0][0].score, abs=1e-6)
        r0 = one[0]
        assert isinstance(r0, FaceResult) and r0.track_id is None and r0.landmarks.shape == (5, 2)
        assert r0.label == fd.card.label(r0.score) and r0.label in ("real", "fake")
        # reference: the documented pieces by hand
        spec = fd.card.spec
        det = FaceDetector.from_spec(spec, yunet_model).detect(frames[0])[0]
        crop, _ = crop_face(frames[0], det, spec)
        x = preprocess([crop], spec)
        assert r0.score == pytest.approx(float(_sigmoid(4.0 * x.mean())), abs=1e-5)
        assert r0.box == pytest.approx(det.box)
        # scores differ between people: the score is computed from the face, not a constant
        assert len({round(r[0].score, 5) for r in batch}) > 1
        assert fd.classify_crops([crop, crop[::2, ::2]]).shape == (2,)
        json.dumps(r0.to_dict())
    assert fd.runner is None  # closed by the context manager


def test_forgery_detector_runs_without_torch(tmp_path, london_neutral, yunet_model):
    """`edge` imports and runs the ORT path with torch blocked (as on a Jetson runtime image)."""
    model = make_tiny_onnx(tmp_path / "m.onnx", size=32)
    code = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, Block())
        import cv2, numpy as np
        import edge
        from edge.runtime import open_runner
        with open_runner({str(model)!r}) as r:
            assert r.infer(np.zeros((2, 3, 32, 32), np.float32)).shape == (2,)
        with edge.ForgeryDetector({str(model)!r}, detector_model={str(yunet_model)!r}) as fd:
            res = fd.process(cv2.imread({str(london_neutral[0])!r}))
        assert res and 0.0 <= res[0].score <= 1.0
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch import was not blocked")
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("OK", len(res))
    """)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("OK")
