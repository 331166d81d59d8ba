"""PPO loss terms as pure tensor functions (no module state, no I/O).

References: Schulman et al. 2017, "Proximal Policy Optimization Algorithms"
(clipped surrogate eq. 7, KL penalty eq. 8); value clipping and the
``approx_kl`` estimator as in OpenAI Baselines' PPO2 and Schulman's
"Approximating KL divergence" note (k3 estimator).
"""

from __future__ import annotations

import torch


def clipped_surrogate_loss(log_ratio: torch.Tensor, advantages: torch.Tensor,
                           clip_coef: float) -> torch.Tensor:
    """Negative of PPO's clipped surrogate objective L^CLIP (eq. 7), averaged.

    ``r = exp(log_ratio)``; loss = ``mean(max(-A r, -A clip(r, 1-eps, 1+eps)))``.
    Shapes: ``log_ratio, advantages [B]``; returns a scalar.
    """
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
    return torch.max(unclipped, clipped).mean()


def kl_penalty_loss(log_ratio: torch.Tensor, advantages: torch.Tensor,
                    kl: torch.Tensor, beta: float) -> torch.Tensor:
    """Negative of PPO1's KL-penalised objective L^KLPEN (eq. 8), averaged.

    loss = ``mean(-A r + beta * KL[pi_old || pi])``; ``kl [B]`` is the exact
    per-sample KL. Shapes: ``[B]`` in, scalar out.
    """
    return (-advantages * torch.exp(log_ratio) + beta * kl).mean()


def value_loss(new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               clip_coef: float | None) -> torch.Tensor:
    """``0.5 * mean(max((V - R)^2, (V_clip - R)^2))`` with
    ``V_clip = V_old + clip(V - V_old, -c, c)`` (Baselines PPO2); plain
    ``0.5 * mean((V - R)^2)`` when ``clip_coef`` is None. Shapes ``[B]``."""
    unclipped = (new_values - returns).square()
    if clip_coef is None:
        return 0.5 * unclipped.mean()
    v_clipped = old_values + torch.clamp(new_values - old_values, -clip_coef, clip_coef)
    return 0.5 * torch.max(unclipped, (v_clipped - returns).square()).mean()


def bounds_loss(mean: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Squared distance of the Gaussian mean beyond the action bounds, summed over action
    dimensions and averaged over the batch: ``mean_b sum_j (relu(mu - high)^2 + relu(low - mu)^2)``.

    Zero wherever the mean is inside ``[low, high]``. The env clips actions to the bounds, so a
    mean past one acts like the bound itself, and the surrogate has no gradient to bring it back;
    this term does (rl_games' ``bounds_loss``, there with a fixed soft bound of 1.1; here the
    action space's bounds). Shapes: ``mean [B, A]``, ``low, high [A]``; returns a scalar.
    """
    return ((mean - high).clamp_min(0.0).square() + (low - mean).clamp_min(0.0).square()).sum(-1).mean()


def symmetry_loss(mean: torch.Tensor, mirrored_mean: torch.Tensor, action_perm: torch.Tensor,
                  action_sign: torch.Tensor) -> torch.Tensor:
    """Mirror symmetry loss of Yu, Turk and Liu 2018 ("Learning Symmetric and Low-Energy Locomotion",
    eq. 4): ``mean_b sum_j (mu(o)_j - Psi_a(mu(Psi_o(o)))_j)^2``, the squared distance between the
    policy's mean action and the mirror image of its mean action on the mirrored observation;
    ``Psi_a(a)_j = sign_j a_{perm_j}`` (``robo_ppo.robots.symmetry.Mirror``). Zero for a policy that
    acts on a mirrored state with the mirrored action. Shapes: ``mean, mirrored_mean [B, A]`` (the
    second from the mirrored observations), ``action_perm`` int ``[A]``, ``action_sign [A]``;
    returns a scalar."""
    return (mean - mirrored_mean[:, action_perm] * action_sign).square().sum(-1).mean()


def approx_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    """Unbiased, non-negative estimator of KL[old || new]: ``mean((r - 1) - log r)``."""
    return ((torch.exp(log_ratio) - 1.0) - log_ratio).mean()


def clip_fraction(log_ratio: torch.Tensor, clip_coef: float) -> torch.Tensor:
    """Fraction of samples whose ratio lies outside ``[1 - eps, 1 + eps]``."""
    return ((torch.exp(log_ratio) - 1.0).abs() > clip_coef).float().mean()


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(A - mean) / (std + eps)`` over the minibatch (a one-sample batch is only centred)."""
    if advantages.numel() < 2:
        return advantages - advantages.mean()
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """``1 - Var[y - y_hat] / Var[y]`` (nan when Var[y] = 0)."""
    var_y = torch.var(targets)
    if var_y == 0:
        return float("nan")
    return float(1.0 - torch.var(targets - predictions) / var_y)
