"""Property-based fuzzing (hypothesis) of the model card schema: any JSON value, any mutation of a valid
card (one field or a spec field replaced by any JSON value, a field dropped, an unknown one added) and
any text go into the card loader. The only outcomes are a ModelError (a clear, typed error) or a
card that satisfies every bound of the schema and survives a round trip -- never another exception."""
from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import ModelError
from edge.spec import (_CROP_MODES, _DETECTORS, _INTERPOLATIONS, MARGIN_RANGE, MEAN_RANGE, SIZE_RANGE, STD_RANGE,
                       UNCERTAIN_BAND_RANGE, ModelCard, PreprocessSpec)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
                database=None)

scalars = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=20) | st.sampled_from(["0.5", "128", "linear", "nearest", "RGB", "yunet", "square"]))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)
GOOD = ModelCard("fuzz", spec=PreprocessSpec(size=64), threshold=0.4).to_dict()
SPEC_FIELDS = sorted(GOOD["spec"])
CARD_FIELDS = sorted(k for k in GOOD if k != "spec")
# values near the bounds, of the right type: the schema must take the valid ones
near = (st.floats(-2, 2) | st.integers(-5, 2000) | st.sampled_from([SIZE_RANGE[0], SIZE_RANGE[1], SIZE_RANGE[1] + 1,
                                                                      MARGIN_RANGE[1], 1e-3, 0.0, 1.0, 1.0000001])
        | st.lists(st.floats(-1, 2), min_size=2, max_size=4))


def assert_valid(card: ModelCard) -> None:
    """Every bound of the schema holds for a card the loader returned."""
    s = card.spec

    def fin(v, lo, hi):
        return isinstance(v, float) and math.isfinite(v) and lo <= v <= hi

    assert isinstance(card.name, str) and card.name
    assert fin(card.threshold, 0.0, 1.0) and fin(card.uncertain_band, *UNCERTAIN_BAND_RANGE)
    assert type(s.size) is int and SIZE_RANGE[0] <= s.size <= SIZE_RANGE[1]
    assert fin(s.margin, *MARGIN_RANGE) and fin(s.det_score_threshold, 0.0, 1.0)
    assert len(s.mean) == 3 and all(fin(v, *MEAN_RANGE) for v in s.mean)
    assert len(s.std) == 3 and all(fin(v, *STD_RANGE) for v in s.std)
    assert s.interpolation in _INTERPOLATIONS and s.crop_mode in _CROP_MODES and s.detector in _DETECTORS
    assert s.color_order in ("RGB", "BGR") and card.output == "prob_fake" and isinstance(card.extra, dict)
    assert ModelCard.from_json(card.to_json()) == card  # what the loader accepts, it can write and read back


def load(text: str) -> None:
    try:
        card = ModelCard.from_json(text, path="fuzz.onnx")
    except ModelError as e:
        assert "fuzz.onnx" in str(e) and str(e).count("\n") == 0  # one clear line naming the file
        return
    assert_valid(card)


@FUZZ
@given(json_values)
def test_any_json_value_is_a_card_or_a_model_error(v):
    load(json.dumps(v))


@FUZZ
@given(st.sampled_from(CARD_FIELDS + ["spec"]), json_values | near)
def test_any_card_field_replaced(field, value):
    d = json.loads(json.dumps(GOOD))
    d[field] = value
    load(json.dumps(d))


@FUZZ
@given(st.sampled_from(SPEC_FIELDS), json_values | near)
def test_any_spec_field_replaced(field, value):
    d = json.loads(json.dumps(GOOD))
    d["spec"][field] = value
    load(json.dumps(d))


@FUZZ
@given(st.lists(st.sampled_from(CARD_FIELDS + ["spec"] + [f"spec.{f}" for f in SPEC_FIELDS]), max_size=3),
       st.dictionaries(st.text(max_size=6), json_values, max_size=2))
def test_fields_dropped_or_added(drop, add):
    d = json.loads(json.dumps(GOOD))
    for f in drop:
        target = d.get("spec", {}) if f.startswith("spec.") and isinstance(d.get("spec"), dict) else d
        target.pop(f.split(".")[-1], None)
    d.update(add)
    load(json.dumps(d))


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text(text):
    load(text)


@FUZZ
@given(st.integers(1, 3000), st.sampled_from("[{"))
def test_any_nesting_depth(depth, bracket):
    close = {"[": "]", "{": "}"}[bracket]
    inner = (bracket if bracket == "[" else '{"a":') * depth
    text = inner + ("0" if bracket == "[" else "0") + (close * depth)
    d = json.loads(json.dumps(GOOD))
    d["extra"] = {"x": "__X__"}
    load(json.dumps(d).replace('"__X__"', text))


def test_values_at_the_bounds_are_accepted_and_beyond_them_refused():
    import pytest

    ok = [("threshold", 0), ("threshold", 1), ("threshold", 1.0), ("uncertain_band", 0.5), ("spec.size", SIZE_RANGE[0]),
          ("spec.size", SIZE_RANGE[1]), ("spec.margin", MARGIN_RANGE[0]), ("spec.margin", MARGIN_RANGE[1]),
          ("spec.std", [STD_RANGE[0]] * 3), ("spec.mean", [0, 1, 0.5]), ("spec.interpolation", "cubic")]
    bad = [("threshold", 1.0000001), ("threshold", -1e-9), ("uncertain_band", 0.51), ("spec.size", SIZE_RANGE[1] + 1),
           ("spec.size", SIZE_RANGE[0] - 1), ("spec.margin", MARGIN_RANGE[1] * 1.01), ("spec.std", [0, 1, 1]),
           ("spec.mean", [0, 1.5, 0]), ("spec.size", 64.0), ("threshold", "0.5"), ("spec.det_score_threshold", None)]
    for cases, accept in ((ok, True), (bad, False)):
        for field, value in cases:
            d = json.loads(json.dumps(GOOD))
            (d["spec"] if field.startswith("spec.") else d)[field.split(".")[-1]] = value
            if accept:
                assert_valid(ModelCard.from_json(json.dumps(d)))
            else:
                with pytest.raises(ModelError, match=field.split(".")[-1]):
                    ModelCard.from_json(json.dumps(d))
