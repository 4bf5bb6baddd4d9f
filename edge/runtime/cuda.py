"""pycuda plumbing for the TensorRT runner: one owner thread per device, pinned buffers, streams, graphs.

CUDA contexts are per thread: a camera thread or a web server worker that calls into a
runner created on another thread meets "invalid device context". So every CUDA call runs
on a :class:`CudaOwner` thread that made the device's **primary context** current
(``Device(i).retain_primary_context()`` + ``push``; never ``pycuda.autoinit``, which makes
a second, private context), and callers hand it callables (:meth:`CudaOwner.call`,
:meth:`CudaOwner.submit`). The primary context is the one the CUDA runtime (and so
TensorRT, ONNX Runtime's CUDA provider, PyTorch) uses, so all of them share memory and
streams in one context.

:class:`HostDeviceBuffer` pairs a page-locked host array with a device allocation (async
copies need page-locked memory); :func:`new_stream` makes a non-blocking, non-default
stream; :class:`CudaGraph` captures work on a stream once and replays it. pycuda (2026.1)
has no stream-capture API, so the capture calls go to the CUDA driver (``libcuda``) through
``ctypes`` with pycuda's stream handle; the enum values are named from ``cuda.h``.

Nothing here imports TensorRT: these pieces are tested on a GPU on their own
(``tests/test_cuda_gpu.py``). Everything except :class:`CudaOwner` itself must be called on
the owner thread.
"""
from __future__ import annotations

import ctypes
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable

import numpy as np

from ..errors import BackendUnavailableError, require

# cuda.h: CUstream_flags / CUstreamCaptureMode / CUresult
CU_STREAM_NON_BLOCKING = 0x1
CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1
CUDA_SUCCESS = 0


def driver():
    """``pycuda.driver``, or a clear error naming the extra."""
    return require("pycuda.driver", "gpu", "the TensorRT runtime (pycuda)")


class CudaOwner:
    """A thread that owns device ``device``'s primary context and runs every CUDA call.

    ``call(fn, *a)`` runs ``fn`` there and returns its result (re-raising its exception);
    ``submit`` returns a :class:`concurrent.futures.Future`. A call made from the owner
    thread itself runs inline. ``close()`` runs the registered finalizers, pops the context
    and ends the thread; the object is a context manager.
    """

    def __init__(self, device: int = 0, name: str | None = None):
        self.device = int(device)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._finalizers: list[Callable[[], None]] = []
        self._closed = False
        self._lock = threading.Lock()
        ready: Future = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name=name or f"ffd-cuda{self.device}")
        self._thread.start()
        self.info: dict[str, Any] = ready.result()  # raises BackendUnavailableError when CUDA is unusable

    # --- the owner thread ---------------------------------------------------------------
    def _run(self, ready: Future) -> None:
        ctx = None
        try:
            cuda = driver()
            cuda.init()
            n = cuda.Device.count()
            if self.device >= n:
                raise BackendUnavailableError(f"CUDA device {self.device} does not exist ({n} found)",
                                              fix="pick a device with --device, or check nvidia-smi")
            dev = cuda.Device(self.device)
            ctx = dev.retain_primary_context()
            ctx.push()
            major, minor = dev.compute_capability()
            info = {"name": dev.name(), "compute_capability": f"{major}.{minor}",
                    "total_memory": int(dev.total_memory()), "device": self.device}
        except BaseException as e:  # noqa: BLE001 - reported to the creating thread
            if ctx is not None:
                _pop_quietly()
            if isinstance(e, BackendUnavailableError):
                ready.set_exception(e)
            else:
                ready.set_exception(BackendUnavailableError(
                    f"CUDA is not usable here: {type(e).__name__}: {e}",
                    fix="run on a machine with an NVIDIA GPU and driver (nvidia-smi must work); "
                        "on Jetson use JetPack 6's python3 with pycuda built against CUDA 12.6"))
            return
        ready.set_result(info)
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                fn, args, kw, fut = item
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(fn(*args, **kw))
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    fut.set_exception(e)
        finally:
            for fin in reversed(self._finalizers):
                try:
                    fin()
                except Exception:  # noqa: BLE001 - teardown continues; nothing useful to do
                    pass
            self._finalizers.clear()
            _pop_quietly()
            ctx = None
            try:
                from pycuda.tools import clear_context_caches

                clear_context_caches()
            except Exception:  # noqa: BLE001
                pass

    # --- any thread -----------------------------------------------------------------------
    def in_owner_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable, *args, **kw) -> Future:
        fut: Future = Future()
        if self.in_owner_thread():
            try:
                fut.set_result(fn(*args, **kw))
            except BaseException as e:  # noqa: BLE001
                fut.set_exception(e)
            return fut
        with self._lock:
            if self._closed:
                raise BackendUnavailableError("the CUDA owner thread was closed", fix="open a new runner")
            self._queue.put((fn, args, kw, fut))
        return fut

    def call(self, fn: Callable, *args, **kw):
        return self.submit(fn, *args, **kw).result()

    def add_finalizer(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the owner thread at ``close()`` (before the context is popped)."""
        self._finalizers.append(fn)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if not self.in_owner_thread():
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _pop_quietly() -> None:
    try:
        driver().Context.pop()
    except Exception:  # noqa: BLE001 - nothing current
        pass


def new_stream():
    """A non-default stream that does not synchronise with the legacy default stream."""
    return driver().Stream(flags=CU_STREAM_NON_BLOCKING)


class HostDeviceBuffer:
    """A page-locked host array and a device allocation of the same shape (the max batch)."""

    def __init__(self, shape: tuple[int, ...], dtype):
        cuda = driver()
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.host = cuda.pagelocked_empty(self.shape, self.dtype)
        self.device = cuda.mem_alloc(max(int(self.host.nbytes), 1))

    @property
    def ptr(self) -> int:
        return int(self.device)

    @property
    def nbytes(self) -> int:
        return int(self.host.nbytes)

    def rows(self, n: int) -> np.ndarray:
        """The first ``n`` rows of the host array (a view; contiguous)."""
        return self.host[:n]

    def h2d(self, stream, n: int | None = None) -> None:
        src = self.host if n is None else self.host[:n]
        driver().memcpy_htod_async(self.ptr, src, stream)

    def d2h(self, stream, n: int | None = None) -> None:
        dst = self.host if n is None else self.host[:n]
        driver().memcpy_dtoh_async(dst, self.ptr, stream)

    def free(self) -> None:
        if self.device is not None:
            self.device.free()
            self.device = None
        if self.host is not None:
            base = self.host.base
            self.host = None
            if base is not None and hasattr(base, "free"):
                base.free()


class EventTimer:
    """CUDA events recorded at named points on a stream; ``elapsed()`` gives ms between them."""

    def __init__(self, names: tuple[str, ...]):
        cuda = driver()
        self.names = names
        self.events = {n: cuda.Event() for n in names}

    def record(self, name: str, stream) -> None:
        self.events[name].record(stream)

    def elapsed(self, a: str, b: str) -> float:
        """Milliseconds from event ``a`` to event ``b`` (``b`` must have completed)."""
        return float(self.events[b].time_since(self.events[a]))


# --------------------------------------------------------------------------------------
# CUDA graphs through the driver API (pycuda has no stream capture)
# --------------------------------------------------------------------------------------
_LIBCUDA = None


def _libcuda():
    global _LIBCUDA
    if _LIBCUDA is None:
        try:
            lib = ctypes.CDLL("libcuda.so.1")
        except OSError as e:
            raise BackendUnavailableError(f"libcuda.so.1 cannot be loaded: {e}",
                                          fix="install the NVIDIA driver (CUDA graphs need it)") from e
        vp, u64 = ctypes.c_void_p, ctypes.c_ulonglong
        lib.cuStreamBeginCapture_v2.argtypes = [vp, ctypes.c_int]
        lib.cuStreamEndCapture.argtypes = [vp, ctypes.POINTER(vp)]
        lib.cuGraphInstantiateWithFlags.argtypes = [ctypes.POINTER(vp), vp, u64]
        lib.cuGraphLaunch.argtypes = [vp, vp]
        lib.cuGraphExecDestroy.argtypes = [vp]
        lib.cuGraphDestroy.argtypes = [vp]
        lib.cuGetErrorName.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        for f in ("cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphInstantiateWithFlags", "cuGraphLaunch",
                  "cuGraphExecDestroy", "cuGraphDestroy", "cuGetErrorName"):
            getattr(lib, f).restype = ctypes.c_int
        _LIBCUDA = lib
    return _LIBCUDA


class CudaGraphError(RuntimeError):
    """Stream capture or graph launch failed (the caller falls back to plain enqueueing)."""


def _check(rc: int, what: str) -> None:
    if rc != CUDA_SUCCESS:
        name = ctypes.c_char_p()
        _libcuda().cuGetErrorName(rc, ctypes.byref(name))
        raise CudaGraphError(f"{what} failed: {(name.value or b'?').decode()} ({rc})")


class CudaGraph:
    """Capture the work ``record(stream)`` enqueues on ``stream`` once; ``launch`` replays it.

    The captured graph holds the device pointers and shapes of the capture, so replay is
    only valid for the same buffers and the same batch size.
    """

    def __init__(self, stream, record: Callable[[Any], None]):
        lib = _libcuda()
        h = ctypes.c_void_p(int(stream.handle))
        _check(lib.cuStreamBeginCapture_v2(h, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture")
        graph = ctypes.c_void_p()
        try:
            record(stream)
        finally:
            rc = lib.cuStreamEndCapture(h, ctypes.byref(graph))
        _check(rc, "cuStreamEndCapture")
        exe = ctypes.c_void_p()
        try:
            _check(lib.cuGraphInstantiateWithFlags(ctypes.byref(exe), graph, 0), "cuGraphInstantiate")
        finally:
            lib.cuGraphDestroy(graph)
        self._exec = exe

    def launch(self, stream) -> None:
        if self._exec is None:
            raise CudaGraphError("graph was freed")
        _check(_libcuda().cuGraphLaunch(self._exec, ctypes.c_void_p(int(stream.handle))), "cuGraphLaunch")

    def free(self) -> None:
        if self._exec is not None:
            _libcuda().cuGraphExecDestroy(self._exec)
            self._exec = None


def gpu_info(device: int = 0) -> tuple[str, str]:
    """(name, "major.minor") of CUDA device ``device``; needs the driver, no context."""
    cuda = driver()
    try:
        cuda.init()
        dev = cuda.Device(int(device))
        major, minor = dev.compute_capability()
        return str(dev.name()), f"{major}.{minor}"
    except Exception as e:  # noqa: BLE001 - pycuda raises its own error types
        raise BackendUnavailableError(
            f"no usable CUDA device {device}: {type(e).__name__}: {e}",
            fix="run on a machine with an NVIDIA GPU and driver (nvidia-smi must work)") from e
