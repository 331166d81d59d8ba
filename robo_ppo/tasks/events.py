"""The vocabulary of event terms: what happens to an environment at a reset and around each step.

A task config lists its events by name, each ``{fn, params}`` (``env.task_params.events``), and the
task runs them in that order (the manager style of Isaac Lab and mjlab). Resets, domain
randomization, the velocity command and pushes are events; a new kind is one ``EventFunction`` here
with its parameter schema. Hooks, each optional:

* ``init(task, params)``: create the per-environment state the event owns, on the task;
* ``reset(task, state, mask, params)``: at every reset of the rows in ``mask`` (bool ``[N]``). An event
  draws its random numbers for every row, whether or not it resets, so the random stream does not
  depend on which rows reset; ``state`` (``ResetState``) holds the ``qpos`` / ``qvel`` the task will
  write, for events that set the initial state;
* ``pre_step(task, params)``: every control step after the joint targets are set, before physics;
* ``post_step(task, params)``: every control step after the rewards;
* ``clock(task, params)``: when the training clock ``task.step_count`` is set from outside
  (``Joystick.set_clock``: the start of training, an evaluation), for events whose state follows it;
* ``stats(task, params)``: the event's statistics, ``{name: scalar tensor}``, logged once per training
  iteration (``Joystick.stats``; e.g. ``terrain/level``).

Draws come from the task's generator (``task.gen``) through ``task.uniform`` / ``task.exp_steps``.
Definitions follow MuJoCo Playground's Go1 joystick (Zakka et al. 2025), written anew.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from robo_ppo.deploy_kit import rules
from robo_ppo.errors import ConfigError

log = logging.getLogger("robo_ppo")

COMMANDS = ("vx", "vy", "yaw_rate")
"""Velocity command components, in observation order (m/s, m/s, rad/s)."""


@dataclass
class ResetState:
    """The initial state a reset writes (rows outside the mask are ignored by the physics)."""

    qpos: torch.Tensor   # [N, nq]
    qvel: torch.Tensor   # [N, nv]


# ------------------------------------------------------------------ params
@dataclass
class RootStateParams:
    xy: float = 0.5
    """Initial base position offset U(-x, x) per horizontal axis (m); yaw is always U(-pi, pi)."""
    base_velocity: float = 0.5
    """Initial base linear and angular velocity U(-v, v) per component (m/s, rad/s)."""


@dataclass
class ModelRandomizationParams:
    """Model parameters drawn per environment at every reset."""

    enable: bool = True
    floor_friction: list[float] = field(default_factory=lambda: [1.0, 1.0])
    frictionloss_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    armature_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    com_offset: float = 0.0
    """Base centre-of-mass shift U(-x, x) per axis (m)."""
    link_mass_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    payload: float = 0.0
    """Base mass offset U(-x, x) (kg)."""
    joint_offset: float = 0.0
    """Encoder calibration error U(-x, x) (rad): the robot reads q + offset."""
    kp_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    kd_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    # What differs between a model and a real robot (issue #23). Each is drawn only when set, so a
    # config without them keeps its random stream (and a shipped controller its reproduction).
    damping_kd: Optional[list[float]] = None
    """Passive joint damping added to each joint, U(lo, hi) x that joint's kd (N m s / rad: the gearbox
    and motor damping a model lacks; derived from the robot's gains, so one range fits every robot)."""
    damping_step_limit: Optional[float] = None
    """Where set, the ``damping_kd`` draw's upper bound is lowered, per robot, to the largest multiple of
    kd whose explicit integration step ``h rho(M^-1 D)`` at the init keyframe stays within this limit
    (``deploy_kit.harness.damping_step``: the robot scenes integrate damping explicitly, which diverges past
    2; docs/robots.md "Added damping and the explicit step"). At 1: 4.3 kd for the Go1, 2.4 kd for the
    Berkeley Humanoid, 2.0 kd for the G1. The bound is ``task.damping_kd_max``."""
    damping_substeps: bool = False
    """With ``damping_step_limit``: keep the full ``damping_kd`` range and integrate each env whose added
    damping takes the step past the limit in substeps instead (``deploy_kit.harness.damping_substeps`` of
    that env's randomized model: the deploy loop's rule, at this limit; ``physics.set_substeps``). Costs
    physics time in proportion; logged as ``physics/substeps`` (the envs' mean). On an engine that steps
    every env at one timestep (MuJoCo Warp) the draw is capped at the limit instead, with a warning."""
    damping_prob: Optional[float] = None
    """Probability that an env gets the ``damping_kd`` draw (per episode); the rest keep the model's own
    damping, so the nominal model stays in the training distribution (None: every env gets it)."""
    motor_strength: Optional[list[float]] = None
    """A torque scale per env, U(lo, hi), on kp and kd together (a weaker or stronger motor)."""
    latency_prob: Optional[float] = None
    """Probability that an env applies each action one control step late (per episode); the rest apply
    it at once: action latency of 0-1 control steps."""


@dataclass
class VelocityCommandParams:
    ranges: list[list[float]] = field(default_factory=lambda: [[-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]])
    """``[lo, hi]`` of vx, vy (m/s) and yaw rate (rad/s)."""
    keep_prob: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    """At a resample, a component that changes is a new draw with this probability, else 0."""
    change_prob: float = 0.5
    """At a resample, the probability that each component changes."""
    resample_mean_s: float = 5.0
    """Mean of the exponential time between resamples (s)."""
    heading_prob: float = 0.0
    """Probability that a command (at a reset or a resample) holds a heading instead of a yaw rate: a target
    heading U(-pi, pi) (rad, world frame), and every control step the yaw-rate command
    ``rules.heading_command(base heading, target, heading_stiffness, the yaw-rate range)`` (legged_gym's
    heading command; Isaac Lab's ``rel_heading_envs``). 0 (the default): no heading draws, so a config
    without it keeps its random stream."""
    heading_stiffness: float = 0.5
    """(rad/s)/rad: the yaw-rate command per radian of heading error (legged_gym's and Isaac Lab's 0.5)."""
    rate_limit: Optional[list[float]] = None
    """``[vx, vy, yaw rate]`` per second (m/s^2, m/s^2, rad/s^2): the ONNX metadata's ``command_rate_limit``,
    so the robot-side controller's command follows a joystick's at most this fast (``rules.ramp_command``
    every control step, from 0 at its reset). null (the default): from ``full_reversal_s`` where that is
    set, else the given command at once."""
    full_reversal_s: Optional[float] = None
    """s: where ``rate_limit`` is null, the time the ramp takes across each whole range, so each rate is
    ``(hi - lo) / full_reversal_s`` from ``ranges`` (the base recipe's 1 s). An explicit ``rate_limit``
    wins; null (the default) with no ``rate_limit``: no ramp."""
    ramp_in_training: bool = False
    """With ``rate_limit``: true, training's commands ramp the same way (the drawn command is
    ``task.command_target``, the policy's ``task.command`` follows it from 0 at a reset); false (the
    default), training keeps the drawn commands' cuts, the harder case (a ramp is a run of small cuts), and
    only the robot ramps. Spot trained with the ramp fell more under pushes and heavier links than the
    same recipe trained on cuts and run with it (docs/robots.md, "Rate-limited commands")."""
    min_speed: float = 0.0
    """m/s: a drawn command whose planar speed ``|(vx, vy)|`` is below this commands standing in place: its vx
    and vy are set to 0, its yaw rate kept (legged_gym zeroes below 0.2 m/s, so that a command given always
    means walking). 0 (the default): no command is changed, the random stream is the same either way."""

    def __post_init__(self):
        """Check the params (every velocity-command check is here) and derive ``rate_limit`` from
        ``full_reversal_s`` and ``ranges`` where it is null.

        Raises:
            ConfigError: ``ranges`` not three ``[lo, hi]`` pairs; ``heading_prob`` outside [0, 1],
                ``heading_stiffness`` not > 0 or ``min_speed`` < 0; ``full_reversal_s`` not > 0, or a range
                without width (a fixed command: no rate follows from it, so ``rate_limit`` must be given, or
                ``full_reversal_s`` null for no ramp); ``rate_limit`` not three values > 0.
        """
        if len(self.ranges) != len(COMMANDS) or any(len(r) != 2 for r in self.ranges):
            raise ConfigError(f"the velocity_command event's params.ranges must be {len(COMMANDS)} [lo, hi] pairs "
                              f"({', '.join(COMMANDS)})")
        if not 0.0 <= self.heading_prob <= 1.0 or not self.heading_stiffness > 0:
            raise ConfigError(f"env.task_params.events: velocity_command needs 0 <= heading_prob <= 1 and "
                              f"heading_stiffness > 0, got {self.heading_prob} and {self.heading_stiffness}")
        if not self.min_speed >= 0:
            raise ConfigError(f"env.task_params.events: velocity_command needs min_speed >= 0 (m/s), "
                              f"got {self.min_speed}")
        if self.rate_limit is None and self.full_reversal_s is not None:
            if not self.full_reversal_s > 0:
                raise ConfigError(f"velocity_command.full_reversal_s must be > 0 (s) or null, "
                                  f"got {self.full_reversal_s}")
            for name, (lo, hi) in zip(COMMANDS, self.ranges, strict=True):
                if not hi > lo:
                    raise ConfigError(f"velocity_command: full_reversal_s derives rate_limit from the ranges, and the "
                                      f"{name} range [{lo}, {hi}] has no width: give rate_limit (3 values > 0) or "
                                      f"set full_reversal_s=null (no ramp)")
            self.rate_limit = [(hi - lo) / self.full_reversal_s for lo, hi in self.ranges]
        if self.rate_limit is not None and not (len(self.rate_limit) == len(COMMANDS)
                                                and all(r > 0 for r in self.rate_limit)):
            raise ConfigError(f"env.task_params.events: velocity_command.rate_limit must be {len(COMMANDS)} values > 0 "
                              f"(m/s^2, m/s^2, rad/s^2) or null, got {self.rate_limit}")


@dataclass
class PushParams:
    enable: bool = True
    """False: no kicks (the timer still draws, so the random stream is the same either way)."""
    max_velocity: float = 1.0
    """Horizontal base velocity kick U(0, x) (m/s) in a random direction."""
    interval_s: list[float] = field(default_factory=lambda: [5.0, 10.0])


# ------------------------------------------------------------------ events
def _reset_root_state(t, state: ResetState, mask, p: RootStateParams) -> None:
    """The init keyframe shifted by U(-xy, xy) m in x/y, turned by a yaw U(-pi, pi), with base
    velocity U(-v, v) per component."""
    r0, d0 = t.robot.root_qpos, t.robot.root_dof
    state.qpos[:, r0:r0 + 2] += t.uniform(-p.xy, p.xy, 2)
    yaw = t.uniform(-math.pi, math.pi)
    zero = torch.zeros_like(yaw)
    state.qpos[:, r0 + 3:r0 + 7] = torch.stack([torch.cos(yaw / 2), zero, zero, torch.sin(yaw / 2)], 1)
    state.qvel[:, d0:d0 + 6] = t.uniform(-p.base_velocity, p.base_velocity, 6)


_MODEL_FIELDS = ("geom_friction", "body_mass", "body_ipos", "dof_frictionloss", "dof_armature", "dof_damping",
                 "actuator_gainprm", "actuator_biasprm", "pair_friction")


def _init_model(t, p: ModelRandomizationParams) -> None:
    pairs = {"damping_kd": p.damping_kd, "motor_strength": p.motor_strength}
    for name, prob in (("latency_prob", p.latency_prob), ("damping_prob", p.damping_prob)):
        if prob is not None and not 0 <= prob <= 1:
            raise ConfigError(f"env.task_params.events: randomize_model.{name} must be in [0, 1], got {prob}")
    for name, r in pairs.items():
        if r is not None and not (len(r) == 2 and 0 <= r[0] <= r[1] and (name != "motor_strength" or r[0] > 0)):
            raise ConfigError(f"env.task_params.events: randomize_model.{name} must be [lo, hi] with "
                              f"{'0 < lo' if name == 'motor_strength' else '0 <= lo'} <= hi, got {r}")
    if p.damping_step_limit is not None and not p.damping_step_limit > 0:
        raise ConfigError(f"env.task_params.events: randomize_model.damping_step_limit must be > 0, got "
                          f"{p.damping_step_limit}")
    t.damping_substeps = p.damping_substeps and p.damping_kd is not None   # nothing to integrate without a draw
    if t.damping_substeps and p.damping_step_limit is None:
        raise ConfigError("env.task_params.events: randomize_model.damping_substeps needs damping_step_limit "
                          "(the explicit damping step each integration step may take, e.g. 0.5)")
    fallback = t.damping_substeps and not t.physics.per_env_substeps   # this engine caps the draw instead
    t.damping_substeps = t.damping_substeps and not fallback
    t.damping_kd_max = None if p.damping_kd is None else float(p.damping_kd[1])
    if t.damping_kd_max is not None and p.damping_step_limit is not None and not t.damping_substeps:
        t.damping_kd_max = _largest_stable_damping_kd(t.robot, p.damping_kd[1], p.damping_step_limit)
    if fallback:
        log.warning("%s steps every env at the model's timestep: the added damping's draw is capped at %.2f kd "
                    "(randomize_model.damping_step_limit %g) instead of integrated in substeps; "
                    "damping_substeps=false says so and silences this", type(t.physics).__name__,
                    t.damping_kd_max, p.damping_step_limit)
    t.nominal_model = {k: t.physics.nominal(k) for k in _MODEL_FIELDS}
    t.substeps = torch.ones(t.n, dtype=torch.long, device=t.device)   # integration steps per physics step
    t.damping_model = copy.copy(t.robot.model) if t.damping_substeps else None   # scratch for damping_substeps
    m, floor = t.robot.model, t.robot.floor_geom   # contact pairs with the floor carry their own friction
    pairs = np.flatnonzero((m.pair_geom1 == floor) | (m.pair_geom2 == floor))
    t.floor_pairs = torch.as_tensor(pairs, device=t.device)
    t.mismatch_summary = torch.zeros(t.n, 3, device=t.device)
    t.mismatch_summary[:, 1] = 1.0
    t.mismatch_summary[:, 2] = float(t.p.action_latency)
    t.mismatch_factor = 1.0    # a mismatch_curriculum event ramps it
    t.randomize_factor = 1.0   # a randomize_curriculum event ramps it
    # where randomize_curriculum narrows floor_friction to: the floor contact's own
    t.nominal_floor_friction = float(m.pair_friction[pairs[0], 0] if len(pairs) else m.geom_friction[floor, 0])


def _largest_stable_damping_kd(rb, hi: float, limit: float) -> float:
    """The largest multiple ``x`` of each joint's kd in ``[0, hi]``, to 1e-3 kd, whose added damping keeps
    ``harness.damping_step`` (``h rho(M^-1 D)`` at the init keyframe) within ``limit``; 0 if even the
    model's own damping exceeds it. Bisection: the step grows with ``x``."""
    from robo_ppo.deploy_kit.harness import damping_step

    model = copy.copy(rb.model)   # MjModel's copy: its own arrays
    own = model.dof_damping[rb.dof_adr].copy()
    kd = np.asarray(rb.kd, dtype=np.float64)

    def step(x: float) -> float:
        model.dof_damping[rb.dof_adr] = own + x * kd
        return damping_step(model, rb.dof_adr, rb.init_qpos)

    if step(hi) <= limit:
        return float(hi)
    lo, up = 0.0, float(hi)
    if step(lo) > limit:
        return 0.0
    while up - lo > 1e-3:
        mid = 0.5 * (lo + up)
        lo, up = (mid, up) if step(mid) <= limit else (lo, mid)
    return lo


def _narrowed(r: list[float], f: float, center: float = 1.0) -> list[float]:
    """The range ``r`` narrowed toward ``center`` (a scale's 1) by the factor ``f``: ``c + f (r - c)``
    (``f = 1``: ``r`` itself)."""
    return r if f == 1.0 else [center + f * (x - center) for x in r]


def _randomize_model(t, state: ResetState, mask, p: ModelRandomizationParams) -> None:
    """Floor friction, joint friction loss and armature (scales), base centre of mass and payload, link
    masses (scales), kp/kd (scales) and encoder offsets; where set, passive joint damping, motor strength
    and action latency; written with ``physics.set_model``. Sets ``task.joint_offset``,
    ``task.late_action``, ``task.dr_summary`` (friction, payload, com [3], kp and kd scales) and
    ``task.mismatch_summary`` (damping in kd, motor strength, late). The model-mismatch ranges (friction
    loss, armature, damping, motor strength, latency) are narrowed by ``task.mismatch_factor`` (1 unless a
    ``mismatch_curriculum`` event ramps it): ``[lo, hi] -> 1 + f ([lo, hi] - 1)`` for scales,
    ``f [lo, hi]`` for damping, ``f p`` for the latency probability; the number of draws is the same.
    ``damping_prob`` (not ramped) keeps the added damping of a share of envs at 0. The other draws are
    narrowed the same way by ``task.randomize_factor`` (a ``randomize_curriculum`` event's; friction
    toward the floor's own, offsets toward 0)."""
    nom, rb, f, fb = t.nominal_model, t.robot, t.mismatch_factor, t.randomize_factor
    N, J, dev = t.n, rb.njoints, t.device
    rep = lambda x: x.unsqueeze(0).repeat(N, *([1] * x.dim()))  # noqa: E731
    fields = {k: rep(v) for k, v in nom.items()}
    if p.enable:
        friction = t.uniform(*_narrowed(p.floor_friction, fb, t.nominal_floor_friction))
        com = t.uniform(-p.com_offset * fb, p.com_offset * fb, 3)
        payload = t.uniform(-p.payload * fb, p.payload * fb)
        kp_s, kd_s = t.uniform(*_narrowed(p.kp_scale, fb)), t.uniform(*_narrowed(p.kd_scale, fb))
        mass_s = t.uniform(*_narrowed(p.link_mass_scale, fb), nom["body_mass"].shape[0])
        fl_s, arm_s = t.uniform(*_narrowed(p.frictionloss_scale, f), J), t.uniform(*_narrowed(p.armature_scale, f), J)
        offset = t.uniform(-p.joint_offset * fb, p.joint_offset * fb, J)
    else:
        friction = fields["geom_friction"][:, rb.floor_geom, 0].clone()
        com, payload, offset = torch.zeros(N, 3, device=dev), torch.zeros(N, device=dev), torch.zeros(N, J, device=dev)
        kp_s = kd_s = torch.ones(N, device=dev)
        mass_s, fl_s, arm_s = torch.ones_like(fields["body_mass"]), torch.ones(N, J, device=dev), torch.ones(N, J, device=dev)
    dof, act, base = t.dof_adr, t.act_ids, rb.base_body
    kd_nominal = torch.as_tensor(rb.kd, dtype=torch.float32, device=dev)
    strength = t.uniform(*_narrowed(p.motor_strength, f)) if p.enable and p.motor_strength is not None else None
    damping_kd = (t.uniform(*[min(x, t.damping_kd_max) * f for x in p.damping_kd], J)
                  if p.enable and p.damping_kd is not None else None)
    if damping_kd is not None and p.damping_prob is not None:
        damping_kd = damping_kd * (t.uniform(0.0, 1.0) < p.damping_prob)[:, None]
    late = t.uniform(0.0, 1.0) < p.latency_prob * f if p.enable and p.latency_prob is not None else None
    kp = torch.as_tensor(rb.kp, dtype=torch.float32, device=dev) * kp_s[:, None]
    kd = kd_nominal * kd_s[:, None]
    if strength is not None:
        kp, kd = kp * strength[:, None], kd * strength[:, None]
    if damping_kd is not None:
        fields["dof_damping"][:, dof] += damping_kd * kd_nominal
    fields["geom_friction"][:, rb.floor_geom, 0] = friction
    if len(t.floor_pairs):     # the scene's explicit floor contacts (both tangential directions)
        fields["pair_friction"][:, t.floor_pairs, :2] = friction[:, None, None].to(fields["pair_friction"].dtype)
    fields["dof_frictionloss"][:, dof] *= fl_s
    fields["dof_armature"][:, dof] *= arm_s
    fields["body_ipos"][:, base] += com
    fields["body_mass"] *= mass_s
    fields["body_mass"][:, base] += payload
    fields["actuator_gainprm"][:, act, 0] = kp    # the PD law's actuator (rules.pd_actuator)
    fields["actuator_biasprm"][:, act, 1] = -kp
    fields["actuator_biasprm"][:, act, 2] = -kd
    t.physics.set_model(mask, fields)
    if t.damping_substeps and damping_kd is not None:
        _set_damping_substeps(t, mask, fields, damping_kd.amax(1) > 0, p.damping_step_limit)
    m = mask[:, None]
    t.joint_offset = torch.where(m, offset, t.joint_offset)
    if late is not None:
        t.late_action = torch.where(mask, late, t.late_action)
    mismatch = torch.stack([damping_kd.mean(1) if damping_kd is not None else torch.zeros(N, device=dev),
                            strength if strength is not None else torch.ones(N, device=dev),
                            t.late_action.float()], 1)
    t.mismatch_summary = torch.where(m, mismatch, t.mismatch_summary)
    summary = torch.cat([friction[:, None], payload[:, None], com, kp_s[:, None], kd_s[:, None]], 1)
    t.dr_summary = torch.where(m, summary, t.dr_summary)


_STEP_FIELDS = ("dof_damping", "dof_armature", "body_mass", "body_ipos")
"""The randomized model fields that ``h rho(M^-1 D)`` depends on (the damping, and the inertia ``M``)."""


def _set_damping_substeps(t, mask, fields: dict[str, torch.Tensor], added, limit: float) -> None:
    """Per masked env with added damping (``added``, bool ``[N]``), the deploy loop's rule on the env's
    randomized model: ``harness.damping_substeps`` at ``limit``; 1 elsewhere. Written to ``task.substeps``
    and ``physics.set_substeps``. Draws no random numbers."""
    from robo_ppo.deploy_kit.harness import damping_substeps

    rb, model = t.robot, t.damping_model
    host = {k: fields[k].detach().cpu().double().numpy() for k in _STEP_FIELDS}
    substeps = torch.ones(t.n, dtype=torch.long)
    for i in np.flatnonzero((mask & added).cpu().numpy()):
        for k, values in host.items():
            getattr(model, k)[...] = values[i]
        substeps[i] = damping_substeps(model, rb.dof_adr, rb.init_qpos, limit)
    substeps = substeps.to(t.device)
    t.physics.set_substeps(mask, substeps)
    t.substeps = torch.where(mask, substeps, t.substeps)


def _substeps_stats(t, p: ModelRandomizationParams) -> dict[str, torch.Tensor]:
    """``physics/substeps``: the envs' mean integration steps per physics step (with ``damping_substeps``)."""
    return {"physics/substeps": t.substeps.float().mean()} if t.damping_substeps else {}


def _init_command(t, p: VelocityCommandParams) -> None:
    t.command = torch.zeros(t.n, len(COMMANDS), device=t.device)
    if _ramps(p):   # the drawn command; t.command ramps toward it
        t.command_target = torch.zeros(t.n, len(COMMANDS), device=t.device)
        t.command_rate = torch.as_tensor(p.rate_limit, dtype=torch.float32, device=t.device)
    t.steps_until_cmd = torch.zeros(t.n, dtype=torch.long, device=t.device)
    t.cmd_lo = torch.as_tensor([r[0] for r in p.ranges], dtype=torch.float32, device=t.device)
    t.cmd_hi = torch.as_tensor([r[1] for r in p.ranges], dtype=torch.float32, device=t.device)
    if p.heading_prob > 0:   # the heading each env holds (rad, world frame) and whether it holds one
        t.heading_target = torch.zeros(t.n, device=t.device)
        t.heading_hold = torch.zeros(t.n, dtype=torch.bool, device=t.device)


def _reset_command(t, state: ResetState, mask, p: VelocityCommandParams) -> None:
    """A fresh U(lo, hi) command (then ``min_speed``) and an exponential time (mean ``resample_mean_s``) to its
    resample; with ``heading_prob``, a heading to hold (its yaw-rate command from the reset state's orientation,
    which the events before this one have set). Where training ramps (``ramp_in_training``) that is the
    target, and the command starts one ramp step from 0 toward it (the controller's after its reset)."""
    key = _drawn(p)
    command = _stand_below(t.uniform(t.cmd_lo, t.cmd_hi, 3), p.min_speed)
    until = t.exp_steps(p.resample_mean_s)
    setattr(t, key, torch.where(mask[:, None], command, getattr(t, key)))
    t.steps_until_cmd = torch.where(mask, until, t.steps_until_cmd)
    if p.heading_prob > 0:
        r0 = t.robot.root_qpos
        _draw_heading(t, mask, p, rules.heading(state.qpos[:, r0 + 3:r0 + 7]))
    if _ramps(p):
        start = rules.ramp_command(torch.zeros_like(t.command), t.command_target, t.command_rate, t.dt)
        t.command = torch.where(mask[:, None], start, t.command)


def _ramps(p: VelocityCommandParams) -> bool:
    """Whether training's commands ramp (``rate_limit`` with ``ramp_in_training``)."""
    return p.rate_limit is not None and p.ramp_in_training


def _drawn(p: VelocityCommandParams) -> str:
    """The task attribute that holds the drawn command: ``command_target`` where training ramps (``command``
    then follows it), else ``command`` itself."""
    return "command_target" if _ramps(p) else "command"


def _resample_command(t, p: VelocityCommandParams) -> None:
    """Where the resample time is due, Playground's scheme: each component changes with ``change_prob``;
    a changed component is a fresh U(lo, hi) draw with ``keep_prob``, else 0; then ``min_speed``. With
    ``heading_prob``: a new heading draw where due, and every env that holds a heading gets its yaw-rate
    command for this step. Where training ramps (``ramp_in_training``) all of that is the target, and the
    command takes one ``rules.ramp_command`` step toward it."""
    key = _drawn(p)
    drawn = getattr(t, key)
    due = t.steps_until_cmd <= 0
    draw = t.uniform(t.cmd_lo, t.cmd_hi, 3)
    keep = torch.rand(t.n, 3, generator=t.gen, device=t.device) < torch.as_tensor(p.keep_prob, device=t.device)
    change = torch.rand(t.n, 3, generator=t.gen, device=t.device) < p.change_prob
    resampled = _stand_below(torch.where(change, draw * keep, drawn), p.min_speed)
    until = t.exp_steps(p.resample_mean_s)
    setattr(t, key, torch.where(due[:, None], resampled, drawn))
    t.steps_until_cmd = torch.where(due, until, t.steps_until_cmd - 1)
    if p.heading_prob > 0:
        _draw_heading(t, due, p, t.base_yaw())
    if _ramps(p):
        t.command = rules.ramp_command(t.command, t.command_target, t.command_rate, t.dt)


def _stand_below(command: torch.Tensor, min_speed: float) -> torch.Tensor:
    """``command [N, 3]`` with vx, vy set to 0 where ``|(vx, vy)| < min_speed``; as is where ``min_speed`` is 0."""
    if min_speed <= 0:
        return command
    slow = torch.linalg.vector_norm(command[:, :2], dim=1, keepdim=True) < min_speed
    return torch.cat([torch.where(slow, 0.0, command[:, :2]), command[:, 2:]], 1)


def _draw_heading(t, mask, p: VelocityCommandParams, heading_now: torch.Tensor) -> None:
    """Where ``mask``: whether the env holds a heading (probability ``heading_prob``) and which, U(-pi, pi);
    then, everywhere, the yaw-rate command of the envs that hold one (``rules.heading_command`` within the
    yaw-rate range now, the command curriculum's)."""
    target = t.uniform(-math.pi, math.pi)
    hold = torch.rand(t.n, generator=t.gen, device=t.device) < p.heading_prob
    t.heading_target = torch.where(mask, target, t.heading_target)
    t.heading_hold = torch.where(mask, hold, t.heading_hold)
    yaw_rate = rules.heading_command(heading_now, t.heading_target, p.heading_stiffness, t.cmd_lo[2], t.cmd_hi[2])
    key = _drawn(p)
    command = getattr(t, key).clone()
    command[:, 2] = torch.where(t.heading_hold, yaw_rate, command[:, 2])
    setattr(t, key, command)


def _push_steps(t, p: PushParams) -> torch.Tensor:
    lo, hi = p.interval_s
    return torch.round(t.uniform(lo, hi) / t.dt).long()


def _init_push(t, p: PushParams) -> None:
    t.steps_until_push = torch.zeros(t.n, dtype=torch.long, device=t.device)


def _reset_push(t, state: ResetState, mask, p: PushParams) -> None:
    t.steps_until_push = torch.where(mask, _push_steps(t, p), t.steps_until_push)


def _push(t, p: PushParams) -> None:
    """Where the push timer is due: a horizontal base velocity kick U(0, max_velocity) in a random
    direction, then a new timer U(interval_s)."""
    if not p.enable:
        return
    rb, ph = t.robot, t.physics
    push = t.steps_until_push <= 0
    angle = t.uniform(0.0, 2 * math.pi)
    kick = t.uniform(0.0, p.max_velocity) * push
    qvel = ph.qvel.clone()
    qvel[:, rb.root_dof] += kick * torch.cos(angle)
    qvel[:, rb.root_dof + 1] += kick * torch.sin(angle)
    ph.set_state(push, ph.qpos, qvel, t.ctrl)
    t.steps_until_push = torch.where(push, _push_steps(t, p), t.steps_until_push - 1)


@dataclass
class CurriculumParams:
    """A factor that ramps linearly from ``start`` to 1 over ``steps`` environment steps of training
    (``task.step_count x task.clock_envs``: every data-parallel rank's envs, as ``global_step``)."""

    start: float = 0.3
    """The factor at the first step (1: no curriculum)."""
    steps: int = 1_000_000
    """Environment steps the ramp takes to reach 1."""
    begin: int = 0
    """Environment steps before the ramp starts (the factor is ``start`` until then)."""


def _ramp(t, p: CurriculumParams) -> float:
    """``start + (1 - start) * clip((env_steps - begin) / steps, 0, 1)``, ``env_steps = t.step_count * t.clock_envs``."""
    return p.start + (1.0 - p.start) * min(1.0, max(0, t.step_count * t.clock_envs - p.begin) / p.steps)


def _check_curriculum(name: str, p: CurriculumParams) -> None:
    if not 0.0 <= p.start <= 1.0 or p.steps < 1 or p.begin < 0:
        raise ConfigError(f"env.task_params.events: {name} needs 0 <= start <= 1, steps >= 1 and begin >= 0, got "
                          f"start={p.start}, steps={p.steps}, begin={p.begin}")


def _init_penalty_curriculum(t, p: CurriculumParams) -> None:
    _check_curriculum("penalty_curriculum", p)
    _penalty_factor(t, p)


def _penalty_factor(t, p: CurriculumParams) -> None:
    """The cost terms' weight (every negative reward scale x ``t.penalty_factor``): the curriculum factor
    k_c of Hwangbo et al. 2019 ("Learning agile and dynamic motor skills for legged robots", Science
    Robotics, Sec. "Curriculum": the cost terms scaled by k_c, grown from 0.3 to 1 over training), here
    linear in environment steps."""
    t.penalty_factor = _ramp(t, p)


def _init_command_curriculum(t, p: CurriculumParams) -> None:
    _check_curriculum("command_curriculum", p)
    if not hasattr(t, "cmd_lo"):
        raise ConfigError("env.task_params.events: command_curriculum must come after the velocity_command "
                          "event (it scales that event's ranges)")
    t.cmd_lo_full, t.cmd_hi_full = t.cmd_lo, t.cmd_hi
    _command_ranges(t, p)


def _command_ranges(t, p: CurriculumParams) -> None:
    """The velocity command's ranges, ``[lo, hi] x factor``: small commands first, whose tracking reward
    has a usable gradient from a standing start (``exp(-e^2 / sigma)`` is flat far from the command);
    the full ranges after ``steps``. New draws use them; a command already drawn stays until its
    resample."""
    factor = _ramp(t, p)
    t.cmd_lo, t.cmd_hi = t.cmd_lo_full * factor, t.cmd_hi_full * factor


def _model_factor_curriculum(name: str, attr: str, what: str) -> EventFunction:
    """A curriculum event that ramps ``task.<attr>``, a factor ``_randomize_model`` narrows some of its
    ranges by (the nominal model at 0): the nominal model first, while the gait is learned, then the full
    ranges (as ``penalty_curriculum``, Hwangbo et al. 2019, for the costs). Draws at a reset use the
    factor of that moment; an episode keeps its model until its next reset."""
    def factor(t, p: CurriculumParams) -> None:
        setattr(t, attr, _ramp(t, p))

    def init(t, p: CurriculumParams) -> None:
        _check_curriculum(name, p)
        if not hasattr(t, attr):
            raise ConfigError(f"env.task_params.events: {name} must come after the randomize_model event (it "
                              f"narrows that event's {what})")
        factor(t, p)

    return EventFunction(CurriculumParams, init=init, pre_step=factor, clock=factor)


def _init_swing_height_curriculum(t, p: CurriculumParams) -> None:
    _check_curriculum("swing_height_curriculum", p)
    _swing_target(t, p)


def _swing_target(t, p: CurriculumParams) -> None:
    """The feet terms' target swing height, ``task_params.max_foot_height x factor`` (m): the gait is
    learned at the lower swing, then the target rises. A high target from the first step costs more than
    a clumsy walk earns and the robot learns to stand (docs/terrain.md, "Fifth run"); the ramp follows
    ``penalty_curriculum``'s (Hwangbo et al. 2019): what is hard is asked for once the basics hold."""
    t.swing_target = t.p.max_foot_height * _ramp(t, p)


@dataclass
class TerrainCurriculumParams:
    """Levels of a terrain grid (``env.terrain``, ``layout: grid``) that follow each env's progress: the
    game-inspired curriculum of Rudin et al. 2022 ("Learning to walk in minutes using massively parallel deep
    reinforcement learning", CoRL, Sec. 3.2), with the commanded distance integrated over the episode."""

    max_init_level: int = 0
    """Initial rows U{0 .. max_init_level} (clipped to the grid); columns U{0 .. num_cols - 1}."""
    move_up: float = 0.5
    """At a reset: one row up where the base ended farther than ``move_up x size`` (the patch side) from where
    the episode started (``task.terrain_start``)."""
    move_down: float = 0.5
    """... one row down (where not up) where it fell (a termination) or ended nearer than ``move_down x`` the
    displacement its commands asked for during the episode: ``|integral of R(yaw) (vx, vy) dt|``, the planar
    command turned into the world frame by the base's heading, so a robot that tracks every command ends
    at it (a path length, ``integral of |(vx, vy)| dt``, would send a perfect tracker down whenever its
    commands changed direction: 4 segments of random heading ask for a path about twice the displacement)."""
    curriculum: bool = True
    """False: no curriculum, every episode on a row drawn U{0 .. max_init_level}."""
    random_column: bool = True
    """True: every reset draws a new column (terrain type), so an env's level follows its progress over all
    types. False: an env keeps the column it started on (legged_gym's assignment: one type per env), so its
    level follows its progress on that type and ``terrain/level/<type>`` is the level reached on it."""


def _init_terrain_curriculum(t, p: TerrainCurriculumParams) -> None:
    terrain = getattr(t, "terrain", None)
    if terrain is None or terrain.config.layout != "grid":
        raise ConfigError("env.task_params.events: terrain_curriculum needs a terrain grid (env.terrain with layout: "
                          "grid, e.g. terrain=rough)")
    if p.max_init_level < 0 or not p.move_up > 0 or not p.move_down >= 0:
        raise ConfigError(f"env.task_params.events: terrain_curriculum needs max_init_level >= 0, move_up > 0 and "
                          f"move_down >= 0, got {p.max_init_level}, {p.move_up}, {p.move_down}")
    rows, cols = t.terrain_spawn.shape[:2]
    t.terrain_row = _draw_index(t.uniform(0.0, 1.0), min(p.max_init_level + 1, rows))
    t.terrain_col = _draw_index(t.uniform(0.0, 1.0), cols)
    t.cmd_displacement = torch.zeros(t.n, 2, device=t.device)
    """float32 ``[N, 2]``: the world-frame displacement (m) the velocity commands asked for since the episode
    began."""
    t.terrain_level_of_row = torch.as_tensor(terrain.rows, dtype=torch.float32, device=t.device)
    t.terrain_type_of_col = torch.as_tensor(terrain.type_ids[0], dtype=torch.long, device=t.device)
    t.terrain_type_names = {int(k): terrain.type_names[k] for k in np.unique(terrain.type_ids[0])}
    """The grid's types by id (those its columns hold), for ``terrain/level/<type>``."""


def _draw_index(u: torch.Tensor, n: int) -> torch.Tensor:
    """long: ``u`` (U(0, 1)) as a uniform index in 0 .. n - 1."""
    return (u * n).long().clamp(0, n - 1)


def _terrain_levels(t, state: ResetState, mask, p: TerrainCurriculumParams) -> None:
    """Where ``mask`` ends an episode: the row moves up where the env walked far from its start, down where
    it fell or walked less than ``move_down`` of its commanded distance, a row past the top becomes a random row
    (Rudin et al.: the envs that master the hardest level spread over all levels), the bottom row stays; then a
    new random column (``random_column``; else the env's own). Rows that start their first episode
    (``task.steps`` 0) keep their initial row. Draws two numbers for every env (the random stream does not
    depend on which envs reset)."""
    rows, cols = t.terrain_spawn.shape[:2]
    u_row, u_col = t.uniform(0.0, 1.0), t.uniform(0.0, 1.0)
    if p.curriculum:
        r0 = t.robot.root_qpos
        walked = (t.qpos[:, r0:r0 + 2] - t.terrain_start).norm(dim=1)
        up = walked > p.move_up * t.terrain.config.size
        down = ~up & (t.last_terminated | (walked < p.move_down * t.cmd_displacement.norm(dim=1)))
        row = t.terrain_row + up.long() - down.long()
        row = torch.where(row >= rows, _draw_index(u_row, rows), row.clamp(min=0))
        t.terrain_row = torch.where(mask & (t.steps > 0), row, t.terrain_row)
    else:
        t.terrain_row = torch.where(mask, _draw_index(u_row, min(p.max_init_level + 1, rows)), t.terrain_row)
    if p.random_column:
        t.terrain_col = torch.where(mask, _draw_index(u_col, cols), t.terrain_col)
    t.cmd_displacement = torch.where(mask[:, None], 0.0, t.cmd_displacement)


def _commanded_displacement(t, p: TerrainCurriculumParams) -> None:
    """Before each physics step: add the planar command over the step in the world frame, ``R(yaw) (vx, vy) dt``
    (``yaw``: the base's heading; the command is in the base's yaw frame)."""
    yaw, v = t.base_yaw(), t.command[:, :2]
    c, s = torch.cos(yaw), torch.sin(yaw)
    world = torch.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], 1)
    t.cmd_displacement = t.cmd_displacement + world * t.dt


def _terrain_stats(t, p: TerrainCurriculumParams) -> dict[str, torch.Tensor]:
    """``terrain/level``: the envs' mean level (their rows' levels in the full grid); ``terrain/level/<type>``:
    the mean level of the envs on that type's columns (0 while no env is on one; with ``random_column``
    the column is redrawn at every reset, so these follow the overall level, not progress on the type)."""
    level = t.terrain_level_of_row[t.terrain_row]
    out = {"terrain/level": level.mean()}
    kind = t.terrain_type_of_col[t.terrain_col]
    for k, name in t.terrain_type_names.items():
        on = kind == k
        out[f"terrain/level/{name}"] = (level * on).sum() / on.sum().clamp(min=1)
    return out


@dataclass(frozen=True)
class EventFunction:
    params: type
    """Dataclass schema of the event's ``params``."""
    init: Optional[Callable[[Any, Any], None]] = None
    reset: Optional[Callable[[Any, ResetState, torch.Tensor, Any], None]] = None
    pre_step: Optional[Callable[[Any, Any], None]] = None
    post_step: Optional[Callable[[Any, Any], None]] = None
    clock: Optional[Callable[[Any, Any], None]] = None
    stats: Optional[Callable[[Any, Any], dict[str, torch.Tensor]]] = None


EVENT_FUNCTIONS: dict[str, EventFunction] = {
    "reset_root_state": EventFunction(RootStateParams, reset=_reset_root_state),
    "randomize_model": EventFunction(ModelRandomizationParams, init=_init_model, reset=_randomize_model,
                                     stats=_substeps_stats),
    "velocity_command": EventFunction(VelocityCommandParams, init=_init_command, reset=_reset_command,
                                      post_step=_resample_command),
    "push_base": EventFunction(PushParams, init=_init_push, reset=_reset_push, pre_step=_push),
    "penalty_curriculum": EventFunction(CurriculumParams, init=_init_penalty_curriculum, pre_step=_penalty_factor,
                                        clock=_penalty_factor),
    "command_curriculum": EventFunction(CurriculumParams, init=_init_command_curriculum, pre_step=_command_ranges,
                                        clock=_command_ranges),
    # the model-mismatch draws (friction loss, armature, damping, motor strength, latency)
    "mismatch_curriculum": _model_factor_curriculum("mismatch_curriculum", "mismatch_factor",
                                                    "model-mismatch ranges"),
    # the other draws (floor friction, masses, payload, centre of mass, kp/kd, encoder offsets)
    "randomize_curriculum": _model_factor_curriculum("randomize_curriculum", "randomize_factor", "ranges"),
    "swing_height_curriculum": EventFunction(CurriculumParams, init=_init_swing_height_curriculum,
                                             pre_step=_swing_target, clock=_swing_target),
    "terrain_curriculum": EventFunction(TerrainCurriculumParams, init=_init_terrain_curriculum,
                                        reset=_terrain_levels, pre_step=_commanded_displacement, stats=_terrain_stats),
}
"""Event ``fn`` -> its hooks and parameter schema (see the module docstring)."""


__all__ = ["EVENT_FUNCTIONS", "EventFunction", "ResetState", "COMMANDS", "RootStateParams",
           "ModelRandomizationParams", "VelocityCommandParams", "PushParams", "CurriculumParams",
           "TerrainCurriculumParams"]
