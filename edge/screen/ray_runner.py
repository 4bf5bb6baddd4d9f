"""``ffd screen --ray``: the same screening on a Ray cluster with Ray Data (``pip install 'ffd-edge[scale]'``).

file list → :func:`~edge.screen.screen.sample_file` (decode + face detection + crops) as CPU
*tasks* (one face detector per worker process) → a pool of classifier *actors* (each owns one
runner; ``num_gpus=1`` per actor when the cluster has GPUs, else CPU actors) that score the crops
and build the row with :func:`~edge.screen.screen.score_sample` → rows stream back to the driver,
which writes each to SQLite as it arrives (so a killed Ray run resumes like a local one). The
rows are the ones the local path makes. ``ray`` is imported here only.

``address``: ``"local"`` starts a Ray instance on this machine for the run (and stops it);
``"auto"`` joins the cluster this machine belongs to; ``"HOST:PORT"`` (or ``ray://HOST:PORT``)
joins that cluster. Joining has one overall deadline (``connect_timeout_s``, default 15 s,
``FFD_CONNECT_TIMEOUT_S``, ``ffd screen --connect-timeout``): :func:`probe_cluster` first reaches
the address's gRPC server (the GCS, or the Ray Client server) -- refused connections are retried
within the deadline, and a server that accepts but does not answer the HTTP/2 handshake fails it
-- because ``ray.init`` itself retries an unreachable address for many minutes.
"""
from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import socket
import time
from pathlib import Path
from typing import Iterator

from ..errors import BackendUnavailableError, ConfigError, require

# what an HTTP/2 (gRPC) client sends first: the connection preface and an empty SETTINGS frame; a gRPC
# server answers with its own SETTINGS frame at once
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def cluster_host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` / ``ray://HOST:PORT`` / ``[v6]:PORT``; None for ``local``/``auto``."""
    a = address.strip()
    if a in ("", "local", "auto"):
        return None
    a = a.split("://", 1)[-1].rstrip("/")
    host, sep, port = a.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray {address!r} is not local, auto or HOST:PORT",
                          fix="pass --ray local, --ray auto or --ray HOST:PORT (e.g. 10.0.0.5:6379)")
    return host.strip("[]"), int(port)


def probe_cluster(address: str, timeout_s: float) -> None:
    """Reach the gRPC server at ``address`` within ``timeout_s`` in all, or raise BackendUnavailableError.

    Refused or failed connections are retried (0.2 s, doubling up to 2 s) until the deadline; a
    server that accepts but sends nothing back to the HTTP/2 preface within the time left is not a
    Ray cluster (or a hung one). ``local``/``auto``: nothing to probe."""
    hp = cluster_host_port(address)
    if hp is None:
        return
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    delay, attempts, last = 0.2, 0, ""
    fix = ("check that the cluster is up (`ray status` on its head node) and the address is right; "
           "--connect-timeout S or FFD_CONNECT_TIMEOUT_S waits longer")
    while True:
        attempts += 1
        connected = False
        try:
            with socket.create_connection(hp, timeout=max(0.05, deadline - time.monotonic())) as sk:
                connected = True
                sk.settimeout(max(0.05, deadline - time.monotonic()))
                sk.sendall(_H2_PREFACE)
                if sk.recv(9):
                    return  # a gRPC server answered
                last = "the connection was closed without an answer"
        except OSError as e:
            if connected and isinstance(e, TimeoutError):
                raise BackendUnavailableError(
                    f"the Ray cluster address {address} accepted the connection but did not answer within "
                    f"{time.monotonic() - t0:.1f} s (not a Ray cluster, or a hung one)", fix=fix) from None
            last = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        left = deadline - time.monotonic()
        if left <= 0:
            raise BackendUnavailableError(
                f"cannot reach the Ray cluster at {address} within {time.monotonic() - t0:.1f} s "
                f"({attempts} attempt{'s' * (attempts > 1)}: {last})", fix=fix)
        time.sleep(min(delay, left))
        delay = min(2.0, delay * 2)


@functools.lru_cache(maxsize=4)
def _face_detector(spec, detector_model: str | None):
    """One face detector per Ray worker process (and spec), reused by every file it decodes."""
    from ..faces import FaceDetector

    return FaceDetector.from_spec(spec, detector_model)


def _decode_detect(item: dict, detector_model: str | None, settings, spec) -> dict:
    from .screen import sample_file

    s = sample_file(item["path"], item["kind"], settings, _face_detector(spec, detector_model), spec)
    return {"path": item["path"], "sample": pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)}


class _Classifier:
    """A Ray actor: one runner, scores the crops of a batch of files and builds their rows."""

    def __init__(self, model: str, backend: str, runner_kw: dict, settings):
        from ..forgery import ForgeryDetector

        self.fd = ForgeryDetector(model, backend, **runner_kw)
        self.settings = settings

    def __call__(self, batch: dict) -> dict:
        from .screen import score_sample

        return {"row": [pickle.dumps(score_sample(self.fd, pickle.loads(blob), self.settings))
                        for blob in batch["sample"]]}


def rows_ray(todo: list[tuple[Path, str]], init_args: tuple, spec, address: str = "local",
             classifiers: int | None = None, connect_timeout_s: float | None = None) -> Iterator[dict]:
    """Rows for ``todo`` computed on Ray (see the module docstring); ``init_args`` as in the local path,
    ``spec`` the model's PreprocessSpec (for the face detector and the crops of the decode tasks);
    ``connect_timeout_s``: the deadline to reach a cluster (default ``FFD_CONNECT_TIMEOUT_S`` or 15 s)."""
    from ..settings import connect_timeout_s as connect_timeout

    timeout_s = connect_timeout(connect_timeout_s)
    cluster_host_port(address)  # a malformed address is a ConfigError before anything starts
    ray = require("ray", "scale", "ffd screen --ray")

    model, backend, detector_model, runner_kw, settings, *_ = init_args
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if not ray.is_initialized():
        sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with sys.exit(15)
        if address in ("local", ""):
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            probe_cluster(address, timeout_s)  # ray.init would retry an unreachable address for minutes
            ray.init(address=address, log_to_driver=False)
        if sigterm is not None:  # SIGTERM stops the run as edge.signals says (exit 143)
            with contextlib.suppress(ValueError):  # not the main thread: ray.init left it alone too
                signal.signal(signal.SIGTERM, sigterm)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        gpus = int(ray.cluster_resources().get("GPU", 0))
        n_cls = classifiers or (gpus if gpus else 1)
        ds = ray.data.from_items([{"path": str(p), "kind": k} for p, k in todo])
        ds = ds.map(_decode_detect, fn_kwargs={"detector_model": detector_model, "settings": settings,
                                                "spec": spec}, num_cpus=1)
        ds = ds.map_batches(_Classifier, fn_constructor_kwargs={"model": model, "backend": backend,
                                                                "runner_kw": runner_kw, "settings": settings},
                            batch_size=8, concurrency=n_cls, num_gpus=1 if gpus else 0,
                            num_cpus=0 if gpus else 1)
        for rec in ds.iter_rows():
            yield pickle.loads(rec["row"])
    finally:
        if started:
            ray.shutdown()
