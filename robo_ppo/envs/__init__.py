"""Simulator engines behind one VecEnv protocol (see ``base.py``).

An engine is an entry in ``ENGINES``: its ``engine.name`` and the
``"module:function"`` of its factory, imported only when the engine is used
(EnvPool and Brax are optional extras). A factory takes
``(env_cfg, engine_cfg, num_envs, device=..., seed=..., render_mode=...)``
and returns a ``VecEnv``; it raises ``ConfigError`` for what the user can fix.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Optional

import torch

from robo_ppo.envs.base import VecEnv
from robo_ppo.errors import ConfigError

ENGINES: dict[str, str] = {
    "gymnasium": "robo_ppo.envs.gymnasium_env:make_gymnasium_vec_env",
    "envpool": "robo_ppo.envs.envpool_env:make_envpool_vec_env",
    "brax": "robo_ppo.envs.brax_env:make_brax_vec_env",
    "mujoco": "robo_ppo.envs.robot_env:make_robot_vec_env",
    "mjwarp": "robo_ppo.envs.robot_env:make_robot_vec_env",
}
"""``engine.name`` -> ``"module:factory"`` (lazy: the module is imported on first use)."""


def engine_factory(name: str) -> Callable[..., VecEnv]:
    """The factory registered for engine ``name``.

    Raises:
        ConfigError: ``name`` is not in ``ENGINES``.
    """
    try:
        target = ENGINES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"engine.name must be one of {tuple(ENGINES)}, got {name!r}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def make_vec_env(env_cfg, engine_cfg, num_envs: int, device: torch.device | str = "cpu",
                 seed: Optional[int] = None, render_mode: Optional[str] = None) -> VecEnv:
    """Build the VecEnv for ``env_cfg`` on the engine named by ``engine_cfg.name``.

    Raises:
        ConfigError: unknown engine, a task the engine does not provide, or
            the engine's optional dependency is not installed.
    """
    factory = engine_factory(engine_cfg.name)
    if num_envs < 1:
        raise ConfigError(f"algo.num_envs must be >= 1, got {num_envs}")
    limit = env_cfg.get("max_episode_steps")
    if limit is not None and limit < 1:
        raise ConfigError(f"env.max_episode_steps must be >= 1 (or null for the task's own limit), "
                          f"got {limit}")
    kwargs = {"device": device, "seed": seed}
    if render_mode is not None:  # only the gymnasium engine renders
        kwargs["render_mode"] = render_mode
    return factory(env_cfg, engine_cfg, num_envs, **kwargs)


__all__ = ["VecEnv", "make_vec_env", "engine_factory", "ENGINES"]
