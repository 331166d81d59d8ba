"""Simulator engines behind one VecEnv protocol (see ``base.py``)."""

from __future__ import annotations

from typing import Optional

import torch

from robo_ppo.envs.base import VecEnv
from robo_ppo.errors import ConfigError

ENGINES = ("gymnasium", "envpool", "brax")


def make_vec_env(env_cfg, backend_cfg, num_envs: int, device: torch.device | str = "cpu",
                 seed: Optional[int] = None, render_mode: Optional[str] = None) -> VecEnv:
    """Build the VecEnv for ``env_cfg`` on the engine named by ``backend_cfg.name``.

    Raises:
        ConfigError: unknown engine, a task the engine does not provide, or
            the engine's optional dependency is not installed.
    """
    name = backend_cfg.name
    if num_envs < 1:
        raise ConfigError(f"algo.num_envs must be >= 1, got {num_envs}")
    if name == "gymnasium":
        from robo_ppo.envs.gymnasium_env import GymnasiumVecEnv

        return GymnasiumVecEnv(env_cfg.id, num_envs, device=device,
                               max_episode_steps=env_cfg.max_episode_steps,
                               make_kwargs=dict(env_cfg.kwargs), render_mode=render_mode)
    if name == "envpool":
        from robo_ppo.envs.envpool_env import make_envpool_vec_env

        return make_envpool_vec_env(env_cfg, backend_cfg, num_envs, device=device, seed=seed)
    if name == "brax":
        from robo_ppo.envs.brax_env import make_brax_vec_env

        return make_brax_vec_env(env_cfg, backend_cfg, num_envs, device=device, seed=seed)
    raise ConfigError(f"backend.name must be one of {ENGINES}, got {name!r}")


__all__ = ["VecEnv", "make_vec_env", "ENGINES"]
