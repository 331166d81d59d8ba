"""A robot's own control loop around ``RobotController``, run here with MuJoCo standing in for the robot.

The function ``control_step`` is what a robot's driver runs every ``control_dt``
(README, "On a robot"): read the IMU and the encoders into plain arrays, get joint
targets from the controller, then run the PD law at the servo rate. Here the
"driver" is the MuJoCo harness (``sim.measurements()`` for the sensors,
``sim.physics_step(torques)`` for the motors), and the harness only keeps the
schedule, the fall resets and the tracking table, so the figures are those of
``deploy.py`` on the same policy and seed.

    python robot_loop_example.py policy.onnx --segments 20 --seconds 5 --seed 0
"""

from __future__ import annotations

import argparse
import sys

try:
    from .harness import ERRORS, MujocoHarness
    from .report import format_table
    from .robot_controller import RobotController
    from .schedules import random_schedule
except ImportError:  # run as a script from the kit's folder
    from harness import ERRORS, MujocoHarness
    from report import format_table
    from robot_controller import RobotController
    from schedules import random_schedule


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy")
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        ctrl = RobotController(args.policy)                   # the ONNX file is all it needs
        sim = MujocoHarness(args.policy, controller=ctrl, seed=args.seed)   # stands in for the robot
        servo_steps = round(ctrl.control_dt / ctrl.sim_dt)

        def control_step(command) -> None:
            """Every control_dt: plain arrays in, joint targets out, then PD torques at the servo rate."""
            ctrl.step(sim.measurements(), command)            # {"orientation", "gyro", ..., "joint_pos", "joint_vel"}
            for _ in range(servo_steps):
                m = sim.measurements()
                sim.physics_step(ctrl.torques(m["joint_pos"], m["joint_vel"]))

        schedule = random_schedule(args.segments, args.seconds, args.seed, ctrl.robot.command_ranges,
                                   commands=ctrl.commands)
        result = sim.run(schedule, control_step=control_step)
    except ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"required inputs: {ctrl.required_inputs}")
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
