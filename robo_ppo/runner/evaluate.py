"""Deterministic evaluation episodes (frozen normalizer, mean/argmax actions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import numpy as np
import torch

from robo_ppo.envs.base import VecEnv


@torch.no_grad()
def run_episodes(env: VecEnv, act: Callable[[torch.Tensor], torch.Tensor], seed: int,
                 max_steps: int = 100_000,
                 on_step: Optional[Callable[[int], None]] = None) -> tuple[np.ndarray, np.ndarray]:
    """Run the first episode of each of ``env.num_envs`` envs to its end.

    ``act(obs [N, obs_dim]) -> actions`` maps raw observations to actions.
    ``on_step(t)`` is called after every step (e.g. to grab a video frame).
    Returns ``(returns [N], lengths [N])`` as float64/int64 numpy arrays;
    returns are the environment's raw (unscaled) rewards summed.
    """
    n = env.num_envs
    obs = env.reset(seed=seed)
    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    running = np.ones(n, dtype=bool)
    for t in range(max_steps):
        obs, rewards, terminated, truncated, _ = env.step(act(obs))
        r = rewards.cpu().numpy().astype(np.float64)
        returns[running] += r[running]
        lengths[running] += 1
        running &= ~(terminated | truncated).cpu().numpy()
        if on_step is not None:
            on_step(t)
        if not running.any():
            break
    return returns, lengths
