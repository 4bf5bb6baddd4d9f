"""Trainer (fit, exact resume after an interruption), metrics, and the CLI on a tiny real-data subset."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.errors import ConfigError, DatasetError, ModelError, TrainingError  # noqa: E402
from edge.spec import PreprocessSpec  # noqa: E402
from train.recipes import GEOMETRIC_STUDENT, GEOMETRIC_TEACHER  # noqa: E402
from train.registry import create_model  # noqa: E402
from train.task import ClassifierTask  # noqa: E402
from train.trainer import FitConfig, fit, make_loader  # noqa: E402

torch.set_num_threads(1)


# --- metrics ---------------------------------------------------------------------------------
def test_metrics_against_brute_force():
    from train.metrics import accuracy, aggregate_by_group, auc, average_precision, eer, roc_curve

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(y * 0.4 + rng.random(300), 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auc(s, y) == pytest.approx(brute)
    fpr, tpr, _ = roc_curve(s, y)
    assert np.trapezoid(tpr, fpr) == pytest.approx(brute)
    assert auc(1 - s, y) == pytest.approx(1 - brute)
    assert 0 < eer(s, y) < 0.5
    assert eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.0 and auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert average_precision([0.9, 0.8, 0.1], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    assert accuracy([0.2, 0.6, 0.7], [0, 0, 1], 0.65) == pytest.approx(1.0)
    vs, vy, keys = aggregate_by_group([0.2, 0.4, 0.9, 0.7], [0, 0, 1, 1], ["a", "a", "a", "b"])
    assert keys == [("a", 0), ("a", 1), ("b", 1)] and np.allclose(vs, [0.3, 0.9, 0.7])
    with pytest.raises(DatasetError, match="both"):
        auc([0.1, 0.2], [0, 0])


# --- fit and resume on synthetic tensors ------------------------------------------------------
class _Toy(torch.utils.data.Dataset):
    """Fakes are brighter: a learnable signal."""

    def __init__(self, n=48, size=32):
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(n) % 2
        self.x = torch.randn(n, 3, size, size, generator=g) * 0.5 + self.y.view(-1, 1, 1, 1) * 0.8

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


class _Interrupt(Exception):
    pass


class _StopAt:
    """A loader that raises after ``n`` batches of epoch ``epoch`` (simulates Ctrl-C mid-epoch)."""

    def __init__(self, loader, epoch, n):
        self.loader, self.stop_epoch, self.n, self.epoch = loader, epoch, n, 0
        self.sampler, self.dataset = loader.sampler, loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.epoch = self.sampler.epoch
        for i, b in enumerate(self.loader):
            if self.epoch == self.stop_epoch and i == self.n:
                raise _Interrupt
            yield b


def _task(seed=0):
    torch.manual_seed(seed)
    return ClassifierTask(create_model("student_tiny", drop_rate=0.2), "student_tiny", {"drop_rate": 0.2})


def _cfg(**kw):
    base = dict(epochs=3, lr=3e-3, seed=0, device="cpu", spec=PreprocessSpec(size=32), progress=False)
    return FitConfig(**{**base, **kw})


def test_fit_writes_checkpoints_and_resume_is_exact(tmp_path):
    from train.checkpoint import load_checkpoint

    ds = _Toy()
    val = make_loader(ds, 16, train=False)
    full = fit(_task(), make_loader(ds, 8, seed=1), val, _cfg(), tmp_path / "a")
    assert len(full["history"]) == 3 and full["best_auc"] > 0.8
    blob = torch.load(tmp_path / "a" / "last.pt", weights_only=True)  # train_state included
    assert blob["train_state"]["epoch"] == 2 and "optimizer" in blob["train_state"]
    model, card, raw = load_checkpoint(tmp_path / "a" / "best.pt")
    assert card.name == "student_tiny" and card.spec.size == 32 and card.threshold == 0.5
    assert raw["metrics"]["val_auc"] == pytest.approx(full["best_auc"])

    with pytest.raises(_Interrupt):  # interrupted in the middle of the 3rd epoch
        fit(_task(), _StopAt(make_loader(ds, 8, seed=1), 2, 3), val, _cfg(), tmp_path / "b")
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["train_state"]["epoch"] == 1
    said: list[str] = []
    resumed = fit(_task(seed=123), make_loader(ds, 8, seed=1), val, _cfg(resume=True, log=said.append),
                  tmp_path / "b")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert any("after epoch 2 of 3" in m for m in said), said  # the epochs finished, counted as history counts
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)  # same result as never interrupted


def test_resume_refuses_another_model(tmp_path):
    ds = _Toy(16)
    fit(_task(), make_loader(ds, 8), make_loader(ds, 8, train=False), _cfg(epochs=1), tmp_path)
    other = ClassifierTask(create_model("teacher_tiny"), "teacher_tiny", {})
    with pytest.raises(ModelError, match="student_tiny"):
        fit(other, make_loader(ds, 8), make_loader(ds, 8, train=False), _cfg(epochs=1, resume=True), tmp_path)


def test_a_diverging_loss_is_a_training_error(tmp_path):
    """A NaN/inf loss stops the run with a TrainingError naming the fix (it printed as "internal error" before)."""
    ds = _Toy(16)
    ds.x[:] = float("nan")
    with pytest.raises(TrainingError, match="loss is nan at epoch 1, step 1") as e:
        fit(_task(), make_loader(ds, 8), make_loader(ds, 8, train=False), _cfg(epochs=1), tmp_path)
    assert "--lr" in e.value.fix


def test_short_runs_still_reach_the_peak_rate_and_anneal():
    # the demo's teacher ran 47 steps against a 50-step warm-up: its rate was still climbing at the end
    from train.trainer import cosine_lr, effective_warmup

    for total, warmup in [(47, 50), (10, 50), (1000, 50), (3, 0)]:
        w = effective_warmup(total, warmup)
        lrs = [cosine_lr(s, total, w) for s in range(total)]
        assert w <= max(0, total // 10) and w <= warmup
        assert max(lrs) > 0.9, (total, warmup, max(lrs))
        assert lrs[-1] < 0.05 + 1.0 / total, (total, warmup, lrs[-1])
    assert effective_warmup(1000, 50) == 50


def test_empty_loader_is_an_error():
    with pytest.raises(DatasetError, match="empty"):
        make_loader(torch.utils.data.TensorDataset(torch.zeros(0, 3)), 4)


# --- CLI on a tiny real subset ------------------------------------------------------------------
def _ffd(*args):
    from typer.testing import CliRunner

    from ffd.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def ciplab(shared):
    p = shared / "data" / "ciplab_real_fake_160" / "face_crops"
    if not p.is_dir():
        pytest.skip("ciplab face_crops missing")
    return p


TINY = ["--size", 64, "--epochs", 1, "--batch-size", 8, "--max-per-class", 16, "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def teacher_run(ciplab, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    r = _ffd("train", "teacher", "--data", ciplab, "--out", out, "--model", "teacher_tiny", *TINY)
    assert r.exit_code == 0, (r.output, r.exception)
    return out


def test_cli_teacher_student_eval(ciplab, teacher_run, tmp_path):
    t = torch.load(teacher_run / "best.pt", weights_only=True)
    assert t["model_name"] == "teacher_tiny" and json.loads(t["card"])["spec"]["size"] == 64
    assert f"geometric={GEOMETRIC_TEACHER}" in json.loads(t["config"])["augment"]  # the recipe's default
    out = tmp_path / "student"
    r = _ffd("train", "student", "--data", ciplab, "--out", out, "--kd", "two-in-one", "--teacher",
             teacher_run / "best.pt", "--model", "student_tiny", "--cross-blend", 0.5,
             "--geometric", 0.4, *[a for a in TINY if a not in ("--size", 64)])
    assert r.exit_code == 0, (r.output, r.exception)
    blob = torch.load(out / "last.pt", weights_only=True)
    cfg = json.loads(blob["config"])
    assert cfg["kd"] == "two_in_one" and blob["model_name"] == "student_tiny"
    assert cfg["cross_blend"] == 0.5 and cfg["splits"]["cross_blend"] == 0.5
    assert "geometric=0.4" in cfg["augment"] and "jpeg=0.3" in cfg["augment"]  # the recipe's augmentation + the option
    assert json.loads(blob["card"])["extra"]["teacher"]["name"] == "teacher_tiny"
    assert "train_kd_freq" in json.loads(blob["metrics"])

    # resume: the run is complete, re-running with --resume trains no further epoch
    r = _ffd("train", "student", "--data", ciplab, "--out", out, "--kd", "two-in-one", "--teacher",
             teacher_run / "best.pt", "--model", "student_tiny", "--resume",
             *[a for a in TINY if a not in ("--size", 64)])
    assert r.exit_code == 0, r.output
    assert len(json.loads((out / "history.json").read_text())) == 1

    # without --geometric a student gets the recipe's default (train.recipes.GEOMETRIC_STUDENT)
    plain = tmp_path / "plain"
    r = _ffd("train", "student", "--data", ciplab, "--out", plain, "--kd", "none", "--model", "student_tiny",
             "--max-steps", 1, *TINY)
    assert r.exit_code == 0, (r.output, r.exception)
    assert f"geometric={GEOMETRIC_STUDENT}" in json.loads(torch.load(plain / "last.pt", weights_only=True)["config"])[
        "augment"]

    rep, roc = tmp_path / "rep.json", tmp_path / "roc.png"
    r = _ffd("eval", out / "best.pt", ciplab, "--split", "test", "--max-per-class", 16, "--out", rep, "--roc", roc)
    assert r.exit_code == 0, (r.output, r.exception)
    report = json.loads(rep.read_text())
    assert 0 <= report["frame"]["auc"] <= 1 and report["frame"]["n"] > 0 and "eer" in report["video"]
    assert report["cost"]["params"] == sum(v.numel() for v in blob["state_dict"].values()
                                           if v.dtype.is_floating_point) - sum(
        v.numel() for k, v in blob["state_dict"].items() if "running" in k)
    assert report["cost"]["flops"] > 0 and roc.stat().st_size > 1000
    assert set(report["per_method"]) == {"fake"}


def test_cli_errors(ciplab, teacher_run, shared, tmp_path):
    from ffd.cli import main

    def err(*args):
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in args])
        assert e.value.code != 0

    london = shared / "data" / "london_faces" / "neutral"
    stu = ["train", "student", "--data", ciplab, "--out", tmp_path / "s", "--model", "student_tiny", *TINY[2:]]
    with pytest.raises(ConfigError, match="student_small"):
        _run_lib(lambda: create_model("student_nope"))
    err(*stu, "--kd", "two-in-one")  # no teacher
    err(*stu, "--kd", "nope")
    r = _ffd(*stu, "--kd", "none", "--cross-blend", 1.5)
    assert r.exit_code != 0 and "--cross-blend" in str(r.exception) and not (tmp_path / "s").exists()
    r = _ffd(*stu, "--kd", "none", "--geometric", -0.1)
    assert r.exit_code != 0 and "--geometric" in str(r.exception) and not (tmp_path / "s").exists()
    err("train", "teacher", "--data", ciplab, "--out", tmp_path / "t", "--model", "teacher_nope", *TINY)
    err("eval", teacher_run / "best.pt", f"real:{london}", "--max-per-class", 4)  # one class only
    err("train", "teacher", "--data", f"real:{london}", "--no-sbi", "--out", tmp_path / "t", "--model", "teacher_tiny",
        *TINY)

    from train.recipes import build_datasets, train_student

    with pytest.raises(DatasetError, match="only real"):
        train_student([f"real:{london}"], tmp_path / "x", kd="none", model="student_tiny", sbi=False, size=64,
                      max_per_class=8, epochs=1, progress=False)
    with pytest.raises(DatasetError, match="split is empty"):
        build_datasets([ciplab], PreprocessSpec(size=64), max_per_class=4, val=0.0, test=0.1)
    # a student checkpoint passed as teacher: not a dual-branch teacher
    student_ckpt = tmp_path / "stu.pt"
    from edge.spec import ModelCard
    from train.checkpoint import save_checkpoint

    save_checkpoint(student_ckpt, create_model("student_tiny"), ModelCard("student_tiny", spec=PreprocessSpec(size=64)))
    with pytest.raises(ConfigError, match="dual-branch"):
        train_student([ciplab], tmp_path / "y", kd="two-in-one", teacher=student_ckpt, model="student_tiny",
                      max_per_class=8, epochs=1, progress=False)


def _run_lib(fn):
    return fn()
