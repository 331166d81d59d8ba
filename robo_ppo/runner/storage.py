"""Preallocated, time-major rollout storage."""

from __future__ import annotations

import torch

from robo_ppo.algo.gae import compute_gae


class RolloutBuffer:
    """Tensors ``[T, N, ...]`` for one rollout of ``T = num_steps`` steps of
    ``N = num_envs`` envs, allocated once on ``device``.

    Fields: ``obs`` (normalized, float32 ``[T, N, obs_dim]``), ``actions``
    (float32 ``[T, N, act_dim]`` or int64 ``[T, N]``), ``log_probs``,
    ``values``, ``rewards`` (after scaling), ``next_values`` (see
    ``compute_gae``), ``last_values [N]`` (V of the obs after the last step), ``terminated``, ``truncated``,
    ``diverged`` (bool ``[T, N]``: steps whose physics diverged, dropped from the update), and
    ``dist_params`` (``[T, N, act_dim or n_actions]``); ``critic_obs`` (normalized,
    ``[T, N, critic_obs_dim]``) for an asymmetric critic, else ``None``.
    """

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, act_dim: int,
                 discrete: bool, device: torch.device, critic_obs_dim: int | None = None):
        T, N = num_steps, num_envs
        f32 = dict(dtype=torch.float32, device=device)
        self.num_steps, self.num_envs = T, N
        self.obs = torch.zeros(T, N, obs_dim, **f32)
        self.critic_obs = torch.zeros(T, N, critic_obs_dim, **f32) if critic_obs_dim else None
        self.actions = (torch.zeros(T, N, dtype=torch.int64, device=device) if discrete
                        else torch.zeros(T, N, act_dim, **f32))
        self.dist_params = torch.zeros(T, N, act_dim, **f32)
        self.log_probs = torch.zeros(T, N, **f32)
        self.values = torch.zeros(T, N, **f32)
        self.rewards = torch.zeros(T, N, **f32)
        self.next_values = torch.zeros(T, N, **f32)
        self.last_values = torch.zeros(N, **f32)
        self.terminated = torch.zeros(T, N, dtype=torch.bool, device=device)
        self.truncated = torch.zeros(T, N, dtype=torch.bool, device=device)
        self.diverged = torch.zeros(T, N, dtype=torch.bool, device=device)

    def finish(self, last_values: torch.Tensor, gamma: float, gae_lambda: float):
        """Fill ``next_values`` for steps whose episode went on (``V(obs[t+1])``,
        ``last_values`` after the last step) and return GAE ``(advantages, returns)``.

        ``next_values[t]`` of steps that ended an episode must already hold
        ``V(final_obs)`` (written by the rollout loop).
        """
        done = self.terminated | self.truncated
        following = torch.cat([self.values[1:], last_values.unsqueeze(0)], dim=0)
        self.next_values = torch.where(done, self.next_values, following)
        valid = ~self.diverged if bool(self.diverged.any()) else None
        return compute_gae(self.rewards, self.values, self.next_values, self.terminated,
                           self.truncated, gamma, gae_lambda, valid=valid)

    def flatten(self, advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch as flat ``[B, ...]`` tensors for the PPO update: ``B = T * N`` samples, less the
        diverged steps (dropped: their reward and next state are the blow-up's)."""
        B = self.num_steps * self.num_envs
        batch = {} if self.critic_obs is None else {"critic_obs": self.critic_obs.reshape(B, -1)}
        batch = batch | {
            "obs": self.obs.reshape(B, -1),
            "actions": self.actions.reshape(B, *self.actions.shape[2:]),
            "log_probs": self.log_probs.reshape(B),
            "values": self.values.reshape(B),
            "advantages": advantages.reshape(B),
            "returns": returns.reshape(B),
            "dist_params": self.dist_params.reshape(B, -1),
        }
        if bool(self.diverged.any()):
            keep = ~self.diverged.reshape(B)
            batch = {k: v[keep] for k, v in batch.items()}
        return batch
