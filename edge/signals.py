"""SIGTERM and SIGINT: stop the workers, keep what is finished, say so in one line (torch-free).

``kill PID`` and ``docker stop`` send SIGTERM to the main process only; Ctrl-C sends SIGINT to
the whole foreground process group (the main process, its worker processes, the resource
tracker). The rule: both stop the workers, keep every finished row, print one line and exit
143 (SIGTERM) or 130 (SIGINT).

* :func:`handle_signals` (the CLI wraps every command in it) turns the first SIGTERM or SIGINT
  into :class:`Interrupted`, raised in the main thread. It is a ``BaseException`` but *not* a
  ``KeyboardInterrupt``: no ``except Exception`` swallows it, and typer does not turn it into a
  silent exit 130. Later signals are ignored while the run cleans up (a third one exits at once).
* Code that runs a worker pool cleans up in ``except BaseException`` / ``finally``:
  :func:`stop_pool` terminates the workers (SIGTERM, then SIGKILL) instead of waiting for the
  files in flight, which are redone by the next run.
* :func:`deferred`: a critical section (one row written and committed, one file's manifest rows
  written); a signal that arrives inside it is raised when it ends, so a row is whole or absent.
* Workers never see Ctrl-C: :func:`submit` blocks SIGINT in the submitting thread while the pool
  may start a process (a spawned child inherits the blocked mask, as multiprocessing's resource
  tracker does), and :func:`worker_signals` (in each pool initializer) ignores it. So no worker
  prints a ``KeyboardInterrupt`` traceback; the parent alone decides.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The run was stopped by SIGTERM or SIGINT; ``exit_code`` is 128 + the signal number (143, 130).

    Code that knows what was kept adds a note (``e.add_note("12 files screened ...; re-run to
    resume")``); the CLI prints :meth:`line`."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:  # pragma: no cover - not a known signal
            return f"signal {self.signum}"

    def line(self) -> str:
        """``terminated (SIGTERM): <notes>`` / ``interrupted (SIGINT): <notes>``."""
        verb = "terminated" if self.signum == signal.SIGTERM else "interrupted"
        notes = "; ".join(getattr(self, "__notes__", ()))
        return f"{verb} ({self.signal_name})" + (f": {notes}" if notes else "")


_STATE = {"installed": 0, "fired": 0, "defer": 0, "pending": None}


def _handler(signum, frame) -> None:
    if _STATE["fired"]:  # already stopping: let the cleanup finish; a third signal forces the exit
        _STATE["fired"] += 1
        if _STATE["fired"] >= 3:
            os._exit(128 + signum)
        return
    if _STATE["defer"]:  # inside a critical section: raised when it ends
        _STATE["pending"] = signum
        return
    _STATE["fired"] = 1
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals(signals=STOP_SIGNALS) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT raise :class:`Interrupted` in the main thread (see the module
    docstring); the previous handlers come back after it. Outside the main thread: does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, _handler)
    _STATE["installed"] += 1
    try:
        yield
    finally:
        _STATE["installed"] -= 1
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        if not _STATE["installed"]:
            _STATE.update(fired=0, defer=0, pending=None)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A critical section of the main thread: a stop signal that arrives inside it is raised at its end."""
    _STATE["defer"] += 1
    try:
        yield
    finally:
        _STATE["defer"] -= 1
        signum = _STATE["pending"]
        if not _STATE["defer"] and signum is not None:
            _STATE["pending"] = None
            if not _STATE["fired"]:
                _STATE["fired"] = 1
                raise Interrupted(signum)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a Ctrl-C that came meanwhile is delivered now


def submit(pool, fn, /, *args, **kwargs):
    """``pool.submit(fn, ...)`` with SIGINT blocked meanwhile: a worker process the pool starts in this call
    begins with SIGINT blocked, so a Ctrl-C reaches only the parent, which stops the workers."""
    with _sigint_blocked():
        return pool.submit(fn, *args, **kwargs)


def worker_signals() -> None:
    """For a pool initializer: ignore SIGINT (the parent handles Ctrl-C), die on SIGTERM (how the parent stops it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_pool(pool, timeout_s: float = 5.0) -> None:
    """Stop a ``ProcessPoolExecutor`` *now*: terminate its workers (SIGTERM; SIGKILL after ``timeout_s``),
    cancel what is queued and shut it down. For a run that is interrupted or failed: the files in flight
    are abandoned (the next run redoes them) instead of being waited for."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    with contextlib.suppress(Exception):
        pool.shutdown(wait=True, cancel_futures=True)
    deadline = time.monotonic() + timeout_s
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1.0)
