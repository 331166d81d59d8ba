"""Learning-rate and KL-coefficient schedules (pure functions)."""

from __future__ import annotations


def linear_lr(initial_lr: float, iteration: int, num_iterations: int) -> float:
    """Linear anneal: ``lr = lr0 * (1 - (iteration - 1) / num_iterations)``,
    ``iteration`` counted from 1, so the last iteration still has a positive rate."""
    return initial_lr * (1.0 - (iteration - 1.0) / num_iterations)


def adaptive_lr(lr: float, kl: float, desired_kl: float, lr_min: float, lr_max: float) -> float:
    """KL-adaptive rate (as in rsl_rl / legged_gym): divide by 1.5 when
    ``kl > 2 * desired_kl``, multiply by 1.5 when ``kl < desired_kl / 2``,
    keep within ``[lr_min, lr_max]``."""
    if kl > 2.0 * desired_kl:
        lr = lr / 1.5
    elif kl < 0.5 * desired_kl:
        lr = lr * 1.5
    return min(max(lr, lr_min), lr_max)


def update_kl_beta(beta: float, kl: float, kl_target: float) -> float:
    """PPO1 adaptive KL penalty coefficient (Schulman et al. 2017, section 4):
    ``beta * 2`` if ``kl > 1.5 * d_targ``; ``beta / 2`` if ``kl < d_targ / 1.5``;
    else unchanged. ``kl`` is KL(old policy || updated policy), the exact
    mean over the whole batch after the update's last step."""
    if kl > 1.5 * kl_target:
        return beta * 2.0
    if kl < kl_target / 1.5:
        return beta / 2.0
    return beta
