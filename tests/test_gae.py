import torch

from robo_ppo.algo.gae import compute_gae
from robo_ppo.runner.storage import RolloutBuffer


def test_gae_hand_computed_with_termination_and_truncation():
    # t1 terminates (no bootstrap), t2 is truncated (bootstrap from V(final_obs) = 2.0),
    # t4 is the last step of the rollout (bootstrap from V(next obs) = 1.5)
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])
    values = torch.tensor([[0.5], [0.6], [0.7], [0.8], [0.9]])
    next_values = torch.tensor([[0.6], [99.0], [2.0], [0.9], [1.5]])
    terminated = torch.tensor([[False], [True], [False], [False], [False]])
    truncated = torch.tensor([[False], [False], [True], [False], [False]])
    adv, ret = compute_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    # deltas: 1.04, 1.4, 4.1, 4.01, 5.45 ; A = delta + 0.72 * A_next within an episode
    expected = torch.tensor([[2.048], [1.4], [4.1], [7.934], [5.45]])
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(ret, expected + values, rtol=0, atol=1e-5)


def test_gae_lambda_one_is_discounted_return_minus_value():
    T = 6
    rewards = torch.arange(1.0, T + 1).unsqueeze(1)
    values = torch.full((T, 1), 0.3)
    next_values = torch.cat([values[1:], torch.tensor([[0.0]])])
    term = torch.zeros(T, 1, dtype=torch.bool)
    term[-1] = True
    adv, ret = compute_gae(rewards, values, next_values, term, torch.zeros_like(term), 0.5, 1.0)
    mc = torch.zeros(T)
    g = 0.0
    for t in reversed(range(T)):
        g = rewards[t, 0].item() + 0.5 * g
        mc[t] = g
    torch.testing.assert_close(ret[:, 0], mc)


def test_buffer_finish_uses_final_values_only_where_episodes_ended():
    buf = RolloutBuffer(3, 2, obs_dim=1, act_dim=1, discrete=False, device=torch.device("cpu"))
    buf.values[:] = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    buf.truncated[1, 0] = True
    buf.next_values[1, 0] = 42.0  # V(final_obs) written by the rollout loop
    buf.finish(torch.tensor([7.0, 8.0]), gamma=0.99, gae_lambda=0.95)
    expected = torch.tensor([[3.0, 4.0], [42.0, 6.0], [7.0, 8.0]])
    torch.testing.assert_close(buf.next_values, expected)
