"""Shared fixtures: paths into ../shared (skipped with a reason when absent), the YuNet model, tiny specs."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FFD_SHARED", ROOT.parent / "shared"))
YUNET = SHARED / "models" / "face_detection_yunet.onnx"

if YUNET.is_file():
    os.environ.setdefault("FFD_YUNET_MODEL", str(YUNET))


def _has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and Path("/dev/nvidiactl").exists()


def pytest_collection_modifyitems(config, items):
    if _has_nvidia_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def no_downloads(monkeypatch, tmp_path):
    """Pretrained-weight lookups see no FFD_WEIGHTS and an empty cache in ``tmp_path``; a test that
    would reach for the network fails (a test points a config's URL at a ``file://`` copy instead)."""
    import train.pretrained as tp

    monkeypatch.delenv("FFD_WEIGHTS", raising=False)
    monkeypatch.setenv("FFD_CACHE", str(tmp_path / "cache"))
    real = tp._download

    def local_only(url, dest, prefix):
        if not str(url).startswith("file://"):
            raise AssertionError(f"a test tried to download {url}")
        return real(url, dest, prefix)
    monkeypatch.setattr(tp, "_download", local_only)


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared data folder not found at {SHARED} (set FFD_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def yunet_model(shared) -> Path:
    if not YUNET.is_file():
        pytest.skip(f"YuNet model missing at {YUNET}")
    return YUNET


@pytest.fixture(scope="session")
def london_neutral(shared) -> list[Path]:
    files = sorted((shared / "data" / "london_faces" / "neutral").glob("*.jpg"))
    if not files:
        pytest.skip("london_faces/neutral is empty")
    return files


def make_tiny_onnx(path: Path, size: int = 32, threshold: float = 0.5, name: str = "tiny_mean", card=True,
                   weight: float = 4.0) -> Path:
    """A real (tiny) ONNX classifier for pipeline tests: score = sigmoid(w * mean(x) ) per image.

    Built with onnx.helper so pipeline tests do not need torch; it runs in real ONNX Runtime.
    The score depends on the image, so tests can tell faces apart.
    """
    import onnx
    from onnx import TensorProto, helper

    from edge.spec import META_KEY, ModelCard, PreprocessSpec

    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])
    out = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    w = helper.make_tensor("w", TensorProto.FLOAT, [], [weight])
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["m", "w"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["score"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [inp], [out], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if card:  # True: a default card; a ModelCard: that one
        c = card if isinstance(card, ModelCard) else ModelCard(name, spec=PreprocessSpec(size=size),
                                                               threshold=threshold)
        helper.set_model_props(model, {META_KEY: c.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    return make_tiny_onnx(tmp_path / "tiny.onnx")


def _have_av() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(params=["pyav", "opencv"])
def decoder(request, monkeypatch) -> str:
    """Each software decoding back-end in turn (``FFD_DECODER``; the ``pyav`` case skips without PyAV).
    The variable is inherited by subprocesses (``ffd`` runs) and worker processes started from the test."""
    if request.param == "pyav" and not _have_av():
        pytest.skip("PyAV not installed (pip install 'ffd-edge[av]')")
    monkeypatch.setenv("FFD_DECODER", request.param)
    return request.param
