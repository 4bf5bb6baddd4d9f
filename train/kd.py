"""Knowledge distillation from the dual-branch teacher into a single-branch student.

Implements the comparison of Zhou et al., "Two-in-one Knowledge Distillation for Efficient
Facial Forgery Detection": ``none`` (student alone), ``logit`` (Hinton et al. 2015, KL at
temperature T), ``spatial`` (feature KD from the teacher's spatial branch only, through
one projector), ``naive_dual`` (both branches through ONE projector onto the concatenated
teacher features) and ``two_in_one``: one dedicated projector per teacher branch maps the
shared student feature into that branch's feature space, and *gradient homogenization*
rescales the per-branch distillation gradients on the shared student feature to a common
magnitude before they are summed and flow into the student together with the task loss.

Gradient homogenization rule (:func:`homogenize`): for every sample ``n`` and branch ``b``
let ``g_b[n] = dL_b/df[n]`` (the gradient of branch ``b``'s weighted distillation loss on
the student feature map ``f``) and ``r_b[n] = ||g_b[n]||_2``. The student receives
``sum_b g_b[n] * m[n] / r_b[n]`` with ``m[n] = mean_b r_b[n]``, i.e. every branch's gradient
gets the *mean* of the branch norms. Why: (1) equal magnitudes stop one branch (typically
the frequency branch, whose feature space is far from an RGB student's and so produces the
larger, conflicting gradient) from dominating the shared feature, which is why naive dual
KD underperforms spatial-only KD; (2) the mean keeps the total magnitude (``sum_b r_b``)
unchanged, so the KD weight keeps its meaning and the effective learning rate is not
altered, only the balance; (3) per sample, so a few hard samples do not set the scale for
the batch; (4) unlike rescaling to the task-loss gradient, it does not switch
distillation off when the cross-entropy saturates. Projectors are not affected: each gets
the ordinary gradient of its own loss. It is implemented as an autograd Function
(:class:`GradHomogenize`) that hands one view of ``f`` to each branch and combines their
gradients in ``backward``, so ``losses["loss"].backward()``, AMP's scaler (the rule is
scale-equivariant) and DDP work unchanged.

Feature losses: projector output and teacher map are pooled to a common spatial size if
they differ, L2-normalised over channels at every location, and compared with the squared
distance summed over channels and averaged over locations (range 0..4).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.errors import ConfigError

from .task import ClassifierTask, TrainTask

KD_METHODS = ("none", "logit", "spatial", "naive_dual", "two_in_one")
BRANCHES = ("spatial", "freq")


def normalize_kd_name(name: str) -> str:
    n = name.strip().lower().replace("-", "_")
    if n not in KD_METHODS:
        known = ", ".join(m.replace("_", "-") for m in KD_METHODS)
        raise ConfigError(f"unknown distillation method {name!r}; known: {known}",
                          fix="pick one of the listed methods")
    return n


# --- gradient homogenization -------------------------------------------------------------
def homogenize(grads: list[torch.Tensor | None], eps: float = 1e-12) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """Combine per-branch gradients (same shape, batch first) after rescaling each sample's
    branch gradients to the mean of their L2 norms. Returns (combined, stats) with the mean
    per-branch norms before and after (``stats["before"][b]``, ``stats["after"][b]``)."""
    ref = next(g for g in grads if g is not None)
    gs = [torch.zeros_like(ref) if g is None else g for g in grads]
    n = ref.shape[0]
    norms = torch.stack([g.float().reshape(n, -1).norm(dim=1) for g in gs])  # (B, N)
    target = norms.mean(dim=0)  # (N,)
    scales = target / norms.clamp_min(eps)  # (B, N)
    scales = torch.where(norms > eps, scales, torch.zeros_like(scales))
    view = (n,) + (1,) * (ref.dim() - 1)
    scaled = [g * s.view(view).to(g.dtype) for g, s in zip(gs, scales)]
    combined = torch.stack(scaled).sum(dim=0)
    after = torch.stack([g.float().reshape(n, -1).norm(dim=1) for g in scaled])
    stats = {"before": norms.mean(dim=1).tolist(), "after": after.mean(dim=1).tolist(),
             "before_per_sample": norms.tolist(), "after_per_sample": after.tolist()}
    return combined, stats


class GradHomogenize(torch.autograd.Function):
    """Identity in forward (one view of ``x`` per branch); :func:`homogenize` in backward."""

    @staticmethod
    def forward(ctx, x, n_branches: int, stats: dict | None):
        ctx.stats = stats
        return tuple(x.view_as(x) for _ in range(n_branches))

    @staticmethod
    def backward(ctx, *grads):
        combined, stats = homogenize(list(grads))
        if ctx.stats is not None:
            ctx.stats.clear()
            ctx.stats.update(stats)
        return combined, None, None


def grad_homogenize(x: torch.Tensor, n_branches: int = 2, stats: dict | None = None) -> tuple[torch.Tensor, ...]:
    return GradHomogenize.apply(x, n_branches, stats)


# --- building blocks -----------------------------------------------------------------------
class Projector(nn.Sequential):
    """Student feature -> a teacher feature space: 1x1 conv-BN-ReLU-1x1 conv."""

    def __init__(self, in_chs: int, out_chs: int, hidden: int | None = None):
        hidden = hidden or out_chs
        super().__init__(nn.Conv2d(in_chs, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, out_chs, 1))


def align(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool the larger of two maps to the smaller's spatial size."""
    if a.shape[-2:] == b.shape[-2:]:
        return a, b
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    return F.adaptive_avg_pool2d(a, size), F.adaptive_avg_pool2d(b, size)


def feature_distance(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Squared distance of channel-L2-normalised maps, summed over channels, mean over N, H, W."""
    p, t = align(p, t)
    p, t = F.normalize(p.float(), dim=1), F.normalize(t.float(), dim=1)
    return (p - t).pow(2).sum(dim=1).mean()


def logit_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(student_logits.float() / t, dim=1), F.softmax(teacher_logits.float() / t, dim=1),
                    reduction="batchmean") * t * t


# --- tasks -----------------------------------------------------------------------------------
class DistillTask(TrainTask):
    """Base: frozen teacher (eval, no grad, outside the module tree), student, weight ``kd_weight``."""

    method = "base"

    def __init__(self, student: nn.Module, teacher: nn.Module, student_name: str, student_kwargs: dict | None = None,
                 kd_weight: float = 1.0):
        super().__init__()
        self.model, self.model_name, self.model_kwargs = student, student_name, dict(student_kwargs or {})
        self.kd_weight = kd_weight
        self.set_frozen("teacher", teacher)
        self.last_stats: dict = {}

    @torch.no_grad()
    def teacher_outputs(self, x, batch=None):
        """Teacher features and logits; a batch ``(x, y, cached)`` whose third item is a dict with
        ``spatial``/``freq``/``logits`` (outputs precomputed for a fixed dataset) skips the teacher."""
        if batch is not None and len(batch) > 2 and isinstance(batch[2], dict) and "logits" in batch[2]:
            cached = batch[2]
            return {k: v for k, v in cached.items() if k != "logits"}, cached["logits"]
        feats = self.teacher.forward_features(x)
        return feats, self.teacher.forward_head(feats)

    def _teacher_dims(self) -> dict[str, int]:
        dims = getattr(self.teacher, "feature_dims", None)
        if not isinstance(dims, dict) or not all(b in dims for b in BRANCHES):
            raise ConfigError(f"{self.method} KD needs a dual-branch teacher exposing feature_dims "
                              f"{{'spatial', 'freq'}}, got {type(self.teacher).__name__}",
                              fix="pass a teacher_dual* checkpoint as --teacher")
        return dims


class LogitKDTask(DistillTask):
    method = "logit"

    def __init__(self, *a, temperature: float = 4.0, **kw):
        super().__init__(*a, **kw)
        self.temperature = temperature

    def forward(self, batch):
        x, y = batch[0], batch[1]
        _, t_logits = self.teacher_outputs(x, batch)
        logits = self.model(x)
        ce = F.cross_entropy(logits, y)
        kd = logit_kd(logits, t_logits, self.temperature)
        return {"loss": ce + self.kd_weight * kd, "ce": ce, "kd": kd}


class FeatureKDTask(DistillTask):
    """``spatial`` (branches=("spatial",)), or one projector per branch (``two_in_one`` subclass)."""

    method = "spatial"
    branches: tuple[str, ...] = ("spatial",)

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        dims = self._teacher_dims()
        s_dim = self.model.num_features
        self.projectors = nn.ModuleDict({b: Projector(s_dim, dims[b]) for b in self.branches})

    def _branch_inputs(self, f):
        return [f] * len(self.branches)

    def forward(self, batch):
        x, y = batch[0], batch[1]
        t_feats, _ = self.teacher_outputs(x, batch)
        f = self.model.forward_features(x)
        logits = self.model.forward_head(f)
        ce = F.cross_entropy(logits, y)
        out = {"ce": ce}
        kd = 0.0
        for b, fb in zip(self.branches, self._branch_inputs(f)):
            out[f"kd_{b}"] = feature_distance(self.projectors[b](fb), t_feats[b])
            kd = kd + out[f"kd_{b}"]
        out["kd"] = kd
        out["loss"] = ce + self.kd_weight * kd
        return out


class TwoInOneKDTask(FeatureKDTask):
    """Dedicated projector per branch + gradient homogenization on the shared student feature."""

    method = "two_in_one"
    branches = BRANCHES

    def __init__(self, *a, homogenize: bool = True, **kw):
        super().__init__(*a, **kw)
        self.homogenize = homogenize

    def _branch_inputs(self, f):
        if not (self.homogenize and torch.is_grad_enabled() and f.requires_grad):
            return [f] * len(self.branches)
        self.last_stats = {}
        return list(grad_homogenize(f, len(self.branches), self.last_stats))


class NaiveDualKDTask(DistillTask):
    """ONE projector onto the channel-concatenation of both (aligned) teacher branch maps."""

    method = "naive_dual"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        dims = self._teacher_dims()
        self.projector = Projector(self.model.num_features, dims["spatial"] + dims["freq"])

    def forward(self, batch):
        x, y = batch[0], batch[1]
        t_feats, _ = self.teacher_outputs(x, batch)
        ts, tf = align(t_feats["spatial"], t_feats["freq"])
        f = self.model.forward_features(x)
        logits = self.model.forward_head(f)
        ce = F.cross_entropy(logits, y)
        kd = feature_distance(self.projector(f), torch.cat([ts, tf], dim=1))
        return {"loss": ce + self.kd_weight * kd, "ce": ce, "kd": kd}


_TASKS = {"logit": LogitKDTask, "spatial": FeatureKDTask, "naive_dual": NaiveDualKDTask, "two_in_one": TwoInOneKDTask}


def create_kd_task(method: str, student: nn.Module, teacher: nn.Module | None, student_name: str,
                   student_kwargs: dict | None = None, **kw) -> TrainTask:
    """Build the task for ``method`` (one of :data:`KD_METHODS`, ``-`` or ``_``)."""
    method = normalize_kd_name(method)
    if method == "none":
        return ClassifierTask(student, student_name, student_kwargs, aux_weight=0.0)
    if teacher is None:
        raise ConfigError(f"--kd {method.replace('_', '-')} needs a teacher",
                          fix="pass --teacher CKPT (from `ffd train teacher`)")
    return _TASKS[method](student, teacher, student_name, student_kwargs, **kw)
