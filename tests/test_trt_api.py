"""TensorRT API conformance without a GPU or TensorRT.

The binding wheels ``tensorrt-cu12-bindings==10.3.0`` (JetPack 6) and
``tensorrt-cu13-bindings==11.4.0.106`` (desktop) are downloaded by scripts/setup.sh into
``.cache/trt-bindings``. Their ``tensorrt.so`` cannot be imported without the TensorRT
libraries, but its string table holds every class, method, property and enum name that
pybind11 registers (NUL-terminated; the linker may share a short name as the tail of a
longer string, so tails count too). This test collects every TensorRT attribute used by
``edge/runtime/trt.py`` (the one module that touches TensorRT) from its AST and asserts it
exists in both versions, except inside ``if _trt_major() >= 11:`` / ``< 11:`` branches, which
are checked against the version(s) they run on. A removed or misspelt API fails here, not
on a user's Jetson.
"""
from __future__ import annotations

import ast
import builtins
import functools
import logging
import pathlib
import queue
import re
import threading
import zipfile
from concurrent.futures import Future

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".cache" / "trt-bindings"
TRT_MODULE = ROOT / "edge" / "runtime" / "trt.py"
VERSIONS = {10: "tensorrt_cu12_bindings-10.3.0-*.whl", 11: "tensorrt_cu13_bindings-11.4.0.106-*.whl"}


@functools.lru_cache(maxsize=None)
def trt_names(major: int) -> frozenset[str]:
    found = sorted(WHEELS.glob(VERSIONS[major]))
    if not found:
        pytest.skip(f"TensorRT binding wheel {VERSIONS[major]} not in {WHEELS} (run scripts/setup.sh with network)")
    with zipfile.ZipFile(found[0]) as z:
        so = z.read("tensorrt_bindings/tensorrt.so")
        init = z.read("tensorrt_bindings/__init__.py").decode()
    strings = {m.decode() for m in re.findall(rb"([A-Za-z_][A-Za-z0-9_]*)\x00", so)}
    names = {s[i:] for s in strings for i in range(len(s))}  # tail-merged strings
    tree = ast.parse(init)  # Python-level helpers of the package: nptype, volume, __version__ (10.3)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(names)


def _dir_names(*objs) -> set[str]:
    out: set[str] = set()
    for o in objs:
        out.update(dir(o))
    return out


# attributes of Python/numpy/stdlib objects the module also touches (never TensorRT's)
PY_NAMES = _dir_names(str, bytes, bytearray, dict, list, tuple, set, int, float, object, memoryview, BaseException,
                      np, np.ndarray, np.dtype, np.random.Generator, pathlib.Path, queue.Queue, threading.Thread,
                      Future, logging.Logger,
                      builtins)
PYCUDA_NAMES = {"handle", "synchronize"}  # pycuda.driver.Stream (its handle is execute_async_v3's argument)


@functools.lru_cache(maxsize=None)
def project_names() -> frozenset[str]:
    """Names defined by the project (functions, classes, attributes, dataclass fields)."""
    out: set[str] = set()
    for f in (ROOT / "edge").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(node.name)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                out.add(node.attr)  # only our own objects' attributes (not `config.x = ...`)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                out.add(node.target.id)
            elif isinstance(node, ast.Assign):
                out.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(out)


def _version_test(test: ast.expr) -> dict[int, bool] | None:
    """For ``if _trt_major() <op> N:``: which majors take the branch; None for other conditions."""
    names = {n.id for n in ast.walk(test) if isinstance(n, ast.Name)}
    if "_trt_major" not in names:
        return None
    if names != {"_trt_major"}:
        raise AssertionError(f"line {test.lineno}: a TensorRT version test must stand alone "
                             f"(`if _trt_major() >= 11:`), got `{ast.unparse(test)}`")
    code = compile(ast.Expression(test), "<version-test>", "eval")
    return {v: bool(eval(code, {"_trt_major": lambda v=v: v})) for v in VERSIONS}


def trt_uses(source: str) -> list[tuple[str, frozenset[int], int]]:
    """(attribute, majors it must exist in, line) for every attribute access that may be TensorRT's."""
    tree = ast.parse(source)
    other_modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            other_modules.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "tensorrt")
        elif isinstance(node, ast.ImportFrom) and node.module != "tensorrt":
            other_modules.update(a.asname or a.name for a in node.names)
    skip = PY_NAMES | PYCUDA_NAMES | project_names()
    uses: list[tuple[str, frozenset[int], int]] = []

    def visit(node: ast.AST, versions: frozenset[int]) -> None:
        if isinstance(node, ast.If):
            branch = _version_test(node.test)
            if branch is not None:
                for child in node.body:
                    visit(child, frozenset(v for v in versions if branch[v]))
                for child in node.orelse:
                    visit(child, frozenset(v for v in versions if not branch[v]))
                return
        if isinstance(node, ast.Attribute):
            root = node.value
            while isinstance(root, (ast.Attribute, ast.Call, ast.Subscript)):
                root = root.func if isinstance(root, ast.Call) else root.value
            root_name = root.id if isinstance(root, ast.Name) else None
            if root_name == "trt" or (root_name not in other_modules and node.attr not in skip):
                uses.append((node.attr, versions, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, versions)

    visit(tree, frozenset(VERSIONS))
    return uses


def unknown(source: str) -> list[str]:
    return [f"line {line}: '{name}' missing in TensorRT {v}.x bindings"
            for name, versions, line in trt_uses(source) for v in sorted(versions) if name not in trt_names(v)]


def test_binding_tables_tell_versions_apart():
    t10, t11 = trt_names(10), trt_names(11)
    for gone in ("FP16", "int8_calibrator", "EXPLICIT_BATCH", "platform_has_fast_fp16"):
        assert gone in t10 and gone not in t11, gone
    for both in ("execute_async_v3", "set_tensor_address", "STRONGLY_TYPED", "device_memory_size_v2",
                 "set_input_shape", "get_tensor_profile_shape", "build_serialized_network", "nptype", "__version__"):
        assert both in t10 and both in t11, both
    assert "set_memory_pool_limt" not in t10 | t11


def test_trt_module_uses_only_existing_api():
    src = TRT_MODULE.read_text()
    used = {name for name, _, _ in trt_uses(src)}
    # the collector really sees the TensorRT calls (the test cannot pass vacuously)
    assert {"execute_async_v3", "set_tensor_address", "set_input_shape", "STRONGLY_TYPED", "build_serialized_network",
            "set_memory_pool_limit", "WORKSPACE", "builder_optimization_level", "create_timing_cache",
            "get_tensor_profile_shape", "num_io_tensors", "get_tensor_mode", "FP16"} <= used
    assert unknown(src) == []


def test_checker_bites():
    # a 10-only name outside a version branch fails for 11.x, inside `if _trt_major() < 11:` it passes
    bad = "import tensorrt as trt\nconfig.set_flag(trt.BuilderFlag.FP16)\n"
    assert unknown(bad) == ["line 2: 'FP16' missing in TensorRT 11.x bindings"]
    good = "import tensorrt as trt\nif _trt_major() < 11:\n    config.set_flag(trt.BuilderFlag.FP16)\n"
    assert unknown(good) == []
    assert unknown("if _trt_major() >= 11:\n    pass\nelse:\n    c.int8_calibrator = x\n") == []
    assert unknown("c.int8_calibrator = x\n") == ["line 1: 'int8_calibrator' missing in TensorRT 11.x bindings"]
    # a misspelt method fails for both
    assert len(unknown("config.set_memory_pool_limt(trt.MemoryPoolType.WORKSPACE, 1)\n")) == 2
    assert len(unknown("import tensorrt as trt\nn = trt.NetworkDefinitionCreationFlag.EXPLICT_BATCH\n")) == 2
    with pytest.raises(AssertionError, match="stand alone"):
        trt_uses("if _trt_major() >= 11 and fp16:\n    pass\n")


def test_only_the_trt_module_touches_tensorrt():
    offenders = []
    for pkg in ("edge", "ffd", "calib", "train"):
        for f in (ROOT / pkg).rglob("*.py"):
            if f == TRT_MODULE:
                continue
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tensorrt" for a in node.names):
                    offenders.append(str(f))
                elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tensorrt":
                    offenders.append(str(f))
                elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                      and node.args[0].value == "tensorrt"):
                    offenders.append(str(f))
    assert offenders == []
