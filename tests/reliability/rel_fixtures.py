"""Fixtures of the reliability suite: the generated corpus, a tiny model, one extraction run.

Not a ``conftest.py``: a second ``conftest`` module would shadow ``tests/conftest.py`` for the
``from conftest import ...`` of other test files. Test modules import these fixtures by name;
results are cached here per session (the tmp_path_factory), so the corpus is built once.
"""
from __future__ import annotations

from pathlib import Path

import pytest

_CACHE: dict = {}


def _once(key, tmp_path_factory, make):
    k = (key, id(tmp_path_factory))
    if k not in _CACHE:
        _CACHE[k] = make()
    return _CACHE[k]


@pytest.fixture(scope="session")
def rel_corpus(tmp_path_factory, london_neutral, yunet_model):
    """(folder, entries): the bad-input media corpus, generated once per session."""
    from corpus import build_media_corpus

    def make():
        folder = tmp_path_factory.mktemp("rel") / "corpus"
        return folder, build_media_corpus(folder, london_neutral[:20])

    return _once("corpus", tmp_path_factory, make)


@pytest.fixture(scope="session")
def rel_model(tmp_path_factory) -> Path:
    from tests.conftest import make_tiny_onnx

    return _once("model", tmp_path_factory,
                 lambda: make_tiny_onnx(tmp_path_factory.mktemp("relmodel") / "tiny.onnx"))


@pytest.fixture(scope="session")
def rel_extract(rel_corpus, tmp_path_factory):
    """``ffd faces extract`` over the whole corpus, once: (outcomes, CliRun, OUT folder)."""
    from harness import extract_outcomes

    def make():
        folder, entries = rel_corpus
        out = tmp_path_factory.mktemp("relext") / "out"
        outcomes, run = extract_outcomes(folder, entries, out)
        return outcomes, run, out

    return _once("extract", tmp_path_factory, make)


@pytest.fixture(scope="session")
def rel_ckpt(tmp_path_factory) -> Path:
    """A real (untrained) student_tiny checkpoint, size 32."""
    from corpus import save_tiny_checkpoint

    return _once("ckpt", tmp_path_factory,
                 lambda: save_tiny_checkpoint(tmp_path_factory.mktemp("relckpt") / "student_tiny.pt"))
