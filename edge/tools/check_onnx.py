"""TensorRT-readiness check of an ONNX file, with no GPU and no TensorRT (``ffd check-onnx``).

A user learns on the workstation, not on the Jetson, that a model will not build as intended:

* **opset** within what TensorRT 10.3's ONNX parser imports (9..20); Q/DQ needs >= 13;
* **Q/DQ placement** (for a quantized model): every Conv/ConvTranspose/Gemm/MatMul has a
  DequantizeLinear on its activation *and* its weight input (else TensorRT runs it in
  FP32/FP16); an unquantized one whose input comes from and whose output flows into
  INT8 layers is an **FP32 island** (two extra reformat layers and lost speed);
  zero points must be 0 and Q/DQ types INT8 (what TensorRT supports);
* **ops** outside TensorRT 10.3's ONNX operator support list;
* **dynamic axes named** (``dim_param``) and only the batch axis dynamic;
* **metadata**: the model card (``ffd.card``) present, parseable, and its input size matching.

Errors mean "will not build, or not as intended"; warnings are worth reading. Only ``onnx``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..onnx_model import QDQ_OPS, dims, graph_inputs, load_onnx, metadata
from ..spec import META_KEY, ModelCard

# Operators TensorRT 10.3's ONNX parser imports (default domain).
# Source: the onnx-tensorrt operator support matrix (docs/operators.md of the 10.x parser
# releases): every operator marked "Y", minus those the table gained after 10.3, which are
# in _LATER_THAN_10_3 below (reported as warnings, since a newer desktop TensorRT takes them).
TRT_10_3_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU Hardmax
HardSigmoid HardSwish Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization
Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
# In later parser tables but not (or not surely) in 10.3's: JetPack 6 may reject them.
_LATER_THAN_10_3 = frozenset("Attention BlackmanWindow CastLike Gelu HammingWindow HannWindow Mish "
                             "RMSNormalization RotaryEmbedding STFT".split())
TRT_10_3_OPSET = (9, 20)
QUANTIZABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_PASS_THROUGH = frozenset("Relu Clip LeakyRelu Sigmoid HardSigmoid HardSwish MaxPool AveragePool GlobalAveragePool "
                          "GlobalMaxPool Reshape Flatten Squeeze Unsqueeze Transpose Add Mul Concat BatchNormalization "
                          "Identity ReduceMean Pad Slice Split Resize".split())


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "info"
    check: str  # opset | qdq | ops | axes | metadata | io
    message: str
    node: str | None = None

    def format(self) -> str:
        where = f" [{self.node}]" if self.node else ""
        return f"{self.level.upper():7s} {self.check:8s} {self.message}{where}"


@dataclass
class CheckReport:
    path: str
    opset: int | None = None
    quantized: bool = False
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, level: str, check: str, message: str, node: str | None = None) -> None:
        self.findings.append(Finding(level, check, message, node))

    def format(self) -> str:
        head = (f"{self.path}: opset {self.opset}, {'INT8 Q/DQ' if self.quantized else 'not quantized'}; "
                f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        lines = [head, *(f.format() for f in self.findings)]
        lines.append("OK: TensorRT should build this as intended" if self.ok
                     else "NOT READY: fix the errors above before building on the target")
        return "\n".join(lines)


def check_onnx(path: str | Path) -> CheckReport:
    """Check ``path`` and return the report (``report.ok`` is False when something will not build as intended)."""
    p = Path(path)
    model = load_onnx(p)
    rep = CheckReport(str(p))
    g = model.graph
    rep.quantized = any(n.op_type in QDQ_OPS for n in g.node)
    _check_opset(model, rep)
    _check_ops(g, rep)
    _check_io(model, rep)
    _check_metadata(model, rep)
    if rep.quantized:
        _check_qdq(g, rep)
    return rep


def _check_opset(model, rep: CheckReport) -> None:
    opsets = {o.domain or "": o.version for o in model.opset_import}
    rep.opset = opsets.get("") or opsets.get("ai.onnx")
    lo, hi = TRT_10_3_OPSET
    if rep.opset is None:
        rep.add("error", "opset", "no default-domain opset import")
    elif not (lo <= rep.opset <= hi):
        rep.add("error", "opset", f"opset {rep.opset} is outside TensorRT 10.3's range {lo}..{hi}")
    elif rep.quantized and rep.opset < 13:
        rep.add("error", "opset", f"opset {rep.opset} < 13: per-channel Q/DQ needs opset 13 or later")
    for dom in opsets:
        if dom not in ("", "ai.onnx"):
            rep.add("warning", "opset", f"custom domain '{dom}' needs a TensorRT plugin")


def _check_ops(g, rep: CheckReport) -> None:
    seen: set[tuple[str, str]] = set()
    for n in g.node:
        if n.domain not in ("", "ai.onnx"):
            key = (n.domain, n.op_type)
            if key not in seen:
                rep.add("warning", "ops", f"op {n.domain}::{n.op_type} is not an ONNX op; it needs a TensorRT plugin",
                        n.name)
            seen.add(key)
            continue
        if n.op_type in TRT_10_3_OPS or (n.op_type, "") in seen:
            continue
        seen.add((n.op_type, ""))
        if n.op_type in _LATER_THAN_10_3:
            rep.add("warning", "ops", f"op {n.op_type} is not in TensorRT 10.3's (JetPack 6) operator list; "
                                      "newer TensorRT releases import it", n.name)
        else:
            rep.add("error", "ops", f"op {n.op_type} is not supported by TensorRT 10.3's ONNX parser", n.name)


def _check_io(model, rep: CheckReport) -> None:
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        rep.add("error", "io", f"expected one input tensor (N,3,H,W), found {[i.name for i in inputs]}")
    for vi in inputs:
        d = list(dims(vi))
        if len(d) != 4:
            rep.add("error", "io", f"input '{vi.name}' has rank {len(d)}, expected 4 (N,3,H,W)")
            continue
        if any(x is None for x in d):
            rep.add("error", "axes", f"input '{vi.name}' has an unnamed dynamic axis {d}; name it "
                                     "(dynamic_axes={'input': {0: 'batch'}}) so the profile can address it")
        if not isinstance(d[0], str) and d[0] is not None:
            rep.add("warning", "axes", f"input '{vi.name}' has a static batch of {d[0]}; the engine can only "
                                       "run that batch size")
        if any(not isinstance(x, int) for x in d[1:]):
            rep.add("error", "axes", f"input '{vi.name}' has dynamic C/H/W {d[1:]}; only the batch axis may "
                                     "be dynamic")
    for vi in model.graph.output:
        d = list(dims(vi))
        if any(x is None for x in d):
            rep.add("warning", "axes", f"output '{vi.name}' has an unnamed dynamic axis {d}")


def _check_metadata(model, rep: CheckReport) -> None:
    props = metadata(model)
    if META_KEY not in props:
        rep.add("error", "metadata", f"no model card under metadata key '{META_KEY}': an engine would not know "
                                     "its preprocessing spec and threshold (export with `ffd export`)")
        return
    try:
        card = ModelCard.from_json(props[META_KEY])
    except Exception as e:  # noqa: BLE001 - ModelError / ConfigError from a malformed card
        rep.add("error", "metadata", f"model card is unreadable: {e}")
        return
    for vi in graph_inputs(model):
        d = dims(vi)
        if len(d) == 4 and all(isinstance(x, int) for x in d[2:]) and d[2:] != (card.spec.size,) * 2:
            rep.add("error", "metadata", f"the card's spec says {card.spec.size}x{card.spec.size} but input "
                                         f"'{vi.name}' is {d[2]}x{d[3]}")
    rep.add("info", "metadata", f"model card '{card.name}' v{card.version}, input {card.spec.size}px, "
                                f"threshold {card.threshold}")


def _check_qdq(g, rep: CheckReport) -> None:
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name: i for i in g.initializer}

    for n in g.node:
        if n.op_type not in QDQ_OPS:
            continue
        zp = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if zp and zp in inits:
            import onnx.numpy_helper as nh

            arr = nh.to_array(inits[zp])
            if arr.dtype.name not in ("int8",):
                rep.add("error", "qdq", f"{n.op_type} uses {arr.dtype.name} zero points; TensorRT takes INT8 "
                                        "(symmetric) quantization only", n.name)
            elif arr.any():
                rep.add("error", "qdq", f"{n.op_type} has a non-zero zero point; TensorRT needs symmetric "
                                        "quantization (zero point 0)", n.name)

    def dq_fed(tensor: str) -> bool:
        src = producer.get(tensor)
        return src is not None and src.op_type == "DequantizeLinear"

    def upstream_int8(tensor: str, depth: int = 6) -> bool:
        """Does the value come (through pass-through ops) from a quantized layer or a DQ?"""
        src = producer.get(tensor)
        if src is None or depth == 0:
            return False
        if src.op_type == "DequantizeLinear" or (src.op_type in QUANTIZABLE and _quantized(src)):
            return True
        if src.op_type in _PASS_THROUGH:
            return any(upstream_int8(i, depth - 1) for i in src.input[:1])
        return False

    def downstream_q(tensor: str, depth: int = 6) -> bool:
        """Does the value flow (through pass-through ops) into a QuantizeLinear?"""
        if depth == 0:
            return False
        for c in consumers.get(tensor, []):
            if c.op_type == "QuantizeLinear":
                return True
            if c.op_type in _PASS_THROUGH and any(downstream_q(o, depth - 1) for o in c.output):
                return True
        return False

    def _quantized(node) -> bool:
        return len(node.input) >= 2 and dq_fed(node.input[0]) and dq_fed(node.input[1])

    for n in g.node:
        if n.op_type not in QUANTIZABLE or len(n.input) < 2:
            continue
        act, wt = dq_fed(n.input[0]), dq_fed(n.input[1])
        if act and wt:
            continue
        label = f"{n.op_type} '{n.name or n.output[0]}'"
        if act != wt:
            missing = "weight" if act else "activation"
            rep.add("error", "qdq", f"{label} has a quantized {'activation' if act else 'weight'} but an "
                                    f"unquantized {missing}: TensorRT cannot run it in INT8", n.name)
        elif upstream_int8(n.input[0]) and downstream_q(n.output[0]):
            rep.add("error", "qdq", f"{label} is an FP32 island between INT8 layers (no DequantizeLinear on its "
                                    "activation and weight); quantize it, or exclude its neighbours too", n.name)
        else:
            rep.add("warning", "qdq", f"{label} is not quantized (runs in FP32/FP16 at the edge of the INT8 region)",
                    n.name)
