"""A robot controller in the deploy loop under other conditions than its training: the robustness table.

    python benchmarks/deploy_robustness.py policies/go1_joystick/policy.onnx --json robustness.json

Every row runs the same schedule (``--segments`` random command segments of ``--seconds``, seed
``--seed``, the kit's ``schedules.random_schedule``) through the deploy kit's MuJoCo harness
(``export/harness.py``: the robot-side controller, torque motors, PD at the physics rate):

* nominal: the model file's dynamics;
* pushes: horizontal base velocity kicks up to 1 m/s every 5-10 s;
* latency: one control step between the controller's output and its application;
* the four corners of floor friction {0.4, 1.0} x link masses {x0.9, x1.1} with payload {-1, +1} kg
  (the extremes of the Go1's training randomization);
* model mismatch (issue #23), each alone and then all at once: passive damping added to every joint
  (``--mismatch-damping`` N m s / rad, 2 by default, or ``--mismatch-damping-kd`` times each joint's
  kd for a robot of other gains), friction loss x2, armature x2, and one control step of latency.
  Where the added damping is too stiff for the model's step to integrate explicitly (the robot scenes
  disable MuJoCo's implicit damping), the harness integrates those rows in substeps
  (``harness.DAMPING_STEP_LIMIT``; the table says how many).

Prints a markdown table of the mean absolute tracking errors and falls per row, then issue #23's
criterion: in each model-mismatch row (damping, friction loss, armature, latency, each alone and all four)
no fall and every MAE within 1.5x the nominal row's. ``--seed 0 1 2`` runs the table per seed (the schedule
is the seed's) and ends with the criterion per seed. ``--json`` writes the harness summaries (with several
seeds, by ``"seed N"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CONDITIONS = {
    "the model file's dynamics": {},
    "pushes: up to 1 m/s every 5-10 s": {"push": 1.0},
    "one control step of action latency": {"latency": 1},
    "floor friction 0.4, link masses x0.9, payload -1 kg": {"floor_friction": 0.4, "mass_scale": 0.9, "payload": -1.0},
    "floor friction 0.4, link masses x1.1, payload +1 kg": {"floor_friction": 0.4, "mass_scale": 1.1, "payload": 1.0},
    "floor friction 1.0, link masses x0.9, payload -1 kg": {"floor_friction": 1.0, "mass_scale": 0.9, "payload": -1.0},
    "floor friction 1.0, link masses x1.1, payload +1 kg": {"floor_friction": 1.0, "mass_scale": 1.1, "payload": 1.0},
    "joint damping +{damping}": {"damping": "mismatch"},
    "joint friction loss x2": {"frictionloss_scale": 2.0},
    "joint armature x2": {"armature_scale": 2.0},
    "model mismatch: joint damping +{damping}, friction loss x2, armature x2, 1 step latency":
        {"damping": "mismatch", "frictionloss_scale": 2.0, "armature_scale": 2.0, "latency": 1},
}
"""Row label -> ``MujocoHarness`` options."""

MISMATCH_OPTIONS = {"latency", "damping", "frictionloss_scale", "armature_scale"}
"""The harness options of issue #23's model mismatch."""
MISMATCH_ROWS = tuple(label.split("{")[0] for label, options in CONDITIONS.items()
                      if options and set(options) <= MISMATCH_OPTIONS)
"""Label prefixes (before the damping's text) of the rows the mismatch criterion judges, those of mismatch
options only: latency, damping, friction loss, armature, all four (issue #23: no fall, MAE <= ``RATIO`` x
nominal)."""
RATIO = 1.5


def criterion_misses(rows: dict, commands: list[str], ratio: float = RATIO) -> list[str]:
    """Where ``rows`` (label -> harness summary, the nominal row first) miss the mismatch criterion: one
    entry per falling row and per MAE past ``ratio`` x the nominal row's; empty: met."""
    nominal = next(iter(rows.values()))
    misses = []
    for label, s in rows.items():
        if not label.startswith(MISMATCH_ROWS):
            continue
        if s["falls"]:
            misses.append(f"{label}: {s['falls']} fall(s)")
        for c in commands:
            err, ref = s[f"mean_abs_{c}_err"], nominal[f"mean_abs_{c}_err"]
            if err > ratio * ref:
                misses.append(f"{label}: {c} {err:.3f} = {err / ref:.2f}x nominal")
    return misses


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy")
    p.add_argument("--segments", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--seed", type=int, nargs="+", default=[0], help="one table per seed")
    p.add_argument("--json", default=None)
    p.add_argument("--mismatch-damping", type=float, default=2.0,
                   help="N m s / rad added to every joint in the damping and model-mismatch rows")
    p.add_argument("--mismatch-damping-kd", type=float, default=None,
                   help="instead: this multiple of each joint's kd (the Go1's 2 N m s / rad is 4 kd)")
    args = p.parse_args(argv)
    if args.mismatch_damping_kd is not None:
        key, value, text = "damping_kd", args.mismatch_damping_kd, f"{args.mismatch_damping_kd:g} kd"
    else:
        key, value, text = "damping", args.mismatch_damping, f"{args.mismatch_damping:g} N m s/rad"
    from robo_ppo.deploy_kit.harness import MujocoHarness
    from robo_ppo.deploy_kit.report import json_safe
    from robo_ppo.deploy_kit.schedules import random_schedule

    results, verdicts = {}, {}
    for seed in args.seed:
        out, schedule = {}, None
        for label, options in CONDITIONS.items():
            label = label.format(damping=text)
            options = {(key if v == "mismatch" else k): (value if v == "mismatch" else v) for k, v in options.items()}
            harness = MujocoHarness(args.policy, seed=seed, **options)
            if schedule is None:   # one schedule for every row: the policy's commands and ranges
                schedule = random_schedule(args.segments, args.seconds, seed, harness.robot.command_ranges,
                                           commands=harness.commands)
            out[label] = harness.run(schedule)["summary"]
        commands = harness.commands
        print(f"| condition ({args.segments} random segments of {args.seconds:g} s, seed {seed}) | "
              + " | ".join(f"{c} MAE" for c in commands) + " | falls |")
        print("|---|" + "---:|" * (len(commands) + 1))
        for label, s in out.items():
            notes = f" ({s['pushes']} kicks)" if s.get("pushes") else ""
            notes += f" ({s['substeps']} substeps)" if s.get("substeps", 1) > 1 else ""
            print(f"| {label}{notes} | " + " | ".join(f"{s[f'mean_abs_{c}_err']:.3f}" for c in commands)
                  + f" | {s['falls']} |")
        misses = criterion_misses(out, commands)
        print(f"\nmismatch criterion (no fall, MAE <= {RATIO:g}x nominal), seed {seed}: "
              + ("met" if not misses else "missed: " + "; ".join(misses)) + "\n")
        results[seed], verdicts[seed] = out, misses
    if len(args.seed) > 1:
        met = [seed for seed, m in verdicts.items() if not m]
        print(f"mismatch criterion met on {len(met)} of {len(args.seed)} seeds ({met})")
    out = results[args.seed[0]] if len(args.seed) == 1 else {f"seed {k}": v for k, v in results.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(json_safe(out), indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
