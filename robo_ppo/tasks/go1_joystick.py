"""Unitree Go1 velocity-command ("joystick") locomotion on flat ground, in MJX.

The robot tracks a command ``(vx, vy, yaw_rate)`` in its base frame. The task
follows the definitions of MuJoCo Playground's ``Go1JoystickFlatTerrain``
(Zakka et al. 2025, "MuJoCo Playground"), written anew here, plus domain
randomization resampled at every reset, optional velocity pushes and an
optional one-step action latency. Every number lives in
``conf/env/go1_joystick.yaml`` (schema: ``Go1JoystickParams``).

* Timing: 50 Hz policy (``ctrl_dt`` 0.02 s), physics at ``sim_dt`` 0.004 s.
  The time limit (1000 steps = 20 s) is the engine's (``env.max_episode_steps``);
  the task terminates an episode when the base flips (IMU up-vector z < 0).
* Action ``a`` in [-1, 1]^12 (clipped): joint targets ``q* = q0 + 0.5 a`` for
  MuJoCo position actuators (kp 35, torque limits 23.7 / 35.55 N m) with
  joint damping kd 0.5, i.e. a PD controller at the physics rate.
* Actor observation (48, noisy): ``OBS_LAYOUT``. Critic observation (noise-free,
  privileged): ``CRITIC_OBS_LAYOUT`` (asymmetric actor-critic; Pinto et al. 2018).
* Reward: ``dt * sum(scale_k * term_k)`` clipped below at 0 (Playground's
  convention; ``REWARD_TERMS``); each scaled term is reported separately.

The robot-side twin of the observation is ``export/go1_deploy.py``; a test
holds both equal on the same physics state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from mujoco import mjx
from omegaconf import OmegaConf

from robo_ppo.assets import go1_xml, load_model
from robo_ppo.errors import ConfigError
from robo_ppo.tasks.base import TaskState, layout_offsets

FEET = ("FR", "FL", "RR", "RL")
"""Foot geoms and sites, front-right first (the actuator order's leg order)."""
OBS_LAYOUT = (("base_linvel", 3), ("gyro", 3), ("gravity", 3), ("joint_pos", 12),
              ("joint_vel", 12), ("last_action", 12), ("command", 3))
"""Actor observation: name and size of each block, in order (48 in all). Units:
m/s and rad/s in the IMU frame, unit gravity direction in the IMU frame,
rad (minus the home pose q0), rad/s, action units, (m/s, m/s, rad/s)."""
CRITIC_OBS_LAYOUT = OBS_LAYOUT + (
    ("accelerometer", 3), ("global_angvel", 3), ("actuator_force", 12), ("foot_contact", 4),
    ("foot_velocity", 12), ("feet_air_time", 4), ("base_height", 1), ("floor_friction", 1),
    ("payload", 1), ("com_offset", 3), ("kp_scale", 1), ("kd_scale", 1))
"""Critic observation: the actor's blocks without noise, then privileged ones (94 in all)."""
REWARD_TERMS = ("tracking_lin_vel", "tracking_ang_vel", "lin_vel_z", "ang_vel_xy", "orientation",
                "torques", "action_rate", "energy", "pose", "feet_air_time", "feet_slip",
                "feet_clearance", "feet_height", "dof_pos_limits", "stand_still", "termination")


# ------------------------------------------------------------------ parameters
@dataclass
class NoiseParams:
    """Uniform sensor noise U(-s, s) * level per actor observation block."""

    level: float = 1.0
    """Global multiplier (0 disables every noise)."""
    base_linvel: float = 0.1
    gyro: float = 0.2
    gravity: float = 0.05
    joint_pos: float = 0.03
    joint_vel: float = 1.5


@dataclass
class CommandParams:
    ranges: list[float] = field(default_factory=lambda: [1.5, 0.8, 1.2])
    """Command amplitudes: vx, vy (m/s), yaw rate (rad/s) drawn from U(-r, r)."""
    keep_prob: list[float] = field(default_factory=lambda: [0.9, 0.25, 0.5])
    """At a resample, a component that changes is a new draw with this probability, else 0."""
    change_prob: float = 0.5
    """At a resample, probability that each component changes at all."""
    resample_mean_s: float = 5.0
    """Mean of the exponential time between resamples (s)."""


@dataclass
class RewardScales:
    """Weight of each reward term (Playground's Go1 joystick values)."""

    tracking_lin_vel: float = 1.0
    tracking_ang_vel: float = 0.5
    lin_vel_z: float = -0.5
    ang_vel_xy: float = -0.05
    orientation: float = -5.0
    torques: float = -0.0002
    action_rate: float = -0.01
    energy: float = -0.001
    pose: float = 0.5
    feet_air_time: float = 0.1
    feet_slip: float = -0.1
    feet_clearance: float = -2.0
    feet_height: float = -0.2
    dof_pos_limits: float = -1.0
    stand_still: float = -1.0
    termination: float = -1.0


@dataclass
class RandomizationParams:
    """Domain randomization, resampled for each environment at every reset."""

    enable: bool = True
    floor_friction: list[float] = field(default_factory=lambda: [0.4, 1.0])
    """Sliding friction of the floor, U(lo, hi)."""
    frictionloss_scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    armature_scale: list[float] = field(default_factory=lambda: [1.0, 1.05])
    com_offset: float = 0.05
    """Torso center-of-mass shift, U(-x, x) per axis (m)."""
    link_mass_scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    payload: float = 1.0
    """Torso mass offset U(-x, x) (kg)."""
    joint_offset: float = 0.05
    """Encoder calibration error U(-x, x) (rad): the robot reads q + offset."""
    kp_scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    kd_scale: list[float] = field(default_factory=lambda: [0.9, 1.1])


@dataclass
class PushParams:
    enable: bool = False
    max_velocity: float = 1.0
    """Horizontal velocity kick U(0, x) (m/s) in a random direction."""
    interval_s: list[float] = field(default_factory=lambda: [5.0, 10.0])
    """Time between kicks U(lo, hi) (s)."""


@dataclass
class Go1JoystickParams:
    """Every number of the task (``env.task_params`` in ``conf/env/go1_joystick.yaml``)."""

    model_xml: str = "scene_mjx_feetonly_flat_terrain.xml"
    """Scene file in the Go1 model package (``robo_ppo.assets.go1_xml``)."""
    ctrl_dt: float = 0.02
    sim_dt: float = 0.004
    kp: float = 35.0
    """Position-actuator stiffness (N m / rad)."""
    kd: float = 0.5
    """Joint damping (N m s / rad)."""
    action_scale: float = 0.5
    action_latency: int = 0
    """0: apply this step's action; 1: apply the previous step's (one control step late)."""
    soft_joint_limit_factor: float = 0.95
    tracking_sigma: float = 0.25
    max_foot_height: float = 0.1
    reset_xy: float = 0.5
    reset_base_velocity: float = 0.5
    noise: NoiseParams = field(default_factory=NoiseParams)
    commands: CommandParams = field(default_factory=CommandParams)
    reward_scales: RewardScales = field(default_factory=RewardScales)
    randomization: RandomizationParams = field(default_factory=RandomizationParams)
    push: PushParams = field(default_factory=PushParams)


def parse_params(params: Any) -> Go1JoystickParams:
    """Validate ``env.task_params`` (a mapping) against ``Go1JoystickParams``.

    Raises:
        ConfigError: an unknown key or a wrong type, named.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Go1JoystickParams), params or {})
        p = OmegaConf.to_object(merged)
    except Exception as e:  # omegaconf's errors name the key
        raise ConfigError(f"env.task_params: {e}".splitlines()[0]) from None
    if p.action_latency not in (0, 1):
        raise ConfigError(f"env.task_params.action_latency must be 0 or 1, got {p.action_latency}")
    ratio = p.ctrl_dt / p.sim_dt
    if p.sim_dt <= 0 or abs(ratio - round(ratio)) > 1e-6:
        raise ConfigError("env.task_params.ctrl_dt must be a positive multiple of sim_dt")
    return p


# ------------------------------------------------------------------------ task
class Go1Joystick:
    """The Go1 joystick task for one environment (the engine vmaps it).

    Args:
        params: ``Go1JoystickParams`` or a mapping of its fields.

    Raises:
        ConfigError: invalid parameters, or the Go1 model package is not installed.
    """

    name = "go1_joystick"

    def __init__(self, params: Any = None):
        p = params if isinstance(params, Go1JoystickParams) else parse_params(params)
        self.p = p
        m = load_model(go1_xml(p.model_xml), meshes=False)
        m.opt.timestep = p.sim_dt
        m.actuator_gainprm[:, 0] = p.kp
        m.actuator_biasprm[:, 1] = -p.kp
        m.dof_damping[6:] = p.kd
        self.mj_model = m
        self.mx = mjx.put_model(m)
        self._data0 = mjx.make_data(m)
        self.n_substeps = int(round(p.ctrl_dt / p.sim_dt))
        self.dt = p.ctrl_dt
        self.action_size = m.nu
        self.action_low = -np.ones(m.nu, np.float32)
        self.action_high = np.ones(m.nu, np.float32)
        self.obs_size = sum(s for _, s in OBS_LAYOUT)
        self.critic_obs_size = sum(s for _, s in CRITIC_OBS_LAYOUT)
        self.reward_terms = REWARD_TERMS
        self._scales = jnp.asarray([getattr(p.reward_scales, k) for k in REWARD_TERMS], jnp.float32)

        home = m.keyframe("home")
        self._home_qpos = jnp.asarray(home.qpos, jnp.float32)
        self.default_pose = np.asarray(home.qpos[7:], np.float32)
        self._q0 = jnp.asarray(self.default_pose)
        self.joint_names = [m.joint(int(m.actuator_trnid[i, 0])).name for i in range(m.nu)]
        lower, upper = m.jnt_range[1:].T
        mid, half = (lower + upper) / 2, (upper - lower) / 2 * p.soft_joint_limit_factor
        self._soft_lower, self._soft_upper = jnp.asarray(mid - half), jnp.asarray(mid + half)
        self.torque_limits = np.asarray(m.actuator_forcerange[:, 1], np.float32)
        self._torso = m.body("trunk").id
        self._floor = m.geom("floor").id
        self._imu = m.site("imu").id
        self._feet_sites = np.array([m.site(f).id for f in FEET])

        def sensor(name):
            i = m.sensor(name).id
            return np.arange(m.sensor_adr[i], m.sensor_adr[i] + m.sensor_dim[i])

        self._s = {k: sensor(k) for k in ("gyro", "local_linvel", "accelerometer", "upvector",
                                          "global_linvel", "global_angvel")}
        self._s_feet_vel = np.stack([sensor(f"{f}_global_linvel") for f in FEET])
        self._s_contact = np.concatenate([sensor(f"{f}_floor_found") for f in FEET])

    # ---------------------------------------------------------------- reset
    def _randomize(self, key) -> dict[str, Any]:
        """Per-environment model parameters (``dr``) and their privileged summary."""
        r, mx = self.p.randomization, self.mx
        nominal = {"geom_friction": mx.geom_friction, "dof_frictionloss": mx.dof_frictionloss,
                   "dof_armature": mx.dof_armature, "dof_damping": mx.dof_damping,
                   "body_ipos": mx.body_ipos, "body_mass": mx.body_mass,
                   "actuator_gainprm": mx.actuator_gainprm, "actuator_biasprm": mx.actuator_biasprm}
        if not r.enable:
            summary = jnp.asarray([float(self.mj_model.geom_friction[self._floor, 0]), 0, 0, 0, 0, 1, 1],
                                  jnp.float32)
            return {"model": nominal, "joint_offset": jnp.zeros(12), "summary": summary}
        k = jax.random.split(key, 9)
        u = lambda k, lo_hi, shape=(): jax.random.uniform(k, shape, minval=lo_hi[0], maxval=lo_hi[1])  # noqa: E731
        friction = u(k[0], r.floor_friction)
        com = u(k[1], (-r.com_offset, r.com_offset), (3,))
        payload = u(k[2], (-r.payload, r.payload))
        kp_s, kd_s = u(k[3], r.kp_scale), u(k[4], r.kd_scale)
        mass = nominal["body_mass"] * u(k[5], r.link_mass_scale, nominal["body_mass"].shape)
        kp = self.p.kp * kp_s
        model = {
            "geom_friction": nominal["geom_friction"].at[self._floor, 0].set(friction),
            "dof_frictionloss": nominal["dof_frictionloss"].at[6:].multiply(u(k[6], r.frictionloss_scale, (12,))),
            "dof_armature": nominal["dof_armature"].at[6:].multiply(u(k[7], r.armature_scale, (12,))),
            "dof_damping": nominal["dof_damping"].at[6:].set(self.p.kd * kd_s),
            "body_ipos": nominal["body_ipos"].at[self._torso].add(com),
            "body_mass": mass.at[self._torso].add(payload),
            "actuator_gainprm": nominal["actuator_gainprm"].at[:, 0].set(kp),
            "actuator_biasprm": nominal["actuator_biasprm"].at[:, 1].set(-kp),
        }
        offset = u(k[8], (-r.joint_offset, r.joint_offset), (12,))
        summary = jnp.concatenate([friction[None], payload[None], com, kp_s[None], kd_s[None]])
        return {"model": model, "joint_offset": offset, "summary": summary}

    def _resample_command(self, key, command):
        """Playground's scheme: each component changes with ``change_prob``; a changed
        component is a fresh U(-r, r) draw with ``keep_prob``, else 0."""
        c = self.p.commands
        k1, k2, k3 = jax.random.split(key, 3)
        ranges = jnp.asarray(c.ranges)
        draw = jax.random.uniform(k1, (3,), minval=-ranges, maxval=ranges)
        keep = jax.random.bernoulli(k2, jnp.asarray(c.keep_prob), (3,))
        change = jax.random.bernoulli(k3, c.change_prob, (3,))
        return jnp.where(change, draw * keep, command)

    def _steps_until(self, key, mean_s):
        return jnp.round(jax.random.exponential(key) * mean_s / self.dt).astype(jnp.int32)

    def _push_countdown(self, key):
        lo, hi = self.p.push.interval_s
        return jnp.round(jax.random.uniform(key, minval=lo, maxval=hi) / self.dt).astype(jnp.int32)

    def reset(self, key) -> TaskState:
        """A new episode: home pose shifted by U(-0.5, 0.5) m in x/y, yaw U(-pi, pi),
        base velocity U(-0.5, 0.5) per component, fresh randomization and command."""
        p = self.p
        key, k_xy, k_yaw, k_vel, k_dr, k_cmd, k_t, k_push, k_obs = jax.random.split(key, 9)
        qpos = self._home_qpos
        qpos = qpos.at[0:2].add(jax.random.uniform(k_xy, (2,), minval=-p.reset_xy, maxval=p.reset_xy))
        yaw = jax.random.uniform(k_yaw, minval=-jnp.pi, maxval=jnp.pi)
        qpos = qpos.at[3:7].set(jnp.asarray([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)]))
        v = p.reset_base_velocity
        qvel = jnp.zeros(self.mj_model.nv).at[0:6].set(jax.random.uniform(k_vel, (6,), minval=-v, maxval=v))
        dr = self._randomize(k_dr)
        data = self._data0.replace(qpos=qpos, qvel=qvel, ctrl=self._q0 - dr["joint_offset"])
        data = mjx.forward(self._model(dr), data)
        ranges = jnp.asarray(p.commands.ranges)
        info = {
            "rng": key,
            "command": jax.random.uniform(k_cmd, (3,), minval=-ranges, maxval=ranges),
            "steps_until_next_cmd": self._steps_until(k_t, p.commands.resample_mean_s),
            "steps_until_push": self._push_countdown(k_push),
            "last_act": jnp.zeros(12),
            "feet_air_time": jnp.zeros(4),
            "last_contact": jnp.zeros(4, bool),
            "swing_peak": jnp.zeros(4),
            "dr": dr,
        }
        obs, critic_obs = self._observe(data, info, k_obs)
        zero = jnp.zeros(())
        return TaskState(data, obs, critic_obs, zero, zero, jnp.zeros(len(REWARD_TERMS)), info)

    # ----------------------------------------------------------------- step
    def _model(self, dr):
        return self.mx.replace(**dr["model"])

    def step(self, state: TaskState, actions) -> TaskState:
        """Advance one control step (``n_substeps`` physics steps) with ``actions [12]``."""
        p, info = self.p, dict(state.info)
        key, k_cmd, k_t, k_push, k_dir, k_mag, k_obs = jax.random.split(info["rng"], 7)
        actions = jnp.clip(actions, -1.0, 1.0)
        applied = info["last_act"] if p.action_latency else actions
        # the robot believes it is at q + offset, so its PD holds q at q* - offset
        data = state.data.replace(ctrl=self._q0 + p.action_scale * applied - info["dr"]["joint_offset"])
        if p.push.enable:
            push = info["steps_until_push"] <= 0
            angle = jax.random.uniform(k_dir, maxval=2 * jnp.pi)
            kick = jax.random.uniform(k_mag, maxval=p.push.max_velocity)
            dv = jnp.where(push, kick, 0.0) * jnp.asarray([jnp.cos(angle), jnp.sin(angle)])
            data = data.replace(qvel=data.qvel.at[0:2].add(dv))
            info["steps_until_push"] = jnp.where(push, self._push_countdown(k_push), info["steps_until_push"] - 1)
        model = self._model(info["dr"])
        data = jax.lax.fori_loop(0, self.n_substeps, lambda _, d: mjx.step(model, d), data)
        # mj_step evaluates sensors before it integrates: refresh them so the observation
        # and rewards describe the state the robot is in now, as its sensors would (+1 forward)
        data = mjx.forward(model, data)

        sd = data.sensordata
        contact = sd[self._s_contact] > 0
        first_contact = (info["feet_air_time"] > 0.0) & (contact | info["last_contact"])
        info["feet_air_time"] = info["feet_air_time"] + self.dt
        foot_z = data.site_xpos[self._feet_sites, 2]
        info["swing_peak"] = jnp.maximum(info["swing_peak"], foot_z)
        done = sd[self._s["upvector"]][2] < 0.0

        terms = self._reward_terms(data, actions, info, contact, first_contact, done)
        scaled = self._scales * terms * self.dt
        reward = jnp.maximum(jnp.sum(scaled), 0.0)

        info["last_act"] = actions
        info["feet_air_time"] = info["feet_air_time"] * ~contact
        info["swing_peak"] = info["swing_peak"] * ~contact
        info["last_contact"] = contact
        due = info["steps_until_next_cmd"] <= 0
        info["command"] = jnp.where(due, self._resample_command(k_cmd, info["command"]), info["command"])
        info["steps_until_next_cmd"] = jnp.where(
            due, self._steps_until(k_t, p.commands.resample_mean_s), info["steps_until_next_cmd"] - 1)
        info["rng"] = key
        obs, critic_obs = self._observe(data, info, k_obs)
        return TaskState(data, obs, critic_obs, reward, done.astype(jnp.float32), scaled, info)

    # ---------------------------------------------------------- observation
    def _observe(self, data, info, key):
        """``(obs [48], critic_obs [94])``; the actor's blocks get U(-s, s) noise."""
        p, sd = self.p, data.sensordata
        gravity = data.site_xmat[self._imu].T @ jnp.asarray([0.0, 0.0, -1.0])
        joint_pos = data.qpos[7:] + info["dr"]["joint_offset"] - self._q0
        clean = {"base_linvel": sd[self._s["local_linvel"]], "gyro": sd[self._s["gyro"]],
                 "gravity": gravity, "joint_pos": joint_pos, "joint_vel": data.qvel[6:],
                 "last_action": info["last_act"], "command": info["command"]}
        keys = jax.random.split(key, len(OBS_LAYOUT))
        noisy = []
        for k, (name, size) in zip(keys, OBS_LAYOUT, strict=True):
            scale = getattr(p.noise, name, 0.0) * p.noise.level
            noisy.append(clean[name] + scale * jax.random.uniform(k, (size,), minval=-1.0, maxval=1.0))
        obs = jnp.concatenate(noisy)
        privileged = [
            sd[self._s["accelerometer"]], sd[self._s["global_angvel"]], data.actuator_force,
            info["last_contact"].astype(jnp.float32), sd[self._s_feet_vel].reshape(-1),
            info["feet_air_time"], data.qpos[2:3], info["dr"]["summary"]]
        critic_obs = jnp.concatenate([clean[name] for name, _ in OBS_LAYOUT] + privileged)
        return obs.astype(jnp.float32), critic_obs.astype(jnp.float32)

    # --------------------------------------------------------------- reward
    def _reward_terms(self, data, actions, info, contact, first_contact, done):
        """Unscaled terms in ``REWARD_TERMS`` order (Playground's definitions)."""
        p, sd = self.p, data.sensordata
        cmd = info["command"]
        moving = jnp.linalg.norm(cmd) > 0.01
        local_vel, gyro = sd[self._s["local_linvel"]], sd[self._s["gyro"]]
        q, qd, force = data.qpos[7:], data.qvel[6:], data.actuator_force
        feet_vxy = sd[self._s_feet_vel][:, :2]
        foot_z = data.site_xpos[self._feet_sites, 2]
        up = sd[self._s["upvector"]]
        over = jnp.clip(self._soft_lower - q, 0.0, None) + jnp.clip(q - self._soft_upper, 0.0, None)
        return jnp.stack([
            jnp.exp(-jnp.sum(jnp.square(cmd[:2] - local_vel[:2])) / p.tracking_sigma),
            jnp.exp(-jnp.square(cmd[2] - gyro[2]) / p.tracking_sigma),
            jnp.square(sd[self._s["global_linvel"]][2]),
            jnp.sum(jnp.square(sd[self._s["global_angvel"]][:2])),
            jnp.sum(jnp.square(up[:2])),
            jnp.sqrt(jnp.sum(jnp.square(force))) + jnp.sum(jnp.abs(force)),
            jnp.sum(jnp.square(actions - info["last_act"])),
            jnp.sum(jnp.abs(qd) * jnp.abs(force)),
            jnp.exp(-jnp.sum(jnp.square(q - self._q0) * jnp.asarray([1.0, 1.0, 0.1] * 4))),
            jnp.sum((info["feet_air_time"] - 0.1) * first_contact) * moving,
            jnp.sum(jnp.sum(jnp.square(feet_vxy), -1) * contact) * moving,
            jnp.sum(jnp.abs(foot_z - p.max_foot_height) * jnp.sqrt(jnp.linalg.norm(feet_vxy, axis=-1))),
            jnp.sum(jnp.square(info["swing_peak"] / p.max_foot_height - 1.0) * first_contact) * moving,
            jnp.sum(over),
            jnp.sum(jnp.abs(q - self._q0)) * (1.0 - moving),
            done.astype(jnp.float32),
        ]).astype(jnp.float32)

    # ------------------------------------------------------------- metadata
    def metadata(self) -> dict[str, Any]:
        """What a robot-side controller needs (JSON-ready; goes into the ONNX file)."""
        p = self.p
        return {
            "name": "go1",
            "model_xml": p.model_xml,
            "joint_names": self.joint_names,
            "default_pose": [float(x) for x in self.default_pose],
            "action_scale": p.action_scale,
            "kp": p.kp, "kd": p.kd,
            "torque_limits": [float(x) for x in self.torque_limits],
            "control_dt": p.ctrl_dt, "sim_dt": p.sim_dt,
            "imu_site": "imu",
            "obs_layout": layout_offsets(OBS_LAYOUT),
            "critic_obs_layout": layout_offsets(CRITIC_OBS_LAYOUT),
            "command_ranges": {"vx": [-p.commands.ranges[0], p.commands.ranges[0]],
                               "vy": [-p.commands.ranges[1], p.commands.ranges[1]],
                               "yaw_rate": [-p.commands.ranges[2], p.commands.ranges[2]]},
            "action_latency": p.action_latency,
        }


__all__ = ["Go1Joystick", "Go1JoystickParams", "OBS_LAYOUT", "CRITIC_OBS_LAYOUT", "REWARD_TERMS",
           "parse_params"]
