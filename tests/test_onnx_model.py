"""edge.onnx_model: the one ONNX loader, card reader and precision probe."""
from __future__ import annotations

import pytest
from conftest import make_tiny_onnx

from edge.errors import ModelError
from edge.onnx_model import card_from_props, load_onnx, metadata, onnx_precision


def test_card_precision_and_errors(tmp_path):
    good = make_tiny_onnx(tmp_path / "a.onnx", threshold=0.3)
    m = load_onnx(good)
    assert card_from_props(metadata(m)).threshold == 0.3 and onnx_precision(m) == "fp32"
    bare = make_tiny_onnx(tmp_path / "b.onnx", card=False)
    assert card_from_props(metadata(load_onnx(bare)), required=False) is None
    with pytest.raises(ModelError, match="no ffd model card"):
        card_from_props(metadata(load_onnx(bare)), bare)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(ModelError, match="not a readable ONNX"):
        load_onnx(junk)
    with pytest.raises(ModelError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")
