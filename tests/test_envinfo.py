"""``ffd env``: the report reads this machine for real (no GPU here: it must say why TensorRT is unusable)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import cv2
import onnxruntime as ort

from edge.tools.envinfo import collect_env, format_env


def test_env_reports_what_is_installed_and_what_auto_picks(tmp_path, monkeypatch, yunet_model):
    monkeypatch.setenv("FFD_YUNET_MODEL", str(yunet_model))
    env = collect_env()
    assert env["packages"]["opencv"] and env["opencv"]["version"] == cv2.__version__
    assert env["packages"]["onnxruntime"] == ort.__version__.split("+")[0]
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    assert "FFMPEG" in env["opencv"]["video_backends"] and env["opencv"]["gstreamer"] in ("YES", "NO")
    assert env["yunet_model"] == str(yunet_model)
    if importlib.util.find_spec("tensorrt") is None:
        assert env["packages"]["tensorrt"] is None and env["auto_backend_for_onnx"] == "ort"
        assert env["tensorrt_backend"].startswith("unavailable: tensorrt is not installed")
    text = format_env(env)
    assert f"- opencv: {env['packages']['opencv']}" in text and "GStreamer:" in text
    assert ("- tensorrt: not installed" in text) == (env["packages"]["tensorrt"] is None)


def test_ffd_env_cli_json_without_importing_torch():
    code = ("import sys; from ffd.cli import main\n"
            "try:\n    main(['env', '--json'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules and 'modelopt' not in sys.modules, 'heavy import'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ffd-edge"]
