"""Distillation methods, gradient homogenization (numbers), and that a short KD run learns."""
from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from edge.errors import ConfigError  # noqa: E402
from train.kd import (KD_METHODS, create_kd_task, feature_distance, grad_homogenize, homogenize,  # noqa: E402
                      normalize_kd_name)
from train.registry import create_model  # noqa: E402

torch.set_num_threads(1)


def _pair(seed=0):
    torch.manual_seed(seed)
    return create_model("student_tiny"), create_model("teacher_tiny").eval()


def _batch(n=8, size=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 2


def test_homogenize_equalises_per_sample_norms():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 8, 3, 3, generator=g) * 100.0
    b = torch.randn(4, 8, 3, 3, generator=g) * 0.01
    combined, stats = homogenize([a, b])
    na, nb = a.flatten(1).norm(dim=1), b.flatten(1).norm(dim=1)
    assert (na / nb).min() > 1000  # very unequal before
    target = (na + nb) / 2
    sa, sb = a * (target / na).view(-1, 1, 1, 1), b * (target / nb).view(-1, 1, 1, 1)
    torch.testing.assert_close(combined, sa + sb)
    after = torch.tensor(stats["after_per_sample"])
    torch.testing.assert_close(after[0], after[1], rtol=1e-5, atol=0)  # equal after
    torch.testing.assert_close(after[0], target, rtol=1e-5, atol=0)  # ... at the mean of the norms
    # the total magnitude of the two contributions is unchanged
    torch.testing.assert_close(after.sum(0), na + nb, rtol=1e-5, atol=0)


def test_grad_homogenize_backward_matches_rule_and_leaves_projectors_alone():
    student, teacher = _pair()
    task = create_kd_task("two-in-one", student, teacher, "student_tiny", kd_weight=1.0)
    x, _ = _batch()
    with torch.no_grad():
        t = teacher.forward_features(x)
        f = student.forward_features(x)
    f = f.detach().requires_grad_(True)
    proj = task.projectors
    # per-branch gradients on f without homogenization
    ls = feature_distance(proj["spatial"](f), t["spatial"])
    lf = 10.0 * feature_distance(proj["freq"](f), t["freq"])  # make them unequal on purpose
    gs, = torch.autograd.grad(ls, f, retain_graph=True)
    gf, = torch.autograd.grad(lf, f, retain_graph=True)
    ratio = gf.flatten(1).norm(dim=1) / gs.flatten(1).norm(dim=1)
    assert (ratio > 2).all() or (ratio < 0.5).all()
    plain_proj_grads = torch.autograd.grad(ls + lf, list(proj.parameters()))
    # through the autograd Function
    stats = {}
    f1, f2 = grad_homogenize(f, 2, stats)
    loss = feature_distance(proj["spatial"](f1), t["spatial"]) + 10.0 * feature_distance(proj["freq"](f2), t["freq"])
    proj.zero_grad()
    loss.backward()
    expected, _ = homogenize([gs, gf])
    torch.testing.assert_close(f.grad, expected, rtol=1e-4, atol=1e-7)
    after = torch.tensor(stats["after_per_sample"])
    torch.testing.assert_close(after[0], after[1], rtol=1e-4, atol=0)
    before = torch.tensor(stats["before_per_sample"])
    torch.testing.assert_close(before[1] / before[0], ratio, rtol=1e-4, atol=0)
    for p, g in zip(proj.parameters(), plain_proj_grads):  # projectors keep their own, unscaled gradients
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", KD_METHODS)
def test_each_method_steps_and_teacher_stays_frozen(method):
    student, teacher = _pair()
    t_before = copy.deepcopy(teacher.state_dict())
    task = create_kd_task(method, student, None if method == "none" else teacher, "student_tiny")
    task.train()
    assert not teacher.training
    names = {n.split(".")[0] for n, _ in task.named_parameters()}
    assert "teacher" not in names  # the teacher is outside the trained module tree
    opt = torch.optim.AdamW(task.trainable_parameters(), 1e-2)
    out = task.step(_batch())
    assert "loss" in out and torch.isfinite(out["loss"])
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, t_before[k]), k
    if method == "two_in_one":
        st = task.last_stats
        assert len(st["after"]) == 2 and abs(st["after"][0] - st["after"][1]) <= 1e-5 * max(st["after"])


@pytest.mark.parametrize("method", ["two_in_one", "naive_dual", "spatial"])
def test_short_distillation_lowers_loss(method):
    student, teacher = _pair(3)
    task = create_kd_task(method, student, teacher, "student_tiny")
    task.train()
    opt = torch.optim.AdamW(task.trainable_parameters(), 5e-3)
    batch = _batch(16, seed=5)
    first = None
    for _ in range(25):
        out = task.step(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else {k: float(v.detach()) for k, v in out.items()}
    task.eval()
    with torch.no_grad():
        last = {k: float(v) for k, v in task.step(batch).items()}
    assert last["kd"] < 0.8 * first["kd"], (first, last)
    assert last["loss"] < first["loss"]


def test_bad_kd_configs():
    student, teacher = _pair()
    with pytest.raises(ConfigError, match="two-in-one"):
        normalize_kd_name("two_in_two")
    with pytest.raises(ConfigError, match="teacher"):
        create_kd_task("spatial", student, None, "student_tiny")
    with pytest.raises(ConfigError, match="dual-branch"):
        create_kd_task("two-in-one", student, create_model("student_small"), "student_tiny")
