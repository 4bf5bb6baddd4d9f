"""Broken and hostile model files: every loader refuses them with a clear ModelError-like error,
no pickle code runs, and the CLI prints one line (no traceback). Plus a grep-style check that
nothing in the package deserialises pickles from user paths."""
from __future__ import annotations

import re

import pytest

from corpus import MARKER, Malicious, build_model_corpus
from harness import ROOT, cli_model_outcomes, loader_outcomes, table
from rel_fixtures import rel_corpus, rel_extract, rel_model  # noqa: F401 - fixtures

PACKAGES = ("edge", "train", "calib", "ffd")
# pickle.loads on bytes this package produced itself in another process (never on a user path)
PICKLE_ALLOWED = {"edge/screen/ray_runner.py": "Ray IPC between ffd's own decode and classifier tasks"}


@pytest.fixture(scope="module")
def models(tmp_path_factory, rel_model):
    folder = tmp_path_factory.mktemp("relmodels")
    return folder, build_model_corpus(folder, rel_model)


def test_every_broken_model_is_refused_by_its_loader(models):
    folder, entries = models
    outcomes = loader_outcomes(entries, folder / MARKER)
    assert {m.kind for m in entries} == {"onnx", "engine", "ckpt"}
    bad = [o for o in outcomes if not o.ok]
    assert not bad, "\n" + table(bad)
    assert not (folder / MARKER).exists()
    by = {(o.entry, o.entry_point): o for o in outcomes}
    assert "EngineMismatchError" in by[("other_version.engine", "engine_cache.check_sidecar")].detail
    assert "TensorRT 8.2.1" in by[("other_version.engine", "engine_cache.check_sidecar")].detail
    assert "ModelError" in by[("other_arch.pt", "load_checkpoint")].detail
    assert "no ffd model card" in by[("no_card.onnx", "open_runner")].detail


@pytest.mark.parametrize("how", ["raw_pickle", "torch_save"])
def test_malicious_pickle_does_not_execute(tmp_path, how):
    import pickle

    import torch

    from edge.errors import ModelError
    from train.checkpoint import load_checkpoint, read_checkpoint

    marker = tmp_path / "created_by_pickle"
    p = tmp_path / "evil.pt"
    payload = {"format": "ffd-ckpt-1", "state_dict": {}, "x": Malicious(marker)}
    if how == "raw_pickle":
        p.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, p)
    assert not marker.exists()
    # the payload is live: plain pickle would run it
    if how == "raw_pickle":
        pickle.loads(p.read_bytes())
        assert marker.exists()
        marker.unlink()
    for load in (read_checkpoint, load_checkpoint):
        with pytest.raises(ModelError, match="refused to load"):
            load(p)
        assert not marker.exists()


def test_broken_models_on_the_command_line(models, rel_corpus, rel_extract):
    folder, entries = models
    pick = {"corrupt.onnx", "no_card.onnx", "other_version.engine", "other_arch.pt", "malicious_torch.pt"}
    outcomes = cli_model_outcomes([m for m in entries if m.name in pick], rel_corpus[0] / "real", rel_extract[2])
    assert len(outcomes) == len(pick)
    bad = [o for o in outcomes if not o.ok]
    assert not bad, "\n" + table(bad)
    assert not (folder / MARKER).exists()


def test_ffd_screen_refuses_a_corrupt_model_in_one_line(models, rel_corpus, tmp_path):
    from harness import run_ffd

    folder, _ = models
    run = run_ffd(["screen", rel_corpus[0], "-m", folder / "truncated.onnx", "--db", tmp_path / "x.sqlite",
                   "--no-progress"], timeout=120)
    assert run.rc == 3 and not run.problems(), run.stderr
    # ffd screen reads the card without a runner (issue 16): the ONNX reader refuses it before ONNX Runtime would
    assert any(w in run.error_line() for w in ("not a readable ONNX file", "ONNX Runtime could not load the model"))
    assert "ffd export" in run.error_line()


# --- safe loading, by reading the source --------------------------------------------------------
def _sources():
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            yield p.relative_to(ROOT).as_posix(), p.read_text()


def _calls(text: str, name: str):
    """The argument text of every call ``name(...)`` (balanced parentheses)."""
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield text[m.end():i - 1]


def test_checkpoints_load_only_with_weights_only():
    found = []
    for rel, text in _sources():
        code = re.sub(r'"""[\s\S]*?"""', "", text)  # docstrings may mention the call
        for args in _calls(code, "torch.load"):
            found.append(rel)
            assert re.search(r"weights_only\s*=\s*True", args), f"{rel}: torch.load({args}) without weights_only=True"
        for args in _calls(code, "np.load"):
            assert "allow_pickle=True" not in args.replace(" ", ""), f"{rel}: np.load with allow_pickle=True"
    assert "train/checkpoint.py" in found  # the checker does see the one loader


def test_no_pickle_from_user_paths():
    bad = []
    for rel, text in _sources():
        for pat in (r"\bpickle\.loads?\(", r"\bcloudpickle\.loads?\(", r"\bjoblib\.load\(", r"\bdill\.loads?\(",
                    r"\btorch\.jit\.load\(", r"\byaml\.load\(", r"\bmarshal\.loads?\(", r"\bshelve\.open\("):
            for m in re.finditer(pat, text):
                if rel not in PICKLE_ALLOWED:
                    line = text[:m.start()].count("\n") + 1
                    bad.append(f"{rel}:{line}: {m.group(0)}")
    assert not bad, "deserialising code from files: " + ", ".join(bad)
