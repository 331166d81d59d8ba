"""CPU engine: EnvPool's C++ thread pool stepping MuJoCo tasks (optional extra).

``pip install -e .[envpool]`` (``envpool==1.2.5``). One ``step`` call sends
the whole batch to EnvPool's worker threads and waits for it (synchronous
mode, ``batch_size == num_envs``), so there is no per-env Python on the hot
path: actions go in as one float64 array, observations come back as one.

Turning EnvPool into the VecEnv contract (``robo_ppo/envs/base.py``):

* Auto-reset. EnvPool resets *next-step*: the call after an episode ended
  ignores that env's action and returns its reset observation with reward 0.
  This adapter resets *same-step* instead: when envs finish, it calls
  ``reset(env_ids)`` for just those envs right away, puts their first
  observation into ``obs`` and their last one into ``info["final_obs"]``.
  EnvPool then never sees a done env again, so no step is wasted and no
  action is ignored.
* Episode statistics (``info["episode_return"]``, ``info["episode_length"]``)
  are accumulated here in float64, as the gymnasium engine does.
* Seeding. EnvPool fixes its seeds when the pool is built (env ``i`` gets
  ``seed + i``) and ignores ``reset(seed=...)``; ``reset(seed)`` here rebuilds
  the pool when the seed changes or the pool has already stepped, so
  ``reset(seed=s)`` always starts the same episodes, like gymnasium.
* Snapshots by replay. EnvPool exposes no simulator state, but each env is
  deterministic given its seed, its number of resets (each draws the next
  initial state from the env's own RNG) and the actions of its current
  episode. The adapter keeps those (one row copy per step into a
  ``[N, max_episode_steps, act_dim]`` buffer); ``set_state`` rebuilds the
  pool with the seed, resets each env as many times as it was reset, and
  replays its current episode's actions (batched over envs, no Python per
  env and step). The replayed observations are checked against the saved
  ones; a mismatch (another EnvPool build) logs a warning that the run
  continues from the replayed, not identical, state.

Behavioural differences from gymnasium's tasks (EnvPool 1.2.5, measured;
see benchmarks/README.md for the numbers):

* EnvPool 1.2.5 registers the MuJoCo ids ``-v3/-v4/-v5`` (``-v2`` for
  some). Its ``-v5`` ids set the same options as gymnasium v5 (contact forces
  in Ant/Humanoid observations, worldbody rows excluded, healthy reward only
  while healthy, ``mj_rnePostConstraint``, Walker2d's v5 model, ...) and have
  gymnasium v5's observation sizes (Ant 105, Humanoid 348, HalfCheetah 17,
  Hopper 11, Walker2d 17, InvertedDoublePendulum 9). Its ``-v4`` ids have the
  v4 layouts (Ant 27, Humanoid 376, InvertedDoublePendulum 11) and v4
  rewards (healthy reward on the terminating step), so a policy trained on
  ``Ant-v4`` cannot be replayed on gymnasium's ``Ant-v5``. Prefer the
  ``-v5`` ids; a version mismatch with ``env.id`` logs a warning.
* EnvPool links its own MuJoCo build: trajectories from the same state and
  actions agree with gymnasium's to ~1e-12 at first and drift apart over a
  few hundred steps (chaos amplifying round-off); contact-rich tasks (Ant)
  differ at ~1e-3 within a few steps.
* Rewards come back as float32 (gymnasium: float64); observations float64
  (cast to float32 here, as for gymnasium).
* Initial-state noise comes from EnvPool's RNG, so the same seed gives other
  initial states than gymnasium.
* ``env.kwargs`` are passed to EnvPool's task config, whose option names are
  EnvPool's (``reset_noise_scale`` and the reward weights match gymnasium's;
  e.g. gymnasium's ``include_cfrc_ext_in_observation`` is EnvPool's
  ``use_contact_force``). An unknown name raises ``ConfigError``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch

from robo_ppo.envs.base import ArrayVecEnv
from robo_ppo.errors import ConfigError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e .[envpool]   (envpool==1.2.5)"


def _import_envpool():
    try:
        import envpool
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ConfigError(f"engine=envpool needs the envpool package, which is not installed "
                          f"({e}); install it with: {INSTALL_HINT}") from e
    return envpool


def default_num_threads(num_envs: int) -> int:
    """One worker per usable core, never more than ``num_envs``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(int(num_envs), cores))


def _version(task_id: str) -> Optional[str]:
    m = re.search(r"-(v\d+)$", task_id)
    return m.group(1) if m else None


class EnvPoolVecEnv(ArrayVecEnv):
    """``num_envs`` copies of an EnvPool task, stepped by ``num_threads`` C++ threads.

    Args:
        task_id: EnvPool id (``HalfCheetah-v5``, ``Ant-v4``, ...).
        num_envs: batch size N.
        device: where the returned tensors live.
        seed: seed of env 0 (env i gets ``seed + i``); 0 when None.
        num_threads: worker threads; 0 = one per usable core (at most N).
        max_episode_steps: time limit override (None keeps the task's 1000).
        make_kwargs: EnvPool task options (see the module docstring).

    Raises:
        ConfigError: envpool is not installed, the id is not an EnvPool task,
            an option name is unknown, or the spaces are not a flat Box
            observation with a 1-D Box action.
    """

    engine = "envpool"

    def __init__(self, task_id: str, num_envs: int, device: torch.device | str = "cpu",
                 seed: Optional[int] = None, num_threads: int = 0,
                 max_episode_steps: Optional[int] = None,
                 make_kwargs: Optional[dict[str, Any]] = None):
        envpool = _import_envpool()
        if task_id not in envpool.list_all_envs():
            mujoco_ids = sorted(e for e in envpool.list_all_envs()
                                if re.match(r"^(Ant|HalfCheetah|Hopper|Humanoid|Walker2d|Swimmer|"
                                            r"Inverted\w*Pendulum)-v\d$", e))
            raise ConfigError(f"EnvPool has no task {task_id!r}; set env.envpool_id to one of "
                              f"{mujoco_ids} or use engine=gymnasium")
        self._envpool = envpool
        self.env_id = task_id
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.num_threads = int(num_threads) if num_threads and num_threads > 0 else \
            default_num_threads(num_envs)
        spec_keys = set(envpool.make_spec(task_id).config._fields)
        kwargs = dict(make_kwargs or {})
        unknown = sorted(set(kwargs) - spec_keys)
        if unknown:
            raise ConfigError(f"env.kwargs {unknown} are not options of EnvPool's {task_id}; its "
                              f"options are {sorted(spec_keys)}")
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = int(max_episode_steps)
        self._kwargs = kwargs
        self._seed = 0 if seed is None else int(seed)
        self._pool = self._make_pool(self._seed)
        self._fresh = True  # built with self._seed and not stepped since
        self.max_episode_steps = int(self._pool.config["max_episode_steps"])
        self.observation_space = self._pool.observation_space
        self.action_space = self._pool.action_space
        if not (isinstance(self.observation_space, gym.spaces.Box)
                and len(self.observation_space.shape) == 1):
            raise ConfigError(f"{task_id}: observation space {self.observation_space} is not a flat Box")
        if not (isinstance(self.action_space, gym.spaces.Box) and len(self.action_space.shape) == 1):
            raise ConfigError(f"{task_id}: only 1-D Box action spaces are supported on EnvPool, "
                              f"got {self.action_space}")
        self.is_discrete = False
        self._low = self.action_space.low.astype(np.float64)
        self._high = self.action_space.high.astype(np.float64)
        self._actions = np.zeros((self.num_envs, self.action_space.shape[0]), dtype=np.float64)
        self._env_ids = np.arange(self.num_envs, dtype=np.int32)
        self._ep_return = np.zeros(self.num_envs, dtype=np.float64)
        self._ep_length = np.zeros(self.num_envs, dtype=np.int64)
        # what a snapshot needs (see the module docstring): resets per env since the
        # pool was built, the actions of each env's current episode, the last obs
        self._resets = np.zeros(self.num_envs, dtype=np.int64)
        self._episode_actions = np.zeros((self.num_envs, self.max_episode_steps,
                                          self.action_space.shape[0]), dtype=np.float64)
        self._last_obs: Optional[np.ndarray] = None
        self._model = self._load_model()
        self.control_dt = (float(self._model.opt.timestep) * int(self._pool.config["frame_skip"])
                           if self._model is not None else 0.0)

    # --------------------------------------------------------------- helpers
    def _make_pool(self, seed: int):
        return self._envpool.make_gymnasium(
            self.env_id, num_envs=self.num_envs, batch_size=self.num_envs,
            num_threads=self.num_threads, seed=int(seed), **self._kwargs)

    def _load_model(self):
        """The task's MuJoCo model (for ``control_dt`` and names); None if not found."""
        cfg = self._pool.config
        root = Path(cfg.get("base_path", ""))
        xml = str(cfg.get("xml_file", ""))
        if not xml:
            return None
        candidates = [xml, xml.replace(".xml", "_envpool.xml")]
        for sub in ("mujoco/assets_gym", ""):
            for name in candidates:
                path = root / sub / name
                if path.is_file():
                    try:
                        import mujoco

                        from robo_ppo.envs.gymnasium_env import filter_mujoco_warnings

                        with filter_mujoco_warnings():
                            return mujoco.MjModel.from_xml_path(str(path))
                    except Exception:  # noqa: BLE001 - names are a convenience only
                        return None
        return None

    def _reorder(self, values: list[np.ndarray], env_id: np.ndarray) -> list[np.ndarray]:
        """Rows sorted by env id (sync mode returns them in order; this is a guard)."""
        if np.array_equal(env_id, self._env_ids):
            return values
        order = np.argsort(env_id)
        return [v[order] for v in values]

    # ------------------------------------------------------------------ api
    def reset_arrays(self, seed: Optional[int] = None) -> np.ndarray:
        """Reset every env; ``obs`` float32 ``[N, obs_dim]``.

        A ``seed`` that differs from the pool's, or any seed after the pool
        has stepped, rebuilds the pool so that the episodes are reproducible.
        """
        if seed is not None and (int(seed) != self._seed or not self._fresh):
            self._rebuild(int(seed))
        self._fresh = False
        obs, info = self._pool.reset()
        (obs,) = self._reorder([obs], info["env_id"])
        self._resets += 1
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        self._last_obs = obs.astype(np.float32)
        return self._last_obs

    def _rebuild(self, seed: int) -> None:
        self._pool.close()
        self._seed = seed
        self._pool = self._make_pool(seed)
        self._resets[:] = 0

    def step_arrays(self, actions: np.ndarray):
        """One step of every env; see ``ArrayVecEnv`` for shapes. Actions are
        clipped to the action bounds (float64) before EnvPool sees them."""
        self._fresh = False
        # clip = max then min, written into the float64 action buffer EnvPool expects
        np.minimum(np.maximum(actions, self._low, out=self._actions), self._high, out=self._actions)
        self._episode_actions[self._env_ids, self._ep_length] = self._actions
        obs, rewards, terminated, truncated, info = self._pool.step(self._actions)
        obs, rewards, terminated, truncated = self._reorder([obs, rewards, terminated, truncated],
                                                            info["env_id"])
        self._ep_return += rewards
        self._ep_length += 1
        done = terminated | truncated
        # EnvPool hands out a fresh float64 array per call; one cast to float32
        obs = obs.astype(np.float32)
        final_obs = obs
        ep_ret = ep_len = self.NO_EPISODES
        if done.any():
            idx = np.flatnonzero(done).astype(np.int32)
            final_obs = obs.copy()
            reset_obs, reset_info = self._pool.reset(idx)
            obs[reset_info["env_id"].astype(np.int64)] = reset_obs
            self._resets[idx] += 1
            ep_ret = self._ep_return[idx].astype(np.float32)
            ep_len = self._ep_length[idx].astype(np.float32)
            self._ep_return[idx] = 0.0
            self._ep_length[idx] = 0
        self._last_obs = obs
        info_out = {"final_obs": final_obs, "episode_return": ep_ret, "episode_length": ep_len}
        return obs, rewards.astype(np.float32, copy=False), terminated, truncated, info_out

    # ------------------------------------------------------------ snapshots
    def get_state(self) -> dict[str, Any]:
        """The pool's seed, resets per env, each env's current-episode actions
        (float64 as EnvPool received them), the episode accumulators and the
        last observations (to check the replay against)."""
        if self._last_obs is None:
            raise RuntimeError("get_state before reset")
        return {"engine": "envpool", "env_id": self.env_id, "seed": self._seed,
                "resets": torch.from_numpy(self._resets.copy()),
                "episode_actions": [torch.from_numpy(self._episode_actions[i, :n].copy())
                                    for i, n in enumerate(self._ep_length.tolist())],
                "ep_return": torch.from_numpy(self._ep_return.copy()),
                "ep_length": torch.from_numpy(self._ep_length.copy()),
                "last_obs": torch.from_numpy(np.array(self._last_obs, dtype=np.float32))}

    def set_state(self, state: dict[str, Any]) -> None:
        """Rebuild the pool and replay resets and current-episode actions (module docstring).

        Raises:
            ValueError: the snapshot is of another engine, task or batch size.
        """
        if state.get("engine") != "envpool" or state.get("env_id") != self.env_id:
            raise ValueError(f"snapshot of {state.get('engine')} {state.get('env_id')!r} cannot be "
                             f"restored into EnvPool {self.env_id!r}")
        resets = state["resets"].numpy()
        if len(resets) != self.num_envs:
            raise ValueError(f"snapshot holds {len(resets)} envs, this VecEnv has {self.num_envs}")
        lengths = np.array([len(a) for a in state["episode_actions"]], dtype=np.int64)
        if lengths.max(initial=0) >= self._episode_actions.shape[1]:  # a longer time limit then
            self._episode_actions = np.zeros((self.num_envs, int(lengths.max()) + 1,
                                              self._episode_actions.shape[2]), dtype=np.float64)
        if (resets < 1).any():
            raise ValueError("snapshot of an EnvPool engine that was never reset")
        self._rebuild(int(state["seed"]))
        obs = np.zeros((self.num_envs, self.obs_dim), dtype=np.float32)
        reset_obs, info = self._pool.reset()  # every env's first reset, as reset_arrays did
        obs[info["env_id"].astype(np.int64)] = reset_obs
        todo = resets - 1
        while (todo > 0).any():  # then the resets after finished episodes, batched over envs
            idx = np.flatnonzero(todo > 0).astype(np.int32)
            reset_obs, info = self._pool.reset(idx)
            obs[info["env_id"].astype(np.int64)] = reset_obs
            todo[idx] -= 1
        self._resets[:] = resets
        for i, acts in enumerate(state["episode_actions"]):
            self._episode_actions[i, :len(acts)] = acts.numpy()
        self._ep_return[:] = state["ep_return"].numpy()
        self._ep_length[:] = lengths
        ended = np.zeros(self.num_envs, dtype=bool)  # episodes that end during the replay: divergence
        for t in range(int(lengths.max(initial=0))):
            idx = np.flatnonzero((lengths > t) & ~ended).astype(np.int32)
            step_obs, _, term, trunc, info = self._pool.step(self._episode_actions[idx, t], idx)
            rows = info["env_id"].astype(np.int64)
            obs[rows] = step_obs
            ended[rows[term | trunc]] = True
        if ended.any():  # keep the same-step contract: those envs start a new episode now
            idx = np.flatnonzero(ended).astype(np.int32)
            reset_obs, info = self._pool.reset(idx)
            obs[info["env_id"].astype(np.int64)] = reset_obs
            self._resets[idx] += 1
            self._ep_return[idx] = 0.0
            self._ep_length[idx] = 0
        self._fresh = False
        self._last_obs = obs
        saved = state["last_obs"].numpy()
        if ended.any() or not np.array_equal(obs, saved):
            log.warning("EnvPool replay of the snapshot did not reproduce the saved observations "
                        "(max |diff| %.3g, %d episodes ended early; another EnvPool/MuJoCo build?): the "
                        "resumed run continues from the replayed state and is not bit-identical to an "
                        "uninterrupted one", float(np.max(np.abs(obs - saved))), int(ended.sum()))

    def close(self) -> None:
        self._pool.close()

    def metadata(self) -> dict[str, Any]:
        meta = super().metadata()
        if self._model is not None:
            from robo_ppo.envs.gymnasium_env import observation_action_names

            shim = SimpleNamespace(model=self._model, observation_space=self.observation_space)
            meta.update(observation_action_names(shim))
        return meta


def make_envpool_vec_env(env_cfg, engine_cfg, num_envs: int, device: torch.device | str = "cpu",
                         seed: Optional[int] = None) -> EnvPoolVecEnv:
    """Build the EnvPool engine for the ``env`` / ``engine`` config groups.

    Uses ``env.envpool_id``, ``env.max_episode_steps``, ``env.kwargs`` and
    ``engine.num_threads`` (0 = one per core).

    Raises:
        ConfigError: ``env.envpool_id`` is null (EnvPool lacks the task), the
            id or an option is unknown, or envpool is not installed.
    """
    task_id = env_cfg.get("envpool_id")
    if not task_id:
        raise ConfigError(f"env {env_cfg.get('name', env_cfg.get('id'))!r} has no env.envpool_id: "
                          "EnvPool does not provide this task; use engine=gymnasium (or set "
                          "env.envpool_id to an EnvPool id if it does)")
    _import_envpool()
    gym_version, pool_version = _version(str(env_cfg.get("id", ""))), _version(str(task_id))
    if gym_version and pool_version and gym_version != pool_version:
        log.warning("env.id is %s but env.envpool_id is %s: observation layout and rewards may differ "
                    "from the gymnasium task (EnvPool 1.2.5 also provides -%s ids)",
                    env_cfg.id, task_id, gym_version)
    return EnvPoolVecEnv(str(task_id), num_envs, device=device, seed=seed,
                         num_threads=int(engine_cfg.get("num_threads", 0) or 0),
                         max_episode_steps=env_cfg.get("max_episode_steps"),
                         make_kwargs=dict(env_cfg.get("kwargs") or {}))
