"""Rollout collectors: step the envs ``num_steps`` times and fill the buffer.

One small collector per compute mode, each a plain loop (CleanRL's rollout):

* ``HostCollector``: numpy arrays from a CPU engine (``ArrayVecEnv``) to the
  numpy policy twin and into numpy views of the buffer; no torch call per step.
* ``DeviceCollector``: torch tensors on the learner's device, for any engine
  (Brax/MJX on a GPU above all). No per-step host sync: every row is
  bootstrapped with ``V(final_obs)`` and episode statistics stay on the device
  until the rollout ends. Supports an asymmetric critic observation and
  per-term rewards.

Both draw the rollout's sampling noise in one call from torch's RNG (so resume
is exact) and keep the policy one fixed function during the rollout: the
observation statistics are folded in after it, from its raw observations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from robo_ppo.runner.storage import RolloutBuffer

FIELDS = ("obs", "actions", "log_probs", "values", "dist_params", "terminated", "truncated", "rewards")
"""Per-step buffer fields both collectors fill (``[T, N, ...]``)."""


@dataclass
class RolloutResult:
    """What a rollout reports besides the buffer it filled."""

    next_obs: torch.Tensor
    """float32 ``[N, obs_dim]``: the obs after the last step (the next rollout starts there)."""
    episode_returns: list[float] = field(default_factory=list)
    """Raw (unscaled) returns of the episodes that ended during the rollout."""
    episode_lengths: list[float] = field(default_factory=list)
    """Their lengths in env steps."""
    next_critic_obs: Optional[torch.Tensor] = None
    """float32 ``[N, critic_obs_dim]`` (asymmetric critic only)."""
    reward_terms: Optional[dict[str, float]] = None
    """Mean per-step contribution of each reward term (tasks that report them)."""
    diverged: Optional[int] = None
    """Env steps whose physics diverged (engines that report it: ``info["diverged"]``), else ``None``."""


def _draw_noise(num_steps: int, num_envs: int, act_dim: int, discrete: bool, device) -> torch.Tensor:
    """The rollout's sampling noise: U[0, 1) ``[T, N]`` (Categorical) or N(0, 1) ``[T, N, act_dim]``."""
    if discrete:
        return torch.rand(num_steps, num_envs, device=device)
    return torch.randn(num_steps, num_envs, act_dim, device=device)


class HostCollector:
    """Numpy rollout: ``envs`` an ``ArrayVecEnv``, ``policy`` a ``NumpyActorCritic``."""

    def __init__(self, envs, policy, buffer: RolloutBuffer, act_dim: int, discrete: bool):
        self.envs, self.policy, self.buf = envs, policy, buffer
        self.act_dim, self.discrete = act_dim, discrete

    def collect(self, next_obs: torch.Tensor, next_critic_obs: None = None) -> RolloutResult:
        """``next_critic_obs`` is always ``None`` here: the numpy twin has no asymmetric critic."""
        envs, policy, buf = self.envs, self.policy, self.buf
        noise = _draw_noise(buf.num_steps, buf.num_envs, self.act_dim, self.discrete, "cpu").numpy()
        next_values = buf.next_values.numpy()
        steps: dict[str, list] = {k: [] for k in FIELDS}
        raw_obs, returns, lengths = [], [], []
        obs = next_obs.numpy()
        for t in range(buf.num_steps):
            norm_obs = policy.normalize(obs)
            out = policy.act(norm_obs, noise=noise[t])
            obs, rewards, terminated, truncated, info = envs.step_arrays(out.actions)
            for name, value in zip(FIELDS, (norm_obs, out.actions, out.log_probs, out.values, out.dist_params,
                                            terminated, truncated, rewards), strict=True):
                steps[name].append(value)
            raw_obs.append(obs)
            if len(info["episode_return"]):
                returns.extend(info["episode_return"].tolist())
                lengths.extend(info["episode_length"].tolist())
                if truncated.any():   # V(final_obs) bootstraps a time limit
                    next_values[t] = policy.get_value(policy.normalize(info["final_obs"]))
        buf.last_values = torch.from_numpy(policy.get_value(policy.normalize(obs)))
        for name, values in steps.items():
            np.stack(values, out=getattr(buf, name).numpy())
        policy.update_normalizer(np.concatenate(raw_obs))
        return RolloutResult(torch.from_numpy(obs), returns, lengths)


class DeviceCollector:
    """Tensor rollout: ``envs`` any ``VecEnv``, ``policy`` an ``ActorCritic`` on the device."""

    def __init__(self, envs, policy, buffer: RolloutBuffer, act_dim: int, discrete: bool):
        self.envs, self.policy, self.buf = envs, policy, buffer
        self.act_dim, self.discrete = act_dim, discrete
        self.asymmetric = bool(getattr(envs, "critic_obs_dim", 0))
        self.reward_terms = tuple(getattr(envs, "reward_terms", ()))

    @torch.no_grad()
    def collect(self, next_obs: torch.Tensor, next_critic_obs: Optional[torch.Tensor] = None) -> RolloutResult:
        envs, policy, buf = self.envs, self.policy, self.buf
        noise = _draw_noise(buf.num_steps, buf.num_envs, self.act_dim, self.discrete, buf.obs.device).unbind(0)
        steps: dict[str, list] = {k: [] for k in FIELDS}
        raw_obs, raw_critic, norm_critic = [], [], []
        done_masks, done_returns, done_lengths, returns, lengths = [], [], [], [], []
        term_sum = torch.zeros(len(self.reward_terms), device=buf.obs.device)
        diverged = []
        obs, critic_obs = next_obs, next_critic_obs
        on_cpu = buf.obs.device.type == "cpu"
        for t in range(buf.num_steps):
            norm_obs = policy.normalize(obs)
            norm_c = policy.normalize_critic(critic_obs) if self.asymmetric else None
            out = policy.act(norm_obs, noise=noise[t], norm_critic_obs=norm_c)
            obs, rewards, terminated, truncated, info = envs.step(out.actions)
            for name, value in zip(FIELDS, (norm_obs, out.actions, out.log_probs, out.values, out.dist_params,
                                            terminated, truncated, rewards), strict=True):
                steps[name].append(value)
            raw_obs.append(obs)
            if self.asymmetric:
                norm_critic.append(norm_c)
                critic_obs = envs.last_critic_obs()
                raw_critic.append(critic_obs)
            # V(final obs) is read only where an episode ended: on an accelerator compute it for
            # every row (no host sync), on the CPU only on steps where one did (len() is free there)
            if not on_cpu or len(info["episode_return"]):
                final = (policy.normalize_critic(info["final_critic_obs"]) if self.asymmetric
                         else policy.normalize(info["final_obs"]))
                buf.next_values[t] = policy.get_value(final)
            if "reward_terms" in info:
                term_sum += info["reward_terms"].sum(0)
            if "diverged" in info:
                diverged.append(info["diverged"])
            if "episode_done" in info:    # [N] masks: filtered once after the rollout
                done_masks.append(info["episode_done"])
                done_returns.append(info["episode_return_all"])
                done_lengths.append(info["episode_length_all"])
            elif len(info["episode_return"]):
                returns.extend(info["episode_return"].tolist())
                lengths.extend(info["episode_length"].tolist())
        last = policy.normalize_critic(critic_obs) if self.asymmetric else policy.normalize(obs)
        buf.last_values = policy.get_value(last)
        for name, values in steps.items():
            torch.stack(values, out=getattr(buf, name))
        if diverged:
            torch.stack(diverged, out=buf.diverged)
        if self.asymmetric:
            torch.stack(norm_critic, out=buf.critic_obs)
            policy.update_normalizer(torch.cat(raw_obs), torch.cat(raw_critic))
        else:
            policy.update_normalizer(torch.cat(raw_obs))
        if done_masks:
            mask = torch.stack(done_masks)
            returns.extend(torch.stack(done_returns)[mask].tolist())
            lengths.extend(torch.stack(done_lengths)[mask].tolist())
        terms = None
        if self.reward_terms:
            means = (term_sum / (buf.num_steps * buf.num_envs)).tolist()
            terms = dict(zip(self.reward_terms, means, strict=True))
        return RolloutResult(obs, returns, lengths, critic_obs, terms,
                             int(buf.diverged.sum()) if diverged else None)
