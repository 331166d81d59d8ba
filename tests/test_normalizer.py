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


def test_reward_scaler_divides_by_std_of_discounted_return_and_resets_on_done():
    scaler = RewardScaler(num_envs=1, gamma=0.5, clip=10.0)
    r = torch.ones(1)
    out1 = scaler(r, torch.tensor([False]))  # R = 1 -> var 0 -> eps floor, then clip
    assert out1.item() == 10.0
    scaler(r, torch.tensor([True]))  # R = 1.5, then reset
    assert scaler.returns.item() == 0.0
    out3 = scaler(r, torch.tensor([False]))  # R = 1; stats over {1, 1.5, 1}
    std = torch.tensor([1.0, 1.5, 1.0], dtype=torch.float64).var(unbiased=False).sqrt()
    torch.testing.assert_close(out3, (1.0 / std).float().reshape(1), rtol=1e-5, atol=0)
