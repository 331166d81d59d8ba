"""The vocabulary of training-side terms: privileged observations, rewards, terminations.

A task config lists terms by name; layouts, per-term reward logging and the
ONNX metadata are derived from the declarations. A new kind of term is one
function in one place: a robot-side observation term (what a real robot can
compute, allowed in the actor's observation) in the deploy kit's
``export/rules.py: OBSERVATIONS``, which training and the robot share; a
privileged observation (critic only) in ``PRIVILEGED_OBS``; a reward in
``REWARD_FUNCTIONS``; a termination in ``TERMINATION_FUNCTIONS``; an event
(reset, randomization, command, push) in ``tasks/events.py``.

Reward and termination functions take ``(task, s)`` with ``s`` the step's
``StepState`` (quantities computed on first use) and return float32 (bool)
``[N]``; the task multiplies rewards by the configured scale and ``dt``.
Definitions follow MuJoCo Playground's Go1 joystick (Zakka et al. 2025),
written anew in torch; ``posture`` is Playground's Spot joystick's,
``gait_phase`` and ``feet_phase`` its Berkeley Humanoid joystick's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import torch

from robo_ppo.deploy_kit import rules

# ------------------------------------------------------------- observation
PRIVILEGED_OBS: dict[str, Callable[[Any, Any], torch.Tensor]] = {
    # actuator force of each joint (N m)
    "joint_torque": lambda t, term: t.sd[:, t.robot.force_adr],
    # 1 where the foot touches the floor
    "foot_contact": lambda t, term: t.last_contact.float(),
    # feet velocities in the world frame (m/s)
    "foot_linvel": lambda t, term: t.sd[:, t.robot.foot_sensor("linvel")].flatten(1),
    # seconds since each foot left the floor
    "feet_air_time": lambda t, term: t.air_time,
    # base body height (m) above the ground (on a terrain: the lowest ground within the robot's footprint)
    "base_height": lambda t, term: t.base_height()[:, None],
    # the base's height above the ground at a grid of points around it, in its yaw frame (m, clipped;
    # env.task_params.height_scan: 11 x 7 points 0.1 m apart by default)
    "height_scan": lambda t, term: t.height_scan(),
    # floor friction, payload, com offset [3], kp and kd scales (the randomize_model event's draws)
    "randomization": lambda t, term: t.dr_summary,
    # added joint damping (x kd, mean over joints), motor strength, 1 if the env's actions are late
    # (the randomize_model event's model-mismatch draws; 0, 1, the config's latency where not drawn)
    "model_mismatch": lambda t, term: t.mismatch_summary,
}
"""Privileged observation term -> ``(task, term) -> float32 [N, size]``: what only a simulator knows,
for the critic. The robot-side terms (allowed in the actor's observation) are the deploy kit's
``rules.OBSERVATIONS``, shared with the robot; a term's size is its value's last axis."""


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
    def g_imu(self) -> torch.Tensor:            # [N, 3] unit gravity in the IMU frame (rules.projected_gravity)
        return rules.projected_gravity(self._role("orientation"))

    @cached_property
    def base_height(self) -> torch.Tensor:      # [N] (m) above the ground (Joystick.base_height)
        return self.t.base_height()

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
    def foot_z(self) -> torch.Tensor:           # [N, F] (m) above the ground under each foot (feet_ground_radius)
        z = self.t.sd[:, self.t.robot.foot_sensor("pos")[:, 2]]
        if self.t.terrain is None:
            return z
        r = self.t.p.feet_ground_radius
        if r <= 0:
            return z - self.t.ground(*self._foot_xy)
        return z - self._highest_ground(r, under=True)

    @cached_property
    def stumble(self) -> torch.Tensor:          # [N, F] bool: a foot on the ground at the foot of a riser
        """A foot in contact whose ground, within ``stumble_radius`` of it (4 points along +-x, +-y), rises
        more than ``stumble_height`` above the ground under it: it stands against a step it has not
        cleared. A geometric stand-in for legged_gym's contact-force stumble test (a foot pushed sideways
        harder than it is held up); none on flat ground."""
        if self.t.terrain is None:
            return torch.zeros_like(self.contact)
        rise = self._highest_ground(self.t.p.stumble_radius, under=False) - self.t.ground(*self._foot_xy)
        return self.contact & (rise > self.t.p.stumble_height)

    @cached_property
    def _foot_xy(self) -> tuple[torch.Tensor, torch.Tensor]:   # [N, F] each: the feet's world x, y (m)
        pos = self.t.robot.foot_sensor("pos")
        return self.t.sd[:, pos[:, 0]], self.t.sd[:, pos[:, 1]]

    def _highest_ground(self, r: float, under: bool) -> torch.Tensor:
        """[N, F] (m): the highest ground at 4 points ``r`` from each foot along +-x, +-y (and under the foot
        itself when ``under``)."""
        x, y = self._foot_xy
        ox, oy = [0.0, r, -r, 0.0, 0.0], [0.0, 0.0, 0.0, r, -r]
        if not under:
            ox, oy = ox[1:], oy[1:]
        return self.t.ground(x[..., None] + x.new_tensor(ox), y[..., None] + y.new_tensor(oy)).amax(-1)

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
    "fallen": lambda t, s: rules.fallen(s.g_imu, t.robot.desc.fall.max_tilt_cos, s.base_height,
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
    # |tau|_2 + |tau|_1 in torque units (t.torque_unit = m g h: weight x standing height, so one scale fits
    # a 13 kg and a 50 kg robot)
    "torques": lambda t, s: (s.torque.norm(dim=-1) + s.torque.abs().sum(-1)) / t.torque_unit,
    "action_rate": lambda t, s: _sq(s.actions - s.last_act),
    "energy": lambda t, s: (s.qd.abs() * s.torque.abs()).sum(-1) / t.torque_unit,   # sum |qd tau| / (m g h)
    # exp(-sum w_j (q_j - q0_j)^2): stay near the default pose
    "pose": lambda t, s: torch.exp(-(torch.square(s.q - t.q0) * t.pose_weights).sum(-1)),
    "feet_air_time": _air_time,
    "feet_slip": lambda t, s: (_sq(s.feet_vxy) * s.contact).sum(-1) * s.moving,
    "feet_clearance": lambda t, s: ((s.foot_z - t.swing_target).abs() * s.feet_vxy.norm(dim=-1).sqrt()).sum(-1),
    "feet_height": lambda t, s: (torch.square(s.swing_peak / t.swing_target - 1.0) * s.first_contact).sum(-1)
    * s.moving,
    "dof_pos_limits": lambda t, s: ((t.soft_lower - s.q).clamp(min=0) + (s.q - t.soft_upper).clamp(min=0)).sum(-1),
    "stand_still": lambda t, s: (s.q - t.q0).abs().sum(-1) * (1.0 - s.moving),
    # 1 while commanded to move; at a zero command exp(-k sum w_j (q_j - q0_j)^2): hold the default pose
    "posture": lambda t, s: torch.where(s.moving > 0, 1.0, torch.exp(
        -t.p.posture_sharpness * (torch.square(s.q - t.q0) * t.pose_weights).sum(-1))),
    # exp(-sum_f (z_f - z*(phase_f))^2 / sigma): feet follow the gait clock's swing profile
    "feet_phase": lambda t, s: torch.exp(-_sq(s.foot_z - swing_height(s.gait_phase, t.swing_target))
                                         / t.p.feet_phase_sigma),
    # feet in contact at the foot of a step they have not cleared (StepState.stumble); 0 on flat ground
    "feet_stumble": lambda t, s: s.stumble.float().sum(-1),
    "termination": lambda t, s: s.terminated.float(),
}


__all__ = ["PRIVILEGED_OBS", "REWARD_FUNCTIONS", "TERMINATION_FUNCTIONS", "StepState", "swing_height"]
