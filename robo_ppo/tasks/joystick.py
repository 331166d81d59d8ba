"""Velocity-command ("joystick") locomotion for any legged robot, batched in torch.

The robot tracks a command ``(vx, vy, yaw_rate)`` (m/s, m/s, rad/s, base
frame). Written once for every robot: it reads the robot through its
description (``robo_ppo.robots``), its joint state and its named sensors, and
drives the physics through the ``Physics`` seam, so it runs unchanged on
native MuJoCo (CPU threads) and MuJoCo Warp (GPU). The definitions follow
MuJoCo Playground's Go1 joystick (Zakka et al. 2025), written anew:

* Action ``a`` in [-1, 1]^J (clipped): joint targets ``q* = q0 + action_scale a``
  for position actuators (kp) with joint damping (kd): a PD loop at the physics rate.
  ``action_latency: 1`` applies the previous step's action.
* Observation: the terms listed in ``obs`` (``tasks/terms.py``), each
  ``scale * (value + U(-noise, noise) * noise_level)``; the asymmetric critic
  sees the same terms without noise, then ``privileged_obs``.
* Reward: ``max(0, dt * sum_k scale_k term_k)`` over ``reward_scales``
  (Playground's convention); each scaled term is reported (``reward/<term>``).
* Episodes end when the robot falls (``robot.fall``); the time limit is the engine's.
* Optional gait clock (``gait``, for robots that need a stepping rhythm, e.g. bipeds, after
  Playground's Berkeley Humanoid): each foot's phase ``2 pi (start + offset_f + f t)``, ``t`` the
  time since reset, ``f`` drawn per episode; the ``gait_phase`` observation and the ``feet_phase``
  reward read it. The deploy loop runs the same clock at the middle of the frequency range.
* Domain randomization at every reset (floor friction, joint friction loss and
  armature, base centre of mass and payload, link masses, kp/kd, encoder
  offsets), command resampling, optional velocity pushes.

Every number is in the env config (``env.task_params``, schema
``JoystickParams``) or the robot description; the deploy loop
(``export/deploy.py``) reads the same declarations from the ONNX metadata.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import MISSING, OmegaConf

from robo_ppo.deploy_kit import rules
from robo_ppo.deploy_kit.robot_metadata import Fall, Gait, ModelSource, RobotMetadata
from robo_ppo.errors import ConfigError
from robo_ppo.robots.model import RobotModel
from robo_ppo.robots.physics import Physics
from robo_ppo.tasks.terms import OBS_FUNCTIONS, REWARD_FUNCTIONS, TERMINATION_FUNCTIONS, StepState

COMMANDS = ("vx", "vy", "yaw_rate")
"""Command components, in observation order (m/s, m/s, rad/s)."""


# ------------------------------------------------------------------ params
@dataclass
class ObsTerm:
    """One block of an observation."""

    name: str = MISSING
    """Unique name in the layout (metadata, logs)."""
    fn: Optional[str] = None
    """Function in ``tasks/terms.py: OBS_FUNCTIONS``; null: same as ``name``."""
    sensor: Optional[str] = None
    """Sensor role (``robot.sensors``) for ``fn: sensor``."""
    noise: Any = 0.0
    """Uniform noise half-width, in the term's units (actor only): one number, or one per element of
    the term (e.g. per joint)."""
    scale: float = 1.0
    """Multiplier applied after the noise."""


@dataclass
class CommandParams:
    ranges: list[list[float]] = field(default_factory=lambda: [[-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]])
    """``[lo, hi]`` of vx, vy (m/s) and yaw rate (rad/s)."""
    keep_prob: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    """At a resample, a component that changes is a new draw with this probability, else 0."""
    change_prob: float = 0.5
    """At a resample, the probability that each component changes."""
    resample_mean_s: float = 5.0
    """Mean of the exponential time between resamples (s)."""


@dataclass
class RandomizationParams:
    """Per environment, drawn at every reset."""

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


@dataclass
class PushParams:
    enable: bool = False
    max_velocity: float = 1.0
    """Horizontal base velocity kick U(0, x) (m/s) in a random direction."""
    interval_s: list[float] = field(default_factory=lambda: [5.0, 10.0])


@dataclass
class GaitParams:
    """A per-environment gait clock (off unless ``enable``); see the module docstring."""

    enable: bool = False
    frequency: list[float] = field(default_factory=lambda: [1.25, 1.5])
    """``[lo, hi]`` gait frequency (Hz, steps of one foot per second), drawn per env at every reset; the
    deploy loop (and the metadata) uses the middle of the range."""
    phase_offsets: list[float] = field(default_factory=list)
    """Each foot's phase offset in cycles, ``robot.feet`` order (a biped walking: ``[0.0, 0.5]``)."""
    random_start: bool = True
    """Start every episode at a random point of the cycle, U(0, 1) cycles (false: at 0, as the deploy
    loop does)."""


@dataclass
class JoystickParams:
    """Every number of the task (``env.task_params``)."""

    control_dt: float = 0.02
    """Policy period (s)."""
    sim_dt: float = 0.004
    solver_iterations: Optional[int] = None
    """Constraint solver iterations (``MjOption.iterations``); null: the model file's."""
    solver_ls_iterations: Optional[int] = None
    """Line-search iterations of the solver (``MjOption.ls_iterations``); null: the model file's."""
    action_scale: float = 0.5
    action_latency: int = 0
    soft_joint_limit_factor: float = 0.95
    tracking_sigma: float = 0.25
    max_foot_height: float = 0.1
    """Target swing height (m) of the feet terms (``feet_phase``: the height at mid-swing)."""
    feet_air_time_min: float = 0.1
    """``feet_air_time`` rewards each swing's air time above this (s)."""
    feet_air_time_max: Optional[float] = None
    """... counted up to this (s); null: no cap."""
    feet_phase_sigma: float = 0.01
    """``feet_phase``: ``exp(-sum_f (z_f - z*_f)^2 / sigma)`` (m^2)."""
    posture_sharpness: float = 10.0
    """``posture``: ``exp(-sharpness * sum_j w_j (q_j - q0_j)^2)`` at a zero command (1/rad^2)."""
    pose_weights: Optional[list[float]] = None
    """Per-joint weights of the ``pose`` reward (null: 1)."""
    reset_xy: float = 0.5
    reset_base_velocity: float = 0.5
    noise_level: float = 1.0
    """Multiplies every obs term's noise (0: none)."""
    obs: list[ObsTerm] = field(default_factory=list)
    privileged_obs: list[ObsTerm] = field(default_factory=list)
    """Critic-only terms, after the actor's terms (noise-free)."""
    reward_scales: dict[str, float] = field(default_factory=dict)
    terminations: list[str] = field(default_factory=lambda: ["fallen"])
    """Termination terms (``tasks/terms.py: TERMINATION_FUNCTIONS``); the time limit is the engine's."""
    commands: CommandParams = field(default_factory=CommandParams)
    randomization: RandomizationParams = field(default_factory=RandomizationParams)
    push: PushParams = field(default_factory=PushParams)
    gait: GaitParams = field(default_factory=GaitParams)


GAIT_TERMS = ("gait_phase", "feet_phase")
"""Terms that read the gait clock (they need ``gait.enable``)."""


def parse_params(params: Any) -> JoystickParams:
    """Validate ``env.task_params``.

    Raises:
        ConfigError: unknown key, wrong type, unknown term, bad timing (one line).
    """
    if isinstance(params, JoystickParams):
        return params
    try:
        p = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(JoystickParams), params or {}))
    except Exception as e:  # omegaconf's errors name the key
        raise ConfigError(f"env.task_params: {e}".splitlines()[0]) from None
    if p.action_latency not in (0, 1):
        raise ConfigError(f"env.task_params.action_latency must be 0 or 1, got {p.action_latency}")
    ratio = p.control_dt / p.sim_dt if p.sim_dt > 0 else 0
    if p.sim_dt <= 0 or ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
        raise ConfigError("env.task_params.control_dt must be a positive multiple of sim_dt")
    unknown = sorted(set(p.terminations) - set(TERMINATION_FUNCTIONS))
    if unknown:
        raise ConfigError(f"env.task_params.terminations: unknown term(s) {unknown}; known: "
                          f"{sorted(TERMINATION_FUNCTIONS)}")
    if len(p.commands.ranges) != 3 or any(len(r) != 2 for r in p.commands.ranges):
        raise ConfigError("env.task_params.commands.ranges must be three [lo, hi] pairs (vx, vy, yaw_rate)")
    for group in ("obs", "privileged_obs"):
        names = [t.name for t in getattr(p, group)]
        for t in getattr(p, group):
            fn = t.fn or t.name
            if fn not in OBS_FUNCTIONS:
                raise ConfigError(f"env.task_params.{group}: term {t.name!r} uses unknown function {fn!r}; "
                                  f"known: {sorted(OBS_FUNCTIONS)}")
            if group == "obs" and not OBS_FUNCTIONS[fn].deploy:
                raise ConfigError(f"env.task_params.obs: {t.name!r} ({fn}) is privileged (a robot cannot "
                                  "measure it); move it to privileged_obs")
        if len(set(names)) != len(names):
            raise ConfigError(f"env.task_params.{group} names a term twice: {names}")
    unknown = sorted(set(p.reward_scales) - set(REWARD_FUNCTIONS))
    if unknown:
        raise ConfigError(f"env.task_params.reward_scales: unknown term(s) {unknown}; known: {sorted(REWARD_FUNCTIONS)}")
    if not p.obs:
        raise ConfigError("env.task_params.obs is empty: list the actor's observation terms")
    used = {t.fn or t.name for t in p.obs + p.privileged_obs} | {k for k, v in p.reward_scales.items() if v}
    if not p.gait.enable and used & set(GAIT_TERMS):
        raise ConfigError(f"env.task_params: {sorted(used & set(GAIT_TERMS))} read the gait clock: set "
                          "env.task_params.gait.enable=true (and gait.phase_offsets, one per foot)")
    lo, hi = p.gait.frequency if len(p.gait.frequency) == 2 else (0, -1)
    if p.gait.enable and not 0 < lo <= hi:
        raise ConfigError(f"env.task_params.gait.frequency must be [lo, hi] Hz with 0 < lo <= hi, got "
                          f"{p.gait.frequency}")
    return p


# -------------------------------------------------------------------- task
class Joystick:
    """The joystick task over ``physics.num_envs`` environments.

    Args:
        robot: the robot bound to its model (``RobotModel``; ``physics`` steps ``robot.model``).
        physics: the engine (``robo_ppo.robots.physics.Physics``).
        params: ``JoystickParams`` or a mapping of its fields.
        seed: seeds the task's torch generator (resets, commands, noise, randomization).

    Attributes: ``obs_size``, ``critic_obs_size``, ``action_size`` (= joints), ``dt`` (s),
    ``reward_terms`` (names, in ``step``'s ``terms`` order), ``obs_layout`` /
    ``critic_obs_layout`` (``[(name, size)]``).

    Raises:
        ConfigError: parameters or terms the robot cannot provide (one line).
    """

    name = "joystick"

    def __init__(self, robot: RobotModel, physics: Physics, params: Any = None, seed: int = 0):
        self.p = p = parse_params(params)
        self.robot, self.physics = robot, physics
        self.n, self.device = physics.num_envs, physics.device
        dev, f32 = self.device, torch.float32
        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(int(seed))
        self.n_substeps = int(round(p.control_dt / p.sim_dt))
        self.dt = p.control_dt
        J, F = robot.njoints, len(robot.feet_sites)
        self.action_size = J
        tensor = lambda x, dtype=f32: torch.as_tensor(x, dtype=dtype, device=dev)  # noqa: E731
        self.q0 = tensor(robot.default_pose)
        self.pose_weights = tensor(p.pose_weights if p.pose_weights is not None else [1.0] * J)
        if len(self.pose_weights) != J:
            raise ConfigError(f"env.task_params.pose_weights has {len(self.pose_weights)} entries; {J} joints")
        lo, hi = robot.joint_range.T
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * p.soft_joint_limit_factor
        self.soft_lower, self.soft_upper = tensor(mid - half), tensor(mid + half)
        self.init_qpos = tensor(robot.init_qpos)
        self.qpos_adr, self.dof_adr = tensor(robot.qpos_adr, torch.long), tensor(robot.dof_adr, torch.long)
        self.act_ids = tensor(robot.act_ids, torch.long)
        self.cmd_lo, self.cmd_hi = tensor([r[0] for r in p.commands.ranges]), tensor([r[1] for r in p.commands.ranges])
        self.reward_terms = tuple(k for k, v in p.reward_scales.items() if v != 0.0)
        self._scales = tensor([p.reward_scales[k] for k in self.reward_terms])
        # declarations -> layouts (sizes ask the robot, so a missing sensor fails here)
        self._obs = [(t, OBS_FUNCTIONS[t.fn or t.name]) for t in p.obs]
        self._priv = [(t, OBS_FUNCTIONS[t.fn or t.name]) for t in p.privileged_obs]
        self.obs_layout = [(t.name, f.size(robot, t)) for t, f in self._obs]
        self.critic_obs_layout = self.obs_layout + [(t.name, f.size(robot, t)) for t, f in self._priv]
        self.obs_size = sum(s for _, s in self.obs_layout)
        self.critic_obs_size = sum(s for _, s in self.critic_obs_layout) if self._priv else 0
        self._noise = [self._term_noise(t, size) for (t, _), (_, size) in zip(self._obs, self.obs_layout, strict=True)]
        # layouts as the deploy kit reads them: entries {name, fn, start, size, scale[, sensor]}
        entries, start = [], 0
        for t, (_, size) in zip(p.obs + p.privileged_obs, self.critic_obs_layout, strict=True):
            fn = t.fn or t.name
            entry = {"name": t.name, "fn": fn, "start": start, "size": size, "scale": t.scale}
            if fn in ("sensor", "projected_gravity"):
                entry["sensor"] = t.sensor or "orientation"
            entries.append(entry)
            start += size
        self.layout = entries[:len(p.obs)]
        """The actor's observation layout (``rules.OBSERVATIONS`` terms; the metadata's ``obs_layout``)."""
        self._priv_entries = entries[len(p.obs):]
        # without a gait the clock still runs (phase 0 per foot), so every term is defined on every robot
        self.gait_offsets = tensor(p.gait.phase_offsets if p.gait.enable else [0.0] * F, torch.float64)
        if p.gait.enable and len(p.gait.phase_offsets) != F:
            raise ConfigError(f"env.task_params.gait.phase_offsets has {len(p.gait.phase_offsets)} entries; "
                              f"{robot.desc.name} has {F} feet (robot.feet)")
        # nominal model fields for randomization
        self._nominal = {k: physics.nominal(k) for k in ("geom_friction", "body_mass", "body_ipos",
                                                         "dof_frictionloss", "dof_armature",
                                                         "actuator_gainprm", "actuator_biasprm")}
        # per-env state
        N = self.n
        zeros = lambda *shape, dtype=f32: torch.zeros(N, *shape, dtype=dtype, device=dev)  # noqa: E731
        self.command, self.last_act = zeros(3), zeros(J)
        self.air_time, self.swing_peak, self.last_contact = zeros(F), zeros(F), zeros(F, dtype=torch.bool)
        self.steps_until_cmd, self.steps_until_push = zeros(dtype=torch.long), zeros(dtype=torch.long)
        self.joint_offset, self.dr_summary = zeros(J), zeros(7)
        self.ctrl = zeros(physics.model.nu)
        self.steps = zeros(dtype=torch.long)   # control steps since reset: the gait clock's time
        self.gait_freq = torch.full((N,), sum(p.gait.frequency) / 2, dtype=torch.float64, device=dev)   # Hz
        self.gait_start = zeros(dtype=torch.float64)   # cycles
        self._refresh()
        self._check_terms()

    def _check_terms(self) -> None:
        """Evaluate every observation, reward and termination term once, so a sensor role or per-foot
        sensor the robot lacks fails at start-up with the description key to set (the sensors a
        robot needs follow from the terms its task uses)."""
        self.observe(noise=False)
        s = StepState(self, self.last_act)
        for k in self.reward_terms:
            REWARD_FUNCTIONS[k](self, s)
        self.terminations(s)

    def _term_noise(self, term: ObsTerm, size: int):
        """An obs term's noise half-width: a float, or float32 ``[size]`` for a per-element list."""
        noise = term.noise
        if isinstance(noise, list | tuple) or OmegaConf.is_list(noise):
            if len(noise) != size:
                raise ConfigError(f"env.task_params.obs: {term.name!r} has {len(noise)} noise entries for "
                                  f"{size} elements")
            return torch.as_tensor([float(x) for x in noise], dtype=torch.float32, device=self.device)
        return float(noise)

    # ---------------------------------------------------------------- helpers
    def gait_phase(self) -> torch.Tensor:
        """Each foot's gait phase (rad, in [-pi, pi)) float32 ``[N, F]``: ``2 pi (start + offset_f +
        f t)``, ``t`` the time since reset (s). 0: mid-swing; -pi (= pi): touch-down."""
        t = self.steps.double() * self.dt
        return rules.gait_phase(t[:, None], self.gait_freq[:, None], self.gait_offsets[None, :],
                                self.gait_start[:, None]).float()

    def _uniform(self, lo, hi, *shape) -> torch.Tensor:
        u = torch.rand(self.n, *shape, generator=self.gen, device=self.device)
        return lo + (hi - lo) * u

    def _exp_steps(self, mean_s: float) -> torch.Tensor:
        u = torch.rand(self.n, generator=self.gen, device=self.device).clamp_min(1e-12)
        return torch.round(-torch.log(u) * mean_s / self.dt).long()

    def _push_steps(self) -> torch.Tensor:
        lo, hi = self.p.push.interval_s
        return torch.round(self._uniform(lo, hi) / self.dt).long()

    def _refresh(self) -> None:
        """Read the physics state the observation terms use."""
        ph = self.physics
        self.sd, self.qpos, self.qvel = ph.sensordata, ph.qpos, ph.qvel
        self.joint_pos, self.joint_vel = self.qpos[:, self.qpos_adr], self.qvel[:, self.dof_adr]

    def _set_ctrl(self, applied: torch.Tensor) -> torch.Tensor:
        # the robot believes it is at q + offset, so its PD holds q at q* - offset
        target = rules.joint_targets(applied, self.q0, self.p.action_scale) - self.joint_offset
        return self.ctrl.index_copy(1, self.act_ids, target)

    def _resample(self, command: torch.Tensor) -> torch.Tensor:
        """Playground's scheme: each component changes with ``change_prob``; a changed component is a
        fresh U(lo, hi) draw with ``keep_prob``, else 0."""
        c = self.p.commands
        draw = self._uniform(self.cmd_lo, self.cmd_hi, 3)
        keep = torch.rand(self.n, 3, generator=self.gen, device=self.device) < torch.as_tensor(
            c.keep_prob, device=self.device)
        change = torch.rand(self.n, 3, generator=self.gen, device=self.device) < c.change_prob
        return torch.where(change, draw * keep, command)

    def _randomize(self, mask: torch.Tensor) -> None:
        r, nom, rb = self.p.randomization, self._nominal, self.robot
        N, J, dev = self.n, rb.njoints, self.device
        rep = lambda x: x.unsqueeze(0).repeat(N, *([1] * x.dim()))  # noqa: E731
        fields = {k: rep(v) for k, v in nom.items()}
        if r.enable:
            friction = self._uniform(*r.floor_friction)
            com = self._uniform(-r.com_offset, r.com_offset, 3)
            payload = self._uniform(-r.payload, r.payload)
            kp_s, kd_s = self._uniform(*r.kp_scale), self._uniform(*r.kd_scale)
            mass_s = self._uniform(*r.link_mass_scale, nom["body_mass"].shape[0])
            fl_s, arm_s = self._uniform(*r.frictionloss_scale, J), self._uniform(*r.armature_scale, J)
            offset = self._uniform(-r.joint_offset, r.joint_offset, J)
        else:
            friction = fields["geom_friction"][:, rb.floor_geom, 0].clone()
            com, payload, offset = torch.zeros(N, 3, device=dev), torch.zeros(N, device=dev), torch.zeros(N, J, device=dev)
            kp_s = kd_s = torch.ones(N, device=dev)
            mass_s, fl_s, arm_s = torch.ones_like(fields["body_mass"]), torch.ones(N, J, device=dev), torch.ones(N, J, device=dev)
        dof, act, base = self.dof_adr, self.act_ids, rb.base_body
        kp = torch.as_tensor(rb.kp, dtype=torch.float32, device=dev) * kp_s[:, None]
        kd = torch.as_tensor(rb.kd, dtype=torch.float32, device=dev) * kd_s[:, None]
        fields["geom_friction"][:, rb.floor_geom, 0] = friction
        fields["dof_frictionloss"][:, dof] *= fl_s
        fields["dof_armature"][:, dof] *= arm_s
        fields["body_ipos"][:, base] += com
        fields["body_mass"] *= mass_s
        fields["body_mass"][:, base] += payload
        fields["actuator_gainprm"][:, act, 0] = kp
        fields["actuator_biasprm"][:, act, 1] = -kp
        fields["actuator_biasprm"][:, act, 2] = -kd
        self.physics.set_model(mask, fields)
        m = mask[:, None]
        self.joint_offset = torch.where(m, offset, self.joint_offset)
        summary = torch.cat([friction[:, None], payload[:, None], com, kp_s[:, None], kd_s[:, None]], 1)
        self.dr_summary = torch.where(m, summary, self.dr_summary)

    # ------------------------------------------------------------------- api
    def reset(self, mask: torch.Tensor) -> None:
        """Start new episodes where ``mask`` (bool ``[N]``): the init keyframe shifted by
        U(-reset_xy, reset_xy) m in x/y with yaw U(-pi, pi), base velocity U(-v, v) per component,
        fresh randomization and command. Draws for every row (the random stream does not depend
        on which rows reset)."""
        p, rb = self.p, self.robot
        N, dev = self.n, self.device
        r0, d0 = rb.root_qpos, rb.root_dof
        qpos = self.init_qpos.repeat(N, 1)
        qpos[:, r0:r0 + 2] += self._uniform(-p.reset_xy, p.reset_xy, 2)
        yaw = self._uniform(-math.pi, math.pi)
        qpos[:, r0 + 3:r0 + 7] = torch.stack([torch.cos(yaw / 2), torch.zeros_like(yaw), torch.zeros_like(yaw),
                                              torch.sin(yaw / 2)], 1)
        qvel = torch.zeros(N, self.physics.model.nv, device=dev)
        v = p.reset_base_velocity
        qvel[:, d0:d0 + 6] = self._uniform(-v, v, 6)
        self._randomize(mask)
        command = self._uniform(self.cmd_lo, self.cmd_hi, 3)
        until_cmd, until_push = self._exp_steps(p.commands.resample_mean_s), self._push_steps()
        m = mask[:, None]
        self.command = torch.where(m, command, self.command)
        self.steps_until_cmd = torch.where(mask, until_cmd, self.steps_until_cmd)
        self.steps_until_push = torch.where(mask, until_push, self.steps_until_push)
        self.last_act = torch.where(m, 0.0, self.last_act)
        self.air_time = torch.where(m, 0.0, self.air_time)
        self.swing_peak = torch.where(m, 0.0, self.swing_peak)
        self.last_contact = torch.where(m, False, self.last_contact)
        self.ctrl = torch.where(m, self._set_ctrl(torch.zeros_like(self.last_act)), self.ctrl)
        self.steps = torch.where(mask, 0, self.steps)
        g = p.gait
        if g.enable:   # drawn only for a gait, so other robots' random streams do not change
            u = torch.rand(N, 2, generator=self.gen, device=dev, dtype=torch.float64)
            lo, hi = g.frequency
            self.gait_freq = torch.where(mask, lo + (hi - lo) * u[:, 0], self.gait_freq)
            self.gait_start = torch.where(mask, u[:, 1] if g.random_start else 0.0, self.gait_start)
        self.physics.set_state(mask, qpos, qvel, self.ctrl)
        self._refresh()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One control step with ``actions`` float32 ``[N, J]``.

        Returns ``(reward [N], terminated [N] bool, terms [N, K])``: ``terms`` are the scaled
        reward terms (``reward_terms`` order) before the clip at 0.
        """
        p, rb, ph = self.p, self.robot, self.physics
        actions = rules.clip_action(actions, -1.0, 1.0)
        applied = self.last_act if p.action_latency else actions
        self.ctrl = self._set_ctrl(applied)
        if p.push.enable:
            push = self.steps_until_push <= 0
            angle = self._uniform(0.0, 2 * math.pi)
            kick = self._uniform(0.0, p.push.max_velocity) * push
            qvel = ph.qvel.clone()
            qvel[:, rb.root_dof] += kick * torch.cos(angle)
            qvel[:, rb.root_dof + 1] += kick * torch.sin(angle)
            ph.set_state(push, ph.qpos, qvel, self.ctrl)
            self.steps_until_push = torch.where(push, self._push_steps(), self.steps_until_push - 1)
        ph.step(self.ctrl, self.n_substeps)
        self._refresh()
        self.steps = self.steps + 1
        s = StepState(self, actions)
        raw = torch.stack([REWARD_FUNCTIONS[k](self, s) for k in self.reward_terms], 1)
        terms = raw * self._scales * self.dt
        reward = terms.sum(1).clamp_min(0.0)
        air_time, contact, swing_peak, terminated = s.air_time, s.contact, s.swing_peak, s.terminated
        self.last_act = actions
        self.air_time = air_time * ~contact
        self.swing_peak = swing_peak * ~contact
        self.last_contact = contact
        due = self.steps_until_cmd <= 0
        resampled, until = self._resample(self.command), self._exp_steps(p.commands.resample_mean_s)
        self.command = torch.where(due[:, None], resampled, self.command)
        self.steps_until_cmd = torch.where(due, until, self.steps_until_cmd - 1)
        return reward, terminated, terms

    def terminations(self, s: StepState) -> torch.Tensor:
        """bool ``[N]``: any of the configured termination terms."""
        out = torch.zeros(self.n, dtype=torch.bool, device=self.device)
        for name in self.p.terminations:
            out = out | TERMINATION_FUNCTIONS[name](self, s)
        return out

    def inputs(self) -> dict[str, torch.Tensor]:
        """What a robot measures and keeps, named as the deploy kit's rules read it (``rules.OBSERVATIONS``):
        every sensor role, ``joint_pos`` (encoders: the joint angle plus the calibration error),
        ``joint_vel``, ``last_action``, ``command``, ``gait_phase`` and ``default_pose``; computed on use."""
        return _Inputs(self)

    def observe(self, noise: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(obs [N, obs_size], critic_obs [N, critic_obs_size] or None)`` of the current state;
        the actor's terms get U(-noise, noise) * noise_level unless ``noise=False``."""
        level = self.p.noise_level if noise else 0.0
        actor, clean = [], []
        inputs = self.inputs()
        values = rules.observation_values(inputs, self.layout)
        for (t, f), noise, value in zip(self._obs, self._noise, values, strict=True):
            clean.append(t.scale * value)
            if level and (not isinstance(noise, float) or noise):
                value = value + (2 * torch.rand(value.shape, generator=self.gen, device=self.device) - 1) * (
                    noise * level)
            actor.append(t.scale * value)
        obs = torch.cat(actor, 1)
        if not self._priv:
            return obs, None
        priv = [t.scale * (f.value(self, t) if f.value is not None else rules.OBSERVATIONS[e["fn"]](inputs, e))
                for (t, f), e in zip(self._priv, self._priv_entries, strict=True)]
        critic = torch.cat(clean + priv, 1)
        return obs, critic

    # --------------------------------------------------------------- metadata
    def metadata(self) -> dict[str, Any]:
        """The robot contract (``RobotMetadata`` of the deploy kit, JSON-ready; goes into the ONNX file
        as ``robot``), derived from the robot description and the term declarations: the model file,
        joint order, default pose, action scale and clip, PD gains, torque limits and target range,
        rates, the actor's observation layout (``rules.OBSERVATIONS`` entries), the commands and their
        ranges, the action latency, the fall condition, the sensors added to the scene and, with a
        gait, the clock (``frequency_hz``: the middle of the training range; ``phase_offsets``)."""
        rb, p, d = self.robot, self.p, self.robot.desc
        finite = bool(np.isfinite(rb.target_range).all())
        return RobotMetadata(
            name=d.name, task=self.name,
            model=ModelSource(package=d.model.package, path=d.model.path, install=d.model.install),
            joint_names=list(d.joint_names), default_pose=[float(x) for x in rb.default_pose],
            init_keyframe=d.init_keyframe, action_scale=p.action_scale, action_clip=[-1.0, 1.0],
            kp=[float(x) for x in rb.kp], kd=[float(x) for x in rb.kd],
            torque_limits=[float(x) for x in rb.torque_limits],
            target_range=[[float(lo), float(hi)] for lo, hi in rb.target_range] if finite else None,
            armature=[float(x) for x in rb.model.dof_armature[rb.dof_adr]],
            control_dt=p.control_dt, sim_dt=p.sim_dt, solver_iterations=int(rb.model.opt.iterations),
            solver_ls_iterations=int(rb.model.opt.ls_iterations),
            base_body=d.base_body, imu_site=d.imu_site, floor_geom=d.floor_geom, sensors=dict(d.sensors),
            obs_layout=[dict(e) for e in self.layout],
            critic_obs_layout=[{"name": n, "size": s} for n, s in self.critic_obs_layout],
            commands=list(COMMANDS),
            command_ranges={k: [float(v) for v in r] for k, r in zip(COMMANDS, p.commands.ranges, strict=True)},
            action_latency=p.action_latency,
            fall=Fall(max_tilt_cos=d.fall.max_tilt_cos, min_base_height=d.fall.min_base_height),
            extra_sensors=[dict(x) for x in rb.extra_sensors],
            gait=Gait(frequency_hz=sum(p.gait.frequency) / 2, phase_offsets=[float(x) for x in p.gait.phase_offsets])
            if p.gait.enable else None,
        ).to_dict()


class _Inputs(dict):
    """``Joystick.inputs()``: a dict that computes each robot-side input on first use."""

    def __init__(self, task: Joystick):
        super().__init__()
        self.t = task

    def __missing__(self, key: str) -> torch.Tensor:
        t = self.t
        if key == "joint_pos":
            value = t.joint_pos + t.joint_offset
        elif key == "joint_vel":
            value = t.joint_vel
        elif key == "last_action":
            value = t.last_act
        elif key == "command":
            value = t.command
        elif key == "gait_phase":
            value = t.gait_phase()
        elif key == "default_pose":
            value = t.q0
        else:
            value = t.sd[:, t.robot.sensor(key)]
        self[key] = value
        return value


__all__ = ["Joystick", "JoystickParams", "ObsTerm", "GaitParams", "parse_params", "COMMANDS", "GAIT_TERMS"]
