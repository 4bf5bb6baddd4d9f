"""``ffd``: one typer app; each area registers its commands from its own module.

Every command is a short annotated function that checks only command-line conflicts and
calls one public library function, importing it inside the command so that ``ffd --help``
and every ``--help`` work without torch, modelopt or TensorRT. Errors a user can fix are
:class:`edge.errors.FfdError`; :func:`main` prints them as one line with the fix and exits
non-zero. ``--debug`` (or ``FFD_DEBUG=1``) shows tracebacks.

Exit codes:

* 0 -- done;
* 1 -- an internal error (a bug: ``internal error: ...``), or ``aborted``;
* 2 -- a usage error found by Click (an unknown option, a missing argument, a value of the wrong
  type): ``error: ...; fix: see `ffd CMD --help```;
* 3 -- an :class:`~edge.errors.FfdError` (:data:`edge.errors.EXIT_USER_ERROR`): a file, model,
  option value or environment variable the user can fix, ``error: ...; fix: ...``;
* 130 -- SIGINT (Ctrl-C), 143 -- SIGTERM (``kill``, ``docker stop``): the workers are stopped,
  finished rows kept, one line (``interrupted (SIGINT): ...`` / ``terminated (SIGTERM): ...``),
  see :mod:`edge.signals`.
"""
from __future__ import annotations

import importlib
import os
import sys
import warnings

import typer

from edge.errors import FfdError

app = typer.Typer(
    name="ffd",
    help="Facial forgery detection: extract faces, train and distil, quantize, build engines, detect and screen.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_STATE = {"debug": os.environ.get("FFD_DEBUG", "") not in ("", "0")}

# modules that add commands; each defines register(app)
_AREAS = ("faces", "train", "vit", "adapt", "deploy", "engine", "detect", "screen", "bench", "env")  # pipeline order


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    if debug:
        _STATE["debug"] = True
    from edge.settings import check_environment

    check_environment()  # FFD_DECODE_TIMEOUT_S=inf and friends: one line before any command opens a file


for _area in _AREAS:
    importlib.import_module(f"ffd.cli.{_area}").register(app)


def _one_line_warning(message, category, *args, **kwargs) -> None:
    typer.echo(f"warning: {message}", err=True)


def _click_exceptions():
    """Click's exception classes (typer >= 0.26 bundles its own Click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - a typer that uses the click package
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> None:
    if argv is not None:
        sys.argv = ["ffd", *argv]
    if "--debug" in sys.argv[1:]:
        _STATE["debug"] = True
    if not _STATE["debug"]:  # library warnings as one line each, like errors
        warnings.showwarning = _one_line_warning
    click_ex = _click_exceptions()
    from edge.signals import Interrupted, handle_signals

    try:
        with handle_signals():  # SIGTERM/SIGINT -> Interrupted: workers stopped, finished rows kept
            rc = app(standalone_mode=False)  # usage errors come here, printed as one line below
        if isinstance(rc, int) and not isinstance(rc, bool) and rc:  # typer.Exit(code) from a command
            sys.exit(rc)
    except Interrupted as e:  # one line (what was kept, how to resume), exit 130/143
        if _STATE["debug"]:
            raise
        typer.echo(e.line(), err=True)
        sys.exit(e.exit_code)
    except click_ex.ClickException as e:  # a bad option value or a missing argument: one line, exit 2
        if type(e).__name__ == "NoArgsIsHelpError":  # `ffd` alone: the help, as typer prints it
            typer.echo(e.format_message(), err=True)
            sys.exit(e.exit_code)
        if _STATE["debug"]:
            raise
        cmd = getattr(getattr(e, "ctx", None), "command_path", "ffd")
        msg = " ".join(e.format_message().split()).rstrip(".")
        typer.echo(f"error: {msg}; fix: see `{cmd} --help`", err=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except FfdError as e:  # a user-fixable error: one line, exit 3 (EXIT_USER_ERROR; 2 stays Click's)
        if _STATE["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # an internal error: one line, traceback only with --debug
        if _STATE["debug"]:
            raise
        typer.echo(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", err=True)
        sys.exit(1)
