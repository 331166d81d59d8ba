"""Where a robot's body and feet are, step by step, while a controller holds one command.

    python benchmarks/deploy_trace.py policies/go1_rough/policy.onnx --terrain stairs --command 0.5 0 0 \
        --sites FR FL RR RL --seconds 16
    python benchmarks/deploy_trace.py policy.onnx --terrain random_rough --level 9 --command 1.0 0 0 --every 1

Runs the deploy kit's MuJoCo harness (``export/harness.py``: the robot-side controller, PD at the physics
rate) from its reset, holding ``--command`` (the policy's commands in order), and prints every ``--every``
control steps: the time (s), the base's x (m, world), its height above the ground (the fall rule's: above
the lowest ground within the robot's footprint), its tilt (degrees from upright; the fall rule's tilt is
past 90) and pitch (degrees, nose up positive), both from the orientation's projected gravity, the measured
velocities, and for each ``--sites`` name (a site of the robot's model, e.g. a foot) its x and its height
above the ground directly below it (``Terrain.height_at``; the plane's z = 0 without ``--terrain``). It
stops at the first fall (the robot's fall rule, as the deploy loop's) and prints that step. Terrain options
as the deploy loop's (``--terrain``, ``--level``, ``--terrain-seed``). The kit knows no robot by name: the
sites are the caller's (the Go1's feet: FR FL RR RL).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy")
    p.add_argument("--command", type=float, nargs="+", required=True, help="the command to hold")
    p.add_argument("--sites", nargs="*", default=[], help="model sites to trace (e.g. the feet)")
    p.add_argument("--seconds", type=float, default=16.0)
    p.add_argument("--every", type=int, default=5, help="print every N control steps (and the fall)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write every control step's row here")
    from robo_ppo.deploy_kit import rules
    from robo_ppo.deploy_kit import terrain as terrain_mod
    from robo_ppo.deploy_kit.harness import DeployError, MujocoHarness
    terrain_mod.add_arguments(p)
    args = p.parse_args(argv)
    if not Path(args.policy).is_file():
        p.error(f"no policy file at {args.policy}")
    try:
        h = MujocoHarness(args.policy, seed=args.seed, terrain=terrain_mod.place_from_args(args))
    except (terrain_mod.TerrainError, DeployError) as e:
        p.error(str(e))
    if len(args.command) != len(h.commands):
        p.error(f"--command needs {len(h.commands)} values ({', '.join(h.commands)}), got {len(args.command)}")
    import mujoco
    sites = [mujoco.mj_name2id(h.model, mujoco.mjtObj.mjOBJ_SITE, s) for s in args.sites]
    if -1 in sites:
        p.error(f"no site {args.sites[sites.index(-1)]!r} in the robot's model")
    ground = (lambda x, y: float(h.terrain.terrain.height_at(np.array(x), np.array(y)))) if h.terrain else (
        lambda x, y: 0.0)

    h.reset()
    rows = []
    print(f"{'t':>5} {'x':>6} {'height':>6} {'tilt':>5} {'pitch':>6} | measured {' '.join(h.commands)} | "
          + " ".join(f"{s} x/height" for s in args.sites))
    for k in range(round(args.seconds / h.control_dt)):
        h.step(args.command)
        gravity = rules.projected_gravity(h.orientation())
        fell = h.fallen()
        row = {"t": (k + 1) * h.control_dt, "x": float(h.data.xpos[h.base][0]), "height": h.base_height(),
               "tilt": math.degrees(math.acos(float(np.clip(-gravity[2], -1.0, 1.0)))),
               "pitch": math.degrees(math.asin(float(np.clip(-gravity[0], -1.0, 1.0)))),
               "measured": h.measured().tolist(), "fell": fell,
               "sites": {s: [float(h.data.site_xpos[i][0]),
                             float(h.data.site_xpos[i][2] - ground(*h.data.site_xpos[i][:2]))]
                         for s, i in zip(args.sites, sites, strict=True)}}
        rows.append(row)
        if k % args.every == args.every - 1 or fell:
            print(f"{row['t']:5.2f} {row['x']:+6.2f} {row['height']:6.3f} {row['tilt']:5.1f} {row['pitch']:+6.1f} | "
                  + " ".join(f"{v:+.2f}" for v in row["measured"]) + " | "
                  + " ".join(f"{x:+.2f}/{z:.3f}" for x, z in row["sites"].values()) + ("  FELL" if fell else ""))
        if fell:
            break
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
