"""What every ``meanfield`` command shares: error translation, warnings, output checks.

``main.py`` and ``sweep.py`` both import from here (and nothing here imports them).

Exit status: 0 success; 2 bad input (one line naming file, key, expected,
found); 1 a run that failed numerically (one line with step and time); 128 +
signal when stopped by a signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; a run writes a checkpoint).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import warnings

import click

from meanfield.errors import STOP_SIGNALS, ParameterError, SimulationError, raise_interrupted

#: Set to 1 to see the Python traceback of an unexpected error instead of its one-line summary.
DEBUG_ENV = "MEANFIELD_DEBUG"

#: Exit status when stdout is closed early (e.g. ``meanfield info out.h5 | head -1``): 128 + SIGPIPE,
#: what a shell reports for a program ended by the signal.
EXIT_BROKEN_PIPE = 141


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _echo_warnings(caught, failed: bool) -> None:
    """Print caught warnings as one line each; after a failure only meanfield's own.

    NumPy's RuntimeWarnings (overflow in exp, invalid value ...) are the
    symptoms of the failure the one-line message already reports.
    """
    seen = set()
    for w in caught:
        if failed and issubclass(w.category, RuntimeWarning):
            continue
        line = _one_line(w.message)
        if line not in seen:
            seen.add(line)
            click.echo(f"meanfield: warning: {line}", err=True)


def guard(fn):
    """Translate expected errors into one line and the documented exit status.

    ParameterError and OSError (a file that cannot be read or written) -> 2,
    SimulationError -> 1, Ctrl-C -> 130 (SIGTERM 143, SIGHUP 129: 128 + the signal),
    stdout closed early (``| head``) -> 141,
    silently. Anything else is a bug: one line naming it and exit 1
    (``MEANFIELD_DEBUG=1`` shows the traceback).
    Warnings raised meanwhile are printed as one line each once the command
    ends, and numpy's RuntimeWarnings are dropped when it failed.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        failed = True
        with warnings.catch_warnings(record=True) as caught:  # the filters in force decide what shows
            try:
                out = fn(*args, **kwargs)
                failed = False
                return out
            except ParameterError as exc:
                click.echo(f"meanfield: error: {_one_line(exc)}", err=True)
                sys.exit(2)
            except SimulationError as exc:
                click.echo(f"meanfield: run failed: {_one_line(exc)}", err=True)
                if getattr(exc, "hdf5_unclosed", False):
                    _echo_warnings(caught, True)
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(1)  # HDF5's exit handler would crash on the file it failed to write
                sys.exit(1)
            except KeyboardInterrupt as exc:
                click.echo(f"meanfield: {interrupt_message(exc)}", err=True)
                sys.exit(interrupt_status(exc))
            except BrokenPipeError:
                # stdout's reader went away (`| head`): not a bad input; say nothing, and point
                # stdout at /dev/null so that the interpreter's final flush cannot fail again
                failed = False
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(EXIT_BROKEN_PIPE)
            except OSError as exc:
                where = exc.filename if exc.filename is not None else ""
                what = exc.strerror or str(exc)
                click.echo(f"meanfield: error: {where}{': ' if where else ''}{_one_line(what)}",
                           err=True)
                sys.exit(2)
            except (SystemExit, click.exceptions.ClickException, click.exceptions.Exit,
                    click.exceptions.Abort):
                failed = False
                raise
            except Exception as exc:
                if os.environ.get(DEBUG_ENV):
                    raise
                click.echo(f"meanfield: internal error: {type(exc).__name__}: {_one_line(exc)} "
                           f"(please report it; {DEBUG_ENV}=1 shows the traceback)", err=True)
                sys.exit(1)
            finally:
                _echo_warnings(caught, failed)

    return wrapper


def interrupt_status(exc: KeyboardInterrupt) -> int:
    """Exit status of a command stopped by a signal: 128 + its number (130, 143, 129)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


def interrupt_message(exc: KeyboardInterrupt) -> str:
    """One line for a stop signal: the loop's checkpoint and how to continue, or just the signal."""
    msg = _one_line(exc)
    if getattr(exc, "step", None) is not None:  # the time loop's: it wrote a checkpoint
        path = getattr(exc, "path", None)
        how = f"meanfield run --resume {path}" if path else "--resume"
        return f"{msg}; checkpoint written (continue with {how})"
    # any other command, or a run stopped before its loop: nothing to resume
    signum = getattr(exc, "signum", signal.SIGINT)
    return "interrupted" + ("" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}")


def handle_stop_signals() -> None:
    """Make SIGTERM and SIGHUP raise :class:`~meanfield.errors.Interrupted`, as Ctrl-C does.

    Called once by the console script: a command then stops through the same
    paths as Ctrl-C (checkpoint, status "interrupted", a sweep's index written,
    its cluster closed) instead of dying where it stands.
    """
    for signum in STOP_SIGNALS:
        if signum != signal.SIGINT and signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, raise_interrupted)


def load_run(path: str, tasks=None, min_saves: int = 1, need=()):
    """Read a run file for a command, or raise ParameterError in one line.

    Parameters
    ----------
    path : str
    tasks : list of str or None
        Tasks to load (None: all).
    min_saves : int
        Saves the command needs (a run killed before its first save has none).
    need : sequence of str
        Tasks the command needs (e.g. ``("energy",)``).
    """
    from meanfield.io.reader import load

    tr = load(path, tasks=tasks)  # a missing, unreadable or locked file: one line (ParameterError)
    n = min((len(v) for v in (*tr.scales.values(), *tr.tasks.values())), default=0)
    if n < min_saves:
        raise ParameterError("(file)", f"a run with at least {min_saves} save(s)",
                             f"{path} ({n} saves, status {tr.attrs.get('status', '?')})")
    missing = [name for name in need if name not in tr.tasks]
    if missing:
        raise ParameterError("(file)", f"a run that saved {', '.join(missing)}", path)
    return tr
