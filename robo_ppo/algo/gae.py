"""Generalized Advantage Estimation (Schulman et al. 2016, eq. 11-16)."""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    gae_lambda: float,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) advantages and lambda-returns over a time-major rollout.

    All inputs are ``[T, N]`` (time, env). ``next_values[t]`` is V of the state
    the transition at ``t`` actually reached: ``V(obs[t+1])`` while the episode
    goes on, ``V(final_obs)`` when it ended at ``t`` (only used when it was
    truncated), and ``V(obs after the rollout)`` at ``t = T-1``.

    TD residual (eq. 11), with a termination cutting the bootstrap but a
    truncation (time limit) keeping it:
        ``delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t``
    Advantage recursion (eq. 16), restarted at every episode end:
        ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``,
        ``done_t = terminated_t or truncated_t``, ``A_T = 0``.
    ``valid`` (bool ``[T, N]``, optional): a transition that is not valid (its
    physics diverged; it must also be marked done) gets ``delta_t = 0``, so
    ``A_t = 0`` and the step before it bootstraps from ``V(obs[t])`` as at a
    truncation; the learner drops it from the batch.
    Returns ``(advantages [T, N], returns [T, N])`` with ``returns = A + values``.
    """
    if not (rewards.shape == values.shape == next_values.shape == terminated.shape == truncated.shape):
        raise ValueError(
            "compute_gae: rewards, values, next_values, terminated, truncated must share one "
            f"[T, N] shape, got {[tuple(x.shape) for x in (rewards, values, next_values, terminated, truncated)]}"
        )
    not_terminated = 1.0 - terminated.to(rewards.dtype)
    not_done = 1.0 - (terminated | truncated).to(rewards.dtype)
    deltas = rewards + gamma * not_terminated * next_values - values
    if valid is not None:
        deltas = torch.where(valid, deltas, 0.0)
    advantages = torch.zeros_like(rewards)
    decay = gamma * gae_lambda * not_done
    adv, d, c = advantages, deltas, decay
    if advantages.device.type == "cpu":  # the same float32 recursion on numpy views: less per-step overhead
        adv, d, c = adv.numpy(), d.numpy(), c.numpy()
    last = 0.0 * d[0]
    for t in range(d.shape[0] - 1, -1, -1):
        last = d[t] + c[t] * last
        adv[t] = last
    return advantages, advantages + values
