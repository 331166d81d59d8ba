import gymnasium as gym
import numpy as np
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from robo_ppo.modules.actor_critic import ActorCritic

BOX = gym.spaces.Box(-np.ones(3, dtype=np.float32), np.ones(3, dtype=np.float32))


def test_gaussian_log_prob_entropy_and_kl_match_torch_distributions():
    torch.manual_seed(0)
    pi = ActorCritic(4, BOX, init_log_std=-0.5)
    obs = torch.randn(16, 4)
    out = pi.act(obs)
    mean, std = out.dist_params, torch.exp(pi.log_std)
    ref = Normal(mean, std)
    torch.testing.assert_close(out.log_probs, ref.log_prob(out.actions).sum(-1))
    logp, ent, val, _ = pi.evaluate(obs, out.actions)
    torch.testing.assert_close(logp, out.log_probs)
    torch.testing.assert_close(ent, ref.entropy().sum(-1))
    old_log_std = pi.log_std.detach().clone() + 0.3
    new_params = mean + 0.1
    kl = pi.kl_from(mean, old_log_std, new_params)
    torch.testing.assert_close(kl, kl_divergence(Normal(mean, torch.exp(old_log_std)),
                                                 Normal(new_params, std)).sum(-1))


def test_categorical_head():
    torch.manual_seed(0)
    pi = ActorCritic(4, gym.spaces.Discrete(3))
    obs = torch.randn(32, 4)
    out = pi.act(obs)
    assert out.actions.dtype == torch.int64 and out.actions.shape == (32,)
    ref = Categorical(logits=out.dist_params)
    torch.testing.assert_close(out.log_probs, ref.log_prob(out.actions))
    _, ent, _, _ = pi.evaluate(obs, out.actions)
    torch.testing.assert_close(ent, ref.entropy())
    kl = pi.kl_from(out.dist_params, None, out.dist_params * 0.5)
    torch.testing.assert_close(kl, kl_divergence(ref, Categorical(logits=out.dist_params * 0.5)))
    assert torch.equal(pi(obs), torch.argmax(out.dist_params, -1))


def test_forward_is_clipped_mean_of_normalized_obs():
    torch.manual_seed(0)
    pi = ActorCritic(4, BOX)
    with torch.no_grad():
        pi.actor[-1].bias.fill_(5.0)  # push the mean outside the bounds
    pi.update_normalizer(torch.randn(100, 4) * 3 + 1)
    obs = torch.randn(8, 4)
    act = pi(obs)
    assert torch.all(act <= 1.0) and torch.all(act >= -1.0)
    torch.testing.assert_close(act, torch.clamp(pi.actor(pi.normalize(obs)), -1, 1))
