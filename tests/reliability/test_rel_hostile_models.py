"""Class 2 of issue 15: hostile or broken models and checkpoints.

The model card is validated against one schema with bounds wherever it is loaded (ONNX metadata,
engine sidecar, checkpoint); a model whose I/O is not float32 in / float score out is refused when
it is opened; a model whose scores are NaN, outside [0, 1] or of the wrong shape is refused at its
first batch and never scored; a checkpoint whose ``model_kwargs`` would build an absurd model is
refused before anything is allocated. Every refusal is a ModelError that names the file."""
from __future__ import annotations

import json
import resource
import time

import numpy as np
import pytest

from corpus import CONTRACT_KINDS, HOSTILE_KWARGS, build_hostile_model_corpus, contract_onnx, hostile_cards
from harness import cli_model_outcomes, loader_outcomes, run_ffd, table
from rel_fixtures import rel_ckpt, rel_corpus, rel_extract, rel_model  # noqa: F401 - fixtures

from edge.errors import ModelError

CARDS = hostile_cards()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, rel_model, rel_ckpt):
    folder = tmp_path_factory.mktemp("hostile")
    return folder, build_hostile_model_corpus(folder, rel_model, rel_ckpt)


def test_every_hostile_model_is_refused_by_every_loader(hostile):
    folder, entries = hostile
    outcomes = loader_outcomes(entries)
    bad = [o for o in outcomes if not o.ok]
    assert not bad, "\n" + table(bad)
    # every card was tried through all three carriers, and every refusal names its file
    names = {o.entry for o in outcomes}
    for name, _, _ in CARDS:
        assert {f"card_{name}.onnx", f"card_{name}.engine", f"card_{name}.pt"} <= names
    for o in outcomes:
        assert o.detail.startswith(("ModelError", "EngineMismatchError")), o
        assert o.entry in o.detail, f"the error does not name the file: {o.detail}"


@pytest.mark.parametrize("name,text,note", CARDS, ids=[c[0] for c in CARDS])
def test_card_loaders_refuse(tmp_path, name, text, note):
    """The same text through the three card loaders: ModelError naming the file, nothing else."""
    from corpus import write_card_engine, write_card_onnx
    from tests.conftest import make_tiny_onnx

    from edge.onnx_model import read_card
    from edge.runtime.engine_cache import read_sidecar, sidecar_path
    from edge.spec import ModelCard

    onnx_path = write_card_onnx(tmp_path / "m.onnx", text)
    with pytest.raises(ModelError) as e:
        read_card(onnx_path, required=True)
    assert "m.onnx" in str(e.value)
    engine = write_card_engine(tmp_path / "m.engine", text, make_tiny_onnx(tmp_path / "good.onnx"))
    with pytest.raises(ModelError) as e:
        read_sidecar(engine)
    assert str(sidecar_path(engine)) in str(e.value)
    with pytest.raises(ModelError):
        ModelCard.from_json(text, path="x.onnx")


def test_card_in_a_checkpoint_is_validated(tmp_path, rel_ckpt):
    from corpus import write_card_checkpoint

    from train.checkpoint import load_checkpoint, read_checkpoint

    for name, text, _ in [c for c in CARDS if c[0] in ("threshold_string", "size_100000", "margin_inf",
                                                        "deep_nesting", "std_zero")]:
        p = write_card_checkpoint(tmp_path / f"{name}.pt", rel_ckpt, text)
        for load in (read_checkpoint, load_checkpoint):
            with pytest.raises(ModelError, match=f"{name}.pt"):
                load(p)


def test_the_good_card_still_loads_everywhere(tmp_path, rel_model, rel_ckpt):
    """The schema refuses what it must, and nothing ffd itself writes."""
    from edge.onnx_model import read_card
    from edge.runtime import open_runner
    from edge.spec import ModelCard
    from train.checkpoint import load_checkpoint

    card = read_card(rel_model, required=True)
    assert ModelCard.from_json(card.to_json()) == card
    with open_runner(rel_model) as r:
        assert r.card == card
    model, c, _ = load_checkpoint(rel_ckpt)
    assert c.spec.size == 32 and 0 <= c.threshold <= 1


@pytest.mark.parametrize("kind", [k for k, (when, _) in CONTRACT_KINDS.items() if when == "open"])
def test_model_io_types_are_refused_at_open(tmp_path, kind):
    from edge.runtime import open_runner
    from edge.runtime.engine_cache import describe_onnx

    p = contract_onnx(tmp_path / f"{kind}.onnx", kind)
    with pytest.raises(ModelError, match=f"{kind}.onnx"):
        open_runner(p, "ort")
    with pytest.raises(ModelError, match=f"{kind}.onnx"):  # what an engine build reads
        describe_onnx(p)


@pytest.mark.parametrize("kind", [k for k, (when, _) in CONTRACT_KINDS.items() if when == "infer"])
def test_model_outputs_are_checked_per_batch(tmp_path, kind):
    from edge.runtime import open_runner

    p = contract_onnx(tmp_path / f"{kind}.onnx", kind)
    x = np.random.default_rng(0).normal(size=(6, 3, 32, 32)).astype(np.float32)
    with open_runner(p, "ort", max_batch=4) as r:  # two runs: each batch is checked
        with pytest.raises(ModelError, match=f"{kind}.onnx"):
            r.infer(x)
        with pytest.raises(ModelError, match=f"{kind}.onnx"):
            r.infer_async(x).result()


def test_valid_scores_pass_the_output_check(rel_model):
    from edge.runtime import open_runner

    x = np.random.default_rng(0).normal(size=(5, 3, 32, 32))
    with open_runner(rel_model, "ort") as r:
        y = r.infer(x)
        assert y.dtype == np.float32 and y.shape == (5,) and np.all((y >= 0) & (y <= 1))
        np.testing.assert_array_equal(r.infer_async(x).result(), y)
        assert r.infer(x[:0]).shape == (0,)


def test_output_check_clips_float_rounding_only(rel_model):
    from edge.runtime import open_runner

    with open_runner(rel_model, "ort") as r:
        np.testing.assert_array_equal(r.check_scores(np.array([1 + 1e-7, -1e-7, 0.5]), 3), [1.0, 0.0, 0.5])
        for bad in (np.array([1.01, 0.5]), np.array([np.nan, 0.5]), np.array([0.5]), np.array(["a", "b"])):
            with pytest.raises(ModelError, match="tiny.onnx"):
                r.check_scores(bad, 2)


def test_a_contract_breaking_model_scores_nothing_in_screen(tmp_path, rel_corpus):
    """``ffd screen`` with a model that answers NaN: one error line naming the model, and no row is a score."""
    from harness import screen_rows

    folder, entries = rel_corpus
    model = contract_onnx(tmp_path / "nan.onnx", "output_nan")
    db = tmp_path / "s.sqlite"
    run = run_ffd(["screen", folder / "real", "-m", model, "--db", db, "--workers", "0", "--frames", "2",
                   "--no-progress"], timeout=180)
    assert run.rc == 3 and not run.problems(), run.stderr[-600:]
    assert "nan.onnx" in run.error_line() and "non-finite" in run.error_line()
    assert not [r for r in screen_rows(db).values() if r["status"] == "done"]


def test_hostile_models_on_the_command_line(hostile, rel_corpus, rel_extract, rel_model):
    folder, entries = hostile
    pick = [m for m in entries if m.kind == "detector" or m.name.startswith("contract_") or m.name in (
        "card_size_100000.onnx", "card_deep_nesting.onnx", "card_threshold_nan.pt", "kwargs_vit_3g.pt")]
    outcomes = cli_model_outcomes(pick, rel_corpus[0] / "real", rel_extract[2], good_model=rel_model)
    assert len(outcomes) == len(pick)
    bad = [o for o in outcomes if not o.ok]
    assert not bad, "\n" + table(bad)


# --- checkpoints: model_kwargs ------------------------------------------------------------------------
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("fname,model,kw,note", HOSTILE_KWARGS, ids=[h[0] for h in HOSTILE_KWARGS])
def test_absurd_model_kwargs_are_refused_before_allocating(tmp_path, rel_ckpt, fname, model, kw, note):
    from corpus import write_kwargs_checkpoint

    from train.checkpoint import load_checkpoint

    p = write_kwargs_checkpoint(tmp_path / fname, rel_ckpt, model, kw)
    peak, t0 = _rss_mb(), time.perf_counter()
    with pytest.raises(ModelError, match=fname):
        load_checkpoint(p)
    assert time.perf_counter() - t0 < 30
    assert _rss_mb() - peak < 500, "the refusal allocated the model"


def test_every_registered_model_has_a_kwargs_whitelist_and_builds_within_bounds():
    from train.registry import MAX_PARAMS, MODEL_KWARGS_FAMILY, check_model_kwargs, count_params, list_models

    models = list_models()
    missing = set(models) - set(MODEL_KWARGS_FAMILY)
    assert not missing, f"models without a kwargs family: {missing}"
    for name in models:
        check_model_kwargs(name, {})
        assert 0 < count_params(name) < MAX_PARAMS


def test_kwargs_that_ffd_itself_saves_still_load(tmp_path):
    """What training writes (ViT sizes, drop rates, a teacher's widths) passes the whitelist."""
    from train.registry import check_model_kwargs, check_model_size

    ok = [("vit_tiny_patch8", {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}),
          ("vit_mini_patch8", {"img_size": 64}), ("efficientnet_lite0", {"drop_rate": 0.2}),
          ("teacher_tiny", {"spatial_widths": [16, 32, 64, 96], "freq": "srm"}), ("student_tiny", {"num_classes": 2}),
          ("teacher_dual_lite2", {"spatial": "efficientnet_lite0", "drop_rate": 0.1})]
    for name, kw in ok:
        check_model_kwargs(name, json.loads(json.dumps(kw)))
        check_model_size(name, kw)


# --- class 4: a detector model that is not a face detector --------------------------------------------
def test_a_classifier_as_the_face_detector_is_refused_at_open(rel_model, yunet_model):
    from edge import ForgeryDetector
    from edge.faces import FaceDetector

    with pytest.raises(ModelError, match="not a YuNet face detector.*tiny.onnx"):
        FaceDetector("yunet", rel_model)
    with pytest.raises(ModelError, match="not a YuNet face detector"):  # at construction, not at the first frame
        ForgeryDetector(rel_model, "ort", detector_model=rel_model)
    FaceDetector("yunet", yunet_model)  # the real one opens


def test_screen_refuses_a_wrong_detector_before_the_first_file(tmp_path, rel_corpus, rel_model):
    folder, _ = rel_corpus
    db = tmp_path / "s.sqlite"
    run = run_ffd(["screen", folder / "real", "-m", rel_model, "--db", db, "--no-progress"], timeout=120,
                  env={"FFD_YUNET_MODEL": str(rel_model)})
    assert run.rc == 3 and not run.problems(), run.stderr[-500:]
    assert "not a YuNet face detector" in run.error_line()
    assert not db.exists(), "the database was created before the detector was checked"
