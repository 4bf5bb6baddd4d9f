"""FReTAL adaptation (train.adapt, ffd adapt): losses, binning, source-free guarantee, CLI chain."""
from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(seed: int = 0):
    from train.registry import create_model

    torch.manual_seed(seed)
    return create_model("student_tiny").eval()


def _write_set(root: Path, n_per_class: int, seed: int, prefix: str) -> Path:
    """real/: smooth random images; fake/: the same kind with a pasted bright square (a learnable cue)."""
    rng = np.random.default_rng(seed)
    for label in ("real", "fake"):
        d = root / label
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            small = rng.integers(40, 200, size=(5, 5, 3), dtype=np.uint8)
            img = cv2.resize(small, (40, 40), interpolation=cv2.INTER_LINEAR)
            if label == "fake":
                y0, x0 = rng.integers(5, 20, size=2)
                img[y0:y0 + 14, x0:x0 + 14] = 250
            cv2.imwrite(str(d / f"{prefix}{i:03d}.png"), img)
    return root


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    from edge.spec import ModelCard, PreprocessSpec
    from train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("adapt")
    torch.manual_seed(0)
    from train.registry import create_model

    model = create_model("student_tiny")
    card = ModelCard("student_tiny", spec=PreprocessSpec(size=SIZE, detector="none"), threshold=0.5, version="1")
    ckpt = save_checkpoint(root / "tiny.pt", model, card, model_kwargs={})
    return {
        "ckpt": ckpt, "card": card,
        "target": _write_set(root / "target", 20, 1, "t"),
        "target_eval": _write_set(root / "target_eval", 8, 2, "e"),
        "source": _write_set(root / "source", 8, 3, "s"),
        "root": root,
    }


# --- losses and binning ----------------------------------------------------------------------
def test_representation_loss_zero_for_identical_models_positive_otherwise():
    from train.adapt import frozen_teacher, pooled_features, representation_loss

    student = _tiny(0)
    teacher = frozen_teacher(student)
    x = torch.randn(12, 3, SIZE, SIZE)
    with torch.no_grad():
        ft, t_logits = pooled_features(teacher, x)
    y = t_logits.argmax(1)  # every sample correctly classified by the teacher -> all take part
    fs, _ = pooled_features(student, x)
    assert representation_loss(fs, ft, t_logits, y).item() == 0.0

    other = _tiny(1)  # different weights
    fo, _ = pooled_features(other, x)
    loss = representation_loss(fo, ft, t_logits, y)
    assert loss.item() > 1e-6
    loss.backward()  # the gradient reaches the student, not the frozen teacher
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in other.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def _logits_for(p_fake):
    p = torch.tensor(p_fake, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1).float()


def test_confidence_bins_follow_the_rule():
    from train.adapt import confidence_bins

    # p(fake) per sample and its label -> confidence of the true class -> bin
    cases = [  # (p_fake, label, expected bin)
        (0.55, 1, 0), (0.6, 1, 1), (0.65, 1, 1), (0.75, 1, 2), (0.85, 1, 3), (0.9, 1, 4), (0.95, 1, 4), (0.9999, 1, 4),
        (0.45, 0, 0), (0.28, 0, 2), (0.01, 0, 4),
        (0.3, 1, -1), (0.8, 0, -1),  # teacher wrong -> excluded
    ]
    logits = _logits_for([c[0] for c in cases])
    labels = torch.tensor([c[1] for c in cases])
    assert confidence_bins(logits, labels).tolist() == [c[2] for c in cases]


def test_representation_loss_matches_per_bin_means_not_samples():
    from train.adapt import representation_loss

    # two real samples in the same bin (p_real 0.95): their MEANS match although each differs
    logits = _logits_for([0.05, 0.05, 0.3])
    labels = torch.tensor([0, 0, 1])  # third: teacher says real for a fake -> excluded
    ft = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    fs = torch.tensor([[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]])
    assert representation_loss(fs, ft, logits, labels).item() == pytest.approx(0.0)
    # a second group (fake, conf 0.75 -> bin 2) with squared error 4 on one of 2 channels -> mean 2; avg of groups = 1
    logits = _logits_for([0.05, 0.75])
    labels = torch.tensor([0, 1])
    ft = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    fs = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    assert representation_loss(fs, ft, logits, labels).item() == pytest.approx(1.0)


def test_task_losses_per_method_and_teacher_stays_frozen():
    from train.adapt import AdaptConfig, AdaptTask, frozen_teacher

    x, y = torch.randn(8, 3, SIZE, SIZE), torch.tensor([0, 1] * 4)
    for method, keys in (("finetune", {"loss", "ce"}), ("finetune-kd", {"loss", "ce", "kd"}),
                         ("fretal", {"loss", "ce", "kd", "rep"})):
        student = _tiny(0)
        teacher = frozen_teacher(student)
        before = [p.clone() for p in teacher.parameters()]
        task = AdaptTask(student, teacher, AdaptConfig(method=method, alpha=0.3))
        task.train()
        out = task.step((x, y))
        assert set(out) == keys, method
        out["loss"].backward()
        if method != "finetune":
            assert not teacher.training
            assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
            # weights: (1 - alpha) * CE + alpha * KD (+ beta * rep)
            expect = 0.7 * out["ce"] + 0.3 * out["kd"] + out.get("rep", 0.0)
            assert out["loss"].item() == pytest.approx(float(expect), rel=1e-5)
        assert "teacher" not in dict(task.named_modules())


def test_config_rejects_bad_values():
    from edge.errors import ConfigError
    from train.adapt import AdaptConfig

    with pytest.raises(ConfigError):
        AdaptConfig(method="sourcefree")
    with pytest.raises(ConfigError):
        AdaptConfig(alpha=1.5)
    assert AdaptConfig(method="finetune-kd").method == "finetune_kd"


def test_adapt_api_takes_no_source_data():
    from train.adapt import adapt

    params = inspect.signature(adapt).parameters
    assert not [p for p in params if "source" in p]


# --- end to end ------------------------------------------------------------------------------
_AUDIT = r"""
import os, sys, json
src = os.path.realpath(sys.argv[1]); events = []; phase = ["adapt"]
def note(event, p):
    if isinstance(p, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(p)).startswith(src):
        events.append([phase[0], event, os.fsdecode(p)])
def hook(event, args):  # Python-level file access: open(), listdir/scandir (rglob), stat
    if event in ("open", "os.listdir", "os.scandir") and args:
        note(event, args[0])
sys.addaudithook(hook)
import cv2  # OpenCV reads files in C, invisible to audit hooks: wrap its readers too
for name in ("imread", "imreadmulti", "VideoCapture"):
    orig = getattr(cv2, name)
    def wrapped(path, *a, _orig=orig, _name=name, **k):
        note("cv2." + _name, path)
        return _orig(path, *a, **k)
    setattr(cv2, name, wrapped)
import torch; torch.set_num_threads(1)
from train.adapt import adapt, forgetting_report
ckpt, target, out = sys.argv[2:5]
path = adapt(ckpt, target, out, method="fretal", epochs=1, batch_size=8, device="cpu")
phase[0] = "report"
forgetting_report(ckpt, path, source_eval=sys.argv[1], target_eval=target, device="cpu")
print(json.dumps(events))
"""


def test_adapter_never_opens_source_data(tiny_setup, tmp_path):
    """Audit every file access of a real adaptation run; the source set is touched only by the report."""
    s = tiny_setup
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FFD_SOURCE_DATA": str(s["source"]), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _AUDIT, str(s["source"]), str(s["ckpt"]), str(s["target"]),
                        str(tmp_path / "a.pt")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    events = json.loads(r.stdout.strip().splitlines()[-1])
    assert [e for e in events if e[0] == "adapt"] == []
    # positive control: the audit does see the source images when the forgetting report reads them
    assert any(e[0] == "report" and e[1] in ("cv2.imread", "open") for e in events)
    assert any(e[0] == "report" and e[1] in ("os.scandir", "os.listdir") for e in events)


def test_cli_adapt_chain(tiny_setup, tmp_path):
    from typer.testing import CliRunner

    from ffd.cli import app
    from train.checkpoint import load_checkpoint

    s = tiny_setup
    out = tmp_path / "adapted.pt"
    r = CliRunner().invoke(app, ["adapt", str(s["ckpt"]), "--target", str(s["target"]), "-o", str(out),
                                 "--method", "finetune-kd", "--epochs", "2", "--batch-size", "8", "--shots", "12",
                                 "--lr", "3e-3", "--temperature", "4", "--alpha", "0.5", "--seed", "1",
                                 "--device", "cpu", "--keep", "last", "--source-eval", str(s["source"]),
                                 "--target-eval", str(s["target_eval"])])
    assert r.exit_code == 0, r.output
    assert "adapted checkpoint" in r.output and "| source |" in r.output
    model, card, blob = load_checkpoint(out)
    assert card.name == "student_tiny" and card.spec == s["card"].spec
    info = card.extra["adaptation"]
    assert info["method"] == "finetune_kd" and info["source_data_used"] is False
    assert info["n_train"] == {"real": 12, "fake": 12}
    assert info["config"]["temperature"] == 4.0 and info["kept_epoch"] == 2
    if "threshold_calibration" in card.extra:  # train.threshold is installed: re-calibrated on target val
        assert 0.0 <= card.threshold <= 1.0
    rep = json.loads((tmp_path / "adapted_forgetting.json").read_text())
    assert set(rep["before"]) == {"source_auc", "source_acc", "target_auc", "target_acc"}
    assert all(0.0 <= v <= 1.0 for v in rep["after"].values() if not math.isnan(v))
    assert (tmp_path / "adapted_forgetting.md").read_text().count("|") > 10
    # the adapted weights differ from the parent's, the architecture is the same registered model
    parent, _, _ = load_checkpoint(s["ckpt"])
    assert any(not torch.equal(a, b) for a, b in zip(parent.state_dict().values(), model.state_dict().values()))
    # exportable like any student
    torch.onnx.export(model, torch.randn(1, 3, SIZE, SIZE), str(tmp_path / "a.onnx"), input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False)
    assert (tmp_path / "a.onnx").stat().st_size > 1000


def test_cli_rejects_unknown_method(tiny_setup, tmp_path):
    from typer.testing import CliRunner

    from ffd.cli import app

    r = CliRunner().invoke(app, ["adapt", str(tiny_setup["ckpt"]), "--target", str(tiny_setup["target"]),
                                 "-o", str(tmp_path / "x.pt"), "--method", "magic"])
    assert r.exit_code != 0
    assert not (tmp_path / "x.pt").exists()
