"""Reading ONNX files: one loader with a clear error, the model card in the metadata, precision.

Used by the engine cache, ``ffd check-onnx``, calibration and benchmarks so that every place that
opens an ONNX file refuses a missing or corrupt one the same way and reads the ``ffd.card``
metadata (:data:`edge.spec.META_KEY`) the same way. Needs the ``onnx`` package (a base
dependency); ONNX Runtime sessions pass their custom metadata map to :func:`card_from_props`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from .errors import ModelError
from .spec import META_KEY, ModelCard

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
INTEGER_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm"})


def load_onnx(path: str | os.PathLike, fix: str = "check the path, or run `ffd export` first"):
    """``onnx.ModelProto`` of ``path`` (graph only, no external data) or ModelError naming the file."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError("ONNX file not found", path=p, fix=fix)
    try:
        return onnx.load(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ModelError(f"not a readable ONNX file: {e}", path=p, fix=fix) from e


def metadata(model) -> dict[str, str]:
    return {m.key: m.value for m in model.metadata_props}


def graph_inputs(model) -> list:
    """The graph's real inputs (``ValueInfoProto``), initializers listed as inputs left out."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def dims(value_info) -> tuple:
    """Shape of a ``ValueInfoProto``: ints for static axes, the ``dim_param`` (str) or None for dynamic ones."""
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in value_info.type.tensor_type.shape.dim)


def card_from_props(props: Mapping[str, str], path: str | os.PathLike | None = None,
                    required: bool = True) -> ModelCard | None:
    """The ModelCard in ONNX metadata; ``required`` turns its absence into ModelError with the fix."""
    if META_KEY not in props:
        if not required:
            return None
        raise ModelError(f"the ONNX file has no ffd model card (metadata key {META_KEY!r})", path=path,
                         fix="export it with `ffd export CKPT` (or pass card=ModelCard(...) explicitly)")
    return ModelCard.from_json(props[META_KEY])


def read_card(path: str | os.PathLike, required: bool = False) -> ModelCard | None:
    """The ModelCard stored in the ONNX file at ``path`` (``None`` when it has none and not ``required``)."""
    return card_from_props(metadata(load_onnx(path)), path, required=required)


def onnx_precision(model) -> str:
    """``int8-qdq`` (Q/DQ graph), ``int8`` (integer operators), ``fp16`` (FP16 weights or casts) or ``fp32``."""
    import onnx

    ops = {n.op_type for n in model.graph.node}
    if QDQ_OPS & ops:
        return "int8-qdq"
    if INTEGER_OPS & ops:
        return "int8"
    f16 = onnx.TensorProto.FLOAT16
    if any(i.data_type == f16 for i in model.graph.initializer) or any(
            n.op_type == "Cast" and any(a.name == "to" and a.i == f16 for a in n.attribute) for n in model.graph.node):
        return "fp16"
    return "fp32"
