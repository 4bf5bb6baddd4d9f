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


FLOAT_OUTPUTS = ("float", "float16", "double")  # score outputs ffd reads as float32 (integers are not probabilities)


def _type_name(t) -> str:
    """'float' from ONNX Runtime's 'tensor(float)', from onnx's elem_type 1 or from 'FLOAT'."""
    if isinstance(t, int):
        import onnx

        return onnx.TensorProto.DataType.Name(t).lower()
    t = str(t)
    return (t[len("tensor("):-1] if t.startswith("tensor(") else t).lower()


def check_io_types(input_type, output_type, path: str | os.PathLike | None = None) -> None:
    """The model I/O contract at open time: a float32 image input and a float score output, or ModelError
    naming the file (a uint8/float16 input would get ffd's float32 tensors; an int64 output is not a score)."""
    i, o = _type_name(input_type), _type_name(output_type)
    fix = "export with `ffd export` (float32 NCHW input 'input', float output 'score' = P(fake))"
    if i != "float":
        raise ModelError(f"the model's input is {i}, ffd feeds float32 tensors", path=path, fix=fix)
    if o not in FLOAT_OUTPUTS:
        raise ModelError(f"the model's score output is {o}, not a float probability", path=path, fix=fix)


def check_graph_io(model, path: str | os.PathLike | None = None) -> None:
    """:func:`check_io_types` on an ``onnx.ModelProto`` (its one real input and its first output)."""
    ins, outs = graph_inputs(model), list(model.graph.output)
    if len(ins) != 1 or not outs:
        raise ModelError(f"expected one input and a score output, got inputs {[i.name for i in ins]} and outputs "
                         f"{[o.name for o in outs]}", path=path, fix="export with `ffd export`")
    check_io_types(ins[0].type.tensor_type.elem_type, outs[0].type.tensor_type.elem_type, path)


def card_from_props(props: Mapping[str, str], path: str | os.PathLike | None = None,
                    required: bool = True) -> ModelCard | None:
    """The ModelCard in ONNX metadata; ``required`` turns its absence into ModelError with the fix."""
    if META_KEY not in props:
        if not required:
            return None
        raise ModelError(f"the ONNX file has no ffd model card (metadata key {META_KEY!r})", path=path,
                         fix="export it with `ffd export CKPT` (or pass card=ModelCard(...) explicitly)")
    return ModelCard.from_json(props[META_KEY], path)  # the card schema: types, bounds, size and nesting


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
