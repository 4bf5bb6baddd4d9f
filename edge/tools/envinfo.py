"""What this machine can run: ``ffd env`` (after ``huggingface-cli env`` and torch's ``collect_env``).

One report to paste into a bug, and the first thing to run on a new Jetson: versions of the
packages ffd-edge uses (read from their metadata, so torch and modelopt are never imported),
ONNX Runtime's execution providers, OpenCV's video back-ends (GStreamer decides whether
``csi://`` cameras work), whether the TensorRT backend is usable here and, if not, why, which
backend ``backend="auto"`` would run an ``.onnx`` with, and where the face detector's model is.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import sys
from pathlib import Path

from .. import __version__
from ..errors import ModelError

# distribution names; the first one installed is reported (opencv comes in several wheels)
PACKAGES = {
    "numpy": ("numpy",),
    "opencv": ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "onnx": ("onnx",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
    "pycuda": ("pycuda",),
    "torch": ("torch",),
    "nvidia-modelopt": ("nvidia-modelopt",),
    "onnx-graphsurgeon": ("onnx-graphsurgeon",),
    "ray": ("ray",),
    "typer": ("typer",),
    "av": ("av",),                            # PyAV: the default video decoder where it installs
    "PyNvVideoCodec": ("PyNvVideoCodec", "pynvvideocodec"),  # NVDEC (the nvdec extra)
}
JETSON_RELEASE = Path("/etc/nv_tegra_release")


def _version(dists: tuple[str, ...]) -> str | None:
    for d in dists:
        try:
            return md.version(d)
        except md.PackageNotFoundError:
            continue
    return None


def _opencv() -> dict:
    import cv2

    info = cv2.getBuildInformation()
    gst = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GStreamer:")),
               "unknown")
    reg = cv2.videoio_registry
    usable = [reg.getBackendName(b) for b in reg.getBackends() if reg.hasBackend(b)]  # plugins not found: left out
    return {"version": cv2.__version__, "video_backends": list(dict.fromkeys(usable)),
            "gstreamer": gst.split()[0] if gst else "unknown"}


def _choice(pick) -> str:
    """``pick() -> (name, why)`` as ``"name (why)"``; an environment variable naming something unknown or not
    usable here (the FfdError it raises) as ``"unusable: ... (fix: ...)"``."""
    from ..errors import FfdError

    try:
        name, why = pick()
    except FfdError as e:
        return f"unusable: {e.message}" + (f" (fix: {e.fix})" if e.fix else "")
    return f"{name} ({why})"


def _decoder() -> str:
    """The video decoder :func:`edge.decoders.select_decoder` picks here (FFD_DECODER or auto) and why."""
    from ..decoders import select_decoder

    return _choice(select_decoder)


def _yunet_engine() -> str:
    """What YuNet runs on here (FFD_YUNET_ENGINE or auto) and why."""
    from ..faces.detector import yunet_engine

    return _choice(yunet_engine)


def _decode_threads() -> str:
    """Threads per video decoder: FFD_DECODE_THREADS, or FFmpeg's automatic count and the screening workers'
    share (:func:`edge.screen.screen.worker_threads` for the CLI's ``-j 2``)."""
    from ..media import decode_threads
    from ..screen.screen import worker_threads

    def pick() -> tuple[str, str]:
        n = decode_threads()  # a bad FFD_DECODE_THREADS raises here: _choice says why
        if os.environ.get("FFD_DECODE_THREADS", "").strip():
            return str(n or "automatic"), "chosen by FFD_DECODE_THREADS"
        return "automatic", f"FFmpeg's count; ffd screen -j 2 workers: {worker_threads(2)[1]} each"

    return _choice(pick)


def collect_env() -> dict:
    """A JSON-able description of this machine as ffd-edge sees it."""
    import onnxruntime as ort

    from ..faces.detector import find_yunet_model
    from ..runtime import auto_backend, trt_unusable_reason

    trt_reason = trt_unusable_reason()
    try:
        yunet = str(find_yunet_model())
    except ModelError as e:
        yunet = f"not found ({e.fix})"
    jetson = JETSON_RELEASE.read_text().splitlines()[0].strip() if JETSON_RELEASE.is_file() else None
    return {
        "ffd-edge": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "jetson": jetson,
        "packages": {name: _version(dists) for name, dists in PACKAGES.items()},
        "onnxruntime_providers": ort.get_available_providers(),
        "opencv": _opencv(),
        "video_decoder": _decoder(),
        "decode_threads": _decode_threads(),
        "tensorrt_backend": "usable" if trt_reason is None else f"unavailable: {trt_reason}",
        "auto_backend_for_onnx": auto_backend("model.onnx", trt_reason)[0],  # the rule itself, not a copy
        "yunet_model": yunet,
        "yunet_engine": _yunet_engine(),
    }


def format_env(env: dict) -> str:
    """``- key: value`` lines (packages one per line; missing ones say so)."""
    lines = []
    for k, v in env.items():
        if k == "packages":
            lines += [f"- {name}: {ver or 'not installed'}" for name, ver in v.items()]
        elif k == "opencv":
            lines.append(f"- opencv video backends: {', '.join(v['video_backends']) or 'none'}; "
                         f"GStreamer: {v['gstreamer']}")
        elif isinstance(v, list):
            lines.append(f"- {k}: {', '.join(v)}")
        elif v is not None:
            lines.append(f"- {k}: {v}")
    return "\n".join(lines)
