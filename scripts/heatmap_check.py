"""Do the forgery heatmaps point at the forgery? Self-blended pseudo-fakes, whose blend mask is known.

From held-out real faces (the test split of the demo's extractions of london_faces, interfaces_cc0 and
ciplab's reals), ``--n`` self-blends (train/sbi.py, default config, several blends per face with their own
seeds) are made with their masks. For the FP32 student and its ONNX Runtime INT8 flavour the exact CAM
(edge.heatmap: ReLU, upsampled bilinearly to the crop) of every pseudo-fake is compared with its mask:

* ``mass_in``: share of the heatmap's mass inside the blend region (mask >= half its peak), against
  ``area``: that region's share of the crop (what a heatmap spread uniformly would score); ``lift`` =
  mass_in / area;
* ``pointing``: share of samples whose heatmap peak falls inside the region (pointing game);
* a centre-prior baseline (an isotropic Gaussian at the crop centre, sigma = side/4): the blend region is
  a face hull, mostly central, so a heatmap must beat this to mean anything;
* INT8 vs FP32: Pearson r of the raw CAMs (feature grid) per sample.

The student is ``runs/demo2/student.pt`` (the demo's two-in-one MobileNetV2) unless ``--ckpt`` names
another; it is exported with the features output into ``--work`` and quantized there with the demo's
calibration set. Prints a table; writes docs/bench/heatmaps.json.

    nice -n 10 .venv/bin/python scripts/heatmap_check.py [--n 300]
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from _common import ROOT, log


def held_out_reals(faces_root: Path, names=("london", "interfaces", "ciplab")) -> list:
    from train.data import load_samples
    from train.data.split import split_samples

    out = []
    for n in names:
        d = faces_root / n
        if not (d / "manifest.csv").is_file():
            continue
        reals = [s for s in load_samples(d) if s.label == 0 and not s.is_video]
        test = split_samples(reals)["test"]
        out += [s for s in test if s.dense_landmarks or s.landmarks]
        log(f"{n}: {len(test)} held-out real faces")
    return out


def make_blends(samples: list, n: int, seed: int = 0):
    from edge.media import read_image
    from train.sbi import self_blend

    crops, masks, src = [], [], []
    for i in range(n):
        s = samples[i % len(samples)]
        fake, mask = self_blend(read_image(s.path), s.landmarks, s.dense_landmarks,
                                rng=np.random.default_rng([seed, i]))
        crops.append(fake)
        masks.append(mask)
        src.append(s.path)
    return crops, masks, src


def region(mask: np.ndarray) -> np.ndarray:
    return mask >= 0.5 * float(mask.max()) if mask.max() > 0 else np.zeros(mask.shape, bool)


def scores_vs_masks(maps: list[np.ndarray], masks: list[np.ndarray]) -> dict:
    mass, area, hit = [], [], []
    for m, k in zip(maps, masks):
        r = region(k)
        tot = float(m.sum())
        if not r.any() or tot <= 0:
            continue
        mass.append(float(m[r].sum()) / tot)
        area.append(float(r.mean()))
        hit.append(bool(r.flat[int(np.argmax(m))]))
    mass_in, ar = float(np.mean(mass)), float(np.mean(area))
    return {"n": len(mass), "mass_in": mass_in, "mass_out": 1.0 - mass_in, "area": ar, "lift": mass_in / ar,
            "pointing": float(np.mean(hit)), "mass_in_median": float(np.median(mass))}


def maps_for(model: Path, crops: list, batch: int = 64):
    from edge import heatmap as hm
    from edge.forgery import ForgeryDetector

    scores, cams, ups = [], [], []
    with ForgeryDetector(model, "ort", batch_size=batch) as fd:
        for i in range(0, len(crops), batch):
            sc, c = fd.cams(crops[i:i + batch])
            scores.append(sc)
            cams.append(c)
        card = fd.card
    cams = np.concatenate(cams)
    for c, crop in zip(cams, crops):
        ups.append(hm.upsample(np.maximum(c, 0.0), crop.shape[:2]))
    return np.concatenate(scores), cams, ups, card


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1), np.nan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", type=Path, default=ROOT / "runs" / "demo2" / "student.pt")
    ap.add_argument("--faces", type=Path, default=ROOT / "runs" / "demo2" / "faces",
                    help="extraction folders (london/, interfaces/, ciplab/) whose test split is held out")
    ap.add_argument("--calib", type=Path, default=ROOT / "runs" / "demo2" / "calib")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "heatmap_check")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "heatmaps.json")
    a = ap.parse_args()
    t0 = time.time()
    from calib.export import export_onnx
    from calib.quantize import quantize_onnx

    a.work.mkdir(parents=True, exist_ok=True)
    fp32 = a.work / "student.onnx"
    if not fp32.is_file():
        export_onnx(a.ckpt, fp32, parity_data=[a.calib], parity_n=16, heatmap=True)
    int8 = a.work / "student.int8-cpu.onnx"
    if not int8.is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_onnx(fp32, a.calib, a.work, target="cpu", verbose=False)
    samples = held_out_reals(a.faces)
    crops, masks, _ = make_blends(samples, a.n)
    log(f"{len(crops)} self-blends from {len(samples)} held-out real faces")
    res, cams = {}, {}
    for name, path in (("fp32", fp32), ("int8-cpu", int8)):
        sc, c, ups, card = maps_for(path, crops)
        cams[name] = c
        if name == "fp32":
            ups_fp32 = ups
        res[name] = {**scores_vs_masks(ups, masks), "flagged": float(np.mean(sc >= card.threshold)),
                     "mean_score": float(sc.mean()), "threshold": card.threshold, "model": str(path.relative_to(ROOT))}
        fl = sc >= card.threshold  # the faces a user would see a heatmap for
        res[f"{name} flagged"] = scores_vs_masks([u for u, f in zip(ups, fl) if f], [m for m, f in zip(masks, fl) if f])
    side = crops[0].shape[0]
    yy, xx = np.mgrid[:side, :side]
    g = np.exp(-(((yy - (side - 1) / 2) ** 2 + (xx - (side - 1) / 2) ** 2) / (2 * (side / 4) ** 2)))
    res["centre_prior"] = scores_vs_masks([g] * len(masks), masks)
    keep = [float(u.sum()) > 0 for u in ups_fp32]  # the same samples as the fp32 row (a CAM with positive mass)
    res["centre_prior (fp32's n)"] = scores_vs_masks([g] * sum(keep), [m for m, k in zip(masks, keep) if k])
    rho = pearson(cams["fp32"], cams["int8-cpu"])
    grid = list(cams["fp32"].shape[1:])
    report = {"model": {"checkpoint": str(a.ckpt.relative_to(ROOT)) if a.ckpt.is_relative_to(ROOT) else str(a.ckpt),
                        "name": card.name, "size": side, "cam_grid": grid},
              "samples": {"n": len(crops), "held_out_reals": len(samples), "source": str(a.faces),
                          "region": "mask >= 0.5 * peak", "sbi": "train.sbi.self_blend, default SBIConfig"},
              "results": res,
              "int8_vs_fp32_cam_pearson": {"mean": float(np.nanmean(rho)), "median": float(np.nanmedian(rho)),
                                           "p05": float(np.nanpercentile(rho, 5)), "min": float(np.nanmin(rho))},
              "seconds": round(time.time() - t0, 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nmodel {report['model']['checkpoint']} ({card.name}, {side} px, CAM grid {grid[0]}x{grid[1]}); "
          f"{len(crops)} self-blends of {len(samples)} held-out real faces; region = mask >= half its peak")
    print(f"{'heatmap':<22} {'n':>4} {'mass in':>8} {'out':>6} {'area':>6} {'lift':>5} {'pointing':>9} {'flagged':>8}")
    for k, r in res.items():
        fl = f"{r['flagged']:.1%}" if "flagged" in r else "-"
        print(f"{k:<22} {r['n']:>4} {r['mass_in']:>8.1%} {r['mass_out']:>6.1%} {r['area']:>6.1%} {r['lift']:>5.2f} "
              f"{r['pointing']:>9.1%} {fl:>8}")
    p = report["int8_vs_fp32_cam_pearson"]
    print(f"INT8 vs FP32 CAM Pearson r: mean {p['mean']:.3f}, median {p['median']:.3f}, 5th percentile {p['p05']:.3f}")
    print(f"-> {a.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
