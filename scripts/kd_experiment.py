#!/usr/bin/env python
"""Reproduce the comparison of Zhou et al., "Two-in-one Knowledge Distillation for Efficient
Facial Forgery Detection", on the data in ../shared: teacher, student alone, logit KD,
spatial-only KD, naive dual KD and two-in-one KD -- same data, same teacher, same seeds.

Data (fixed, documented rule):
* TEST = the ciplab_real_fake_160/face_crops images whose group (file stem) falls in the
  test part of ``train.data.split_samples(val=0.1, test=0.3, seed=0)``, i.e.
  ``int(sha256("0:<stem>")[:16], 16) / 2**64 < 0.3``. No run ever trains or selects on them.
* VAL (checkpoint selection by AUC) = the val part of the same split (0.3 <= u < 0.4).
* TRAIN = the rest of ciplab face_crops (capped at ``--ciplab-per-class`` per class) +
  real faces extracted from london_faces (neutral, smiling) and interfaces_cc0 with YuNet
  (``edge.faces.extract``) + one self-blended pseudo-fake (SBI) per such real face.
The training images (SBI blends included) are materialised once per run at ``--size`` so that
every method sees byte-identical inputs; a horizontal flip chosen by (seed, epoch, index) is
the only augmentation. The frozen teacher's outputs for every training image and its flip are
computed once and fed to all KD students (identical to running the teacher in eval mode each
step, and what makes the experiment affordable on 2 CPU cores).

Usage (about 20-30 min on 2 busy CPU cores with the defaults):
    nice .venv/bin/python scripts/kd_experiment.py --work /tmp/ffd_kd --seeds 0 1 2
Writes ``docs/kd_results.md`` and ``docs/kd_results.json`` (partial results after every run).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from _common import log, real_faces  # noqa: E402

METHODS = ["none", "logit", "spatial", "naive_dual", "two_in_one"]
LABELS = {"teacher": "Teacher (dual-branch)", "none": "Student alone", "logit": "Logit KD",
          "spatial": "Spatial-only feature KD", "naive_dual": "Naive dual KD (one projector)",
          "two_in_one": "Two-in-one KD (2 projectors + grad. homog.)"}


def build_data(args):
    import torch

    from edge.spec import PreprocessSpec
    from train.data import FaceDataset, load_samples, split_samples
    from train.sbi import SBIConfig

    shared = Path(args.shared)
    spec = PreprocessSpec(size=args.size)
    cip = shared / "data" / "ciplab_real_fake_160"
    parts = split_samples(load_samples(cip / "face_crops"), val=0.1, test=0.3, seed=0)
    difficulty = {}
    with open(cip / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            difficulty[Path(row["path"]).name] = row["difficulty"] or "real"
    rng = np.random.default_rng(0)
    train_cip = []
    for lab in (0, 1):
        cls = [s for s in parts["train"] if s.label == lab]
        idx = rng.permutation(len(cls))[: args.ciplab_per_class]
        train_cip += [cls[i] for i in sorted(idx)]

    # real faces for SBI: extracted once with the detector (spec crops), cached in --work
    yunet = shared / "models" / "face_detection_yunet.onnx"
    reals = real_faces(shared, Path(args.work), PreprocessSpec(size=128), yunet)
    log(f"train: {len(train_cip)} ciplab + {len(reals)} extracted real faces (+ as many SBI pseudo-fakes); "
        f"val {len(parts['val'])}; test {len(parts['test'])}")

    def tensors(ds):
        xs, ys = zip(*(ds[i] for i in range(len(ds))))
        return torch.stack(xs), torch.tensor(ys)

    x1, y1 = tensors(FaceDataset(train_cip, spec))
    x2, y2 = tensors(FaceDataset(reals, spec, sbi=SBIConfig(), seed=1234))
    xv, yv = tensors(FaceDataset(parts["val"], spec))
    xt, yt = tensors(FaceDataset(parts["test"], spec))
    test_meta = {"difficulty": [difficulty.get(Path(s.path).name, "real") for s in parts["test"]],
                 "groups": [s.group for s in parts["test"]]}
    counts = {"train_ciplab_real": int((y1 == 0).sum()), "train_ciplab_fake": int((y1 == 1).sum()),
              "train_extracted_real": int((y2 == 0).sum()), "train_sbi_fake": int((y2 == 1).sum()),
              "val_real": int((yv == 0).sum()), "val_fake": int((yv == 1).sum()),
              "test_real": int((yt == 0).sum()), "test_fake": int((yt == 1).sum())}
    return spec, torch.cat([x1, x2]), torch.cat([y1, y2]), xv, yv, xt, yt, test_meta, counts


class CachedSet:
    """Fixed tensors, a per-(seed, epoch) random flip, and optional cached teacher outputs."""

    def __init__(self, x, y, seed=0, teacher=None):
        self.x, self.y, self.seed, self.teacher, self.flip = x, y, seed, teacher, None
        self.set_epoch(0)

    def set_epoch(self, epoch):
        import torch

        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        self.flip = (torch.rand(len(self.y), generator=g) < 0.5).long()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        f = int(self.flip[i])
        x = self.x[i].flip(-1) if f else self.x[i]
        if self.teacher is None:
            return x, self.y[i]
        return x, self.y[i], {k: v[f][i] for k, v in self.teacher.items()}


def teacher_cache(teacher, x, batch=128):
    import torch

    out = {k: [[], []] for k in ("spatial", "freq", "logits")}
    with torch.no_grad():
        for i in range(0, len(x), batch):
            for f, xb in enumerate((x[i:i + batch], x[i:i + batch].flip(-1))):
                feats = teacher.forward_features(xb)
                out["logits"][f].append(teacher.forward_head(feats))
                out["spatial"][f].append(feats["spatial"])
                out["freq"][f].append(feats["freq"])
    return {k: [torch.cat(v[0]), torch.cat(v[1])] for k, v in out.items()}


def test_metrics(model, xt, yt, meta):
    import torch

    from train.evaluate import metrics_report, model_cost

    model.eval()
    with torch.no_grad():
        s = torch.cat([torch.softmax(model(xt[i:i + 256]), 1)[:, 1] for i in range(0, len(xt), 256)]).numpy()
    rep = metrics_report(s, yt.numpy(), meta["difficulty"], meta["groups"], 0.5)
    return {"auc": rep["frame"]["auc"], "acc": rep["frame"]["acc"], "eer": rep["frame"]["eer"], "ap": rep["frame"]["ap"],
            "auc_by_difficulty": {k: v["auc"] for k, v in rep["per_method"].items()}, **model_cost(model, xt.shape[-1])}


def run(task, train_set, val_set, args, spec, out, epochs, lr, seed):
    from train.trainer import FitConfig, fit, make_loader

    cfg = FitConfig(epochs=epochs, lr=lr, seed=seed, device="cpu", progress=False, log=log, spec=spec,
                    config={"experiment": "kd_experiment"})
    train_set.seed = seed
    res = fit(task, make_loader(train_set, args.batch_size, True, seed), make_loader(val_set, 256, False), cfg, out)
    return res


def _count(n: float) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def write_results(results, args, counts, path_md, path_json):
    rows = []
    for key in ["teacher"] + METHODS:
        rs = results.get(key, [])
        if not rs:
            continue
        auc = np.array([r["auc"] for r in rs])
        acc = np.array([r["acc"] for r in rs])
        eer = np.array([r["eer"] for r in rs])
        hard = np.array([r["auc_by_difficulty"].get("hard", np.nan) for r in rs])
        sd = lambda a: f" ± {a.std(ddof=1):.3f}" if len(a) > 1 else ""  # noqa: E731
        rows.append(f"| {LABELS[key]} | {_count(rs[0]['params'])} | {rs[0]['flops'] / 1e6:.0f} M | "
                    f"{auc.mean():.3f}{sd(auc)} | {acc.mean():.3f}{sd(acc)} | {eer.mean():.3f}{sd(eer)} | "
                    f"{np.nanmean(hard):.3f} | {len(rs)} | {' '.join(f'{a:.3f}' for a in auc)} |")
    md = [
        "# Two-in-one KD: comparison on our data",
        "",
        "Generated by `scripts/kd_experiment.py` (do not edit by hand). "
        f"Input {args.size}x{args.size}, teacher `{args.teacher}` trained {args.teacher_epochs} epochs (seed 0), "
        f"students `{args.student}` trained {args.epochs} epochs per seed, lr {args.lr}, batch {args.batch_size}, "
        f"KD weight 1.0, CPU.",
        "",
        "TEST = ciplab_real_fake_160/face_crops groups with `int(sha256('0:<stem>')[:16],16)/2**64 < 0.3` "
        "(never trained on or used for selection); checkpoint = best validation AUC (0.3 <= u < 0.4). "
        f"Data: {json.dumps(counts)}.",
        "",
        "FLOPs = 2 x MACs of one forward pass at the input size; ACC at threshold 0.5; mean ± std over seeds; "
        "'hard AUC' = ciplab fakes of difficulty hard vs all test reals.",
        "",
        "| model | params | FLOPs | test AUC | test ACC | test EER | hard AUC | seeds | AUC per seed |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "What this shows about the paper's claim, and the limits of this run: see "
        "[training.md](training.md#experiment-results).",
        "",
    ]
    path_md.write_text("\n".join(md))
    path_json.write_text(json.dumps({"args": vars(args), "counts": counts, "results": results}, indent=1, default=float))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--work", default="/tmp/ffd_kd_experiment")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--teacher", default="teacher_dual")
    ap.add_argument("--student", default="student_small")
    ap.add_argument("--teacher-epochs", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--ciplab-per-class", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-md", default=str(ROOT / "docs" / "kd_results.md"))
    ap.add_argument("--out-json", default=str(ROOT / "docs" / "kd_results.json"))
    ap.add_argument("--render", metavar="JSON", help="Only re-write the markdown table from a results JSON.")
    args = ap.parse_args(argv)
    if args.render:
        blob = json.loads(Path(args.render).read_text())
        saved = argparse.Namespace(**{**blob["args"], "render": None, "out_md": args.out_md, "out_json": args.out_json})
        write_results(blob["results"], saved, blob["counts"], Path(args.out_md), Path(args.out_json))
        return

    import torch

    from train.kd import create_kd_task
    from train.registry import create_model
    from train.task import ClassifierTask

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    t0 = time.time()
    spec, x, y, xv, yv, xt, yt, meta, counts = build_data(args)
    log(f"data ready in {time.time() - t0:.0f}s: {counts}")
    results: dict[str, list] = {}
    md, js = Path(args.out_md), Path(args.out_json)

    torch.manual_seed(0)
    teacher = create_model(args.teacher)
    res = run(ClassifierTask(teacher, args.teacher, {}), CachedSet(x, y), CachedSet(xv, yv), args, spec, work / "teacher",
              args.teacher_epochs, args.lr, 0)
    from train.checkpoint import load_checkpoint

    teacher, _, _ = load_checkpoint(work / "teacher" / "best.pt")
    results["teacher"] = [{**test_metrics(teacher, xt, yt, meta), "seed": 0, "val_auc": res["best_auc"]}]
    log(f"teacher test: {results['teacher'][0]}")
    write_results(results, args, counts, md, js)
    cache = teacher_cache(teacher, x)
    log(f"teacher outputs cached ({time.time() - t0:.0f}s)")

    for seed in args.seeds:
        for method in args.methods:
            torch.manual_seed(seed)
            student = create_model(args.student)
            task = create_kd_task(method, student, None if method == "none" else teacher, args.student, {})
            out = work / f"{method}_s{seed}"
            res = run(task, CachedSet(x, y, teacher=None if method == "none" else cache), CachedSet(xv, yv), args,
                      spec, out, args.epochs, args.lr, seed)
            model, _, _ = load_checkpoint(out / "best.pt")
            r = {**test_metrics(model, xt, yt, meta), "seed": seed, "val_auc": res["best_auc"]}
            results.setdefault(method, []).append(r)
            log(f"{method} seed {seed}: test AUC {r['auc']:.4f} ACC {r['acc']:.4f} ({time.time() - t0:.0f}s)")
            write_results(results, args, counts, md, js)
    log(f"done in {time.time() - t0:.0f}s -> {md}")


if __name__ == "__main__":
    main()
