"""Errors a user can cause, and the CLI guard that prints them as one line."""

from __future__ import annotations

import functools
import sys


class RoboPPOError(Exception):
    """Base class: the message names the problem and the fix."""


class ConfigError(RoboPPOError):
    """A config value is invalid (unknown task, bad combination, ...)."""


class CheckpointError(RoboPPOError):
    """A checkpoint or run directory is missing, unreadable or incompatible."""


class NonFiniteError(RoboPPOError):
    """NaN or infinity in observations, rewards, losses or parameters."""


class PhysicsDivergenceError(RoboPPOError):
    """The simulation of a robot task kept diverging (``divergence.max_rate`` for ``divergence.patience``
    iterations)."""


class KernelMismatchError(RoboPPOError):
    """The numpy compute path's gradient disagrees with torch autograd (``algo.kernel_check_interval``)."""


class ExportError(RoboPPOError):
    """ONNX export or its parity check failed."""


def report_errors(fn):
    """Decorator for CLI task functions: a ``RoboPPOError`` becomes one line on
    stderr and exit code 2 (``debug=true`` in the config re-raises instead).
    So does an ``OSError`` (a path that cannot be read or written, a full
    disk): the user fixes those, not the code."""

    @functools.wraps(fn)
    def wrapper(cfg, *args, **kwargs):
        try:
            return fn(cfg, *args, **kwargs)
        except RoboPPOError as e:
            if cfg.get("debug", False):
                raise
            print(f"robo_ppo error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        except OSError as e:
            if cfg.get("debug", False):
                raise
            print(f"robo_ppo error: {os_error_line(e)}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper


def os_error_line(e: OSError) -> str:
    """One line for a file-system error: what failed on which path, and the fix."""
    what = e.strerror or type(e).__name__
    path = f" {e.filename!r}" if e.filename is not None else ""
    other = f" -> {e.filename2!r}" if e.filename2 is not None else ""
    return (f"{what}:{path}{other} ({type(e).__name__}); check that the path exists and is "
            "readable/writable, and that the disk has space (debug=true shows the traceback)")
