"""Command schedules for the MuJoCo harness: lists of segments ``(duration_s, *command)``.

A schedule is ``default`` (forward, turn, sidestep, backward, stop), ``random``
(uniform commands inside the policy's ``command_ranges``), ``reversals`` (each
command at full range, then at once its opposite) or an explicit list
of ``[seconds, *command]`` in the policy's command order (on the command line:
that list as JSON text, e.g. ``'[[20, 0.5, 0, 0]]'``). numpy only.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ScheduleError", "default_schedule", "random_schedule", "reversal_schedule", "parse_schedule"]

_DEFAULT_SEGMENTS = ({"vx": 1.0}, {"vx": 0.5, "yaw_rate": 1.0}, {"vy": 0.5}, {"vx": -0.5}, {})


class ScheduleError(ValueError):
    """A schedule that cannot be run; the message (one line) says what a schedule must be."""


def default_schedule(commands: Sequence[str] = ("vx", "vy", "yaw_rate"), seconds: float = 5.0) -> list[tuple[float, ...]]:
    """Segments ``(duration_s, *command)`` in ``commands`` order: forward, turn, sidestep, backward, stop."""
    return [(float(seconds), *(float(seg.get(c, 0.0)) for c in commands)) for seg in _DEFAULT_SEGMENTS]


def _ranged(ranges: Mapping[str, Sequence[float]] | None, commands: Sequence[str] | None, name: str) -> list[str]:
    """``commands`` (default: the order of ``ranges``), each checked to have a range.

    Raises:
        ScheduleError: no ranges, or a command without one."""
    if not ranges:
        raise ScheduleError(f"a {name} schedule needs the policy's command_ranges; re-export the policy")
    commands = list(commands or ranges)
    missing = [c for c in commands if c not in ranges]
    if missing:
        raise ScheduleError(f"command_ranges has no range for {missing}; re-export the policy")
    return commands


def random_schedule(n_segments: int = 20, seconds: float = 5.0, seed: int = 0,
                    ranges: Mapping[str, Sequence[float]] | None = None, p_zero: float = 0.1,
                    commands: Sequence[str] | None = None) -> list[tuple[float, ...]]:
    """``n_segments`` segments of uniform commands inside ``ranges`` (name -> [lo, hi]), in ``commands``
    order (default: the order of ``ranges``); each is the zero command with probability ``p_zero``.

    Raises:
        ScheduleError: no ranges, a command without a range, or ``n_segments < 1`` / ``seconds <= 0``."""
    commands = _ranged(ranges, commands, "random")
    if n_segments < 1 or not seconds > 0:
        raise ScheduleError(f"a random schedule needs segments >= 1 and seconds > 0, got {n_segments} and {seconds}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_segments):
        cmd = [float(rng.uniform(*ranges[c])) for c in commands]
        out.append((float(seconds), *([0.0] * len(commands) if rng.random() < p_zero else cmd)))
    return out


def reversal_schedule(ranges: Mapping[str, Sequence[float]] | None, commands: Sequence[str] | None = None,
                      hold: float = 4.0, after: float = 2.0) -> list[tuple[float, ...]]:
    """The hardest changes a joystick can ask for: full-range commands, each followed at once by its
    opposite. For each command alone (``hi`` -> ``lo``, then ``lo`` -> ``hi``, the others 0) and then for
    each corner of the command box (every command at ``lo`` or ``hi``: 2^d corners, in binary order with
    the first command the slowest digit) -> the opposite corner: ``(hold, c)`` then ``(after, opposite)``.
    3 commands: 6 + 8 pairs, 84 s at the defaults. A random schedule changes every command at once too,
    but rarely from one end of its range to the other.

    Raises:
        ScheduleError: no ranges, a command without a range, or ``hold`` / ``after`` <= 0."""
    commands = _ranged(ranges, commands, "reversals")
    if not (hold > 0 and after > 0):
        raise ScheduleError(f"a reversals schedule needs hold > 0 and after > 0 s, got {hold} and {after}")
    lo = np.array([float(ranges[c][0]) for c in commands])
    hi = np.array([float(ranges[c][1]) for c in commands])
    d = len(commands)
    pairs = []
    for k in range(d):
        alone = np.arange(d) == k
        for a, b in ((hi, lo), (lo, hi)):
            pairs.append((np.where(alone, a, 0.0), np.where(alone, b, 0.0)))
    for top in itertools.product((False, True), repeat=d):   # the first command the slowest digit
        pairs.append((np.where(top, hi, lo), np.where(top, lo, hi)))
    out = []
    for first, second in pairs:
        out.append((float(hold), *map(float, first)))
        out.append((float(after), *map(float, second)))
    return out


def parse_schedule(schedule: Any, commands: Sequence[str], ranges: Mapping[str, Sequence[float]] | None = None,
                   segments: int = 20, seconds: float = 5.0, seed: int = 0) -> list[tuple[float, ...]]:
    """``"default"``, ``"random"`` (``segments`` x ``seconds``, ``seed``), ``"reversals"``, a list of
    ``[seconds > 0, *command]`` or that list as JSON text -> a list of segment tuples.

    Raises:
        ScheduleError: anything else (one line naming the expected form)."""
    if isinstance(schedule, str) and schedule == "default":
        return default_schedule(commands)
    if isinstance(schedule, str) and schedule == "random":
        return random_schedule(segments, seconds, seed, ranges, commands=commands)
    if isinstance(schedule, str) and schedule == "reversals":
        return reversal_schedule(ranges, commands)
    if isinstance(schedule, str):
        try:
            schedule = json.loads(schedule)
        except ValueError:
            pass  # the error below names the forms a schedule takes
    try:
        out = [tuple(float(v) for v in seg) for seg in schedule]
    except (TypeError, ValueError):
        out = []
    if not out or any(len(seg) != 1 + len(commands) or not seg[0] > 0 for seg in out):
        raise ScheduleError(f"schedule must be default, random, reversals or a non-empty (JSON) list of [seconds > 0, "
                            f"{', '.join(commands)}], got {schedule!r}")
    return out
