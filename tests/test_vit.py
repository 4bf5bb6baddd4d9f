"""Issue 8: the small ViT (export contract, ONNX parity, INT8), MAE pre-training and competitive fine-tuning."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from train.registry import create_model  # noqa: E402

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
VITS = ["vit_tiny_patch8", "vit_tiny_patch16", "vit_mini_patch8", "vit_small_patch16"]


def tiny_vit(seed=0, **kw):
    torch.manual_seed(seed)
    return create_model("vit_tiny_patch8", **{**TINY, **kw})


def smooth_images(n=8, size=32, seed=0):
    """Structured (learnable) images: sums of random low-frequency waves."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    f = torch.rand(n, 3, 4, generator=g) * 0.2 + 0.05
    return torch.sin(xx * f[..., 0, None, None] + f[..., 1, None, None] * 10) + torch.cos(yy * f[..., 2, None, None])


# --- the model ----------------------------------------------------------------------------------
def test_bad_vit_shapes_are_user_errors(tmp_path):
    """A size that is no multiple of the patch, or heads that do not divide the width, are ConfigErrors: `ffd`
    prints one `error: ...; fix: ...` line and exits with the error's code (2), not "internal error" (1)."""
    import subprocess
    import sys

    from edge.errors import ConfigError
    from tests.test_threshold import _tiny_dataset

    with pytest.raises(ConfigError, match="multiple of the patch size 8"):
        create_model("vit_mini_patch8", img_size=36)
    with pytest.raises(ConfigError, match="not divisible by num_heads 3"):
        create_model("vit_tiny_patch8", **{**TINY, "embed_dim": 32, "num_heads": 3})
    data = _tiny_dataset(tmp_path / "data", n=4)
    p = subprocess.run([sys.executable, "-m", "ffd", "pretrain", "--data", str(data), "-o", str(tmp_path / "b.pt"),
                        "--model", "vit_mini_patch8", "--img-size", "36", "--epochs", "1", "--device", "cpu"],
                       capture_output=True, text=True, timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == ConfigError.exit_code and len(lines) == 1, p.stderr
    assert lines[0].startswith("error: img_size 36 is not a multiple of the patch size 8") and "--img-size" in lines[0]


@pytest.mark.parametrize("name", VITS)
def test_registered_vits_forward_backward_contract(name):
    m = create_model(name, img_size=32, depth=1)  # real widths/patches, shallow and small input for speed
    x = torch.randn(2, 3, 32, 32)
    feats = m.forward_features(x)
    assert feats.shape == (2, 1 + m.num_patches, m.embed_dim)
    logits = m.forward_head(feats)
    assert logits.shape == (2, 2) and torch.allclose(logits, m(x))
    assert torch.allclose(m.forward_head(feats[:, 0]), logits)  # also takes the pooled class token
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_attention_matches_reference_sdpa():
    """Our matmul/softmax attention computes exactly what torch's fused attention computes."""
    from train.models.vit import Attention

    torch.manual_seed(0)
    att = Attention(32, 4).eval()
    x = torch.randn(2, 5, 32)
    qkv = att.qkv(x).reshape(2, 5, 3, 4, 8).permute(2, 0, 3, 1, 4)
    ref = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(2, 5, 32)
    assert torch.allclose(att(x), att.proj(ref), atol=1e-5)


def _export(model, path, size=32):
    from tests.test_threshold import export_score_onnx

    from edge.spec import ModelCard, PreprocessSpec

    return export_score_onnx(model, ModelCard("vit_tiny_patch8", spec=PreprocessSpec(size=size)), path, size)


def test_onnx_export_ops_and_ort_parity(tmp_path):
    import onnx
    import onnxruntime as ort

    m = tiny_vit().eval()
    path = _export(m, tmp_path / "vit.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MatMul" in ops and "Softmax" in ops
    assert not ops & {"Attention", "MultiHeadAttention", "ScaledDotProductAttention"}  # plain ops only
    x = torch.randn(5, 3, 32, 32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = torch.softmax(m(x), 1)[:, 1].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_int8_quantization_with_modelopt_on_cpu(tmp_path):
    pytest.importorskip("modelopt.onnx.quantization")
    import onnxruntime as ort

    from calib.quantize import quantize_trt, quantized_nodes

    m = tiny_vit().eval()
    path = _export(m, tmp_path / "vit.onnx")
    x = smooth_images(16).numpy().astype(np.float32)
    out = quantize_trt(path, x, tmp_path / "vit.int8.onnx", method="max", high_precision="fp32",
                       calibration_eps=["cpu"])
    q = quantized_nodes(out)
    assert q["quantize_linear"] > 0 and any(n.startswith("MatMul") for n in q["quantized_compute"])
    fp = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    i8 = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert i8.shape == fp.shape and np.isfinite(i8).all()
    assert ((i8 >= 0) & (i8 <= 1)).all()
    # an untrained 32-wide net is a harsh case for INT8; it must still track FP32 (logit corr ~0.89 measured)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert np.abs(i8 - fp).mean() < 0.2 and np.corrcoef(logit(i8), logit(fp))[0, 1] > 0.6


# --- MAE ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio,num_patches", [(0.75, 16), (0.5, 64), (0.9, 64), (0.3, 10)])
def test_masking_ratio_is_honoured_exactly(ratio, num_patches):
    from train.mae import random_masking

    g = torch.Generator().manual_seed(0)
    ids_keep, mask, ids_restore = random_masking(7, num_patches, ratio, generator=g)
    n_mask = round(num_patches * ratio)
    assert (mask.sum(1) == n_mask).all()  # exactly, for every sample
    assert ids_keep.shape == (7, num_patches - n_mask)
    # the kept ids are exactly the unmasked positions, and masks differ between samples
    for i in range(7):
        assert set(ids_keep[i].tolist()) == set(torch.nonzero(mask[i] == 0).flatten().tolist())
    assert not all(torch.equal(mask[0], mask[i]) for i in range(1, 7))
    assert torch.equal(torch.sort(ids_restore, 1).values, torch.arange(num_patches).expand(7, -1))


def test_bad_mask_ratio_raises():
    from edge.errors import ConfigError
    from train.mae import random_masking

    with pytest.raises(ConfigError):
        random_masking(2, 16, 1.0)
    with pytest.raises(ConfigError):
        random_masking(2, 4, 0.05)  # rounds to zero masked patches


def test_mae_loss_counts_masked_patches_only_and_decreases():
    from train.mae import MAETask, patchify

    task = MAETask(tiny_vit(), "vit_tiny_patch8", TINY, mask_ratio=0.75, decoder_dim=32, decoder_heads=2)
    x = smooth_images(8)
    # only masked patches count: a perfect prediction on masked patches gives 0 whatever the visible ones hold
    target = patchify(x, 8)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    mask = torch.zeros(8, 16)
    mask[:, :12] = 1
    pred = target.clone()
    pred[:, 12:] += 5.0  # wrong on visible patches only
    assert task.reconstruction_loss(x, pred, mask).item() == pytest.approx(0.0, abs=1e-6)
    # training reduces the reconstruction loss
    opt = torch.optim.AdamW(task.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        loss = task((x, None), generator=g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_pretrain_writes_backbone_loadable_into_vits(tmp_path):
    import cv2

    from train.competitive import CompetitiveViT
    from train.mae import load_backbone, pretrain

    (tmp_path / "real").mkdir()
    imgs = (smooth_images(10, 40).permute(0, 2, 3, 1).numpy() * 60 + 128).clip(0, 255).astype(np.uint8)
    for i, im in enumerate(imgs):
        cv2.imwrite(str(tmp_path / "real" / f"{i}.png"), im)
    res = pretrain(tmp_path / "real", tmp_path / "bb.pt", model="vit_tiny_patch8", model_kwargs=TINY, epochs=2,
                   batch_size=4, lr=1e-3, log=lambda s: None)
    assert res["n_images"] == 10 and len(res["history"]) == 2 and math.isfinite(res["final_loss"])
    from train.checkpoint import read_checkpoint

    blob = read_checkpoint(tmp_path / "bb.pt")
    assert blob["config"]["kind"] == "mae_backbone" and blob["config"]["mask_ratio"] == 0.75
    # into a plain ViT: encoder weights equal, head untouched
    fresh = tiny_vit(seed=5)
    head_before = fresh.head.weight.clone()
    keys = load_backbone(fresh, tmp_path / "bb.pt")
    assert "pos_embed" in keys and not any(k.startswith("head.") for k in keys)
    assert torch.equal(fresh.blocks[0].attn.qkv.weight, blob["state_dict"]["blocks.0.attn.qkv.weight"])
    assert torch.equal(fresh.head.weight, head_before)
    # into every ViT of a two-branch model, and into a larger input grid (position table resized)
    net = CompetitiveViT([tiny_vit(1), tiny_vit(2)])
    load_backbone(net, tmp_path / "bb.pt")
    assert torch.equal(net.branches[0].cls_token, net.branches[1].cls_token)
    big = tiny_vit(img_size=48)
    load_backbone(big, tmp_path / "bb.pt")
    assert big.pos_embed.shape == (1, 37, 32)
    # a ViT of another width refuses with a typed error
    from edge.errors import ModelError

    with pytest.raises(ModelError):
        load_backbone(tiny_vit(embed_dim=64), tmp_path / "bb.pt")


# --- competitive fine-tuning -------------------------------------------------------------------
def test_evidential_uncertainty_and_fusion_weights_follow_the_formulas():
    from train.competitive import evidential_uncertainty, fusion_weights

    logits = torch.tensor([[0.0, 0.0], [3.0, -1.0], [-20.0, -20.0]])
    alpha, s, u = evidential_uncertainty(logits)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    exp_alpha = [[sp(0) + 1, sp(0) + 1], [sp(3) + 1, sp(-1) + 1], [sp(-20) + 1, sp(-20) + 1]]
    np.testing.assert_allclose(alpha.numpy(), exp_alpha, rtol=1e-6)
    np.testing.assert_allclose(s.numpy(), [sum(r) for r in exp_alpha], rtol=1e-6)
    np.testing.assert_allclose(u.numpy(), [2 / sum(r) for r in exp_alpha], rtol=1e-6)
    assert u[0].item() == pytest.approx(2 / (2 * math.log(2) + 2))  # = 0.5906
    assert u[2].item() == pytest.approx(1.0, abs=1e-6)  # no evidence -> maximal uncertainty
    _, _, u_relu = evidential_uncertainty(torch.tensor([[4.0, -3.0]]), "relu")
    assert u_relu.item() == pytest.approx(2 / 6)  # alpha = (5, 1)
    # fusion: softmax over -u; the more certain branch gets more weight
    uu = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    w = fusion_weights(uu)
    e = math.exp(-0.2) / (math.exp(-0.2) + math.exp(-0.8))
    np.testing.assert_allclose(w.numpy(), [[e, 1 - e], [0.5, 0.5]], rtol=1e-6)


def test_fused_token_is_the_uncertainty_weighted_sum():
    from train.competitive import CompetitiveViT

    net = CompetitiveViT([tiny_vit(1), tiny_vit(2)]).eval()
    x = torch.randn(3, 3, 32, 32)
    out = net.forward_all(x)
    u = torch.stack([2 / (F.softplus(z) + 1).sum(1) for z in out["logits"]], 1)
    assert torch.allclose(out["u"], u)
    w = torch.softmax(-u, 1)
    fused = w[:, :1] * out["cls"][0] + w[:, 1:] * out["cls"][1]
    assert torch.allclose(out["fused_cls"], fused, atol=1e-6)
    assert torch.allclose(net(x), net.fuse_head(fused), atol=1e-6)


def test_evidential_loss_kl_and_decorrelation_values():
    from train.competitive import decorrelation_loss, evidential_mse_loss, kl_to_uniform_dirichlet

    alpha = torch.tensor([[3.0, 1.0]])  # S = 4, p = (0.75, 0.25)
    y = torch.tensor([0])
    expect = (1 - 0.75) ** 2 + 0.75 * 0.25 / 5 + (0 - 0.25) ** 2 + 0.25 * 0.75 / 5
    assert evidential_mse_loss(alpha, y).item() == pytest.approx(expect)
    # KL(Dir(1,1) || Dir(1,1)) = 0; KL(Dir(2,1) || Dir(1,1)) = log 2 - 1/2 (closed form for Beta(2,1) vs uniform)
    assert kl_to_uniform_dirichlet(torch.tensor([[1.0, 1.0]])).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_to_uniform_dirichlet(torch.tensor([[2.0, 1.0]])).item() == pytest.approx(math.log(2) - 0.5, abs=1e-5)
    # the KL only sees misleading evidence: for y=0, alpha~ = (1, alpha_1) = (1, 1) here -> no extra loss
    assert evidential_mse_loss(alpha, y, kl_weight=1.0).item() == pytest.approx(expect)
    assert evidential_mse_loss(alpha, torch.tensor([1]), kl_weight=1.0) > evidential_mse_loss(alpha, torch.tensor([1]))
    # decorrelation: identical features -> mean of squared correlation matrix of a with itself > independent ones
    g = torch.Generator().manual_seed(0)
    a = torch.randn(512, 4, generator=g)
    b = torch.randn(512, 4, generator=g)
    same = decorrelation_loss(a, a).item()
    indep = decorrelation_loss(a, b).item()
    assert same == pytest.approx((1 + 3 * 0.0) / 4, abs=0.05)  # diagonal = 1, off-diagonal ~ 0 -> ~4/16
    assert indep < 0.01


def test_competitive_task_step_and_deployed_branch():
    from train.competitive import CompetitiveTask, CompetitiveViT

    net = CompetitiveViT([tiny_vit(1), tiny_vit(2)])
    task = CompetitiveTask(net, "vit_tiny_patch8", TINY, anneal_steps=4)
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 0, 1, 0, 1])
    task.train()
    out = task.step((x, y))
    assert set(out) >= {"loss", "ce", "evidential", "decorrelation"}
    total = out["ce"] + out["evidential"] + out["decorrelation"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is not None for p in net.branches[1].parameters())
    assert task.kl_weight() == pytest.approx(0.25)  # annealed: one step of four
    assert task.model is net.branches[0]
    # the deployed branch is a plain registry ViT whose weights load into a fresh create_model
    fresh = create_model("vit_tiny_patch8", **TINY)
    fresh.load_state_dict(task.model.state_dict())


def test_cli_pretrain_then_train_vit_competitive(tmp_path):
    """`ffd pretrain` -> `ffd train vit --pretrained --competitive`: exit 0, a deployable plain-ViT checkpoint."""
    from typer.testing import CliRunner

    from ffd.cli import app
    from tests.test_threshold import _tiny_dataset
    from train.checkpoint import load_checkpoint, read_checkpoint

    data = _tiny_dataset(tmp_path / "data", n=30)  # 60 files: every split gets some
    r = CliRunner().invoke(app, ["pretrain", "--data", str(data), "-o", str(tmp_path / "bb.pt"), "--model",
                                 "vit_mini_patch8", "--img-size", "32", "--epochs", "1", "-b", "8", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert read_checkpoint(tmp_path / "bb.pt")["config"]["n_images"] == 30  # the fakes were dropped
    r = CliRunner().invoke(app, ["train", "vit", "--data", str(data), "-o", str(tmp_path / "run"), "--model",
                                 "vit_mini_patch8", "--img-size", "32", "--pretrained", str(tmp_path / "bb.pt"),
                                 "--competitive", "--no-sbi", "--epochs", "1", "-b", "8", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    model, card, blob = load_checkpoint(tmp_path / "run" / "best.pt")
    assert blob["model_name"] == "vit_mini_patch8" and card.extra["variant"] == "competitive"
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2)
    bad = CliRunner().invoke(app, ["train", "vit", "--data", str(data), "-o", str(tmp_path / "r2"), "--model",
                                   "student_tiny", "--epochs", "1"])
    assert bad.exit_code != 0
