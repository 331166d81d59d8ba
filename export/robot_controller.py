"""The policy on a robot's own loop: plain named arrays in, joint targets and PD torques out.

Needs numpy and onnxruntime only (no simulator, no torch): copy this folder
and ``policy.onnx`` onto the robot computer. Everything comes from the ONNX
metadata (the ``robot`` contract, ``robot_metadata.py``) and the rules shared
with training (``rules.py``)::

    from robot_controller import RobotController

    ctrl = RobotController("policy.onnx")
    print(ctrl.required_inputs)          # e.g. ['gyro', 'joint_pos', 'joint_vel', 'local_linvel', 'orientation']
    ctrl.reset()
    while running:                       # every ctrl.control_dt seconds
        targets = ctrl.step({"orientation": imu_quat_wxyz, "gyro": imu_gyro, "local_linvel": v_estimate,
                             "joint_pos": encoders_q, "joint_vel": encoders_qd}, command=[vx, vy, yaw_rate])
        # either send `targets` (rad, ctrl.joint_names order) to the servos' position loop with
        # kp = ctrl.kp, kd = ctrl.kd, or run the PD law here every ctrl.sim_dt seconds:
        tau = ctrl.torques(encoders_q, encoders_qd)

Inputs are the sensor roles of the metadata (``robot["sensors"]``: the
orientation quaternion (w, x, y, z) of the IMU, its angular velocity in rad/s,
the base velocity estimate in m/s in the IMU frame, ...) that the policy's
observation terms read, plus ``joint_pos`` (rad) and ``joint_vel`` (rad/s) in
``joint_names`` order; ``required_inputs`` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    from . import rules
    from .onnx_controller import ControllerError, OnnxController
    from .robot_metadata import ContractError, RobotMetadata
except ImportError:  # run from the kit's folder
    import rules
    from onnx_controller import ControllerError, OnnxController
    from robot_metadata import ContractError, RobotMetadata

__all__ = ["RobotController", "ControllerError"]


class RobotController:
    """A robot policy (``policy.onnx`` with ``robot`` metadata) as a robot-side controller.

    Args:
        policy: the ONNX file, or an ``OnnxController`` of it.
        num_threads: onnxruntime threads (1: lowest latency, leaves the other cores to the robot).
        target_range: per-joint ``[lo, hi]`` of the joint targets (rad) when the metadata has none
            (policies of contract 1); None: unlimited.

    Attributes: ``robot`` (``RobotMetadata``), ``joint_names``, ``control_dt`` and ``sim_dt`` (s),
    ``default_pose``, ``kp``, ``kd``, ``torque_limits`` float64 ``[J]``, ``commands`` (names),
    ``required_inputs`` (sorted names), ``last_action`` float32 ``[J]``, ``target`` float64 ``[J]``
    (the latest joint targets), ``time_s`` (since ``reset``: the gait clock's time), ``command`` float64
    (the command the policy saw last: the one given, or with ``command_rate_limit`` its ramp).

    Raises:
        FileNotFoundError: no such file.
        ControllerError: the file is not an ONNX robo_ppo policy (``MetadataError``), or its ``robot``
            metadata fails ``RobotMetadata.from_dict``'s checks (version, keys, types, sizes, model path,
            layout, known observation terms) or ``check_policy`` against the graph's widths (one line
            naming the file and the field).
    """

    def __init__(self, policy: str | Path | OnnxController, num_threads: int = 1,
                 target_range: Sequence[Sequence[float]] | None = None):
        self.policy = policy if isinstance(policy, OnnxController) else OnnxController(policy, num_threads=num_threads)
        name = self.policy.path.name
        try:  # the file is untrusted: every metadata check is RobotMetadata's (robot_metadata.py)
            self.robot = robot = RobotMetadata.from_dict(self.policy.metadata.get("robot"), name)
            robot.check_policy(self.policy.obs_dim, self.policy.act_dim, self.policy.discrete,
                               self.policy.control_dt, name)
        except ContractError as e:
            raise ControllerError(str(e)) from None
        self.joint_names = list(robot.joint_names)
        self.commands = list(robot.commands)
        self.control_dt, self.sim_dt = float(robot.control_dt), float(robot.sim_dt)
        self.default_pose = np.asarray(robot.default_pose, dtype=np.float64)
        self.kp, self.kd = np.asarray(robot.kp, dtype=np.float64), np.asarray(robot.kd, dtype=np.float64)
        self.torque_limits = np.asarray(robot.torque_limits, dtype=np.float64)
        limits = robot.target_range if robot.target_range is not None else target_range
        limits = np.asarray(limits, dtype=np.float64) if limits is not None else None
        self.target_low, self.target_high = (limits[:, 0], limits[:, 1]) if limits is not None else (None, None)
        self.action_clip = (float(robot.action_clip[0]), float(robot.action_clip[1]))
        needed = {"joint_pos", "joint_vel"}
        for entry in robot.obs_layout:
            needed.update(rules.OBSERVATIONS[entry["fn"]].reads(entry))
        self.required_inputs = sorted(needed)
        self._gait = robot.gait
        self._offsets = np.asarray(robot.gait.phase_offsets, dtype=np.float64) if robot.gait else None
        rate = robot.command_rate_limit
        self._command_rate = np.asarray(rate, dtype=np.float64) if rate is not None else None
        self.reset()

    def reset(self) -> None:
        """Start an episode: zero last action, the clock at 0, the target at the default pose, no
        observation history (the first frame fills it), the command at 0."""
        self.last_action = np.zeros(len(self.joint_names), dtype=np.float32)
        self.command = np.zeros(len(self.commands), dtype=np.float64)
        self.target = self.default_pose.copy()
        self.time_s = 0.0
        self.history: np.ndarray | None = None

    # ------------------------------------------------------------ control
    def observe(self, measurements: Mapping[str, Any], command: Sequence[float]) -> np.ndarray:
        """The policy input float32 ``[obs_dim]`` of ``measurements`` (``required_inputs`` -> arrays) and
        ``command`` (``commands`` order): this step's observation frame, or with the metadata's
        ``obs_history`` the last ``length`` frames newest first (``rules.push_history``; the first frame
        of an episode fills the history). Call once per control step: each call pushes a frame. With the
        metadata's ``command_rate_limit`` the policy sees ``command`` as :attr:`command`, which takes one
        ``rules.ramp_command`` step toward it per call (training's rate-limited commands).

        Raises:
            ControllerError: a required input is missing, or a term's size differs from the metadata.
        """
        command = np.asarray(command, dtype=np.float64)
        self.command = (command.copy() if self._command_rate is None
                        else rules.ramp_command(self.command, command, self._command_rate, self.control_dt))
        inputs: dict[str, Any] = {"last_action": self.last_action.astype(np.float64),
                                  "command": self.command, "default_pose": self.default_pose}
        for key in self.required_inputs:
            if key not in measurements:
                raise ControllerError(f"measurements lack {key!r}; this policy reads {self.required_inputs}")
            inputs[key] = np.asarray(measurements[key], dtype=np.float64)
        if self._gait is not None:
            inputs["gait_phase"] = rules.gait_phase(self.time_s, self._gait.frequency_hz, self._offsets)
        values = []
        for entry in self.robot.obs_layout:
            term = rules.OBSERVATIONS[entry["fn"]]
            try:
                values.append(term.value(inputs, entry))
            except (ValueError, IndexError) as e:  # an input of the wrong shape
                raise ControllerError(f"observation term {entry['name']!r} cannot use its input "
                                      f"{term.reads(entry) or entry['fn']}: {str(e).splitlines()[0]}") from None
        for entry, value in zip(self.robot.obs_layout, values, strict=True):
            if np.shape(value) != (entry["size"],):
                raise ControllerError(f"observation term {entry['name']!r} has shape {np.shape(value)}, the policy "
                                      f"expects ({entry['size']},): check the input it reads "
                                      f"({rules.OBSERVATIONS[entry['fn']].reads(entry) or entry['fn']})")
        frame = rules.assemble(values, self.robot.obs_layout).astype(np.float32)
        if self.robot.obs_history is None:
            return frame
        self.history = (rules.start_history(frame, self.robot.history_length) if self.history is None
                        else rules.push_history(self.history, frame))
        return rules.history_input(self.history)

    def step(self, measurements: Mapping[str, Any], command: Sequence[float]) -> np.ndarray:
        """One control step: observe, run the policy, clip the action, map it to joint targets
        (``rules.joint_targets``); returns float64 ``[J]`` joint targets (rad). Call every ``control_dt``."""
        obs = self.observe(measurements, command)
        action = rules.clip_action(self.policy(obs), *self.action_clip).astype(np.float32)
        self.last_action = action
        self.target = rules.joint_targets(action, self.default_pose, self.robot.action_scale)
        self.time_s += self.control_dt
        return self.target.copy()

    def torques(self, joint_pos: Any, joint_vel: Any, target: np.ndarray | None = None) -> np.ndarray:
        """The PD law (``rules.pd_torques``) toward ``target`` (default: the latest :meth:`step`'s), float64
        ``[J]`` N m; call every ``sim_dt`` (the servo rate)."""
        return rules.pd_torques(self.target if target is None else target, np.asarray(joint_pos, np.float64),
                                np.asarray(joint_vel, np.float64), self.kp, self.kd, self.torque_limits,
                                self.target_low, self.target_high)

    def fallen(self, orientation: Any, base_height: float | None = None) -> bool:
        """The robot's fall condition (``rules.fallen``) from the IMU orientation (w, x, y, z) and, when
        known, the base height (m)."""
        fall = self.robot.fall
        gravity = rules.projected_gravity(np.asarray(orientation, dtype=np.float64))
        return bool(rules.fallen(gravity, fall.max_tilt_cos, base_height, fall.min_base_height))

    def __repr__(self) -> str:
        return (f"RobotController({self.policy.path.name!r}, robot={self.robot.name}, joints={len(self.joint_names)}, "
                f"inputs={self.required_inputs}, control_dt={self.control_dt})")
