"""``ffd screen --ray``: the same screening on a Ray cluster with Ray Data (``pip install 'ffd-edge[scale]'``).

file list → :func:`~edge.screen.screen.sample_file` (decode + face detection + crops) as CPU
*tasks* (one face detector per worker process) → a pool of classifier *actors* (each owns one
runner; ``num_gpus=1`` per actor when the cluster has GPUs, else CPU actors) that score the crops
and build the row with :func:`~edge.screen.screen.score_sample` → rows stream back to the driver,
which writes each to SQLite as it arrives (so a killed Ray run resumes like a local one). The
rows are the ones the local path makes. ``ray`` is imported here only.

``address``: ``"local"`` starts a Ray instance on this machine for the run (and stops it);
``"auto"`` joins the cluster this machine belongs to; ``"HOST:PORT"`` (or ``ray://HOST:PORT``)
joins that cluster.
"""
from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path
from typing import Iterator

from ..errors import require


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
             classifiers: int | None = None) -> Iterator[dict]:
    """Rows for ``todo`` computed on Ray (see the module docstring); ``init_args`` as in the local path,
    ``spec`` the model's PreprocessSpec (for the face detector and the crops of the decode tasks)."""
    ray = require("ray", "scale", "ffd screen --ray")

    model, backend, detector_model, runner_kw, settings, _ = init_args
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if not ray.is_initialized():
        if address in ("local", ""):
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
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
