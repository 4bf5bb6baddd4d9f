"""train.threshold: the calibrated threshold and the uncertain band, and their trip into the card and ONNX."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edge.errors import CalibrationError, ConfigError
from train.threshold import balanced_accuracy_curve, calibrate_threshold, rates

M0, S0, M1, S1 = 0.30, 0.15, 0.72, 0.05  # real and fake score distributions (unequal variances)


def _phi(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(x) / math.sqrt(2.0)))


def _population_ba(t):
    """Balanced accuracy of `score >= t` under the true Gaussians (independent of class sizes)."""
    return 0.5 * (_phi((t - M0) / S0) + 1.0 - _phi((t - M1) / S1))


def _gaussian_scores(n_real=6000, n_fake=500, seed=0):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(M0, S0, n_real), rng.normal(M1, S1, n_fake)]
    y = np.r_[np.zeros(n_real, int), np.ones(n_fake, int)]
    return s, y


def test_balanced_threshold_finds_the_known_optimum_and_beats_half():
    grid = np.linspace(0, 1, 20001)
    t_star = grid[np.argmax(_population_ba(grid))]  # brute force on the true CDFs
    assert 0.55 < t_star < 0.62  # the optimum is far from 0.5: the test can fail if the rule is wrong
    s, y = _gaussian_scores()
    res = calibrate_threshold(s, y)
    assert abs(res.threshold - t_star) < 0.03
    # better than 0.5 on the validation scores and on the population
    assert res.metrics["balanced_accuracy"] > res.metrics["balanced_accuracy_at_0.5"] + 0.02
    assert _population_ba(res.threshold) > _population_ba(0.5) + 0.02
    # it is the maximum of the empirical curve, and recomputing the rates agrees
    t, ba = balanced_accuracy_curve(s, y)
    assert res.metrics["balanced_accuracy"] == pytest.approx(ba.max())
    assert rates(s, y, res.threshold)["balanced_accuracy"] == pytest.approx(ba.max())
    # class sizes do not move it much (balanced accuracy ignores the prior)
    s2, y2 = _gaussian_scores(n_real=500, n_fake=6000, seed=1)
    assert abs(calibrate_threshold(s2, y2).threshold - t_star) < 0.03


def test_tie_takes_the_middle_of_the_gap():
    res = calibrate_threshold([0.1, 0.2, 0.3, 0.7, 0.8], [0, 0, 0, 1, 1], uncertain_band=0.0)
    assert res.threshold == pytest.approx(0.5)  # every cut in (0.3, 0.7) is perfect: take the middle
    assert res.metrics["balanced_accuracy"] == 1.0 and res.uncertain_band == 0.0


def test_target_fpr_is_met_and_tight():
    s, y = _gaussian_scores()
    for fpr in (0.01, 0.05, 0.2):
        res = calibrate_threshold(s, y, rule="target_fpr", target_fpr=fpr)
        assert res.metrics["fpr"] <= fpr + 1e-12
        # tight: the next real score below the threshold would push FPR over the target
        real = np.sort(s[y == 0])
        below = real[real < res.threshold].max()
        assert rates(s, y, below)["fpr"] > fpr


def test_uncertain_band_reaches_confident_accuracy_with_minimal_abstention():
    rng = np.random.default_rng(3)
    s = np.r_[rng.normal(0.4, 0.12, 2000), rng.normal(0.6, 0.12, 2000)]  # overlapping: ~80% BA
    y = np.r_[np.zeros(2000, int), np.ones(2000, int)]
    res = calibrate_threshold(s, y, min_confident_accuracy=0.9, max_uncertain_fraction=0.5)
    m = res.metrics
    assert res.uncertain_band > 0 and not m["band_capped"]
    assert m["balanced_accuracy"] < 0.9  # without a band the target is not met ...
    confident = np.abs(s - res.threshold) >= res.uncertain_band
    assert rates(s[confident], y[confident], res.threshold)["balanced_accuracy"] >= 0.9  # ... with it, it is
    assert m["uncertain_fraction"] == pytest.approx(1 - confident.mean()) and m["uncertain_fraction"] <= 0.5
    # minimal: a visibly smaller band misses the target
    smaller = np.abs(s - res.threshold) >= res.uncertain_band * 0.9
    assert rates(s[smaller], y[smaller], res.threshold)["balanced_accuracy"] < 0.9
    # the cap binds when abstention would exceed it
    capped = calibrate_threshold(s, y, min_confident_accuracy=0.99, max_uncertain_fraction=0.1)
    assert capped.metrics["band_capped"] and capped.metrics["uncertain_fraction"] <= 0.1


def test_band_matches_model_card_label():
    from edge.spec import ModelCard

    rng = np.random.default_rng(4)
    s = np.r_[rng.normal(0.4, 0.15, 500), rng.normal(0.6, 0.15, 500)]
    y = np.r_[np.zeros(500, int), np.ones(500, int)]
    res = calibrate_threshold(s, y, max_uncertain_fraction=0.6)
    card = ModelCard("x", threshold=res.threshold, uncertain_band=res.uncertain_band)
    labels = np.array([card.label(float(v)) for v in s])
    assert (labels == "uncertain").mean() == pytest.approx(res.metrics["uncertain_fraction"])


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(CalibrationError):
        calibrate_threshold([0.1, 0.2], [0, 0])
    with pytest.raises(CalibrationError):
        calibrate_threshold([0.1, float("nan")], [0, 1])
    with pytest.raises(ConfigError):
        calibrate_threshold([0.1, 0.9], [0, 1], rule="youden")


# --- checkpoint -> card -> ONNX metadata -------------------------------------------------------
TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)


def _tiny_dataset(root, n=12, size=40):
    """real/ dark-ish and fake/ bright-ish random crops so an untrained ViT still gives varied scores."""
    import cv2

    rng = np.random.default_rng(0)
    for label, lo in (("real", 0), ("fake", 100)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(lo, lo + 156, (size, size, 3), dtype=np.uint8)
            cv2.imwrite(str(root / label / f"{label}_{i:03d}.png"), img)
    return root


def export_score_onnx(model, card, path, size):
    """Model -> ONNX whose output 'score' is P(fake), with the card in metadata (what `ffd export` makes)."""
    import onnx
    import torch

    from edge.spec import META_KEY

    class Score(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return torch.softmax(self.m(x), dim=1)[:, 1]

    torch.onnx.export(Score(model.eval()), torch.randn(2, 3, size, size), str(path), input_names=["input"],
                      output_names=["score"], dynamic_axes={"input": {0: "batch"}, "score": {0: "batch"}},
                      opset_version=17, dynamo=False)
    m = onnx.load(str(path))
    onnx.helper.set_model_props(m, {META_KEY: card.to_json()})
    onnx.save(m, str(path))
    return path


def test_threshold_written_to_checkpoint_and_survives_onnx_export(tmp_path, london_neutral, yunet_model):
    torch = pytest.importorskip("torch")
    from edge.runtime.ort import OrtRunner
    from edge.spec import ModelCard, PreprocessSpec
    from train.checkpoint import read_checkpoint, save_checkpoint
    from train.registry import create_model
    from train.threshold import apply_to_checkpoint

    torch.manual_seed(0)
    model = create_model("vit_tiny_patch8", **TINY)
    card = ModelCard("vit_tiny_patch8", spec=PreprocessSpec(size=32))
    ckpt = save_checkpoint(tmp_path / "m.pt", model, card, model_kwargs=TINY, metrics={"auc": 0.5})
    data = _tiny_dataset(tmp_path / "data")
    res = apply_to_checkpoint(ckpt, data, split=None, out=tmp_path / "cal.pt", max_uncertain_fraction=0.3)
    assert res.threshold != 0.5 and 0 < res.threshold < 1
    blob = read_checkpoint(tmp_path / "cal.pt")
    c = blob["card"]
    assert c.threshold == res.threshold and c.uncertain_band == res.uncertain_band
    assert c.extra["threshold_calibration"]["rule"] == "balanced_accuracy"
    assert blob["metrics"] == {"auc": 0.5} and read_checkpoint(ckpt)["card"].threshold == 0.5  # original untouched
    # ONNX metadata round trip, read back through the runtime the detector uses
    try:
        from calib.export import export_onnx  # C's exporter, once it exists
    except ImportError:
        export_onnx = None
    if export_onnx is not None:
        onnx_path = export_onnx(tmp_path / "cal.pt", tmp_path / "m.onnx", parity_data=[london_neutral[0].parent],
                                parity_n=4, detector_model=yunet_model, verbose=False)["path"]
    else:
        from train.checkpoint import load_checkpoint

        m, c2, _ = load_checkpoint(tmp_path / "cal.pt")
        onnx_path = export_score_onnx(m, c2, tmp_path / "m.onnx", 32)
    with OrtRunner(onnx_path) as r:
        assert r.card.threshold == res.threshold and r.card.uncertain_band == res.uncertain_band
        assert r.card == c


def test_cli_calibrate_threshold(tmp_path):
    torch = pytest.importorskip("torch")
    from typer.testing import CliRunner

    from edge.spec import ModelCard, PreprocessSpec
    from ffd.cli import app
    from train.checkpoint import read_checkpoint, save_checkpoint
    from train.registry import create_model

    torch.manual_seed(1)
    ckpt = save_checkpoint(tmp_path / "m.pt", create_model("vit_tiny_patch8", **TINY),
                           ModelCard("vit_tiny_patch8", spec=PreprocessSpec(size=32, detector="none")),
                           model_kwargs=TINY)
    data = _tiny_dataset(tmp_path / "data")
    r = CliRunner().invoke(app, ["calibrate-threshold", str(ckpt), str(data), "--whole", "--rule", "target_fpr",
                                 "--target-fpr", "0.1", "-o", str(tmp_path / "o.pt")])
    assert r.exit_code == 0, r.output
    assert "threshold" in r.output
    card = read_checkpoint(tmp_path / "o.pt")["card"]
    assert card.extra["threshold_calibration"]["fpr"] <= 0.1 and card.threshold != 0.5
    bad = CliRunner().invoke(app, ["calibrate-threshold", str(ckpt), str(data), "--rule", "nope"])
    assert bad.exit_code != 0
