"""Tiny real models for the TensorRT tests: a torch-exported conv net and its modelopt INT8 Q/DQ version.

Built once per test session (cached in a temp dir); modelopt runs on CPU (calibration_eps=["cpu"]).
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

SIZE = 32


@functools.lru_cache(maxsize=None)
def _dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="ffd-qdq-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)  # one per test session, removed with it
    return d


def _card_json(name: str) -> str:
    from edge.spec import ModelCard, PreprocessSpec

    return ModelCard(name, spec=PreprocessSpec(size=SIZE), threshold=0.5).to_json()


@functools.lru_cache(maxsize=None)
def fp32_conv_onnx(channels: int = 16) -> Path:
    """conv(3->C) relu conv(C->C) relu conv(C->C, s2) relu, mean, linear(C->1), sigmoid: P(fake) (N,)."""
    import onnx
    import torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, channels, 3, padding=1)
            self.c2 = torch.nn.Conv2d(channels, channels, 3, padding=1)
            self.c3 = torch.nn.Conv2d(channels, channels, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(channels, 1)

        def forward(self, x):
            x = torch.relu(self.c1(x))
            x = torch.relu(self.c2(x))
            x = torch.relu(self.c3(x))
            return torch.sigmoid(self.fc(x.mean((2, 3)))).squeeze(1)

    path = _dir() / f"conv{channels}.onnx"
    torch.onnx.export(Net().eval(), torch.randn(2, 3, SIZE, SIZE), str(path), input_names=["input"],
                      output_names=["prob_fake"], dynamic_axes={"input": {0: "batch"}, "prob_fake": {0: "batch"}},
                      opset_version=17, dynamo=False)
    m = onnx.load(str(path))
    onnx.helper.set_model_props(m, {"ffd.card": _card_json(f"conv{channels}")})
    onnx.save(m, str(path))
    return path


@functools.lru_cache(maxsize=None)
def int8_conv_onnx(channels: int = 16) -> Path:
    """modelopt INT8 Q/DQ version of :func:`fp32_conv_onnx` (calibrated on CPU)."""
    import onnx
    from modelopt.onnx.quantization import quantize

    src = fp32_conv_onnx(channels)
    out = _dir() / f"conv{channels}.int8.onnx"
    cal = np.random.default_rng(0).standard_normal((16, 3, SIZE, SIZE)).astype(np.float32)
    quantize(str(src), quantize_mode="int8", calibration_data=cal, calibration_eps=["cpu"],
             high_precision_dtype="fp32", output_path=str(out))
    m = onnx.load(str(out))
    if not any(p.key == "ffd.card" for p in m.metadata_props):  # keep the card if modelopt dropped it
        onnx.helper.set_model_props(m, {"ffd.card": _card_json(f"conv{channels}-int8")})
        onnx.save(m, str(out))
    return out


def bypass_dq(model, node_name: str, which=(0, 1)):
    """Rewire inputs ``which`` of node ``node_name`` past their DequantizeLinear (un-quantize them)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    for i in which:
        dq = producer[node.input[i]]
        assert dq.op_type == "DequantizeLinear"
        q = producer.get(dq.input[0])
        node.input[i] = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else dq.input[0]
    return model
