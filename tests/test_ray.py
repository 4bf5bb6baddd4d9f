"""ffd screen --ray: a local Ray instance (inside a loopback-only network namespace) makes the same rows."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.ray


def _netns_ok() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    p = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=30)
    return p.returncode == 0


def test_ray_screen_matches_local(tmp_path, london_neutral, yunet_model):
    pytest.importorskip("ray", reason="ray is the [scale] extra")
    if not _netns_ok():
        pytest.skip("cannot create a loopback-only network namespace here (unshare -n needs root)")
    job = ROOT / "tests" / "ray_screen_job.py"
    args = " ".join(f"'{a}'" for a in [str(tmp_path), str(yunet_model), *map(str, london_neutral[:6])])
    p = subprocess.run(["unshare", "-n", "sh", "-c", f"ip link set lo up && exec '{sys.executable}' '{job}' {args}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["n_local"] == res["n_ray"] == 5 and res["diffs"] == []
    assert res["statuses"] == ["done", "done", "done", "error", "error"]
    assert res["ray"]["done"] == res["local"]["done"] == 3
