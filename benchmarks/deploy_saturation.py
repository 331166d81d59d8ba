"""Where a robot controller runs out of authority: its actions at the clip or its motors at their limit.

    python benchmarks/deploy_saturation.py policies/go1_joystick/policy.onnx
    python benchmarks/deploy_saturation.py policies/go1_joystick/policy.onnx --damping 2
    python benchmarks/deploy_saturation.py policy.onnx --command 1.13 -0.71 -0.39 --command 0.5 0 0
    python benchmarks/deploy_saturation.py policies/go1_rough/policy.onnx --terrain stairs --command 0.5 0 0 --seconds 16

Holds each command for ``--seconds`` in the deploy kit's MuJoCo harness (``export/harness.py``: the
robot-side controller, torque motors, PD at the physics rate) and, after the first second, reports per
joint:

* ``clip``: the share of control steps whose action is at its clip (within 1% of the half-range of the
  metadata's ``action_clip`` bound; the action maps to a
  joint target ``q0 + action_scale a``, so a clipped action is the farthest target the controller can ask
  for), and of those ``clip_lo`` at the lower bound, ``clip_hi`` at the upper (which way the joint is
  short of range: for a Go1 calf, the upper bound is its farthest extension, the lower its deepest bend);
* ``|tau|``: the mean absolute PD torque (N m) and ``limit``: the share of physics steps at the motor's
  torque limit (the controller's ``torque_limits``);
* ``|qd|``: the mean absolute joint speed (rad/s);

and per command the measured mean velocities. Model-mismatch options as the deploy loop's (``--damping``,
``--damping-kd``, ``--frictionloss-scale``, ``--armature-scale``, ``--latency``) and terrain as the deploy
loop's (``--terrain``, ``--level``, ``--terrain-seed``: the robot starts on the generated patch or the stairs
corridor; ``export/terrain.py``). A controller slowed by a
mismatch while its torques stay far below the limits and its actions sit at the clip is short of action
range, not of motor (docs/go1.md, "Why damping slows it").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

CLIP_TOL = 0.01
"""An action within this share of the clip's half-range of a bound counts as clipped."""


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy")
    p.add_argument("--command", type=float, nargs="+", action="append", default=None,
                   help="one command to hold (the policy's commands in order); repeatable. Default: each "
                        "command alone at the top of its range")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--skip", type=float, default=1.0, help="seconds of each hold left out of the means")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--damping", type=float, default=0.0)
    p.add_argument("--damping-kd", type=float, default=0.0)
    p.add_argument("--frictionloss-scale", type=float, default=1.0)
    p.add_argument("--armature-scale", type=float, default=1.0)
    p.add_argument("--latency", type=int, default=None)
    p.add_argument("--json", default=None)
    from robo_ppo.deploy_kit import terrain as terrain_mod
    terrain_mod.add_arguments(p)
    args = p.parse_args(argv)
    from robo_ppo.deploy_kit.harness import MujocoHarness

    class Recorder(MujocoHarness):
        """The harness, keeping every physics step's PD torques and joint speeds."""

        def __init__(self, *a, **kw) -> None:
            self.torques, self.speeds = [], []
            super().__init__(*a, **kw)

        def physics_step(self, torques) -> None:
            self.torques.append(np.asarray(torques, dtype=np.float64).copy())
            self.speeds.append(self.data.qvel[self.dadr].copy())
            super().physics_step(torques)

    try:
        placement = terrain_mod.place_from_args(args)
    except terrain_mod.TerrainError as e:
        p.error(str(e))
    options = dict(seed=args.seed, damping=args.damping, damping_kd=args.damping_kd, latency=args.latency,
                   frictionloss_scale=args.frictionloss_scale, armature_scale=args.armature_scale,
                   terrain=placement)
    probe = Recorder(args.policy, **options)
    names, ranges = probe.robot.joint_names, [probe.robot.command_ranges[c] for c in probe.commands]
    commands = args.command or [[hi if j == i else min(max(0.0, lo), hi) for j, (lo, hi) in enumerate(ranges)]
                                for i in range(len(ranges))]
    for c in commands:
        if len(c) != len(probe.commands):
            p.error(f"--command needs {len(probe.commands)} values ({', '.join(probe.commands)}), got {len(c)}")
    limits = np.asarray(probe.controller.torque_limits, dtype=np.float64)
    lo, hi = probe.controller.action_clip
    tol = CLIP_TOL * (hi - lo) / 2

    out = {}
    for command in commands:
        h = Recorder(args.policy, **options)
        h.reset()
        h.torques, h.speeds = [], []
        steps, skip = round(args.seconds / h.control_dt), round(args.skip / h.control_dt)
        actions, measured, fell = [], [], False
        for k in range(steps):
            action = h.step(command)
            fell = fell or h.fallen()
            if k >= skip:
                actions.append(np.stack([action <= lo + tol, action >= hi - tol]))
                measured.append(h.measured().copy())
        tau = np.abs(np.array(h.torques[skip * h.decimation:]))
        qd = np.abs(np.array(h.speeds[skip * h.decimation:]))
        key = " ".join(f"{x:g}" for x in command)
        out[key] = {
            "command": list(command), "measured": np.mean(measured, axis=0).tolist(), "fell": fell,
            "terrain": None if placement is None else placement.describe(),
            "joints": {n: {"clip": float(c_lo + c_hi), "clip_lo": float(c_lo), "clip_hi": float(c_hi),
                           "tau": float(t), "limit": float(lim), "qd": float(q)}
                       for n, c_lo, c_hi, t, lim, q in zip(names, *np.mean(actions, axis=0), tau.mean(0),
                                                           (tau >= 0.99 * limits).mean(0), qd.mean(0), strict=True)},
        }
        print(f"command ({', '.join(f'{x:.2f}' for x in command)}) -> measured "
              f"({', '.join(f'{x:.2f}' for x in out[key]['measured'])}){'  FELL' if fell else ''}")
        print(f"  {'joint':<24} {'clip':>6} {'lo':>5} {'hi':>5} {'|tau|':>7} {'limit':>6} {'|qd|':>6}")
        for n, j in out[key]["joints"].items():
            print(f"  {n:<24} {j['clip']:>6.0%} {j['clip_lo']:>5.0%} {j['clip_hi']:>5.0%} {j['tau']:>7.2f} "
                  f"{j['limit']:>6.0%} {j['qd']:>6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
