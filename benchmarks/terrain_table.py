"""A rough-terrain controller in the deploy loop on every check of issue #25: the `go1_rough` table.

    python benchmarks/terrain_table.py policies/go1_rough/policy.onnx
    python benchmarks/terrain_table.py policy.onnx --rows corridor rough --jobs 2 --json table.json

Each row runs one schedule on one terrain over several seeds through the deploy kit's MuJoCo harness
(``export/harness.py``), exactly as ``python export/deploy.py <policy> --terrain T --level L --schedule S
--seed N`` does (the seed sets the random yaw at each reset and the random schedule; the terrain is the
generator's at its config seed). Rows (``ROWS``):

* ``flat``: the robot's own plane, 20 random segments of 5 s, seeds 0-5 (600 s);
* ``rough``: random rough ground, level 9 (0-10 cm), the same schedule and seeds;
* ``corridor``: the stairs corridor (8 x 10 cm up, a 2 m platform, 8 down) at 0.5 m/s for 16 s, seeds 0-4;
* ``corridor_heading``: the same with an operator who holds heading 0, the corridor's axis
  (``deploy.py --heading-stiffness 0.5``: the yaw-rate command steers back where the robot turns);
* ``slope_up`` / ``slope_down``: 22 % slopes at level 5 (from the pit of ``pyramid_slope_down``, from the
  top of ``pyramid_slope_up``) at 0.5 m/s for 20 s, seeds 0-2;
* ``pyramid_down`` / ``pyramid_up``: 10 cm pyramid stairs (``pyramid_stairs_up`` / ``_down`` level 3:
  from the top, from the pit), the default schedule (forward, turn, sidestep, backward, stop), seeds 0-2;
* ``obstacles``: discrete obstacles, level 5 (up to 13 cm), the default schedule, seeds 0-2;
* ``backward``: the plane, vx -1.2, -0.6, -0.3 m/s for 5 s each, seed 0 (the measured vx per segment).

A command list pads the policy's other commands with zeros. Prints a markdown table: the range of the
mean absolute errors over the seeds, the falls per seed, and how far the robot got (the highest ground
under its base, in m above its start, or where it ended along x). ``--json`` writes every run's
summary. Runs go to ``--jobs`` processes (default 2: the 2-core machine; about 30 s for every row).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RANDOM = "random"
DEFAULT = "default"
ROWS = {   # name -> (label, terrain type or preset (None: the plane), level, schedule, seeds)
    "flat": ("flat (the robot's plane)", None, None, RANDOM, range(6)),
    "rough": ("random rough, level 9 (0-10 cm)", "random_rough", 9, RANDOM, range(6)),
    "corridor": ("stairs corridor, 8 x 10 cm up, 2 m platform, 8 down", "stairs", None, [[16, 0.5]], range(5)),
    "corridor_heading": ("stairs corridor, holding heading 0 (heading stiffness 0.5)", "stairs", None, [[16, 0.5]],
                         range(5)),
    "slope_up": ("22 % slope, up (pit of pyramid_slope_down level 5)", "pyramid_slope_down", 5, [[20, 0.5]], range(3)),
    "slope_down": ("22 % slope, down (top of pyramid_slope_up level 5)", "pyramid_slope_up", 5, [[20, 0.5]], range(3)),
    "pyramid_down": ("pyramid stairs 10 cm, down (pyramid_stairs_up level 3)", "pyramid_stairs_up", 3, DEFAULT,
                     range(3)),
    "pyramid_up": ("pyramid stairs 10 cm, up (pyramid_stairs_down level 3)", "pyramid_stairs_down", 3, DEFAULT,
                   range(3)),
    "obstacles": ("discrete obstacles, level 5 (up to 13 cm)", "discrete_obstacles", 5, DEFAULT, range(3)),
    "backward": ("backward, vx -1.2 / -0.6 / -0.3 m/s", None, None, [[5, -1.2], [5, -0.6], [5, -0.3]], range(1)),
}
"""The checks of issue #25's targets, and the pyramids and obstacles of the training grid."""
HEADING = {"corridor_heading": 0.5}
"""Rows run with a heading operator: name -> heading stiffness ((rad/s)/rad; the schedule's yaw column is a heading)."""


def _run(job: tuple) -> dict:
    """One (row, seed): the harness's ``run`` result, as ``export/deploy.py`` makes it."""
    policy, name, seed = job
    from robo_ppo.deploy_kit import harness as harness_mod
    from robo_ppo.deploy_kit import terrain as terrain_mod
    from robo_ppo.deploy_kit.schedules import parse_schedule

    _, spec, level, schedule, _ = ROWS[name]
    placement = None if spec is None else terrain_mod.place(spec, level=level)
    h = harness_mod.MujocoHarness(policy, seed=seed, terrain=placement)
    if isinstance(schedule, list):   # pad the policy's other commands with zeros
        schedule = [seg + [0.0] * (1 + len(h.commands) - len(seg)) for seg in schedule]
    plan = parse_schedule(schedule, h.commands, h.robot.command_ranges, segments=20, seconds=5.0, seed=seed)
    return h.run(plan, heading_stiffness=HEADING.get(name))


def _how_far(name: str, results: list[dict]) -> str:
    if name == "backward":
        return "vx " + " / ".join(f"{s['vx']:.2f}" for s in results[0]["segments"])
    if name in ("slope_up", "slope_down"):
        return "x " + ", ".join(f"{r['segments'][-1]['x_end']:+.1f}" for r in results) + " m"
    if ROWS[name][1] is None or name == "rough":   # the plane, or ground with no height to reach
        return ""
    return "ground " + ", ".join(f"{r['summary']['ground_max']:+.2f}" for r in results) + " m"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), metavar="ROW",
                   help="rows to run (default: all): " + ", ".join(ROWS))
    p.add_argument("--seeds", type=int, default=None, help="run only the first N seeds of each row")
    p.add_argument("--jobs", type=int, default=2, help="processes")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if not Path(args.policy).is_file():
        p.error(f"no policy file at {args.policy}")
    jobs = [(args.policy, name, seed) for name in args.rows for seed in list(ROWS[name][4])[:args.seeds]]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(_run, jobs))
    else:
        results = [_run(j) for j in jobs]
    by_row: dict[str, list[dict]] = {}
    for (_, name, _), r in zip(jobs, results, strict=True):
        by_row.setdefault(name, []).append(r)
    commands = results[0]["commands"]
    print("| check | seeds | " + " / ".join(commands) + " MAE | falls | how far |")
    print("|---|---|---|---|---|")
    for name, rs in by_row.items():
        s = [r["summary"] for r in rs]
        mae = " / ".join(f"{min(x[f'mean_abs_{c}_err'] for x in s):.3f}-{max(x[f'mean_abs_{c}_err'] for x in s):.3f}"
                         for c in commands)
        print(f"| {ROWS[name][0]} | {len(rs)} | {mae} | {', '.join(str(x['falls']) for x in s)} "
              f"(sum {sum(x['falls'] for x in s)}) | {_how_far(name, rs)} |")
    out = {name: [{"summary": r["summary"], "segments": r["segments"]} for r in rs] for name, rs in by_row.items()}
    if args.json:
        from robo_ppo.deploy_kit.report import json_safe
        Path(args.json).write_text(json.dumps(json_safe(out), indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
