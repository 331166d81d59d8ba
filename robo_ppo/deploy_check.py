"""The end of a robot run: its exported controller in the deploy loop, the check before hardware.

After ``policy.onnx`` is written and verified, a robot task's run hands it to
the deploy kit's MuJoCo harness (``export/harness.py``: the robot-side
controller fed from a plain MuJoCo scene with torque motors, as on a robot)
and reports, in the run directory:

* ``deploy.json`` and the printed table: ``deploy_check.segments`` random
  command segments of ``deploy_check.seconds`` each (seed ``deploy_check.seed``),
  the mean absolute tracking error per command and the falls; the run meets
  the tracking goal when every error is at most its ``deploy_check.goal`` and
  nothing fell;
* ``deploy.mp4`` (``deploy_check.video``): the kit's default schedule
  (forward, turn, sidestep, backward, stop), filmed by a tracking camera at 25 fps.

This is the same check as ``python export/deploy.py policy.onnx --schedule
random --segments 20 --seed 0``; it runs here so that the first command of the
README ends with a verdict, not only a file.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger("robo_ppo")


def meets_goal(summary: dict[str, Any], goal: dict[str, float]) -> bool:
    """Whether a harness summary meets ``goal`` (command name -> max mean absolute error): every named
    error is finite and at most its bound, and no fall. A command the policy lacks fails the goal."""
    if summary.get("falls", 1) != 0:
        return False
    for name, bound in goal.items():
        err = summary.get(f"mean_abs_{name}_err", math.nan)
        if not (math.isfinite(err) and err <= bound):
            return False
    return True


def deploy_check(policy_path: str | Path, run_dir: str | Path, segments: int = 20, seconds: float = 5.0,
                 seed: int = 0, goal: dict[str, float] | None = None) -> dict[str, Any]:
    """Run ``policy_path`` in the deploy loop on a random schedule; write ``run_dir/deploy.json``.

    Returns ``{"table", "summary", "meets_goal", "goal"}`` (``summary``: the harness's, with
    ``mean_abs_<command>_err`` and ``falls``).

    Raises:
        the kit's ``DeployError`` / ``ControllerError`` / ``ScheduleError`` (bad policy metadata or
        model), ``OSError`` (writing the file).
    """
    from robo_ppo.deploy_kit.harness import MujocoHarness
    from robo_ppo.deploy_kit.report import format_table, json_safe
    from robo_ppo.deploy_kit.schedules import random_schedule

    run_dir = Path(run_dir)
    goal = dict(goal or {})
    harness = MujocoHarness(policy_path, seed=seed)
    schedule = random_schedule(segments, seconds, seed, harness.robot.command_ranges, commands=harness.commands)
    result = harness.run(schedule)
    ok = meets_goal(result["summary"], goal)
    (run_dir / "deploy.json").write_text(json.dumps(json_safe({**result, "meets_goal": ok, "goal": goal,
                                                               "schedule": "random", "seed": seed}), indent=2))
    return {"table": format_table(result), "summary": result["summary"], "meets_goal": ok, "goal": goal}


def film(policy_path: str | Path, path: str | Path, seed: int = 0, frame_every: int = 2) -> str | None:
    """The kit's default schedule (forward, turn, sidestep, backward, stop; 25 s) as an MP4 at
    ``1 / (control_dt * frame_every)`` fps, tracking camera. Returns ``None`` on success, else the
    reason in one line (no OpenGL: set ``MUJOCO_GL=egl``); a renderer missing must not fail a run."""
    from robo_ppo.deploy_kit.harness import MujocoHarness
    from robo_ppo.deploy_kit.schedules import default_schedule

    try:
        harness = MujocoHarness(policy_path, meshes=True, seed=seed)
        harness.run(default_schedule(harness.commands), video=path, frame_every=frame_every)
    except Exception as e:  # noqa: BLE001 - whatever the renderer or the video writer raise
        return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
    return None


def goal_line(report: dict[str, Any]) -> str:
    """One line: whether the goal is met, with the bounds."""
    bounds = ", ".join(f"{k} <= {v:g}" for k, v in report["goal"].items())
    verdict = "meets" if report["meets_goal"] else "does NOT meet"
    return f"the controller {verdict} the tracking goal (mean |err| {bounds}, no fall)"


__all__ = ["deploy_check", "film", "meets_goal", "goal_line"]
