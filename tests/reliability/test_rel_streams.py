"""Class 6 of issue 15: streams (and clusters) that never answer. One overall connect deadline
(``--connect-timeout``, ``FFD_CONNECT_TIMEOUT_S``, default 15 s, range-checked), then one clear error:
against real loopback servers that accept and never send a byte, and ports where nothing listens."""
from __future__ import annotations

import importlib.util
import socket
import threading
import time

import pytest

from harness import SilentServer, free_port, run_ffd, stream_outcomes, table
from rel_fixtures import rel_model  # noqa: F401 - fixture

from edge.errors import BackendUnavailableError, ConfigError
from edge.settings import DEFAULT_CONNECT_TIMEOUT_S, RANGES, connect_timeout_s
from edge.stream.sources import SourceError, open_source

HAS_RAY = importlib.util.find_spec("ray") is not None


def _one_error(run) -> str:
    errs = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    assert run.rc == 3 and len(errs) == 1 and not run.problems(), run.stderr[-1500:]
    return errs[0]


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_detect_on_a_server_that_never_answers_ends_at_the_deadline(rel_model, scheme):
    with SilentServer() as port:
        run = run_ffd(["detect", f"{scheme}://127.0.0.1:{port}/x" + (".mp4" if scheme == "http" else ""),
                       "-m", rel_model, "--connect-timeout", "2"], timeout=60)
    line = _one_error(run)
    assert "no answer within" in line and "--connect-timeout" in line and f"127.0.0.1:{port}" in line
    assert run.seconds < 30, f"{run.seconds:.0f} s for a 2 s deadline"


def test_the_deadline_from_the_environment(rel_model):
    with SilentServer() as port:
        run = run_ffd(["detect", f"rtsp://127.0.0.1:{port}/x", "-m", rel_model], timeout=60,
                      env={"FFD_CONNECT_TIMEOUT_S": "1.5"})
    assert "connect timeout 1.5 s" in _one_error(run) and run.seconds < 30


def test_open_source_keeps_every_retry_inside_one_deadline():
    """Nothing listens: attempts and back-offs (0.5, 1, 2, 4, 8 s would be 15.5 s) stop at the deadline."""
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="no answer within") as e:
        open_source(f"rtsp://127.0.0.1:{port}/x", connect_timeout_s=1.5)
    took = time.monotonic() - t0
    assert 1.0 < took < 8, took
    assert "attempts" in e.value.message and e.value.path == f"rtsp://127.0.0.1:{port}/x"
    with SilentServer() as port, pytest.raises(SourceError):  # accepted, silent: the FFmpeg open is bounded
        t0 = time.monotonic()
        open_source(f"http://127.0.0.1:{port}/v.mp4", connect_timeout_s=1.0)
    assert time.monotonic() - t0 < 8


def test_connect_timeout_is_range_checked(rel_model, monkeypatch):
    assert connect_timeout_s() == DEFAULT_CONNECT_TIMEOUT_S <= 20
    assert connect_timeout_s(2) == 2.0
    for bad in (0, -1, float("nan"), float("inf"), "abc", True):
        with pytest.raises(ConfigError, match="connect_timeout_s must be"):
            connect_timeout_s(bad)
    monkeypatch.setenv("FFD_CONNECT_TIMEOUT_S", "inf")
    with pytest.raises(ConfigError, match="FFD_CONNECT_TIMEOUT_S"):
        connect_timeout_s()
    monkeypatch.delenv("FFD_CONNECT_TIMEOUT_S")
    assert RANGES["connect_timeout_s"].lo > 0
    for args, env, name in ((["--connect-timeout", "nan"], {}, "--connect-timeout"),
                            (["--connect-timeout", "0"], {}, "--connect-timeout"),
                            ([], {"FFD_CONNECT_TIMEOUT_S": "inf"}, "FFD_CONNECT_TIMEOUT_S")):
        run = run_ffd(["detect", "rtsp://127.0.0.1:1/x", "-m", rel_model, *args], timeout=60, env=env)
        assert name in _one_error(run)


# --- the Ray address ------------------------------------------------------------------------------
def test_probe_cluster_refused_silent_and_answering():
    from edge.screen.ray_runner import cluster_host_port, probe_cluster

    t0 = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="cannot reach the Ray cluster at 127.0.0.1:1 within"):
        probe_cluster("127.0.0.1:1", 1.0)
    assert time.monotonic() - t0 < 5
    with SilentServer() as port:
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="accepted the connection but did not answer"):
            probe_cluster(f"ray://127.0.0.1:{port}", 1.0)
        assert time.monotonic() - t0 < 5

    srv = socket.socket()  # a server that answers the HTTP/2 preface, as a gRPC server (the GCS) does
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def answer():
        c, _ = srv.accept()
        c.recv(64)
        c.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # an empty SETTINGS frame
        c.close()

    th = threading.Thread(target=answer, daemon=True)
    th.start()
    probe_cluster(f"127.0.0.1:{srv.getsockname()[1]}", 5.0)
    th.join(5)
    srv.close()
    assert cluster_host_port("local") is None and cluster_host_port("auto") is None
    assert cluster_host_port("ray://[::1]:10001") == ("::1", 10001)
    for bad in ("nohost", "host:", "host:0", "host:99999", ":6379"):
        with pytest.raises(ConfigError, match="--ray"):
            cluster_host_port(bad)


@pytest.mark.skipif(not HAS_RAY, reason="ray is the [scale] extra; without it --ray is the missing-extra error")
def test_screen_ray_at_a_closed_or_silent_address_is_one_error(rel_model, london_neutral, tmp_path):
    run = run_ffd(["screen", london_neutral[0], "-m", rel_model, "--db", tmp_path / "s.sqlite", "--no-progress",
                   "--ray", "127.0.0.1:1", "--connect-timeout", "2"], timeout=120)
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in _one_error(run) and run.seconds < 30
    with SilentServer() as port:
        run = run_ffd(["screen", london_neutral[0], "-m", rel_model, "--db", tmp_path / "s.sqlite", "--no-progress",
                       "--ray", f"127.0.0.1:{port}", "--connect-timeout", "2"], timeout=120)
    assert "did not answer" in _one_error(run) and run.seconds < 30


def test_stream_cases_of_the_reliability_report(rel_model, london_neutral, tmp_path):
    outcomes = stream_outcomes(rel_model, london_neutral[0], tmp_path, ray=False)
    assert len(outcomes) == 4 and all(o.cls == 6 for o in outcomes)
    bad = [o for o in outcomes if not o.ok]
    assert not bad, "\n" + table(bad)
