"""The vocabulary of observation and reward terms: one named function each.

A task config lists terms by name; everything else (observation layouts,
noise, per-term reward logging, the ONNX metadata) is derived from these
declarations. A new kind of term is one function here; an actor observation
term also needs its numpy twin, by the same name, in the deploy loop
(``export/deploy.py: OBS_FUNCTIONS``), which a test holds equal.

Observation functions take ``(task, term)`` and return float32 ``[N, size]``;
``OBS_FUNCTIONS[name]`` gives the size, the value and what the term reads (the
``source`` in the metadata). ``deploy=True`` marks what a real robot can
compute (sensors, encoders, its own actions and commands): only those may be
in the actor's observation; the others are privileged (critic only).

Reward functions take ``(task, s)`` with ``s`` the step's ``StepState`` and
return float32 ``[N]`` unscaled; the task multiplies by the configured scale
and ``dt``. Definitions follow MuJoCo Playground's Go1 joystick
(Zakka et al. 2025), written anew in torch; ``posture`` is Playground's Spot
joystick's, ``gait_phase`` and ``feet_phase`` its Berkeley Humanoid joystick's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


# ------------------------------------------------------------- observation
@dataclass(frozen=True)
class ObsFunction:
    size: Callable[[Any, Any], int]
    """``(robot_model, term) -> int``."""
    value: Callable[[Any, Any], torch.Tensor]
    """``(task, term) -> float32 [N, size]``."""
    source: Callable[[Any, Any], dict]
    """``(robot_model, term) -> {...}``: what it reads, for the metadata."""
    deploy: bool
    """Computable on the robot (allowed in the actor's observation)."""


def _sensor_size(robot, term) -> int:
    s = robot.sensor(term.sensor)
    return s.stop - s.start


def gravity_from_quat(quat: torch.Tensor) -> torch.Tensor:
    """Unit gravity direction in the body frame ``R^T [0, 0, -1] = -R[2, :]`` from a (w, x, y, z)
    quaternion ``[N, 4]`` (normalized first); float32 ``[N, 3]``."""
    q = quat / quat.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return -torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)


def swing_height(phase: torch.Tensor, height: float) -> torch.Tensor:
    """Target foot height (m) over a gait cycle, from the phase (rad, [-pi, pi)): a cubic Bezier rise
    from 0 at -pi to ``height`` at 0 and back to 0 at pi (Playground's ``get_rz``, ``_src/gait.py``)."""
    x = (phase + torch.pi) / (2 * torch.pi)
    u = torch.where(x <= 0.5, 2 * x, 2 * x - 1)
    bezier = u ** 3 + 3 * u ** 2 * (1 - u)
    return torch.where(x <= 0.5, height * bezier, height * (1 - bezier))


def _gait_obs(t) -> torch.Tensor:
    phase = t.gait_phase()
    return torch.cat([torch.cos(phase), torch.sin(phase)], 1)


OBS_FUNCTIONS: dict[str, ObsFunction] = {
    # ---- what the robot measures (actor and critic)
    "sensor": ObsFunction(                       # a named MuJoCo sensor, e.g. the gyro (rad/s)
        _sensor_size, lambda t, term: t.sd[:, t.robot.sensor(term.sensor)],
        lambda r, term: {"sensor": r.sensor_name(term.sensor)}, True),
    "projected_gravity": ObsFunction(            # unit gravity in the IMU frame, from its orientation
        lambda r, term: 3, lambda t, term: gravity_from_quat(t.sd[:, t.robot.sensor("orientation")]),
        lambda r, term: {"sensor": r.sensor_name("orientation")}, True),
    "joint_pos": ObsFunction(                    # encoder angles minus the default pose (rad)
        lambda r, term: r.njoints, lambda t, term: t.joint_pos + t.joint_offset - t.q0,
        lambda r, term: {"joints": "joint_names", "minus": "default_pose"}, True),
    "joint_vel": ObsFunction(                    # encoder velocities (rad/s)
        lambda r, term: r.njoints, lambda t, term: t.joint_vel,
        lambda r, term: {"joints": "joint_names"}, True),
    "last_action": ObsFunction(                  # the previous policy action (clipped)
        lambda r, term: r.njoints, lambda t, term: t.last_act, lambda r, term: {}, True),
    "command": ObsFunction(                      # the velocity command (vx, vy m/s, yaw rate rad/s)
        lambda r, term: 3, lambda t, term: t.command, lambda r, term: {"commands": "commands"}, True),
    "gait_phase": ObsFunction(                   # cos of each foot's gait phase, then sin (the gait clock)
        lambda r, term: 2 * len(r.feet_sites), lambda t, term: _gait_obs(t), lambda r, term: {"gait": "gait"},
        True),
    # ---- privileged: only the critic sees these
    "joint_torque": ObsFunction(                 # actuator force of each joint (N m)
        lambda r, term: r.njoints, lambda t, term: t.sd[:, t.robot.force_adr],
        lambda r, term: {"sensors": "actuatorfrc"}, False),
    "foot_contact": ObsFunction(                 # 1 where the foot touches the floor
        lambda r, term: len(r.feet_sites), lambda t, term: t.last_contact.float(),
        lambda r, term: {"foot_sensor": "contact"}, False),
    "foot_linvel": ObsFunction(                  # feet velocities in the world frame (m/s)
        lambda r, term: 3 * len(r.feet_sites), lambda t, term: t.sd[:, t.robot.foot_sensor("linvel")].flatten(1),
        lambda r, term: {"foot_sensor": "linvel"}, False),
    "feet_air_time": ObsFunction(                # seconds since each foot left the floor
        lambda r, term: len(r.feet_sites), lambda t, term: t.air_time, lambda r, term: {}, False),
    "base_height": ObsFunction(                  # base body height (m)
        lambda r, term: 1, lambda t, term: t.qpos[:, t.robot.root_qpos + 2:t.robot.root_qpos + 3],
        lambda r, term: {"body": "base_body"}, False),
    "randomization": ObsFunction(                # floor friction, payload, com offset [3], kp and kd scales
        lambda r, term: 7, lambda t, term: t.dr_summary, lambda r, term: {}, False),
}


# ------------------------------------------------------------------ reward
@dataclass
class StepState:
    """Quantities of one control step shared by the reward terms (``N`` envs, ``J`` joints, ``F`` feet)."""

    actions: torch.Tensor       # [N, J] this step's clipped actions
    last_act: torch.Tensor      # [N, J] the previous step's
    command: torch.Tensor       # [N, 3]
    local_linvel: torch.Tensor  # [N, 3] base velocity in the IMU frame (m/s)
    gyro: torch.Tensor          # [N, 3] (rad/s)
    global_linvel: torch.Tensor  # [N, 3]
    global_angvel: torch.Tensor  # [N, 3]
    up: torch.Tensor            # [N, 3] the IMU's z axis in the world frame
    q: torch.Tensor             # [N, J] joint angles (rad)
    qd: torch.Tensor            # [N, J] (rad/s)
    torque: torch.Tensor        # [N, J] actuator force (N m)
    contact: torch.Tensor       # [N, F] bool
    first_contact: torch.Tensor  # [N, F] bool: touched down this step
    air_time: torch.Tensor      # [N, F] (s) including this step
    swing_peak: torch.Tensor    # [N, F] highest foot height of the swing (m)
    feet_vxy: torch.Tensor      # [N, F, 2] (m/s)
    foot_z: torch.Tensor        # [N, F] (m)
    moving: torch.Tensor        # [N] float: 1 where the command is nonzero
    terminated: torch.Tensor    # [N] bool


def _sq(x: torch.Tensor) -> torch.Tensor:
    return torch.square(x).sum(-1)


def _air_time(t, s: StepState) -> torch.Tensor:
    """Sum over this step's touch-downs of (air time - ``feet_air_time_min``), each capped at
    ``feet_air_time_max - feet_air_time_min`` (when set); 0 at a zero command."""
    lo, hi = t.p.feet_air_time_min, t.p.feet_air_time_max
    gain = (s.air_time - lo) * s.first_contact
    if hi is not None:
        gain = gain.clamp(max=hi - lo)
    return gain.sum(-1) * s.moving


REWARD_FUNCTIONS: dict[str, Callable[[Any, StepState], torch.Tensor]] = {
    # exp(-|cmd_xy - v_xy|^2 / sigma): track the commanded planar velocity
    "tracking_lin_vel": lambda t, s: torch.exp(-_sq(s.command[:, :2] - s.local_linvel[:, :2]) / t.p.tracking_sigma),
    # exp(-(cmd_yaw - w_z)^2 / sigma)
    "tracking_ang_vel": lambda t, s: torch.exp(-torch.square(s.command[:, 2] - s.gyro[:, 2]) / t.p.tracking_sigma),
    "lin_vel_z": lambda t, s: torch.square(s.global_linvel[:, 2]),
    "ang_vel_xy": lambda t, s: _sq(s.global_angvel[:, :2]),
    "orientation": lambda t, s: _sq(s.up[:, :2]),
    "torques": lambda t, s: s.torque.norm(dim=-1) + s.torque.abs().sum(-1),
    "action_rate": lambda t, s: _sq(s.actions - s.last_act),
    "energy": lambda t, s: (s.qd.abs() * s.torque.abs()).sum(-1),
    # exp(-sum w_j (q_j - q0_j)^2): stay near the default pose
    "pose": lambda t, s: torch.exp(-(torch.square(s.q - t.q0) * t.pose_weights).sum(-1)),
    "feet_air_time": _air_time,
    "feet_slip": lambda t, s: (_sq(s.feet_vxy) * s.contact).sum(-1) * s.moving,
    "feet_clearance": lambda t, s: ((s.foot_z - t.p.max_foot_height).abs() * s.feet_vxy.norm(dim=-1).sqrt()).sum(-1),
    "feet_height": lambda t, s: (torch.square(s.swing_peak / t.p.max_foot_height - 1.0) * s.first_contact).sum(-1)
    * s.moving,
    "dof_pos_limits": lambda t, s: ((t.soft_lower - s.q).clamp(min=0) + (s.q - t.soft_upper).clamp(min=0)).sum(-1),
    "stand_still": lambda t, s: (s.q - t.q0).abs().sum(-1) * (1.0 - s.moving),
    # 1 while commanded to move; at a zero command exp(-k sum w_j (q_j - q0_j)^2): hold the default pose
    "posture": lambda t, s: torch.where(s.moving > 0, 1.0, torch.exp(
        -t.p.posture_sharpness * (torch.square(s.q - t.q0) * t.pose_weights).sum(-1))),
    # exp(-sum_f (z_f - z*(phase_f))^2 / sigma): feet follow the gait clock's swing profile
    "feet_phase": lambda t, s: torch.exp(-_sq(s.foot_z - swing_height(t.gait_phase(), t.p.max_foot_height))
                                         / t.p.feet_phase_sigma),
    "termination": lambda t, s: s.terminated.float(),
}


__all__ = ["OBS_FUNCTIONS", "REWARD_FUNCTIONS", "ObsFunction", "StepState", "gravity_from_quat", "swing_height"]
