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
from functools import cached_property
from typing import Any, Optional

import torch

from robo_ppo.deploy_kit import rules


# ------------------------------------------------------------- observation
@dataclass(frozen=True)
class ObsFunction:
    size: Callable[[Any, Any], int]
    """``(robot_model, term) -> int``."""
    value: Optional[Callable[[Any, Any], torch.Tensor]] = None
    """Privileged terms: ``(task, term) -> float32 [N, size]``. None: a robot-side term, whose value is
    the deployment kit's rule of the same name (``rules.OBSERVATIONS``), shared with the robot."""

    @property
    def deploy(self) -> bool:
        """Computable on the robot (allowed in the actor's observation)."""
        return self.value is None


def _sensor_size(robot, term) -> int:
    s = robot.sensor(term.sensor)
    return s.stop - s.start


_joints = lambda r, term: r.njoints  # noqa: E731

OBS_FUNCTIONS: dict[str, ObsFunction] = {
    # ---- what the robot measures (actor and critic): values from export/rules.py
    "sensor": ObsFunction(_sensor_size),                                  # a sensor role, e.g. the gyro
    "projected_gravity": ObsFunction(lambda r, term: 3),                  # unit gravity in the IMU frame
    "joint_pos_rel": ObsFunction(_joints),                                # encoders minus the default pose
    "joint_vel": ObsFunction(_joints),                                    # encoder velocities
    "last_action": ObsFunction(_joints),                                  # the previous (clipped) action
    "command": ObsFunction(lambda r, term: 3),                            # vx, vy (m/s), yaw rate (rad/s)
    "gait_phase": ObsFunction(lambda r, term: 2 * len(r.feet_sites)),     # cos, sin of each foot's phase
    # ---- privileged: only the critic sees these
    "joint_torque": ObsFunction(                 # actuator force of each joint (N m)
        _joints, lambda t, term: t.sd[:, t.robot.force_adr]),
    "foot_contact": ObsFunction(                 # 1 where the foot touches the floor
        lambda r, term: len(r.feet_sites), lambda t, term: t.last_contact.float()),
    "foot_linvel": ObsFunction(                  # feet velocities in the world frame (m/s)
        lambda r, term: 3 * len(r.feet_sites), lambda t, term: t.sd[:, t.robot.foot_sensor("linvel")].flatten(1)),
    "feet_air_time": ObsFunction(                # seconds since each foot left the floor
        lambda r, term: len(r.feet_sites), lambda t, term: t.air_time),
    "base_height": ObsFunction(                  # base body height (m)
        lambda r, term: 1, lambda t, term: t.qpos[:, t.robot.root_qpos + 2:t.robot.root_qpos + 3]),
    "randomization": ObsFunction(                # floor friction, payload, com offset [3], kp and kd scales
        lambda r, term: 7, lambda t, term: t.dr_summary),
}
assert {k for k, f in OBS_FUNCTIONS.items() if f.deploy} == set(rules.OBSERVATIONS), "robot-side terms: export/rules.py"


# ------------------------------------------------------------------ reward
class StepState:
    """The reward and termination terms' view of one control step (``N`` envs, ``J`` joints, ``F``
    feet), after the physics step and before the task's per-env state moves on.

    Each quantity is computed on first use and kept: a term reads only what it needs, so the
    sensors a robot must have follow from the terms its task uses (``Joystick`` evaluates every
    term once at start-up; a missing sensor role fails there, naming it).
    """

    def __init__(self, task, actions: torch.Tensor):
        self.t = task
        self.actions = actions                  # [N, J] this step's clipped actions
        self.last_act = task.last_act           # [N, J] the previous step's
        self.command = task.command             # [N, 3]
        self.q, self.qd = task.joint_pos, task.joint_vel   # [N, J] rad, rad/s

    def _role(self, role: str) -> torch.Tensor:
        return self.t.sd[:, self.t.robot.sensor(role)]

    @cached_property
    def local_linvel(self) -> torch.Tensor:     # [N, 3] base velocity in the IMU frame (m/s)
        return self._role("local_linvel")

    @cached_property
    def gyro(self) -> torch.Tensor:             # [N, 3] (rad/s)
        return self._role("gyro")

    @cached_property
    def global_linvel(self) -> torch.Tensor:    # [N, 3]
        return self._role("global_linvel")

    @cached_property
    def global_angvel(self) -> torch.Tensor:    # [N, 3]
        return self._role("global_angvel")

    @cached_property
    def up(self) -> torch.Tensor:               # [N, 3] the IMU's z axis in the world frame
        return self._role("upvector")

    @cached_property
    def gravity(self) -> torch.Tensor:          # [N, 3] unit gravity in the IMU frame
        return rules.projected_gravity(self._role("orientation"))

    @cached_property
    def base_height(self) -> torch.Tensor:      # [N] (m)
        return self.t.qpos[:, self.t.robot.root_qpos + 2]

    @cached_property
    def torque(self) -> torch.Tensor:           # [N, J] actuator force (N m)
        return self.t.sd[:, self.t.robot.force_adr]

    @cached_property
    def contact(self) -> torch.Tensor:          # [N, F] bool
        return self.t.sd[:, self.t.robot.foot_sensor("contact")[:, 0]] > 0

    @cached_property
    def first_contact(self) -> torch.Tensor:    # [N, F] bool: touched down this step
        return (self.t.air_time > 0) & (self.contact | self.t.last_contact)

    @cached_property
    def air_time(self) -> torch.Tensor:         # [N, F] (s) including this step
        return self.t.air_time + self.t.dt

    @cached_property
    def foot_z(self) -> torch.Tensor:           # [N, F] (m)
        return self.t.sd[:, self.t.robot.foot_sensor("pos")[:, 2]]

    @cached_property
    def swing_peak(self) -> torch.Tensor:       # [N, F] highest foot height of the swing (m)
        return torch.maximum(self.t.swing_peak, self.foot_z)

    @cached_property
    def feet_vxy(self) -> torch.Tensor:         # [N, F, 2] (m/s)
        return self.t.sd[:, self.t.robot.foot_sensor("linvel")[:, :2]]

    @cached_property
    def moving(self) -> torch.Tensor:           # [N] float: 1 where the command is nonzero
        return (self.command.norm(dim=-1) > 0.01).float()

    @cached_property
    def gait_phase(self) -> torch.Tensor:       # [N, F] each foot's gait phase (rad)
        return self.t.gait_phase()

    @cached_property
    def terminated(self) -> torch.Tensor:       # [N] bool: any termination term
        return self.t.terminations(self)


# ------------------------------------------------------------- termination
TERMINATION_FUNCTIONS: dict[str, Callable[[Any, StepState], torch.Tensor]] = {
    # the robot's fall condition (robot.fall), the rule the deploy kit checks: export/rules.py
    "fallen": lambda t, s: rules.fallen(s.gravity, t.robot.desc.fall.max_tilt_cos, s.base_height,
                                        t.robot.desc.fall.min_base_height),
}
"""Termination term -> ``(task, s) -> bool [N]``; an episode ends where any listed term is true (the
time limit is the engine's truncation, not a term)."""


def swing_height(phase: torch.Tensor, height: float) -> torch.Tensor:
    """Target foot height (m) over a gait cycle, from the phase (rad, [-pi, pi)): a cubic Bezier rise
    from 0 at -pi to ``height`` at 0 and back to 0 at pi (Playground's ``get_rz``, ``_src/gait.py``)."""
    x = (phase + torch.pi) / (2 * torch.pi)
    u = torch.where(x <= 0.5, 2 * x, 2 * x - 1)
    bezier = u ** 3 + 3 * u ** 2 * (1 - u)
    return torch.where(x <= 0.5, height * bezier, height * (1 - bezier))


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
    "feet_phase": lambda t, s: torch.exp(-_sq(s.foot_z - swing_height(s.gait_phase, t.p.max_foot_height))
                                         / t.p.feet_phase_sigma),
    "termination": lambda t, s: s.terminated.float(),
}


__all__ = ["OBS_FUNCTIONS", "REWARD_FUNCTIONS", "TERMINATION_FUNCTIONS", "ObsFunction", "StepState", "swing_height"]
