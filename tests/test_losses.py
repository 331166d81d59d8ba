import math

import pytest
import torch

from robo_ppo.algo.losses import (
    approx_kl,
    clip_fraction,
    clipped_surrogate_loss,
    kl_penalty_loss,
    normalize_advantages,
    value_loss,
)
from robo_ppo.algo.schedules import adaptive_lr, linear_lr, update_kl_beta


def _surrogate(ratio: float, adv: float, eps: float = 0.2):
    lr = torch.tensor([math.log(ratio)], requires_grad=True)
    loss = clipped_surrogate_loss(lr, torch.tensor([adv]), eps)
    loss.backward()
    return loss.item(), lr.grad.item()


@pytest.mark.parametrize("ratio,adv,expected_loss,grad_zero", [
    (1.3, 2.0, -1.2 * 2.0, True),    # positive advantage: gain capped at 1 + eps
    (1.1, 2.0, -1.1 * 2.0, False),   # inside the clip range: plain surrogate
    (0.7, 2.0, -0.7 * 2.0, False),   # positive advantage, ratio below 1 - eps: unclipped (pessimistic)
    (0.7, -2.0, 0.8 * 2.0, True),    # negative advantage: capped at 1 - eps
    (1.3, -2.0, 1.3 * 2.0, False),   # negative advantage, ratio above 1 + eps: unclipped
])
def test_clipped_surrogate_cases(ratio, adv, expected_loss, grad_zero):
    loss, grad = _surrogate(ratio, adv)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert (grad == 0.0) == grad_zero


def test_clip_boundary_is_inclusive():
    loss, _ = _surrogate(1.2, 1.0)
    assert loss == pytest.approx(-1.2, rel=1e-6)


def test_value_clipping_takes_the_pessimistic_branch():
    new = torch.tensor([0.5], requires_grad=True)
    loss = value_loss(new, torch.tensor([0.0]), torch.tensor([1.0]), clip_coef=0.2)
    loss.backward()
    # unclipped (0.5-1)^2 = 0.25, clipped (0.2-1)^2 = 0.64 -> 0.5 * 0.64, no gradient to new value
    assert loss.item() == pytest.approx(0.32)
    assert new.grad.item() == 0.0
    inside = value_loss(torch.tensor([0.1]), torch.tensor([0.0]), torch.tensor([1.0]), clip_coef=0.2)
    assert inside.item() == pytest.approx(0.5 * 0.81)
    unclipped = value_loss(torch.tensor([0.5]), torch.tensor([0.0]), torch.tensor([1.0]), clip_coef=None)
    assert unclipped.item() == pytest.approx(0.125)


def test_kl_penalty_loss_and_estimators():
    lr = torch.log(torch.tensor([1.5, 0.5]))
    adv = torch.tensor([1.0, -1.0])
    kl = torch.tensor([0.1, 0.3])
    assert kl_penalty_loss(lr, adv, kl, beta=2.0).item() == pytest.approx(((-1.5 + 0.2) + (0.5 + 0.6)) / 2)
    assert approx_kl(torch.zeros(4)).item() == 0.0
    assert approx_kl(lr).item() == pytest.approx(((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2)
    assert clip_fraction(lr, 0.2).item() == 1.0
    na = normalize_advantages(torch.tensor([1.0, 2.0, 3.0]))
    assert na.mean().item() == pytest.approx(0.0, abs=1e-7)
    assert na.std().item() == pytest.approx(1.0, rel=1e-6)


def test_adaptive_kl_beta_rule():
    assert update_kl_beta(1.0, kl=0.016, kl_target=0.01) == 2.0    # > 1.5 x target: double
    assert update_kl_beta(1.0, kl=0.015, kl_target=0.01) == 1.0    # boundary: unchanged
    assert update_kl_beta(1.0, kl=0.006, kl_target=0.01) == 0.5    # < target / 1.5: halve
    assert update_kl_beta(1.0, kl=0.01, kl_target=0.01) == 1.0


def test_learning_rate_schedules():
    assert linear_lr(1e-3, 1, 10) == pytest.approx(1e-3)
    assert linear_lr(1e-3, 10, 10) == pytest.approx(1e-4)
    assert adaptive_lr(1e-3, kl=0.03, desired_kl=0.01, lr_min=1e-5, lr_max=1e-2) == pytest.approx(1e-3 / 1.5)
    assert adaptive_lr(1e-3, kl=0.001, desired_kl=0.01, lr_min=1e-5, lr_max=1e-2) == pytest.approx(1.5e-3)
    assert adaptive_lr(1e-3, kl=0.01, desired_kl=0.01, lr_min=1e-5, lr_max=1e-2) == 1e-3
    assert adaptive_lr(9e-3, kl=0.0, desired_kl=0.01, lr_min=1e-5, lr_max=1e-2) == 1e-2
