"""The pycuda layer on its own (no TensorRT): owner thread, pinned buffers, streams, copies, CUDA graphs."""
from __future__ import annotations

import numpy as np
import pytest

from _threads import run_threads

pytestmark = pytest.mark.gpu


@pytest.fixture
def owner():
    pytest.importorskip("pycuda.driver", reason="pycuda not installed (pip install 'ffd-edge[gpu]')")
    from edge.runtime.cuda import CudaOwner

    with CudaOwner(0) as o:
        yield o


def test_owner_reports_the_device(owner):
    assert owner.info["name"] and owner.info["compute_capability"].count(".") == 1
    from edge.runtime.cuda import gpu_info

    assert gpu_info(0) == (owner.info["name"], owner.info["compute_capability"])


def test_buffers_round_trip_on_a_non_default_stream(owner):
    from edge.runtime import cuda as cu

    def work():
        a = cu.HostDeviceBuffer((8, 3, 4, 4), np.float32)
        b = cu.HostDeviceBuffer((8, 3, 4, 4), np.float32)
        s = cu.new_stream()
        a.host[:] = np.arange(a.host.size, dtype=np.float32).reshape(a.shape)
        a.h2d(s, 5)  # only 5 rows travel
        cu.driver().memcpy_dtod_async(b.ptr, a.ptr, a.nbytes, s)
        b.host[:] = -1
        b.d2h(s, 5)
        s.synchronize()
        got = b.host.copy()
        a.free()
        b.free()
        return got

    got = owner.call(work)
    ref = np.arange(got.size, dtype=np.float32).reshape(got.shape)
    assert np.array_equal(got[:5], ref[:5]) and (got[5:] == -1).all()


def test_calls_from_worker_threads_run_on_the_owner(owner):
    import pycuda.driver as cuda

    from edge.runtime import cuda as cu

    def in_owner(i):
        assert owner.in_owner_thread()
        buf = cu.HostDeviceBuffer((4,), np.float32)
        s = cu.new_stream()
        buf.host[:] = i
        buf.h2d(s)
        buf.host[:] = 0
        buf.d2h(s)
        s.synchronize()
        v = float(buf.host[0])
        buf.free()
        return v

    results = {}

    def worker(i):
        assert cuda.Context.get_current() is None  # workers hold no context of their own
        results[i] = owner.call(in_owner, i)

    errors = run_threads(worker, 8)
    assert not errors and results == {i: float(i) for i in range(8)}


def test_cuda_graph_replays_copies_with_new_host_data(owner):
    from edge.runtime import cuda as cu

    def work():
        a = cu.HostDeviceBuffer((16,), np.float32)
        b = cu.HostDeviceBuffer((16,), np.float32)
        s = cu.new_stream()

        def record(st):
            a.h2d(st)
            cu.driver().memcpy_dtod_async(b.ptr, a.ptr, a.nbytes, st)
            b.d2h(st)

        g = cu.CudaGraph(s, record)
        out = []
        for v in (1.0, 2.0, 3.0):
            a.host[:] = v
            g.launch(s)
            s.synchronize()
            out.append(b.host.copy())
        g.free()
        a.free()
        b.free()
        return out

    for v, got in zip((1.0, 2.0, 3.0), owner.call(work)):
        assert (got == v).all()


def test_event_timer(owner):
    from edge.runtime import cuda as cu

    def work():
        buf = cu.HostDeviceBuffer((1 << 20,), np.float32)
        s = cu.new_stream()
        t = cu.EventTimer(("a", "b"))
        t.record("a", s)
        buf.h2d(s)
        t.record("b", s)
        s.synchronize()
        buf.free()
        return t.elapsed("a", "b")

    assert owner.call(work) > 0


def test_closed_owner_refuses_work():
    pytest.importorskip("pycuda.driver")
    from edge.errors import BackendUnavailableError
    from edge.runtime.cuda import CudaOwner

    o = CudaOwner(0)
    o.close()
    with pytest.raises(BackendUnavailableError):
        o.call(lambda: 1)
