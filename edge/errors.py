"""Typed, user-facing errors.

Every error a user can cause (a bad file, a missing model, a version mismatch, an option
out of range, a diverging training run) is an :class:`FfdError` that carries *what* went
wrong, *which file*, and *how to fix it*. The CLI prints it as one line,
``error: <message> (<path>); fix: <hint>``, and exits with its ``exit_code`` (3, :data:`EXIT_USER_ERROR`:
distinct from Click's usage-error code 2, so a script can tell "bad option syntax" from "bad
file, model or value"); anything else is an internal bug: ``internal error: ...``, exit 1.
``--debug`` shows the traceback. The exit codes of ``ffd`` are listed in :mod:`ffd.cli`.
"""
from __future__ import annotations

from pathlib import Path

EXIT_USER_ERROR = 3  # an FfdError: a file, model, value or environment the user can fix (2 is Click's usage error)


class FfdError(Exception):
    """Base class of errors a user can fix; ``fix`` says how."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str, *, fix: str | None = None, path: str | Path | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.path = None if path is None else str(path)

    # transient: caused by this run's resources or deadlines (a decode timeout, memory), not by the file
    # itself; a screening run retries such a file next time instead of keeping its error row as final
    transient = False

    def __str__(self) -> str:
        s = self.message
        if self.path and self.path not in s:
            s = f"{s} ({self.path})"
        if self.fix:
            s = f"{s}; fix: {self.fix}"
        # one line fit for a terminal: a file name's control characters (ESC sequences, newlines) and
        # undecodable bytes are escaped (edge.inputs.printable)
        from .inputs import printable

        return printable(s)


class InputError(FfdError):
    """A media file or folder cannot be read (missing, corrupt, truncated, not media)."""


class DecodeTimeoutError(InputError):
    """Decoding one file took longer than the per-file budget (``FFD_DECODE_TIMEOUT_S``): retried next run."""

    transient = True


class OutOfMemoryError(InputError):
    """An allocation failed while decoding or scoring one file: retried next run, never a result."""

    transient = True


class ConfigError(FfdError):
    """An option, config or spec is invalid or inconsistent."""


class ModelError(FfdError):
    """A model/checkpoint/ONNX file is missing, corrupt, of another architecture or lacks metadata."""


class DatasetError(FfdError):
    """A dataset is empty, has one class only, or does not match the expected layout."""


class TrainingError(FfdError):
    """A training run cannot go on because of its options or data (the loss became NaN or infinite)."""


class CalibrationError(FfdError):
    """A calibration set is missing, empty, too small or preprocessed with another spec."""


class BackendUnavailableError(FfdError):
    """A runtime backend (TensorRT, pycuda, a CUDA GPU, Ray) is not installed or not usable here."""


class EngineMismatchError(ModelError):
    """A TensorRT engine was built by another TensorRT version, GPU or from other inputs."""


class MissingDependencyError(BackendUnavailableError):
    """An optional package (an extra) is not installed."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"the optional package '{package}' is needed{what} but is not installed",
            fix=f"pip install 'ffd-edge[{extra}]'",
        )
        self.package = package
        self.extra = extra


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional module lazily, raising :class:`MissingDependencyError` with the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from e
