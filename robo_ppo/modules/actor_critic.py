"""Actor-critic with the observation normalizer inside.

Separate actor and critic MLPs (OpenAI Baselines' PPO for MuJoCo), a diagonal
Gaussian policy with a state-independent log-std for Box action spaces, and a
Categorical policy for Discrete ones.

Two ways in:

* training works on *normalized* observations (the rollout stores them, so the
  policy that collected the data and the one being updated see the same
  inputs): ``act``, ``evaluate``, ``get_value``;
* deployment goes through ``forward(obs)``: raw observation -> frozen
  normalizer -> clip -> actor -> deterministic action -> clip to the action
  bounds. That is the graph exported to ONNX.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from robo_ppo.modules.normalizer import ObsNormalizer

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}
LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``log N(a; mu, exp(log_std))`` of a diagonal Gaussian, summed over the
    last (action) dimension: ``sum(-z^2 / 2 - log_std - log(2 pi) / 2)`` with
    ``z = (a - mu) / sigma``. ``mean, actions [B, act_dim]``; ``log_std``
    ``[act_dim]`` or ``[B, act_dim]``; returns ``[B]``."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * LOG_2PI).sum(-1)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str,
        ortho_init: bool, out_gain: float) -> nn.Sequential:
    """MLP ``in_dim -> hidden... -> out_dim`` with ``activation`` between layers.

    Orthogonal init (Saxe et al. 2014) with gain sqrt(2) on hidden layers and
    ``out_gain`` on the last, zero biases, as in Baselines' PPO.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"algo.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(dims[-1], out_dim))
    if ortho_init:
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        for i, lin in enumerate(linears):
            gain = out_gain if i == len(linears) - 1 else math.sqrt(2.0)
            nn.init.orthogonal_(lin.weight, gain)
            nn.init.zeros_(lin.bias)
    return nn.Sequential(*layers)


@dataclass
class PolicyOutput:
    """What one batched policy call returns (torch tensors; numpy arrays from
    ``NumpyActorCritic``). Shapes for batch ``B``:
    ``actions [B, act_dim]`` (float32) or ``[B]`` (int64, discrete);
    ``log_probs, values [B]``; ``dist_params [B, act_dim]`` (Gaussian mean)
    or ``[B, n]`` (Categorical logits)."""

    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    dist_params: torch.Tensor


class ActorCritic(nn.Module):
    """Gaussian (Box) or Categorical (Discrete) actor with a separate critic.

    Args:
        obs_dim: length of the flat observation vector.
        action_space: ``gymnasium.spaces.Box`` (1-D) or ``Discrete``.
        actor_hidden_sizes, critic_hidden_sizes: MLP widths.
        activation: ``tanh`` | ``relu`` | ``elu`` | ``silu``.
        init_log_std: initial log standard deviation (Gaussian only).
        normalize_obs: include the running mean/std normalizer.
        obs_clip: clip of the normalized observation.
        ortho_init: orthogonal initialisation.
        critic_obs_dim: length of a separate critic observation (asymmetric
            actor-critic, Pinto et al. 2018: the critic sees privileged,
            noise-free state during training; deployment needs the actor
            only). ``None``: the critic reads the actor's observation. The
            critic observation gets its own normalizer.

    Raises:
        ValueError: for an action space that is neither a 1-D Box nor Discrete.
    """

    def __init__(self, obs_dim: int, action_space: gym.Space,
                 actor_hidden_sizes: Sequence[int] = (64, 64),
                 critic_hidden_sizes: Sequence[int] = (64, 64),
                 activation: str = "tanh", init_log_std: float = 0.0,
                 normalize_obs: bool = True, obs_clip: float = 5.0,
                 ortho_init: bool = True, critic_obs_dim: Optional[int] = None):
        super().__init__()
        self.obs_dim = int(obs_dim)
        self.critic_obs_dim = None if critic_obs_dim is None else int(critic_obs_dim)
        self.is_discrete = isinstance(action_space, gym.spaces.Discrete)
        self.activation = activation
        if self.is_discrete:
            self.act_dim = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.act_dim = int(action_space.shape[0])
        else:
            raise ValueError(f"unsupported action space {action_space}: need a 1-D Box or Discrete")
        self.obs_normalizer: Optional[ObsNormalizer] = (
            ObsNormalizer(obs_dim, clip=obs_clip) if normalize_obs else None
        )
        self.actor = mlp(obs_dim, actor_hidden_sizes, self.act_dim, activation, ortho_init, 0.01)
        self.critic_obs_normalizer: Optional[ObsNormalizer] = (
            ObsNormalizer(self.critic_obs_dim, clip=obs_clip)
            if normalize_obs and self.critic_obs_dim is not None else None)
        self.critic = mlp(self.critic_obs_dim or obs_dim, critic_hidden_sizes, 1, activation, ortho_init, 1.0)
        if self.is_discrete:
            self.log_std = None
        else:
            self.log_std = nn.Parameter(torch.full((self.act_dim,), float(init_log_std)))
            low = np.asarray(action_space.low, dtype=np.float32)
            high = np.asarray(action_space.high, dtype=np.float32)
            self.register_buffer("action_low", torch.as_tensor(low))
            self.register_buffer("action_high", torch.as_tensor(high))

    # ---------------------------------------------------------------- inputs
    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw ``obs [B, obs_dim]`` -> normalized and clipped, statistics frozen."""
        return obs if self.obs_normalizer is None else self.obs_normalizer(obs)

    def normalize_critic(self, critic_obs: torch.Tensor) -> torch.Tensor:
        """Raw critic ``obs [B, critic_obs_dim]`` -> normalized and clipped (asymmetric only)."""
        return critic_obs if self.critic_obs_normalizer is None else self.critic_obs_normalizer(critic_obs)

    def update_normalizer(self, obs: torch.Tensor, critic_obs: Optional[torch.Tensor] = None) -> None:
        """Fold raw rollout observations ``[B, obs_dim]`` (and critic observations
        ``[B, critic_obs_dim]``, asymmetric only) into the running statistics."""
        if self.obs_normalizer is not None:
            self.obs_normalizer.update(obs)
        if self.critic_obs_normalizer is not None and critic_obs is not None:
            self.critic_obs_normalizer.update(critic_obs)

    # ----------------------------------------------------- distribution math
    def _log_prob_entropy(self, dist_params: torch.Tensor, actions: torch.Tensor):
        if self.is_discrete:
            logp_all = torch.log_softmax(dist_params, dim=-1)
            log_probs = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            return log_probs, entropy
        log_std = self.log_std.expand_as(dist_params)
        entropy = (log_std + 0.5 * (1.0 + LOG_2PI)).sum(-1)
        return gaussian_log_prob(dist_params, log_std, actions), entropy

    def get_value(self, norm_obs: torch.Tensor) -> torch.Tensor:
        """Value estimates ``[B]`` of the critic's normalized input: the actor's
        ``[B, obs_dim]``, or ``[B, critic_obs_dim]`` for an asymmetric critic."""
        return self.critic(norm_obs).squeeze(-1)

    def act(self, norm_obs: torch.Tensor, generator: Optional[torch.Generator] = None,
            noise: Optional[torch.Tensor] = None,
            norm_critic_obs: Optional[torch.Tensor] = None) -> PolicyOutput:
        """Sample actions for normalized ``obs [B, obs_dim]`` (no clipping: the
        env seam clips to the bounds; PPO stores the raw sample).

        ``noise`` (optional) is the pre-drawn randomness of this step:
        Gaussian ``a = mu + exp(log_std) * noise`` with ``noise [B, act_dim]
        ~ N(0, 1)``; Categorical by inverse CDF with ``noise [B] ~ U[0, 1)``.
        Without it, noise is drawn here from ``generator`` (or torch's global RNG).
        ``norm_critic_obs``: the critic's input when it is asymmetric.

        This is the per-step rollout path, so it calls the layers' ``forward``
        directly (no ``nn.Module.__call__`` overhead; module hooks do not run
        here) and skips the entropy. The Gaussian log-prob is computed from
        the noise (``z = noise``); ``evaluate`` recomputes it from the action,
        equal up to float32 rounding.
        """
        params = norm_obs
        for layer in self.actor:
            params = layer.forward(params)
        value = norm_obs if norm_critic_obs is None else norm_critic_obs
        for layer in self.critic:
            value = layer.forward(value)
        value = value.squeeze(-1)
        if self.is_discrete:
            if noise is None:
                noise = torch.rand(params.shape[:-1], generator=generator, device=params.device)
            logp_all = torch.log_softmax(params, dim=-1)
            cdf = torch.cumsum(logp_all.exp(), dim=-1)
            actions = (cdf < noise.unsqueeze(-1)).sum(-1).clamp(max=params.shape[-1] - 1)
            log_probs = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        else:
            if noise is None:
                noise = torch.randn(params.shape, generator=generator, device=params.device,
                                    dtype=params.dtype)
            actions = params + torch.exp(self.log_std) * noise
            # log N(a; mu, sigma) with z = (a - mu) / sigma = noise; no entropy needed here
            log_probs = (-0.5 * noise.square() - self.log_std).sum(-1) - 0.5 * LOG_2PI * noise.shape[-1]
        return PolicyOutput(actions, log_probs, value, params)

    def evaluate_actions(self, norm_obs: torch.Tensor, actions: torch.Tensor):
        """``(log_probs [B], entropy [B], dist_params)`` of given actions: the actor's part of ``evaluate``."""
        params = self.actor(norm_obs)
        return *self._log_prob_entropy(params, actions), params

    def evaluate(self, norm_obs: torch.Tensor, actions: torch.Tensor,
                 norm_critic_obs: Optional[torch.Tensor] = None):
        """``(log_probs [B], entropy [B], values [B], dist_params)`` of given actions
        (values from ``norm_critic_obs`` when the critic is asymmetric)."""
        log_probs, entropy, params = self.evaluate_actions(norm_obs, actions)
        return log_probs, entropy, self.get_value(norm_obs if norm_critic_obs is None else norm_critic_obs), params

    def kl_from(self, old_params: torch.Tensor, old_log_std: Optional[torch.Tensor],
                new_params: torch.Tensor) -> torch.Tensor:
        """Exact KL(old || new) per sample ``[B]`` (PPO1's penalty term)."""
        if self.is_discrete:
            old_logp = torch.log_softmax(old_params, -1)
            new_logp = torch.log_softmax(new_params, -1)
            return (old_logp.exp() * (old_logp - new_logp)).sum(-1)
        # KL of two diagonal Gaussians, summed over dims
        new_log_std = self.log_std.expand_as(new_params)
        old_log_std = old_log_std.expand_as(old_params)
        var_ratio = torch.exp(2.0 * (old_log_std - new_log_std))
        mean_term = (old_params - new_params).square() * torch.exp(-2.0 * new_log_std)
        return 0.5 * (var_ratio + mean_term - 1.0 - 2.0 * (old_log_std - new_log_std)).sum(-1)

    # -------------------------------------------------------- deterministic
    def deterministic_action(self, norm_obs: torch.Tensor) -> torch.Tensor:
        """Gaussian mean clipped to the action bounds, or the Categorical argmax."""
        params = self.actor(norm_obs)
        if self.is_discrete:
            return torch.argmax(params, dim=-1)
        return torch.clamp(params, self.action_low, self.action_high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Deployment path: raw ``obs [B, obs_dim]`` -> deterministic action."""
        return self.deterministic_action(self.normalize(obs))


def build_actor_critic(algo_cfg, obs_dim: int, action_space: gym.Space,
                       critic_obs_dim: Optional[int] = None) -> ActorCritic:
    """Build the actor-critic from the ``algo`` config group."""
    return ActorCritic(
        obs_dim, action_space,
        actor_hidden_sizes=list(algo_cfg.actor_hidden_sizes),
        critic_hidden_sizes=list(algo_cfg.critic_hidden_sizes),
        activation=algo_cfg.activation,
        init_log_std=algo_cfg.init_log_std,
        normalize_obs=algo_cfg.normalize_obs,
        obs_clip=algo_cfg.obs_clip,
        ortho_init=algo_cfg.ortho_init,
        critic_obs_dim=critic_obs_dim,
    )
