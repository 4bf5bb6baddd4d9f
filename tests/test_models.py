"""Every registered model: forward, backward, no NaN, ONNX export with a dynamic batch + ORT parity."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.errors import ConfigError, ModelError  # noqa: E402
from train.registry import create_model, list_models  # noqa: E402

torch.set_num_threads(1)
SIZE = 64


def _build(name: str):
    try:  # models with a fixed position table (ViT) take img_size
        return create_model(name, img_size=SIZE)
    except TypeError:
        return create_model(name)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_export(name, tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = _build(name)
    x = torch.randn(2, 3, SIZE, SIZE)
    logits = model(x)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0

    model.eval()
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x))
        assert torch.allclose(ref, model(x), atol=1e-5)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, x, str(path), input_names=["input"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x3 = torch.randn(3, 3, SIZE, SIZE)  # another batch size than the one exported with
    out = sess.run(None, {"input": x3.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x3).numpy(), atol=1e-4, rtol=1e-4)
    ops = {n.op_type for n in __import__("onnx").load(str(path)).graph.node}
    assert not ops & {"DFT", "STFT", "Loop", "If"}, ops


@pytest.mark.parametrize("teacher,student", [("teacher_dual", "student_small"), ("teacher_dual", "student_dw"),
                                             ("teacher_tiny", "student_tiny")])
def test_teacher_at_least_5x_student(teacher, student):
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(create_model(teacher)) >= 5 * n(create_model(student))


@pytest.mark.parametrize("freq", ["fad", "srm"])
def test_teacher_exposes_both_branches(freq):
    t = create_model("teacher_tiny", freq=freq).eval()
    feats = t.forward_features(torch.randn(2, 3, 64, 64))
    assert set(feats) == {"spatial", "freq"}
    for k, f in feats.items():
        assert f.shape[:2] == (2, t.feature_dims[k]) and f.shape[-2:] == (2, 2)
    aux = t.forward_branch_heads(feats)
    assert aux["spatial"].shape == aux["freq"].shape == (2, 2)


def test_student_features_are_last_map():
    s = create_model("student_small")
    f = s.forward_features(torch.randn(1, 3, 96, 96))
    assert f.shape == (1, s.num_features, 3, 3)


def test_fad_bands_partition_the_spectrum():
    from train.models.layers import FrequencyAwareDecomposition

    fad = FrequencyAwareDecomposition(3, block=8, learnable=False)
    x = torch.randn(2, 3, 32, 32)
    y = fad(x)
    assert y.shape == (2, 12, 32, 32)
    low, mid, high, full = y[:, 0:3], y[:, 3:6], y[:, 6:9], y[:, 9:12]
    assert torch.allclose(full, x, atol=1e-4)  # orthonormal DCT: the all-pass band is the identity
    assert torch.allclose(low + mid + high, x, atol=1e-4)
    # a constant image lives only in the low band
    c = torch.ones(1, 3, 16, 16)
    yc = fad(c)
    assert yc[:, 3:9].abs().max() < 1e-4 and torch.allclose(yc[:, 0:3], c, atol=1e-4)


def test_unknown_model_and_bad_options():
    with pytest.raises(ConfigError, match="student_small"):
        create_model("student_huge")
    with pytest.raises(ConfigError, match="freq"):
        create_model("teacher_dual", freq="wavelet")


def test_checkpoint_of_another_architecture(tmp_path):
    from edge.spec import ModelCard
    from train.checkpoint import load_checkpoint, save_checkpoint

    p = save_checkpoint(tmp_path / "s.pt", create_model("student_tiny"), ModelCard("student_tiny"))
    model, card, _ = load_checkpoint(p, expect_model="student_tiny")
    assert card.name == "student_tiny" and not model.training
    with pytest.raises(ModelError, match="teacher_tiny"):
        load_checkpoint(p, expect_model="teacher_tiny")
