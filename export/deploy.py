"""Run a robot policy in plain MuJoCo from the command line: the sim2sim check before hardware.

One command for every robot: the policy's ``robot`` metadata says everything
(``harness.py`` feeds the robot-side controller, ``robot_controller.py``,
from a MuJoCo scene). Prints the tracking table; optional MP4 and JSON.

    python deploy.py policy.onnx                               # default 5-segment command schedule
    python deploy.py policy.onnx --schedule random --segments 20 --seconds 5 --seed 0
    python deploy.py policy.onnx --schedule reversals --seed 0  # full-range commands, each reversed at once
    python deploy.py policy.onnx --video robot.mp4 --json result.json
    python deploy.py policy.onnx --latency 1 --push 1.0        # one step of action latency, velocity kicks
    python deploy.py policy.onnx --floor-friction 0.4 --mass-scale 1.1 --payload 1.0   # other dynamics
    python deploy.py policy.onnx --terrain pyramid_stairs_up --level 5   # start on a terrain patch (terrain.py)
    python deploy.py policy.onnx --terrain stairs                        # the stairs corridor
    python deploy.py policy.onnx --terrain stairs --schedule '[[16, 0.5, 0, 0]]'   # over it at 0.5 m/s
    python deploy.py policy.onnx --terrain stairs --schedule '[[16, 0.5, 0, 0]]' --heading-stiffness 0.5
                                        # ... steering to hold heading 0 (the schedule's yaw column: headings)

Needs ``pip install numpy onnxruntime mujoco`` and the robot's model package (the
policy's ``robot.model.install`` says how; or pass ``--model path/to/scene.xml``),
plus ``imageio[ffmpeg]`` for ``--video``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    from . import terrain as terrain_mod
    from .harness import ERRORS, MujocoHarness
    from .report import format_table, json_safe
    from .schedules import parse_schedule
except ImportError:  # run as a script from the kit's folder
    import terrain as terrain_mod
    from harness import ERRORS, MujocoHarness
    from report import format_table, json_safe
    from schedules import parse_schedule

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", help="policy.onnx of a robot task (with 'robot' metadata)")
    parser.add_argument("--schedule", default="default",
                        help="default (forward, turn, sidestep, backward, stop; 5 s each), random (--segments x "
                             "--seconds), reversals (each command at full range for 4 s, then its opposite "
                             "for 2 s; then each corner of the command box to the opposite one) or a JSON "
                             "list of [seconds, *command], e.g. '[[20, 0.5, 0, 0]]'")
    parser.add_argument("--segments", type=int, default=20, help="random schedule: number of segments")
    parser.add_argument("--seconds", type=float, default=5.0, help="random schedule: seconds per segment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--video", default=None, help="write an MP4 here (1 / control_dt fps, tracking camera)")
    parser.add_argument("--model", default=None, help="scene XML (default: the policy's robot model)")
    parser.add_argument("--json", default=None, help="write the result as JSON here")
    parser.add_argument("--latency", type=int, default=None,
                        help="control steps of action latency (default: the policy's action_latency)")
    parser.add_argument("--push", type=float, default=0.0, help="max base velocity kick (m/s); 0: none")
    parser.add_argument("--push-interval", type=float, nargs=2, default=(5.0, 10.0), metavar=("LO", "HI"),
                        help="seconds between kicks, uniform")
    parser.add_argument("--floor-friction", type=float, default=None, help="floor sliding friction (default: model's)")
    parser.add_argument("--mass-scale", type=float, default=1.0, help="multiplies every robot body's mass")
    parser.add_argument("--payload", type=float, default=0.0, help="kg added to the base body")
    parser.add_argument("--damping", type=float, default=0.0,
                        help="passive damping added to every joint (N m s / rad; model mismatch)")
    parser.add_argument("--damping-kd", type=float, default=0.0,
                        help="passive damping added to each joint, in multiples of its kd (the same mismatch for "
                             "robots of other gains: 2 N m s / rad on a joint of kd 0.5 is 4 kd)")
    parser.add_argument("--frictionloss-scale", type=float, default=1.0, help="multiplies the joints' friction loss")
    parser.add_argument("--armature-scale", type=float, default=1.0, help="multiplies the joints' armature")
    parser.add_argument("--substeps", type=int, default=None,
                        help="integration steps per physics step, the PD torque held (default: 1, or with added "
                             "damping enough to integrate it stably: harness.DAMPING_STEP_LIMIT)")
    parser.add_argument("--heading-stiffness", type=float, default=None, metavar="K",
                        help="an operator who holds headings: the schedule's yaw_rate column is a heading (rad, "
                             "0 along the scene's +x axis) and each control step commands the yaw rate "
                             "clip(K * heading error) within its range (legged_gym's heading command; 0.5 there)")
    terrain_mod.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        placement = terrain_mod.place_from_args(args)
        if placement is not None:
            print(f"terrain: {placement.describe()}")
        harness = MujocoHarness(args.policy, model_xml=args.model, meshes=args.video is not None, seed=args.seed,
                                latency=args.latency, push=args.push, push_interval=tuple(args.push_interval),
                                floor_friction=args.floor_friction, mass_scale=args.mass_scale, payload=args.payload,
                                damping=args.damping, frictionloss_scale=args.frictionloss_scale,
                                armature_scale=args.armature_scale, damping_kd=args.damping_kd, terrain=placement,
                                substeps=args.substeps)
        schedule = parse_schedule(args.schedule, harness.commands, harness.robot.command_ranges,
                                  segments=args.segments, seconds=args.seconds, seed=args.seed)
        result = harness.run(schedule, video=args.video, heading_stiffness=args.heading_stiffness)
    except (*ERRORS, terrain_mod.TerrainError, OSError) as e:
        print(f"deploy error: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(json_safe(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
