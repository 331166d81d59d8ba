"""The VecEnv protocol: the one seam between simulator engines and the learner.

Every engine (gymnasium MuJoCo, EnvPool, Brax) is wrapped into this batched
interface so the training loop never knows which engine it drives.

Contract (``N = num_envs``):

* ``reset(seed) -> obs``: ``obs`` float32 ``[N, obs_dim]`` on ``device``.
* ``step(actions) -> obs, rewards, terminated, truncated, info``:
  ``actions`` float32 ``[N, act_dim]`` (unclipped policy samples: the adapter
  clips them to the action bounds) or int64 ``[N]`` for Discrete spaces;
  ``rewards`` float32 ``[N]``; ``terminated``, ``truncated`` bool ``[N]``.
  Auto-reset: a finished env's row of ``obs`` is already the first obs of its
  next episode; ``info["final_obs"]`` float32 ``[N, obs_dim]`` holds the last
  obs of the finished episode in those rows (other rows equal ``obs``), so
  truncated episodes can be bootstrapped. ``info["episode_return"]`` and
  ``info["episode_length"]`` (float32 ``[K]``) list the K episodes that ended
  this step.
* ``observation_space``, ``action_space``: single-env gymnasium spaces.
* CPU engines (``ArrayVecEnv``) also offer ``reset_arrays`` / ``step_arrays``:
  the same contract with numpy arrays in and out (no torch), which the
  numpy compute path of the trainer uses.
* ``get_state() / set_state(state)``: a snapshot of every env's simulator
  state (tensors and plain Python values only) for exact resume; engines that
  cannot snapshot raise ``NotImplementedError``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch


class VecEnv(ABC):
    num_envs: int
    observation_space: gym.Space
    action_space: gym.Space
    device: torch.device
    env_id: str
    """Task id in the engine's own naming (e.g. ``HalfCheetah-v5``)."""
    engine: str
    """Engine name (``gymnasium``, ``envpool``, ``brax``)."""
    control_dt: float
    """Seconds of simulated time per env step (MuJoCo timestep x frame skip)."""
    checks_divergence: bool = False
    """Whether ``step`` detects diverged physics (``info["diverged"]``, ``divergence_hint()``: robot tasks)."""

    @property
    def obs_dim(self) -> int:
        return int(self.observation_space.shape[0])

    @abstractmethod
    def reset(self, seed: Optional[int] = None) -> torch.Tensor: ...

    @abstractmethod
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor, dict[str, Any]]: ...

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError(f"the {self.engine} engine cannot snapshot its simulator state")

    def set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError(f"the {self.engine} engine cannot restore a simulator state")

    def set_training_clock(self, steps_per_env: int, num_envs: int) -> None:  # noqa: B027 - most need nothing
        """Training has run ``steps_per_env`` control steps of each of ``num_envs`` envs (all ranks' training
        envs): a task that keeps a clock over training (a curriculum, counted in env steps) sets it from
        this. The trainer calls it at the start (``0``), on a resume without a snapshot, and on the
        evaluation envs before each evaluation. No-op by default."""

    def close(self) -> None:  # noqa: B027 - engines without resources keep the no-op
        """Release the engine's resources (no-op by default)."""

    def metadata(self) -> dict[str, Any]:
        """Task facts a robot-side program needs (names where the task defines them)."""
        return {"env_id": self.env_id, "engine": self.engine, "control_dt": self.control_dt}


class ArrayVecEnv(VecEnv):
    """A CPU engine: implements the contract on numpy arrays (``reset_arrays``,
    ``step_arrays``); ``reset`` / ``step`` wrap them with zero-copy tensors
    (moved to ``device`` if that is not the CPU).

    ``step_arrays`` takes actions as an array (float ``[N, act_dim]`` or int
    ``[N]``) and returns ``obs`` float32 ``[N, obs_dim]``, ``rewards`` float32
    ``[N]``, ``terminated``/``truncated`` bool ``[N]`` and ``info`` with
    ``final_obs``, ``episode_return``, ``episode_length`` as numpy arrays.
    """

    NO_EPISODES = np.zeros(0, dtype=np.float32)
    """``info["episode_return"]`` / ``["episode_length"]`` of a step where no episode ended."""

    @abstractmethod
    def reset_arrays(self, seed: Optional[int] = None) -> np.ndarray: ...

    @abstractmethod
    def step_arrays(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray, dict[str, Any]]: ...

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x)
        return t if self.device.type == "cpu" else t.to(self.device)

    def reset(self, seed: Optional[int] = None) -> torch.Tensor:
        return self._tensor(self.reset_arrays(seed))

    def step(self, actions: torch.Tensor):
        obs, rewards, terminated, truncated, info = self.step_arrays(actions.detach().cpu().numpy())
        info = {"final_obs": self._tensor(info["final_obs"]),
                "episode_return": torch.from_numpy(info["episode_return"]),
                "episode_length": torch.from_numpy(info["episode_length"])}
        return (self._tensor(obs), self._tensor(rewards), self._tensor(terminated),
                self._tensor(truncated), info)


class StepInfo(dict):
    """A step's ``info``: the contract's ``[K]`` ``episode_return`` / ``episode_length``
    are made from the ``[N]`` ``*_all`` tensors and the ``episode_done`` mask on first
    access only, because boolean indexing waits for the device (a host sync on GPU)
    and the training rollout reads the masks instead."""

    LAZY = ("episode_return", "episode_length")

    def __missing__(self, key):
        if key not in self.LAZY:
            raise KeyError(key)
        value = self[key + "_all"][self["episode_done"]]
        self[key] = value
        return value

    def __contains__(self, key) -> bool:
        return key in self.LAZY or super().__contains__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default
