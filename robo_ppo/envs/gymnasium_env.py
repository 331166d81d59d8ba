"""CPU engine: gymnasium MuJoCo (and classic-control) tasks in one process.

``num_envs`` copies made with ``gymnasium.make`` (so the registered wrappers,
e.g. the time limit, apply) are stepped one after the other, with same-step
auto-reset: the final observation of a finished episode and the first of the
next arrive in the same step. This is what ``gymnasium.vector.SyncVectorEnv``
does in ``AutoresetMode.SAME_STEP`` (same seeding: env ``i`` gets
``seed + i``), without its per-step info dictionaries, which cost about as
much as a HalfCheetah step on a small CPU (docs/profile.md). On 2 cores
stepping in one process beats ``AsyncVectorEnv`` (docs/architecture.md);
EnvPool is the multi-core engine.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, Optional

import gymnasium as gym
import mujoco
import numpy as np
import torch

from robo_ppo.envs.base import ArrayVecEnv
from robo_ppo.errors import ConfigError

_MJ_STATE = mujoco.mjtState.mjSTATE_INTEGRATION

MJ_DERIVED_FIELDS = (
    # position stage
    "xpos", "xquat", "xmat", "xipos", "ximat", "xanchor", "xaxis", "geom_xpos", "geom_xmat",
    "site_xpos", "site_xmat", "cam_xpos", "cam_xmat", "light_xpos", "light_xdir", "subtree_com",
    "cdof", "cinert", "crb", "ten_length", "actuator_length", "flexvert_xpos",
    # velocity stage
    "cvel", "cdof_dot", "ten_velocity", "actuator_velocity", "subtree_linvel", "subtree_angmom",
    "qfrc_bias", "qfrc_passive", "qfrc_spring", "qfrc_damper", "qfrc_gravcomp", "qfrc_fluid",
    # acceleration stage, forces, sensors
    "actuator_force", "qfrc_actuator", "qfrc_smooth", "qacc_smooth", "qfrc_constraint", "qacc",
    "qfrc_inverse", "cacc", "cfrc_int", "cfrc_ext", "sensordata", "energy",
)
"""``mjData`` arrays computed from the state (sizes fixed by the model) that a
snapshot carries besides ``mj_getState(mjSTATE_INTEGRATION)``.

After ``mj_step`` they hold the values of the last substep's forward pass, one
substep behind ``qpos``/``qvel``, and tasks read them between steps (Ant-v5's
forward reward reads ``xpos`` before stepping, Humanoid-v5 its centre of mass
from ``xipos``). ``mj_forward`` after a restore would refresh them to the
current state and change the first reward after a resume; copying them back
reproduces an uninterrupted run bit for bit. The next ``mj_step`` recomputes
all of them from the integration state."""

DEPRECATED_COMPILER_WARNINGS = re.compile(r"^compiler attribute 'settotalmass' is deprecated")
"""MuJoCo warnings about gymnasium's own model files that a user cannot act on
(MuJoCo 4 deprecates ``settotalmass``, which gymnasium's half_cheetah.xml sets).
Only these are dropped while a task's model compiles (``filter_mujoco_warnings``)."""


@contextlib.contextmanager
def filter_mujoco_warnings(pattern: re.Pattern[str] = DEPRECATED_COMPILER_WARNINGS) -> Iterator[None]:
    """Drop MuJoCo warnings matching ``pattern`` inside the block.

    MuJoCo prints its warnings from C (``WARNING: ...`` on stderr, plus a line
    in ``MUJOCO_LOG.TXT``), so Python's ``warnings`` filters cannot reach them.
    This installs a ``mju_user_warning`` handler for the block: a matching
    message is dropped, any other goes to the handler that was installed
    before, or is printed and logged as MuJoCo's default handler does.
    """
    previous = mujoco.get_mju_user_warning()

    def handler(msg: str) -> None:
        if pattern.search(msg):
            return
        if previous is not None:
            previous(msg)
            return
        mujoco.mju_writeLog("WARNING", msg)
        sys.stderr.write(f"WARNING: {msg}\n\n")
        sys.stderr.flush()

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def resolve_env_id(env_id: str) -> str:
    """Check a gymnasium id and return it; ``module:EnvId`` imports ``module`` first.

    ``module:EnvId`` is gymnasium's form for tasks registered by a user
    package (``gymnasium.make`` imports the module, whose import registers
    ``EnvId``). A module that is not importable from ``sys.path`` is also
    looked for in the working directory (as ``python -m`` would find it).

    Raises:
        ConfigError: the module cannot be imported or does not register the id.
    """
    module, sep, name = env_id.rpartition(":")
    if sep:
        if not module or not name:
            raise ConfigError(f"env.id {env_id!r} is not of the form module:EnvId (e.g. my_robots:MyRobot-v0)")
        _import_env_module(module, env_id)
    if name not in gym.registry:
        if sep:
            raise ConfigError(f"module {module!r} was imported but registers no gymnasium task {name!r}; "
                              f"call gymnasium.register(id={name!r}, entry_point=...) when {module} is "
                              "imported, or fix the id after the ':'")
        raise ConfigError(
            f"gymnasium has no task {env_id!r}; set env.id to a registered id such as HalfCheetah-v5 "
            "(list: python -c 'import gymnasium; print(list(gymnasium.registry))'), or to "
            "module:EnvId for a task your own module registers")
    return env_id


def _import_env_module(module: str, env_id: str) -> None:
    if _try_import(module, env_id):
        return
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # last: never shadows an installed package
        if _try_import(module, env_id):
            return
        sys.path.remove(cwd)
    raise ConfigError(f"cannot import module {module!r} of env.id={env_id}: install the package that "
                      "provides it, add its directory to PYTHONPATH, or run from that directory")


def _try_import(module: str, env_id: str) -> bool:
    """Import ``module``: True if it imported, False if it is not found;
    ConfigError if it is found but fails (a missing dependency, an error of its own)."""
    try:
        importlib.import_module(module)
        return True
    except ModuleNotFoundError as e:
        if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
            return False
        raise ConfigError(f"importing {module!r} (env.id={env_id}) failed: {e}; install what it "
                          "needs") from e
    except Exception as e:  # noqa: BLE001 - a user module may raise anything on import
        raise ConfigError(f"importing {module!r} (env.id={env_id}) failed: {type(e).__name__}: {e}; "
                          "fix the module (debug=true shows the traceback)") from e


def _time_limit(env: gym.Env):
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


class GymnasiumVecEnv(ArrayVecEnv):
    """``num_envs`` copies of a gymnasium task stepped in this process.

    Args:
        env_id: gymnasium id (``HalfCheetah-v5``, ``CartPole-v1``, ...).
        num_envs: batch size N.
        device: where the returned tensors live.
        max_episode_steps: time limit override (None keeps the registered one).
        make_kwargs: extra ``gymnasium.make`` keyword arguments.
        render_mode: e.g. ``rgb_array`` for video (replay).

    Raises:
        ConfigError: the id is not a registered gymnasium task, or its spaces
            are not a flat Box observation with a 1-D Box or Discrete action.
    """

    engine = "gymnasium"

    def __init__(self, env_id: str, num_envs: int, device: torch.device | str = "cpu",
                 max_episode_steps: Optional[int] = None,
                 make_kwargs: Optional[dict[str, Any]] = None,
                 render_mode: Optional[str] = None):
        resolve_env_id(env_id)
        kwargs = dict(make_kwargs or {})
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = int(max_episode_steps)
        if render_mode is not None:
            kwargs["render_mode"] = render_mode

        def make():
            try:
                return gym.make(env_id, disable_env_checker=True, **kwargs)
            except (TypeError, ValueError, OSError) as e:  # e.g. an unknown or bad env.kwargs entry
                raise ConfigError(f"gymnasium.make({env_id!r}) failed ({type(e).__name__}: {e}); check "
                                  f"env.kwargs {dict(make_kwargs or {})} against the task's constructor "
                                  "(debug=true shows the traceback)") from e

        with filter_mujoco_warnings():
            self.envs = [make() for _ in range(num_envs)]
        self.num_envs = int(num_envs)
        self.env_id = env_id
        self.device = torch.device(device)
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        if not (isinstance(self.observation_space, gym.spaces.Box) and len(self.observation_space.shape) == 1):
            raise ConfigError(f"{env_id}: observation space {self.observation_space} is not a flat Box")
        self.is_discrete = isinstance(self.action_space, gym.spaces.Discrete)
        if not self.is_discrete:
            self._low = self.action_space.low.astype(np.float64)
            self._high = self.action_space.high.astype(np.float64)
        first = self.envs[0].unwrapped
        self.control_dt = float(getattr(first, "dt", getattr(first, "tau", 0.0)))
        self._ep_return = np.zeros(num_envs, dtype=np.float64)
        self._ep_length = np.zeros(num_envs, dtype=np.int64)

    # ------------------------------------------------------------------ api
    def reset_arrays(self, seed: Optional[int] = None) -> np.ndarray:
        obs = np.stack([env.reset(seed=None if seed is None else seed + i)[0]
                        for i, env in enumerate(self.envs)]).astype(np.float32)
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        return obs

    def step_arrays(self, actions: np.ndarray):
        if self.is_discrete:
            acts = actions.astype(np.int64).reshape(self.num_envs)
        else:
            acts = np.minimum(np.maximum(actions, self._low), self._high)  # float64, clipped
        n = self.num_envs
        obs = np.empty((n, self.obs_dim), dtype=np.float32)
        rewards = np.empty(n, dtype=np.float32)
        terminated = np.empty(n, dtype=bool)
        truncated = np.empty(n, dtype=bool)
        finals: dict[int, np.ndarray] = {}
        for i, env in enumerate(self.envs):
            o, r, terminated[i], truncated[i], _ = env.step(acts[i])
            rewards[i] = r
            self._ep_return[i] += r
            if terminated[i] or truncated[i]:
                finals[i] = o
                o, _ = env.reset()
            obs[i] = o
        self._ep_length += 1
        final_obs = obs
        ep_ret = ep_len = self.NO_EPISODES
        if finals:
            done = list(finals)
            final_obs = obs.copy()
            final_obs[done] = np.stack(list(finals.values()))
            ep_ret = self._ep_return[done].astype(np.float32)
            ep_len = self._ep_length[done].astype(np.float32)
            self._ep_return[done] = 0.0
            self._ep_length[done] = 0
        info = {"final_obs": final_obs, "episode_return": ep_ret, "episode_length": ep_len}
        return obs, rewards, terminated, truncated, info

    def render(self, index: int = 0) -> np.ndarray:
        """RGB frame ``[H, W, 3]`` uint8 of env ``index`` (needs ``render_mode='rgb_array'``)."""
        return self.envs[index].render()

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def metadata(self) -> dict[str, Any]:
        meta = super().metadata()
        names = observation_action_names(self.envs[0].unwrapped)
        meta.update(names)
        return meta

    # ------------------------------------------------------------ snapshots
    def get_state(self) -> dict[str, Any]:
        """Per env: MuJoCo integration state (``mj_getState``) and the derived
        arrays tasks read between steps (``MJ_DERIVED_FIELDS``), time-limit
        counter, RNG state, and the episode accumulators."""
        envs = []
        for env in self.envs:
            u = env.unwrapped
            s: dict[str, Any] = {"np_random": u.np_random.bit_generator.state}
            if hasattr(u, "model") and hasattr(u, "data"):
                buf = np.empty(mujoco.mj_stateSize(u.model, _MJ_STATE), dtype=np.float64)
                mujoco.mj_getState(u.model, u.data, buf, _MJ_STATE)
                s["mj_state"] = torch.from_numpy(buf)
                s["mj_derived"] = {name: torch.from_numpy(np.array(getattr(u.data, name)))
                                   for name in MJ_DERIVED_FIELDS if hasattr(u.data, name)}
            elif hasattr(u, "state"):
                s["state"] = torch.as_tensor(np.asarray(u.state, dtype=np.float64))
                s["steps_beyond_terminated"] = getattr(u, "steps_beyond_terminated", None)
            else:
                raise NotImplementedError(f"cannot snapshot {self.env_id}")
            tl = _time_limit(env)
            s["elapsed_steps"] = None if tl is None else int(tl._elapsed_steps)
            envs.append(s)
        return {"envs": envs, "ep_return": torch.from_numpy(self._ep_return.copy()),
                "ep_length": torch.from_numpy(self._ep_length.copy())}

    def set_state(self, state: dict[str, Any]) -> None:
        if len(state["envs"]) != self.num_envs:
            raise ValueError(f"snapshot holds {len(state['envs'])} envs, this VecEnv has {self.num_envs}")
        for env, s in zip(self.envs, state["envs"], strict=True):
            u = env.unwrapped
            u.np_random.bit_generator.state = s["np_random"]
            if "mj_state" in s:
                mujoco.mj_setState(u.model, u.data, s["mj_state"].numpy(), _MJ_STATE)
                derived = s.get("mj_derived")
                if derived is None:  # a snapshot without them: recompute (not bit-identical)
                    mujoco.mj_forward(u.model, u.data)
                else:  # exactly what the interrupted run held (no mj_forward)
                    for name, value in derived.items():
                        getattr(u.data, name)[...] = value.numpy()
            else:
                u.state = s["state"].numpy().copy()
                u.steps_beyond_terminated = s["steps_beyond_terminated"]
            tl = _time_limit(env)
            if tl is not None and s["elapsed_steps"] is not None:
                tl._elapsed_steps = s["elapsed_steps"]
        self._ep_return[:] = state["ep_return"].numpy()
        self._ep_length[:] = state["ep_length"].numpy()


def make_gymnasium_vec_env(env_cfg, engine_cfg, num_envs: int, device: torch.device | str = "cpu",
                           seed: Optional[int] = None,
                           render_mode: Optional[str] = None) -> GymnasiumVecEnv:
    """Build the gymnasium engine for the ``env`` / ``engine`` config groups
    (``env.id``, ``env.max_episode_steps``, ``env.kwargs``). The seed is
    applied by ``reset(seed)``, not here.

    Raises:
        ConfigError: see ``GymnasiumVecEnv``.
    """
    return GymnasiumVecEnv(str(env_cfg.id), num_envs, device=device,
                           max_episode_steps=env_cfg.get("max_episode_steps"),
                           make_kwargs=dict(env_cfg.get("kwargs") or {}), render_mode=render_mode)


def observation_action_names(env) -> dict[str, list[str]]:
    """Joint/actuator names of a MuJoCo task, where the model defines them.

    ``action_names`` are the actuator names in control order. Observation
    layouts differ per task, so ``observation_names`` is given only for the
    common qpos/qvel layout of gymnasium's locomotion tasks
    (``qpos[k:]`` then ``qvel``, with ``k`` root coordinates excluded).
    """
    model = getattr(env, "model", None)
    if model is None:
        return {}
    act_names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i) or f"act{i}"
                 for i in range(model.nu)]
    names: dict[str, list[str]] = {"action_names": act_names}
    obs_dim = env.observation_space.shape[0]
    qpos_names, qvel_names = [], []
    for j in range(model.njnt):
        jname = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}"
        jtype = model.jnt_type[j]
        if jtype == mujoco.mjtJoint.mjJNT_FREE:
            qpos_names += [f"{jname}:{c}" for c in ("x", "y", "z", "qw", "qx", "qy", "qz")]
            qvel_names += [f"{jname}:{c}" for c in ("vx", "vy", "vz", "wx", "wy", "wz")]
        elif jtype == mujoco.mjtJoint.mjJNT_BALL:
            qpos_names += [f"{jname}:{c}" for c in ("qw", "qx", "qy", "qz")]
            qvel_names += [f"{jname}:{c}" for c in ("wx", "wy", "wz")]
        else:
            qpos_names.append(f"{jname}:pos")
            qvel_names.append(f"{jname}:vel")
    skip = len(qpos_names) + len(qvel_names) - obs_dim
    if 0 <= skip <= 2:
        names["observation_names"] = (qpos_names[skip:] + qvel_names)
    return names
