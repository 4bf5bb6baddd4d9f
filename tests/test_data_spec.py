"""Training takes the face framing from the extraction folders it reads (spec.json)."""
from __future__ import annotations

import warnings

import pytest

from edge.errors import ConfigError
from edge.spec import PreprocessSpec
from train.data.spec import UnknownFramingWarning, spec_for_data


def _extraction(tmp_path, name, **kw):
    d = tmp_path / name
    d.mkdir()
    (d / "spec.json").write_text(PreprocessSpec(**kw).to_json())
    return d


def test_framing_comes_from_the_data_size_from_the_run(tmp_path):
    a = _extraction(tmp_path, "a", crop_mode="align5", margin=1.5, size=160)
    b = _extraction(tmp_path, "b", crop_mode="align5", margin=1.5, size=128)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = spec_for_data([a, b], size=96)
    assert (s.crop_mode, s.margin, s.size) == ("align5", 1.5, 96)


def test_mixed_framing_and_teacher_mismatch_are_refused(tmp_path):
    a = _extraction(tmp_path, "a", margin=1.3)
    b = _extraction(tmp_path, "b", margin=1.6)
    with pytest.raises(ConfigError, match="different face framing"):
        spec_for_data([a, b], size=64)
    with pytest.raises(ConfigError, match="teacher"):
        spec_for_data([b], size=64, base=PreprocessSpec(margin=1.3))


def test_ready_crops_warn_and_keep_the_default(tmp_path):
    d = tmp_path / "crops"
    d.mkdir()
    with pytest.warns(UnknownFramingWarning):
        s = spec_for_data([d], size=64)
    assert s == PreprocessSpec(size=64)
