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


class ExportError(RoboPPOError):
    """ONNX export or its parity check failed."""


def report_errors(fn):
    """Decorator for CLI task functions: a ``RoboPPOError`` becomes one line on
    stderr and exit code 2 (``debug=true`` in the config re-raises instead)."""

    @functools.wraps(fn)
    def wrapper(cfg, *args, **kwargs):
        try:
            return fn(cfg, *args, **kwargs)
        except RoboPPOError as e:
            if cfg.get("debug", False):
                raise
            print(f"robo_ppo error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper
