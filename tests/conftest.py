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
