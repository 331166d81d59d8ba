"""Brax engine: thousands of JAX-batched MuJoCo tasks feeding the torch learner.

``brax.envs`` tasks (ant, halfcheetah, hopper, humanoid, walker2d, ...) are
stepped by one ``jax.jit``-compiled function over a ``jax.vmap``-ed batch of
``num_envs`` environments, on whatever device JAX runs on (GPU when a CUDA
``jaxlib`` is installed, else CPU). Observations, rewards and flags cross to
torch through DLPack: on the same device the torch tensors *alias* the JAX
buffers (no copy); across devices (JAX on GPU, learner on CPU or the reverse)
they are copied once.

Why not brax's own wrappers: ``brax.envs.wrappers.training.AutoResetWrapper``
resets a finished env to the *first* state it was ever reset to (not a fresh
random one) and overwrites the last observation, so a truncated episode could
not be bootstrapped; ``brax.envs.wrappers.torch`` needs the legacy ``gym``
package. This module therefore does the episode bookkeeping itself, in JAX,
inside the same compiled step: step counter, time-limit truncation (distinct
from termination), auto-reset with a fresh PRNG key per env, the final
observation, and running episode return/length.

JAX GPU memory: unless ``XLA_PYTHON_CLIENT_PREALLOCATE`` or
``XLA_PYTHON_CLIENT_MEM_FRACTION`` is already set, importing JAX through this
module sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` so JAX does not grab 75 %
of the GPU up front and torch can still allocate. Set
``XLA_PYTHON_CLIENT_MEM_FRACTION=0.4`` (with preallocation) to give JAX a fixed
share instead. Both must be set before JAX creates its GPU client, i.e. before
the first JAX computation in the process. See docs/brax.md.

Compiles are expensive (35-120 s per step function on a 2-core CPU), so the compiled
function is cached per ``(brax_id, pipeline)`` in this process; ``num_envs``
only changes input shapes (one compile per distinct batch size) and the
episode length is a traced argument (changing it never recompiles).
"""

from __future__ import annotations

import functools
import os
from types import SimpleNamespace
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from robo_ppo.envs.base import StepInfo, VecEnv
from robo_ppo.errors import ConfigError

PIPELINES = ("mjx", "generalized", "positional", "spring")
"""Brax physics pipelines (``engine.pipeline``)."""
DEFAULT_EPISODE_LENGTH = 1000
"""Episode length when ``env.max_episode_steps`` is null (Brax's convention)."""
INSTALL_HINT = "pip install -e '.[brax]'"


def _import_brax():
    """Import ``jax`` and ``brax.envs``, bounding JAX's GPU memory first.

    Raises:
        ConfigError: JAX or Brax is not installed (names the install command).
    """
    if ("XLA_PYTHON_CLIENT_PREALLOCATE" not in os.environ
            and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ):
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    try:
        import brax.envs
        import jax
    except ImportError as e:
        raise ConfigError(
            f"engine=brax needs JAX and Brax ({e}); install them with {INSTALL_HINT} "
            "(on a CUDA machine add the matching jax CUDA plugin, see docs/brax.md)") from e
    return jax, brax.envs


# --------------------------------------------------------------- the kernel
class _Carry(NamedTuple):
    """Batched state threaded through the compiled step (leading axis N)."""

    env_state: Any
    """brax ``State`` pytree, every leaf ``[N, ...]``."""
    keys: Any
    """uint32 ``[N, 2]``: per-env PRNG key used for that env's next reset."""
    steps: Any
    """int32 ``[N]``: steps taken in the current episode."""
    ep_return: Any
    """float32 ``[N]``: raw reward summed over the current episode."""


class _Out(NamedTuple):
    """What one compiled step hands to torch."""

    obs: Any            # float32 [N, obs_dim]  (first obs of the next episode where done)
    reward: Any         # float32 [N]
    terminated: Any     # bool [N]
    truncated: Any      # bool [N]
    final_obs: Any      # float32 [N, obs_dim]
    ep_return: Any      # float32 [N], the finished episode's return where done, else 0
    ep_length: Any      # float32 [N], the finished episode's length where done, else 0
    done: Any           # bool [N]


class _Kernel(NamedTuple):
    env: Any
    advance: Any        # jitted (carry leaves, actions, full_reset, episode_length, seed, count)
    carry_def: Any      # treedef of _Carry (the carry crosses jit as a flat list of leaves)
    state_spec: Any     # single-env ShapeDtypeStruct tree of the canonical brax State
    obs_dim: int
    act_dim: int
    low: np.ndarray
    high: np.ndarray
    dt: float


def _brax_bounds(env) -> tuple[np.ndarray, np.ndarray]:
    """Action bounds of a ``brax.envs`` task from its actuators' control ranges."""
    act_dim = int(env.action_size)
    ctrl = np.asarray(env.sys.actuator.ctrl_range, dtype=np.float64).reshape(act_dim, 2)
    unlimited = ~np.isfinite(ctrl).all(axis=1)
    ctrl[unlimited] = (-1.0, 1.0)   # unlimited actuators: Brax's [-1, 1] convention
    return ctrl[:, 0].astype(np.float32), ctrl[:, 1].astype(np.float32)


@functools.cache
def _kernel(brax_id: str, pipeline: str) -> _Kernel:
    """Build (once per process) the ``brax.envs`` task ``brax_id`` on ``pipeline`` and its
    compiled batched step."""
    jax, brax_envs = _import_brax()
    jnp, lax = jax.numpy, jax.lax
    env = brax_envs.get_environment(brax_id, backend=pipeline)
    low, high = _brax_bounds(env)

    def canon(tree):
        # brax returns some leaves weakly typed after step() but not after
        # reset(); a weak/strong mismatch in the carry would recompile the
        # step on its second call. Casting every leaf to its own dtype makes
        # them all strongly typed.
        return jax.tree.map(lambda x: lax.convert_element_type(x, jnp.result_type(x)), tree)

    # Shapes without running anything (env.observation_size runs an
    # un-jitted reset, 15-35 s on CPU).
    state_spec = jax.eval_shape(lambda k: canon(env.reset(k)), jax.random.PRNGKey(0))
    obs_dim = int(state_spec.obs.shape[-1])
    act_dim = int(env.action_size)
    dt = float(np.asarray(env.dt))
    low_j, high_j = jnp.asarray(low), jnp.asarray(high)

    carry_def = jax.tree_util.tree_structure(_Carry(state_spec, 0, 0, 0))

    def select(mask, new, old):
        """Per env: ``new`` where ``mask [N]`` else ``old`` (any leaf rank)."""
        return jax.tree.map(
            lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b), new, old)

    def advance(leaves, actions, full_reset, episode_length, seed, reset_count):
        """One batched env step with time limit and auto-reset.

        ``leaves``: the flattened ``_Carry`` (a flat tuple crosses the jit
        boundary much faster than the nested mjx dataclasses). ``full_reset``
        (bool scalar): reset every env with keys
        ``split(fold_in(PRNGKey(seed), reset_count), N)`` (what ``reset``
        does) and discard the physics step. ``episode_length`` (int32
        scalar): time limit. All scalars are traced: changing them never
        recompiles. Returns ``(new leaves, _Out)``.
        """
        carry = jax.tree_util.tree_unflatten(carry_def, leaves)
        n = carry.steps.shape[0]
        few = max(1, n // 16)          # resets done on a gathered subset when at most this many
        actions = jnp.clip(actions.astype(jnp.float32), low_j, high_j)
        # The physics always runs (a conditional around it costs more on CPU than
        # the one wasted step per reset()); on the very first reset it steps the
        # all-zero placeholder state, whose (possibly NaN) result is discarded.
        stepped = canon(jax.vmap(env.step)(carry.env_state, actions))
        live = jnp.logical_not(full_reset)
        steps = jnp.where(live, carry.steps + 1, 0)
        terminated = (stepped.done > 0.5) & live
        truncated = (steps >= episode_length) & live & ~terminated
        done = terminated | truncated
        reward = jnp.where(live, stepped.reward, 0.0).astype(jnp.float32)
        ep_return = carry.ep_return + reward
        need_reset = done | full_reset
        seeded = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), reset_count), n)
        keys = jnp.where(full_reset, seeded, carry.keys)

        # Env i's next episode starts from reset(split(keys[i])[1]) whichever
        # branch runs, so the result does not depend on how many envs finished.
        def reset_subset(args):
            keys, state = args
            rows = jnp.nonzero(need_reset, size=few, fill_value=n)[0]   # n = no row (dropped)
            pairs = jax.vmap(jax.random.split)(keys[jnp.minimum(rows, n - 1)])
            fresh = canon(jax.vmap(env.reset)(pairs[:, 1]))
            state = jax.tree.map(lambda s, f: s.at[rows].set(f, mode="drop"), state, fresh)
            return keys.at[rows].set(pairs[:, 0], mode="drop"), state

        def reset_all(args):
            keys, state = args
            pairs = jax.vmap(jax.random.split)(keys)            # [N, 2, 2]
            fresh = canon(jax.vmap(env.reset)(pairs[:, 1]))
            return select(need_reset, pairs[:, 0], keys), select(need_reset, fresh, state)

        count = jnp.sum(need_reset)
        branches = [lambda a: a, reset_subset, reset_all] if few < n else [lambda a: a, reset_subset]
        branch = jnp.where(count == 0, 0, jnp.where(count <= few, 1, len(branches) - 1))
        keys, env_state = lax.switch(branch, branches, (keys, stepped))
        obs = env_state.obs.astype(jnp.float32)
        final_obs = jnp.where(done[:, None], stepped.obs.astype(jnp.float32), obs)
        new_carry = _Carry(env_state, keys, jnp.where(need_reset, 0, steps).astype(jnp.int32),
                           jnp.where(need_reset, 0.0, ep_return).astype(jnp.float32))
        out = _Out(obs, reward, terminated, truncated, final_obs,
                   jnp.where(done, ep_return, 0.0).astype(jnp.float32),
                   jnp.where(done, steps, 0).astype(jnp.float32), done)
        return jax.tree_util.tree_leaves(new_carry), out

    return _Kernel(env, jax.jit(advance), carry_def, state_spec, obs_dim, act_dim, low, high, dt)


def _jax_device_for(jax, device: torch.device):
    """The JAX device that should run the physics for a learner on ``device``:
    the GPU with the same index when both are CUDA, else JAX's default device."""
    default = jax.devices()[0]
    if device.type == "cuda" and default.platform == "gpu":
        gpus = jax.devices("gpu")
        return gpus[device.index or 0] if (device.index or 0) < len(gpus) else default
    return default


def _same_memory(device: torch.device, jax_device) -> bool:
    """Whether torch ``device`` and ``jax_device`` address the same memory."""
    if device.type == "cpu":
        return jax_device.platform == "cpu"
    if device.type == "cuda":
        return jax_device.platform == "gpu" and (device.index or 0) == jax_device.id
    return False


# --------------------------------------------------------------- the VecEnv
class BraxVecEnv(VecEnv):
    """``num_envs`` copies of a ``brax.envs`` task stepped as one JAX batch.

    Args:
        brax_id: name in the ``brax.envs`` registry (``ant``, ``halfcheetah``, ...).
        num_envs: batch size N.
        pipeline: Brax physics pipeline, one of ``PIPELINES``.
        episode_length: time limit in env steps (Brax counts 1000 by default);
            an episode that reaches it is *truncated* (``truncated=True``,
            ``terminated=False``) unless it also terminated on that step.
        device: where the returned tensors live (the learner's device). The
            physics runs on the JAX GPU of the same index when both are CUDA,
            else on JAX's default device (then results cross by one copy).
        seed: the seed of ``reset()`` calls without one (see ``reset``); the
            trainer passes the run seed.

    Tensors returned by ``reset``/``step`` alias JAX buffers when torch and
    JAX share the device (always on CPU): treat them as read-only (JAX
    arrays are immutable and XLA may rely on it) and ``clone()`` before any
    in-place operation. Actions enter JAX through DLPack too.

    On every step ``info`` also holds ``episode_done`` (bool ``[N]``) and
    ``episode_return_all`` / ``episode_length_all`` (float32 ``[N]``, the
    finished episode's value where ``episode_done``, else 0): the same
    statistics as the ``[K]`` contract tensors without the boolean indexing
    that forces a device-to-host sync on GPU.

    Raises:
        ConfigError: unknown task or pipeline, or JAX/Brax not installed.
    """

    engine = "brax"

    def __init__(self, brax_id: str, num_envs: int, pipeline: str = "mjx",
                 episode_length: int = DEFAULT_EPISODE_LENGTH,
                 device: torch.device | str = "cpu", seed: int | None = None):
        if pipeline not in PIPELINES:
            raise ConfigError(f"engine.pipeline must be one of {PIPELINES}, got {pipeline!r}")
        if num_envs < 1:
            raise ConfigError(f"algo.num_envs must be >= 1, got {num_envs}")
        if episode_length < 1:
            raise ConfigError(f"env.max_episode_steps must be >= 1, got {episode_length}")
        jax, brax_envs = _import_brax()
        known = sorted(brax_envs._envs) if hasattr(brax_envs, "_envs") else []
        if known and brax_id not in known:
            raise ConfigError(f"brax has no task {brax_id!r}; set env.brax_id to one of {known}")
        self._jax = jax
        try:
            self._kernel = _kernel(brax_id, pipeline)
        except (ValueError, NotImplementedError) as e:
            raise ConfigError(f"brax task {brax_id!r} does not build with engine.pipeline="
                              f"{pipeline}: {e}; try engine.pipeline=mjx") from e
        k = self._kernel
        self.num_envs = int(num_envs)
        self.env_id = brax_id
        self.pipeline = pipeline
        self.episode_length = int(episode_length)
        self.device = torch.device(device)
        self.control_dt = k.dt
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (k.obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(k.low, k.high, dtype=np.float32)
        self.jax_device = _jax_device_for(jax, self.device)
        self._zero_copy = _same_memory(self.device, self.jax_device)
        self._seed = 0 if seed is None else int(seed)
        self._reset_count = 0
        # Host-built constants and state: device_put compiles nothing, whereas
        # every jnp.zeros of a new shape is a small XLA compile (~0.1 s on CPU).
        put = functools.partial(jax.device_put, device=self.jax_device)
        n = self.num_envs
        self._true, self._false = put(np.bool_(True)), put(np.bool_(False))
        self._episode_length = put(np.int32(self.episode_length))
        zeros_state = jax.tree.map(lambda s: np.zeros((n,) + s.shape, s.dtype), k.state_spec)
        self._carry = put(jax.tree_util.tree_leaves(_Carry(
            zeros_state, np.zeros((n, 2), np.uint32), np.zeros((n,), np.int32), np.zeros((n,), np.float32))))
        """The batched ``_Carry`` as a flat list of JAX arrays (see ``_Kernel``)."""
        self._zero_actions = put(np.zeros((n, k.act_dim), np.float32))
        self._no_seed = (put(np.uint32(self._seed & 0xFFFFFFFF)), put(np.uint32(0)))
        self.last_jax_out = None
        """The JAX arrays of the last ``reset``/``step`` (``_Out``); the returned
        tensors alias them when torch and JAX share the device."""
        self._last_actions = None

    # ---------------------------------------------------------- dlpack
    def _to_torch(self, x) -> torch.Tensor:
        """JAX array -> torch tensor on ``self.device``; aliases the JAX buffer
        when both sit on the same device (no copy), else one copy."""
        if self._zero_copy:
            return torch.from_dlpack(x)
        return torch.from_numpy(np.array(x)).to(self.device)

    def _to_jax(self, t: torch.Tensor):
        """torch tensor -> JAX array on ``self.jax_device``; float32, contiguous,
        aliasing the tensor's memory when the devices match."""
        t = t.detach()
        if t.dtype != torch.float32:
            t = t.to(torch.float32)
        if self._zero_copy and t.device == self.device:
            return self._jax.dlpack.from_dlpack(t.contiguous())
        return self._jax.device_put(t.cpu().numpy(), self.jax_device)

    # ------------------------------------------------------------- api
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every env; returns obs float32 ``[N, obs_dim]`` on ``device``.

        Per-env PRNG keys are ``split(fold_in(PRNGKey(s), c), N)`` with
        ``s = seed, c = 0`` when a seed is given; with ``seed=None``, ``s`` is
        the constructor's seed and ``c`` counts the seedless resets (0 the
        first time), so repeated seedless resets give new episodes.
        Each env later draws its auto-reset keys from its own key chain.
        """
        jax = self._jax
        if seed is None:
            s, c = self._seed, self._reset_count
            self._reset_count += 1
        else:
            s, c = int(seed), 0
        s_arr = jax.device_put(np.uint32(s & 0xFFFFFFFF), self.jax_device)
        c_arr = jax.device_put(np.uint32(c), self.jax_device)
        self._carry, out = self._kernel.advance(self._carry, self._zero_actions, self._true,
                                                self._episode_length, s_arr, c_arr)
        self.last_jax_out = out
        return self._to_torch(out.obs)

    def step(self, actions: torch.Tensor):
        """Step every env once with ``actions`` float32 ``[N, act_dim]`` (clipped
        to ``action_space`` inside the compiled step). Returns
        ``obs, rewards, terminated, truncated, info`` per the VecEnv contract."""
        if actions.shape != (self.num_envs, self._kernel.act_dim):
            raise ValueError(f"actions must have shape {(self.num_envs, self._kernel.act_dim)}, "
                             f"got {tuple(actions.shape)}")
        acts = self._to_jax(actions)
        self._last_actions = acts      # keep the aliased torch memory alive past the async step
        self._carry, out = self._kernel.advance(self._carry, acts, self._false, self._episode_length,
                                                *self._no_seed)
        self.last_jax_out = out
        t = self._to_torch
        done = t(out.done)
        ret_all, len_all = t(out.ep_return), t(out.ep_length)
        info = StepInfo({
            "final_obs": t(out.final_obs),
            # "episode_return" / "episode_length" ([K]) are made on first access (see StepInfo)
            "episode_done": done,
            "episode_return_all": ret_all,
            "episode_length_all": len_all,
        })
        return t(out.obs), t(out.reward), t(out.terminated), t(out.truncated), info

    def close(self) -> None:
        self._carry = None
        self._last_actions = None

    def metadata(self) -> dict[str, Any]:
        """Engine facts plus actuator (and, for qpos/qvel layouts, observation) names."""
        meta = super().metadata()
        meta["pipeline"] = self.pipeline
        meta["episode_length"] = self.episode_length
        env = self._kernel.env
        mj_model = getattr(env.sys, "mj_model", None)
        if mj_model is not None:
            from robo_ppo.envs.gymnasium_env import observation_action_names

            meta.update(observation_action_names(
                SimpleNamespace(model=mj_model, observation_space=self.observation_space)))
        return meta

    # -------------------------------------------------------- snapshots
    def get_state(self) -> dict[str, Any]:
        """Snapshot of the whole batched JAX state (brax State, PRNG keys, step
        counters, running returns): each leaf as raw bytes in a uint8 tensor
        plus its dtype name and shape, so ``torch.load(weights_only=True)``
        reads it. Size: the brax State of N envs (large for ``mjx``: it holds
        the constraint arrays of every env)."""
        arrays = [np.asarray(x) for x in self._carry]
        return {
            "engine": self.engine, "env_id": self.env_id, "pipeline": self.pipeline,
            "num_envs": self.num_envs, "episode_length": self.episode_length,
            "leaves": [torch.from_numpy(np.frombuffer(a.tobytes(), dtype=np.uint8).copy())
                       for a in arrays],
            "dtypes": [a.dtype.name for a in arrays],
            "shapes": [list(a.shape) for a in arrays],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a ``get_state()`` snapshot taken from an env of the same task,
        pipeline and ``num_envs``. Raises ValueError when it does not fit."""
        jax = self._jax
        leaves = self._carry
        mine = (self.engine, self.env_id, self.pipeline, self.num_envs)
        theirs = (state.get("engine"), state.get("env_id"), state.get("pipeline"), state.get("num_envs"))
        if mine != theirs or len(state["leaves"]) != len(leaves):
            raise ValueError(f"snapshot of {theirs} does not fit this VecEnv {mine}")
        restored = []
        for leaf, raw, dtype, shape in zip(leaves, state["leaves"], state["dtypes"], state["shapes"], strict=True):
            if tuple(shape) != tuple(leaf.shape) or np.dtype(dtype) != leaf.dtype:
                raise ValueError(f"snapshot leaf {dtype}{shape} does not fit {leaf.dtype}{list(leaf.shape)}")
            arr = np.frombuffer(raw.numpy().tobytes(), dtype=np.dtype(dtype)).reshape(shape)
            restored.append(jax.device_put(arr, self.jax_device))
        self._carry = restored


def make_brax_vec_env(env_cfg, engine_cfg, num_envs: int, device: torch.device | str = "cpu",
                      seed: int | None = None) -> BraxVecEnv:
    """Build the Brax VecEnv for ``env_cfg`` (uses ``env.brax_id`` and
    ``env.max_episode_steps``, null -> 1000) on ``engine_cfg.pipeline``.

    Raises:
        ConfigError: the task has no Brax version (``env.brax_id: null``), an
            unknown pipeline, or JAX/Brax not installed.
    """
    steps = env_cfg.get("max_episode_steps")
    episode_length = DEFAULT_EPISODE_LENGTH if steps is None else int(steps)
    if env_cfg.get("task"):
        raise ConfigError(f"{env_cfg.get('name')!r} is a robo_ppo robot task: run it with engine=mujoco (CPU) "
                          "or engine=mjwarp (GPU)")
    brax_id = env_cfg.get("brax_id")
    if not brax_id:
        raise ConfigError(
            f"task {env_cfg.get('name')!r} has no Brax version (env.brax_id is null); use "
            "engine=gymnasium, or pick a Brax task such as env=ant, env=halfcheetah, env=hopper, "
            "env=humanoid or env=walker2d")
    pipeline = engine_cfg.get("pipeline", "mjx")
    return BraxVecEnv(brax_id, num_envs, pipeline=pipeline, episode_length=episode_length,
                      device=device, seed=seed)


__all__ = ["BraxVecEnv", "make_brax_vec_env", "PIPELINES", "DEFAULT_EPISODE_LENGTH"]
