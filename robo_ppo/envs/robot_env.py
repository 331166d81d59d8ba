"""Robot tasks as a VecEnv: a task (``robo_ppo/tasks/``) on a physics engine, all in torch.

``engine=mujoco``: native MuJoCo on CPU threads (``mujoco_physics.py``), the
CPU default. ``engine=mjwarp``: MuJoCo Warp (``mjwarp_physics.py``) on the
learner's CUDA device, or on Warp's CPU device (slow; tests). The task, its
seeds and its random stream are the same on both.

This adapter adds what the VecEnv contract asks of every engine: the time
limit (``env.max_episode_steps``, a truncation), same-step auto-reset with
``info["final_obs"]`` / ``["final_critic_obs"]``, episode returns and
lengths, per-term rewards (``info["reward_terms"]`` float32 ``[N, K]``, names
in ``reward_terms``) and the asymmetric critic's observation
(``critic_obs_dim``, ``last_critic_obs()``), and the observation history: with a task's
``history_length`` k > 1 the policy input is the last k frames of the task's observation, newest
first, an episode's first frame repeated at its start (``rules.start_history`` / ``push_history``, the
rules the robot-side controller runs; the critic sees the current frame). On CUDA it makes no host sync per
step: resets run under a mask every step, and episode statistics come as
``[N]`` tensors with a mask (``episode_done``, ``episode_return_all``,
``episode_length_all``) that the collector filters once per rollout.

Terrain (``env.terrain``, docs/terrain.md): the deploy kit's generator builds it from the config
(``layout: none``, the default, is the robot scene's own floor: nothing changes), the robot's floor
geom becomes its heightfield (``RobotModel(terrain=...)``) and the task places the envs on its patches.
An env whose base leaves the terrain (``task.out_of_bounds``) is truncated, like a time limit. Task
statistics (``stat_names``, ``stats()``: e.g. ``terrain/level``, the mean terrain level) are logged per
iteration.

Physics divergence: after every control step an env is *diverged* when its
``qpos``, ``qvel``, sensors, observation or reward is non-finite, a joint or
base speed exceeds ``MAX_SPEED``, or the engine flagged it (MuJoCo's bad
qpos/qvel/qacc warnings, ``Physics.bad_state``). A diverged env is reset like
a truncated one, its reward and reward terms are 0, its ``final_obs`` rows
are the fresh observation (finite), it ends no episode in the statistics, and
``info["diverged"]`` (bool ``[N]``) tells the learner to drop the step
(``RolloutBuffer.diverged``). Nothing non-finite leaves this class.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf

from robo_ppo.deploy_kit import rules
from robo_ppo.deploy_kit import terrain as terrain_kit
from robo_ppo.envs.base import StepInfo, VecEnv
from robo_ppo.errors import ConfigError
from robo_ppo.robots.description import parse_robot
from robo_ppo.robots.model import RobotModel
from robo_ppo.robots.symmetry import SYMMETRY_KEYS, Mirror, joint_mirror, observation_mirror
from robo_ppo.tasks import make_task, task_params_schema

ROBOT_ENGINES = ("mujoco", "mjwarp")
DEFAULT_EPISODE_LENGTH = 1000
MAX_SPEED = 1e3
"""Joint or base speed (rad/s, m/s) beyond which a state is diverged: about 30x a legged robot's
fastest joint; a blown-up simulation reaches it within a step or two."""


def _plain(x: Any) -> Any:
    return OmegaConf.to_container(x, resolve=True) if OmegaConf.is_config(x) else x


def make_terrain(cfg: Any):
    """The ``Terrain`` of ``env.terrain`` (a ``TerrainConfig``, a mapping, or None), or None for ``layout:
    none``. Generated once per config and process (train and eval envs share it; it is read-only).

    Raises:
        ConfigError: a config the generator refuses (one line naming the key).
    """
    cfg = _plain(cfg)
    if cfg is None:
        return None
    try:
        config = cfg if isinstance(cfg, terrain_kit.TerrainConfig) else terrain_kit.TerrainConfig.from_dict(cfg)
    except terrain_kit.TerrainError as e:
        raise ConfigError(f"env.{e}") from None
    if config.layout == "none":
        return None
    key = json.dumps(config.to_dict(), sort_keys=True)
    if key not in _TERRAINS:
        _TERRAINS.clear()   # one terrain at a time: a grid is megabytes
        _TERRAINS[key] = terrain_kit.generate(config)
    return _TERRAINS[key]


_TERRAINS: dict[str, Any] = {}


def make_physics(engine: str, model, num_envs: int, device: torch.device, num_threads: int = 0):
    """The ``Physics`` of ``engine`` (``mujoco``: CPU threads, ``num_threads``; ``mjwarp``: on ``device``)
    for ``model``.

    Raises:
        ConfigError: ``engine`` is not in ``ROBOT_ENGINES``; MuJoCo Warp is not installed.
    """
    if engine not in ROBOT_ENGINES:
        raise ConfigError(f"robot tasks run on engine=mujoco or engine=mjwarp, not {engine!r}")
    if engine == "mujoco":
        from robo_ppo.envs.mujoco_physics import MujocoPhysics

        return MujocoPhysics(model, num_envs, num_threads=num_threads)
    try:
        from robo_ppo.envs.mjwarp_physics import MjWarpPhysics
    except ImportError as e:
        raise ConfigError(f"engine=mjwarp needs MuJoCo Warp ({e}): pip install -e '.[mjwarp]'") from None
    return MjWarpPhysics(model, num_envs, device=device)


class RobotVecEnv(VecEnv):
    """``num_envs`` environments of a robot task (``checks_divergence``: see the module docstring).

    Args:
        env_cfg: ``env`` config: ``task``, ``task_params``, ``robot`` (the description),
            ``id``, ``max_episode_steps``.
        engine: ``mujoco`` or ``mjwarp``.
        num_envs: N.
        device: the learner's device (tensors are returned there).
        seed: seed of ``reset()`` without one.
        num_threads: ``mujoco`` engine threads (0: one per core).

    Raises:
        ConfigError: bad robot description, task parameters or engine (one line).
    """

    checks_divergence = True

    def __init__(self, env_cfg, engine: str, num_envs: int, device: torch.device | str = "cpu",
                 seed: Optional[int] = None, num_threads: int = 0):
        task_name = env_cfg.get("task")
        desc = parse_robot(_plain(env_cfg.get("robot")))
        params = task_params_schema(task_name)(_plain(env_cfg.get("task_params") or {}))
        self.device = torch.device(device)
        self.engine = engine
        self.terrain = make_terrain(env_cfg.get("terrain"))
        self.robot = RobotModel(desc, params.sim_dt, solver_iterations=params.solver_iterations,
                                solver_ls_iterations=params.solver_ls_iterations, terrain=self.terrain)
        physics_device = self.device if engine == "mjwarp" else torch.device("cpu")
        self.physics = make_physics(engine, self.robot.model, num_envs, physics_device, num_threads)
        self._seed = 0 if seed is None else int(seed)
        self.task = make_task(task_name, self.robot, self.physics, params, seed=self._seed)
        t = self.task
        self.num_envs = int(num_envs)
        self.env_id = env_cfg.get("id") or f"{desc.name}_{task_name}"
        steps = env_cfg.get("max_episode_steps")
        self.episode_length = DEFAULT_EPISODE_LENGTH if steps is None else int(steps)
        self.control_dt = float(t.dt)
        self.critic_obs_dim = int(t.critic_obs_size)
        self.reward_terms = tuple(t.reward_terms)
        self.stat_names = tuple(getattr(t, "stat_names", ()))
        """The task's per-iteration statistics (``stats()``), logged as metrics.csv columns."""
        self.history_length = int(getattr(t, "history_length", 1))
        self._history: Optional[torch.Tensor] = None   # [N, k, frame] with k > 1
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (t.obs_size * self.history_length,),
                                                dtype=np.float32)
        self.action_space = gym.spaces.Box(*t.action_clip, (t.action_size,), dtype=np.float32)
        self._sync_free = self.physics.device.type == "cuda"
        n, dev = self.num_envs, self.physics.device
        self._steps = torch.zeros(n, dtype=torch.long, device=dev)
        self._ep_return = torch.zeros(n, device=dev)
        self._all = torch.ones(n, dtype=torch.bool, device=dev)
        self._reset_count = 0
        self._critic: Optional[torch.Tensor] = None

    def _to(self, x):
        return x if x is None or x.device == self.device else x.to(self.device)

    def reset(self, seed: Optional[int] = None) -> torch.Tensor:
        """Reset every env; the task's generator is reseeded with ``seed`` (else the constructor's
        seed plus the number of earlier seedless resets). Returns obs float32 ``[N, obs_dim]``."""
        if seed is None:
            seed = self._seed + self._reset_count
            self._reset_count += 1
        self.task.gen.manual_seed(int(seed))
        self.task.reset(self._all)
        self._steps.zero_()
        self._ep_return.zero_()
        obs, self._critic = self.task.observe()
        if self.history_length > 1:
            self._history = rules.start_history(obs, self.history_length)
            obs = rules.history_input(self._history)
        return self._to(obs)

    def step(self, actions: torch.Tensor):
        """One control step for every env (``actions`` float32 ``[N, act_dim]``, clipped to the task's
        ``action_clip``, [-1, 1] by default); returns ``obs, rewards, terminated, truncated, info`` per
        the VecEnv contract."""
        t = self.task
        actions = actions.detach().to(self.physics.device, torch.float32)
        if actions.shape != (self.num_envs, t.action_size):
            raise ValueError(f"actions must have shape {(self.num_envs, t.action_size)}, got {tuple(actions.shape)}")
        reward, terminated, terms = t.step(actions)
        obs, critic = t.observe()
        diverged = self._diverged(obs, critic, reward)
        reward = torch.where(diverged, 0.0, reward)
        terms = torch.where(diverged[:, None], 0.0, terms)
        terminated = terminated & ~diverged
        self._steps += 1
        truncated = ((self._steps >= self.episode_length) & ~terminated) | diverged
        out = getattr(t, "out_of_bounds", None)
        if out is not None:   # on a terrain: the base reached its edge
            truncated = truncated | (out & ~terminated)
        done = terminated | truncated
        self._ep_return += reward
        k = self.history_length
        if k > 1:   # the frames up to this step's (the final observation of an ending episode)
            history = rules.push_history(self._history, obs)
            obs = rules.history_input(history)
        final_obs, final_critic = obs, critic
        if self._sync_free or bool(done.any()):
            t.reset(done)
            fresh, fresh_critic = t.observe()
            if k > 1:   # a new episode's history: its first frame repeated
                history = torch.where(done[:, None, None], rules.start_history(fresh, k), history)
                fresh = rules.history_input(history)
            obs = torch.where(done[:, None], fresh, obs)
            final_obs = torch.where(diverged[:, None], fresh, final_obs)
            if critic is not None:
                critic = torch.where(done[:, None], fresh_critic, critic)
                final_critic = torch.where(diverged[:, None], fresh_critic, final_critic)
        ended = done & ~diverged   # a diverged episode is not an episode of the task
        ep_return = torch.where(ended, self._ep_return, 0.0)
        ep_length = torch.where(ended, self._steps, 0).float()
        self._ep_return = torch.where(done, 0.0, self._ep_return)
        self._steps = torch.where(done, 0, self._steps)
        self._critic = critic
        if k > 1:
            self._history = history
        to = self._to
        info = StepInfo({"final_obs": to(final_obs), "episode_done": to(ended),
                          "episode_return_all": to(ep_return), "episode_length_all": to(ep_length),
                          "reward_terms": to(terms), "diverged": to(diverged)})
        if critic is not None:
            info["final_critic_obs"] = to(final_critic)
        return to(obs), to(reward), to(terminated), to(truncated), info

    def _diverged(self, obs: torch.Tensor, critic: Optional[torch.Tensor], reward: torch.Tensor) -> torch.Tensor:
        """bool ``[N]``: the envs whose step diverged (see the module docstring)."""
        ph = self.physics
        ok = (torch.isfinite(ph.qpos).all(1) & torch.isfinite(ph.sensordata).all(1)
              & (ph.qvel.abs() <= MAX_SPEED).all(1)   # False for NaN too
              & torch.isfinite(obs).all(1) & torch.isfinite(reward))
        if critic is not None:
            ok &= torch.isfinite(critic).all(1)
        flagged = ph.bad_state()
        return ~ok if flagged is None else ~ok | flagged.to(ok.device)

    def divergence_hint(self) -> str:
        """What usually makes this task's physics diverge, naming the config keys to change."""
        p, m = self.task.p, self.robot.model
        return (f"lower env.task_params.sim_dt (now {p.sim_dt:g} s), raise env.task_params.solver_iterations "
                f"(now {m.opt.iterations}), or narrow the ranges of env.task_params.events.randomize_model")

    def get_state(self) -> dict[str, Any]:
        """A snapshot for exact resume: the engine's (``Physics.snapshot``: every env's MuJoCo state and
        randomized model fields), the task's (``Joystick.state_dict``) and this adapter's episode
        counters. Raises NotImplementedError where the engine cannot snapshot."""
        return {"physics": self.physics.snapshot(), "task": self.task.state_dict(),
                "steps": self._steps.cpu().clone(), "ep_return": self._ep_return.cpu().clone(),
                "reset_count": self._reset_count, "critic": None if self._critic is None else self._critic.cpu().clone(),
                "history": None if self._history is None else self._history.cpu().clone()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore ``get_state()`` of an env of the same config (engine, robot, task, ``num_envs``)."""
        self.physics.restore(state["physics"])
        self.task.load_state_dict(state["task"])
        dev = self.physics.device
        self._steps, self._ep_return = state["steps"].to(dev).clone(), state["ep_return"].to(dev).clone()
        self._reset_count = int(state["reset_count"])
        self._critic = None if state["critic"] is None else state["critic"].to(dev).clone()
        history = state.get("history")
        self._history = None if history is None else history.to(dev).clone()

    def set_training_clock(self, steps_per_env: int, num_envs: int) -> None:
        """Set the task's training clock (``Joystick.set_clock``: its curricula follow it)."""
        self.task.set_clock(steps_per_env, num_envs)

    def stats(self) -> dict[str, float]:
        """The task's statistics now (``stat_names``: e.g. ``terrain/level``), floats (one host sync)."""
        return {k: float(v) for k, v in self.task.stats().items()}

    def mirror(self) -> tuple[Mirror, Mirror]:
        """``(obs, action)``: the mirror maps of the policy input (every history frame) and of the actions,
        derived from the robot's model (``robo_ppo/robots/symmetry.py``), for the symmetry loss and
        augmentation.

        Raises:
            ConfigError: the robot is not left-right symmetric, a term cannot be mirrored, the actor
                sees privileged terms (``teacher_obs``), or the action range is not symmetric about 0
                (a joint whose mirror has the opposite sign then clips differently from its image).
        """
        t = self.task
        if t.obs_size != t.robot_obs_size:
            raise ConfigError("env.task_params.teacher_obs: privileged terms in the actor's observation cannot be "
                              f"mirrored ({SYMMETRY_KEYS})")
        joints = joint_mirror(self.robot)
        lo, hi = t.action_clip
        if lo != -hi and bool((joints.sign < 0).any()):
            raise ConfigError(f"env.task_params.action_clip {[lo, hi]} is not symmetric about 0, so a mirrored action "
                              f"clips differently from the action's mirror image: use [-c, c] with the symmetry "
                              f"terms ({SYMMETRY_KEYS})")
        return observation_mirror(self.robot, t.layout, joints, self.history_length), joints

    def last_critic_obs(self) -> torch.Tensor:
        """The critic observation float32 ``[N, critic_obs_dim]`` of the last ``reset``/``step``."""
        if self._critic is None:
            raise RuntimeError(f"{self.env_id} has no critic observation, or the env was not reset")
        return self._to(self._critic)

    def close(self) -> None:
        self.physics.close()

    def metadata(self) -> dict[str, Any]:
        """Engine facts plus the task's ``robot`` metadata (the deploy contract) and entry names."""
        meta = super().metadata()
        robot = self.task.metadata()
        meta["robot"] = robot
        meta["episode_length"] = self.episode_length
        frame = [f"{e['name']}[{i}]" for e in robot["obs_layout"] for i in range(e["size"])]
        meta["observation_names"] = frame if self.history_length == 1 else [
            f"{name}@t-{k}" for k in range(self.history_length) for name in frame]   # newest first
        meta["action_names"] = list(robot["joint_names"])
        meta["reward_terms"] = list(self.reward_terms)
        return meta


def make_robot_vec_env(env_cfg, engine_cfg, num_envs: int, device: torch.device | str = "cpu",
                       seed: Optional[int] = None) -> RobotVecEnv:
    """The VecEnv factory of ``engine=mujoco`` and ``engine=mjwarp`` (``robo_ppo.envs.ENGINES``).

    Raises:
        ConfigError: the env is not a robot task (``env.task`` unset), or as ``RobotVecEnv``.
    """
    if not env_cfg.get("task"):
        raise ConfigError(f"engine={engine_cfg.name} runs robot tasks (env.task); {env_cfg.get('name')!r} is "
                          "not one: use engine=gymnasium or envpool, or env=go1_joystick")
    return RobotVecEnv(env_cfg, engine_cfg.name, num_envs, device=device, seed=seed,
                       num_threads=int(engine_cfg.get("num_threads", 0) or 0))


__all__ = ["RobotVecEnv", "make_robot_vec_env", "make_physics", "ROBOT_ENGINES"]
