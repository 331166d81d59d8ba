"""Offscreen rendering's default. MuJoCo reads ``MUJOCO_GL`` once, when it is first imported, so this
runs before that import (``harness``; ``robo-ppo-train`` and ``robo-ppo-replay`` at start-up)."""

from __future__ import annotations

import ctypes.util
import os
import sys


def default_gl() -> None:
    """On Linux without a display, set ``MUJOCO_GL=egl`` (offscreen rendering, software Mesa included)
    when the EGL library is installed. Otherwise, and wherever ``MUJOCO_GL`` is already set, leave it:
    with ``egl`` set and no EGL library, ``import mujoco`` itself fails."""
    if (sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and "MUJOCO_GL" not in os.environ
            and ctypes.util.find_library("EGL")):
        os.environ["MUJOCO_GL"] = "egl"


__all__ = ["default_gl"]
