import numpy as np
import torch

from robo_ppo.modules.normalizer import ObsNormalizer, RewardScaler, RunningMeanStd


def test_chunked_merge_equals_whole_batch_statistics():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(1000, 5, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2, 3, 4, 5]) + 7
    rms = RunningMeanStd((5,))
    for chunk in torch.split(data, [1, 3, 100, 396, 500]):
        rms.update(chunk)
    torch.testing.assert_close(rms.mean, data.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rms.var, data.var(0, unbiased=False), rtol=1e-12, atol=1e-12)
    assert rms.count.item() == 1000
    assert rms.mean.dtype == torch.float64


def test_obs_normalizer_standardizes_and_clips_at_the_boundary():
    norm = ObsNormalizer(2, clip=5.0)
    norm.update(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))  # mean (1, 20), std (1, 10)
    out = norm(torch.tensor([[1.0, 20.0], [3.0, 40.0], [1e6, -1e6], [6.0, 70.0]]))
    expected = torch.tensor([[0.0, 0.0], [2.0, 2.0], [5.0, -5.0], [5.0, 5.0]])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert out.dtype == torch.float32


def test_forward_does_not_change_statistics():
    norm = ObsNormalizer(3)
    norm.update(torch.randn(10, 3))
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    norm(torch.randn(50, 3) * 100)
    for k, v in norm.state_dict().items():
        assert torch.equal(v, before[k])


def _reward_scaler_step_by_step(rewards, dones, gamma, clip, eps=1e-8):
    """VecNormalize's per-step recursion, written out plainly (float64)."""
    R = np.zeros(rewards.shape[1])
    seen, out = [], []
    for r, d in zip(rewards, dones, strict=True):
        R = gamma * R + r
        seen.extend(R)
        out.append(np.clip(r / np.sqrt(np.var(seen) + eps), -clip, clip))
        R[d] = 0.0
    return np.array(out), R, np.mean(seen), np.var(seen), len(seen)


def test_reward_scaler_divides_by_std_of_discounted_return_and_resets_on_done():
    scaler = RewardScaler(num_envs=1, gamma=0.5, clip=10.0)
    r = torch.ones(3, 1)
    out = scaler.scale_rollout(r, torch.tensor([[False], [True], [False]]))
    assert out[0].item() == 10.0  # R = 1 -> var 0 -> eps floor, then clip
    std = torch.tensor([1.0, 1.5, 1.0], dtype=torch.float64).var(unbiased=False).sqrt()
    torch.testing.assert_close(out[2], (1.0 / std).float().reshape(1), rtol=1e-5, atol=0)
    assert scaler.returns.item() == 1.0  # reset after step 1, then R = 1


def test_reward_scaler_over_rollouts_equals_step_by_step_recursion():
    rng = np.random.default_rng(0)
    T, N, gamma = 50, 3, 0.99
    rewards = rng.normal(1.0, 2.0, size=(3 * T, N)).astype(np.float32)
    dones = rng.random((3 * T, N)) < 0.05
    ref, ref_R, ref_mean, ref_var, ref_count = _reward_scaler_step_by_step(
        rewards.astype(np.float64), dones, gamma, clip=10.0)
    scaler = RewardScaler(num_envs=N, gamma=gamma, clip=10.0)
    got = torch.cat([scaler.scale_rollout(torch.from_numpy(rewards[k:k + T]), torch.from_numpy(dones[k:k + T]))
                     for k in range(0, 3 * T, T)])  # three rollouts: the state carries over
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5)
    np.testing.assert_allclose(scaler.returns.numpy(), ref_R, rtol=1e-10)
    assert scaler.rms.count.item() == ref_count
    np.testing.assert_allclose([scaler.rms.mean.item(), scaler.rms.var.item()], [ref_mean, ref_var], rtol=1e-10)
