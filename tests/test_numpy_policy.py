"""The numpy compute path against torch autograd: same loss, same gradient, same update."""

import copy
import logging

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from robo_ppo.algo.losses import (
    clipped_surrogate_loss,
    kl_penalty_loss,
    normalize_advantages,
    value_loss,
)
from robo_ppo.algo.numpy_ppo import NumpyPPO
from robo_ppo.algo.ppo import PPO, TorchKernel
from robo_ppo.config import PPOConfig
from robo_ppo.errors import ConfigError
from robo_ppo.modules.actor_critic import ActorCritic
from robo_ppo.modules.numpy_policy import NumpyActorCritic, UnsupportedModuleError
from robo_ppo.runner import trainer as trainer_mod
from robo_ppo.runner.trainer import Trainer, select_compute

BOX = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
DISCRETE = gym.spaces.Discrete(4)


def make_policy(space, activation="tanh", seed=0):
    torch.manual_seed(seed)
    pi = ActorCritic(5, space, (16, 16), (16, 8), activation=activation, init_log_std=-0.3)
    with torch.no_grad():  # move away from the init so every branch of the loss is exercised
        for p in pi.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return pi


def make_batch(pi, n=48, seed=1):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 5, generator=g)
    with torch.no_grad():
        out = pi.act(obs, generator=g)
        # old log-probs / values shifted so that ratios and value deltas fall on both
        # sides of the clip range
        log_probs = out.log_probs + 0.3 * torch.randn(n, generator=g)
        values = out.values + 0.3 * torch.randn(n, generator=g)
    return {"obs": obs, "actions": out.actions, "log_probs": log_probs, "values": values,
            "advantages": torch.randn(n, generator=g), "returns": torch.randn(n, generator=g),
            "dist_params": out.dist_params + 0.1 * torch.randn(out.dist_params.shape, generator=g),
            "old_log_std": None if pi.is_discrete else pi.log_std.detach() - 0.1}


def torch_loss(pi, b, clip_coef, vf_clip, vf_coef, ent_coef, norm_adv, kl_beta):
    new_logp, entropy, new_values, new_params = pi.evaluate(b["obs"], b["actions"])
    log_ratio = new_logp - b["log_probs"]
    adv = normalize_advantages(b["advantages"]) if norm_adv else b["advantages"]
    if kl_beta is None:
        pg = clipped_surrogate_loss(log_ratio, adv, clip_coef)
    else:
        kl = pi.kl_from(b["dist_params"], b["old_log_std"], new_params)
        pg = kl_penalty_loss(log_ratio, adv, kl, kl_beta)
    v = value_loss(new_values, b["values"], b["returns"], vf_clip)
    return pg - ent_coef * entropy.mean() + vf_coef * v


@pytest.mark.parametrize("space", [BOX, DISCRETE], ids=["gaussian", "categorical"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "silu"])
@pytest.mark.parametrize("loss", ["clip", "kl"])
@pytest.mark.parametrize("vf_clip", [0.2, None], ids=["vclip", "no_vclip"])
def test_loss_and_gradient_match_autograd(space, activation, loss, vf_clip):
    pi = make_policy(space, activation)
    b = make_batch(pi)
    kw = dict(clip_coef=0.2, vf_clip=vf_clip, vf_coef=0.5, ent_coef=0.01, norm_adv=True,
              kl_beta=0.7 if loss == "kl" else None)
    ref = torch_loss(pi, b, **kw)
    ref.backward()
    ref_grad = torch.cat([p.grad.reshape(-1) for p in pi.parameters()])
    npi = NumpyActorCritic(pi)
    out = npi.loss_and_grad({k: v.numpy() for k, v in b.items() if v is not None}, **kw)
    assert out["loss"] == pytest.approx(float(ref.detach()), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(npi.flat_grad, ref_grad.numpy(), rtol=1e-4, atol=1e-6)
    assert np.abs(ref_grad.numpy()).max() > 1e-3  # the comparison is not vacuous


@pytest.mark.parametrize("space", [BOX, DISCRETE], ids=["gaussian", "categorical"])
def test_rollout_calls_match_torch(space):
    pi = make_policy(space)
    pi.update_normalizer(torch.randn(64, 5) * 3 + 1)
    npi = NumpyActorCritic(pi)
    obs = torch.randn(7, 5) * 3
    noise = torch.randn(7, 3) if space is BOX else torch.rand(7)
    with torch.no_grad():
        norm = pi.normalize(obs)
        ref = pi.act(norm, noise=noise)
        np.testing.assert_allclose(npi.normalize(obs.numpy()), norm.numpy(), rtol=1e-6, atol=1e-6)
        out = npi.act(norm.numpy(), noise.numpy())
        np.testing.assert_allclose(npi.get_value(norm.numpy()), pi.get_value(norm).numpy(), rtol=1e-5, atol=1e-6)
        # the rollout's log-prob (from the noise) equals evaluate's (from the action)
        logp, _, _, _ = pi.evaluate(norm, ref.actions)
    for name in ("actions", "log_probs", "values", "dist_params"):
        np.testing.assert_allclose(getattr(out, name), getattr(ref, name).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.log_probs, logp.numpy(), rtol=1e-5, atol=1e-5)
    # statistics update through the numpy path reaches the torch module
    npi.update_normalizer(np.ones((3, 5), np.float32))
    assert pi.obs_normalizer.rms.count.item() == 67


def test_numpy_policy_shares_parameter_memory():
    pi = make_policy(BOX)
    before = copy.deepcopy(pi.state_dict())
    npi = NumpyActorCritic(pi)
    for k, v in pi.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    npi.flat_params.add_(1.0)  # one buffer: the torch module sees the change
    torch.testing.assert_close(pi.actor[0].bias, before["actor.0.bias"] + 1.0)


@pytest.mark.parametrize("loss,lr_schedule", [("clip", "linear"), ("kl", "adaptive")])
def test_update_matches_torch_update(loss, lr_schedule):
    cfg = OmegaConf.structured(PPOConfig(num_minibatches=4, update_epochs=3, loss=loss,
                                         lr_schedule=lr_schedule, ent_coef=0.01))
    pi_t = make_policy(BOX)
    pi_n = copy.deepcopy(pi_t)
    ppo_t = PPO(pi_t, cfg, 10)
    ppo_n = NumpyPPO(NumpyActorCritic(pi_n), cfg, 10)
    for it in range(3):
        b = make_batch(pi_t, n=64, seed=10 + it)
        torch.manual_seed(it)
        st = ppo_t.update(dict(b))
        torch.manual_seed(it)
        sn = ppo_n.update(dict(b))
        for k in ("policy_loss", "value_loss", "approx_kl", "learning_rate", "kl_beta"):
            assert sn[k] == pytest.approx(st[k], rel=1e-3, abs=1e-6), k
    # 36 Adam steps: parameters agree to a small fraction of the distance travelled
    with torch.no_grad():
        moved = max(float((p - q).abs().max()) for p, q in zip(pi_t.parameters(), make_policy(BOX).parameters(), strict=True))
        for (name, p), q in zip(pi_t.named_parameters(), pi_n.parameters(), strict=True):
            assert float((p - q).abs().max()) < 1e-3 * moved, name
    # Adam's state is kept in torch's format, usable by either path
    state = ppo_n.state_dict()["optimizer"]["state"]
    assert {int(s["step"]) for s in state.values()} == {36}
    ppo_t2 = PPO(copy.deepcopy(pi_n), cfg, 10)
    ppo_t2.load_state_dict(ppo_n.state_dict())


def test_compute_auto_picks_numpy_only_for_cpu_engines_on_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert select_compute("auto", cpu, "gymnasium") == "numpy"
    assert select_compute("auto", cpu, "envpool") == "numpy"
    assert select_compute("auto", cpu, "brax") == "torch"
    assert select_compute("auto", cuda, "envpool") == "torch"
    assert select_compute("torch", cpu, "gymnasium") == "torch"
    with pytest.raises(ConfigError, match="compute=numpy runs on the CPU"):
        select_compute("numpy", cpu, "brax")
    with pytest.raises(ConfigError, match="compute=numpy runs on the CPU"):
        select_compute("numpy", cuda, "gymnasium")


# ------------------------------------------------------- what the twin refuses
def _layernorm_in_actor(pi):
    pi.actor.insert(1, nn.LayerNorm(pi.actor[0].out_features))


def _elu_alpha(pi):
    pi.actor[1] = nn.ELU(alpha=0.5)


class _Subclass(ActorCritic):
    pass


@pytest.mark.parametrize("change,match", [
    (_layernorm_in_actor, r"actor\.1 \(LayerNorm"),
    (lambda pi: pi.critic.insert(2, nn.Dropout(0.1)), r"critic\.2 \(Dropout"),
    (lambda pi: pi.actor.__setitem__(1, nn.ReLU()), r"actor\.1 \(ReLU; expected Tanh"),
    (lambda pi: pi.critic.append(nn.Tanh()), r"critic with 6 modules"),
    (lambda pi: pi.register_parameter("temperature", nn.Parameter(torch.ones(1))), r"\['temperature'\]"),
    (lambda pi: pi.register_buffer("step_count", torch.zeros(())), r"\['step_count'\]"),
    (lambda pi: pi.actor[2].register_forward_hook(lambda m, i, o: o * 2), r"hooks on actor\.2"),
    (lambda pi: pi.log_std.requires_grad_(False), r"frozen parameters \['log_std'\]"),
    (lambda pi: setattr(pi, "obs_normalizer", nn.Identity()), r"obs_normalizer of type Identity"),
])
def test_numpy_twin_refuses_what_it_cannot_mirror(change, match):
    pi = make_policy(BOX)
    change(pi)
    before = {k: v.clone() for k, v in pi.state_dict().items()}
    with pytest.raises(UnsupportedModuleError, match=match):
        NumpyActorCritic(pi)
    # refused before touching the module: parameters are not re-seated into a flat buffer
    assert all(p.data.storage_offset() == 0 for p in pi.parameters())
    for k, v in pi.state_dict().items():
        assert torch.equal(v, before[k])


def test_numpy_twin_refuses_elu_alpha_subclasses_and_asymmetric_critics():
    torch.manual_seed(0)
    pi = ActorCritic(5, BOX, (16, 16), (16, 8), activation="elu")
    _elu_alpha(pi)
    with pytest.raises(UnsupportedModuleError, match=r"alpha=0.5"):
        NumpyActorCritic(pi)
    with pytest.raises(UnsupportedModuleError, match=r"_Subclass"):
        NumpyActorCritic(_Subclass(5, BOX))
    with pytest.raises(UnsupportedModuleError, match=r"asymmetric critic"):
        NumpyActorCritic(ActorCritic(5, BOX, critic_obs_dim=7))
    assert issubclass(UnsupportedModuleError, ValueError)
    for space in (BOX, DISCRETE):  # what it does mirror, with and without a normalizer
        for normalize_obs in (True, False):
            for activation in ("tanh", "relu", "elu", "silu"):
                NumpyActorCritic(ActorCritic(5, space, (8,), (8, 8, 8), activation=activation,
                                             normalize_obs=normalize_obs))


def _build_with_layernorm(monkeypatch):
    build = trainer_mod.build_actor_critic

    def patched(*args, **kwargs):
        pi = build(*args, **kwargs)
        _layernorm_in_actor(pi)
        return pi

    monkeypatch.setattr(trainer_mod, "build_actor_critic", patched)


SMALL = ["env=inverted_pendulum", "algo.num_envs=2", "algo.num_steps=32", "algo.num_minibatches=2",
         "algo.update_epochs=1", "total_timesteps=64", "eval_interval=0"]


def test_compute_auto_falls_back_to_torch_with_one_log_line(tmp_path, cfg_factory, monkeypatch, caplog):
    _build_with_layernorm(monkeypatch)
    with caplog.at_level(logging.INFO, logger="robo_ppo"):
        tr = Trainer(cfg_factory(*SMALL, "compute=auto"), tmp_path)
    lines = [r.getMessage() for r in caplog.records if "compute=" in r.getMessage()]
    assert len(lines) == 1 and "LayerNorm" in lines[0] and "using compute=torch" in lines[0]
    assert tr.compute == "torch" and isinstance(tr.ppo.kernel, TorchKernel) and tr.rollout_policy is tr.policy
    assert tr.train()["finished"]
    tr.close()


def test_compute_numpy_with_a_policy_it_cannot_mirror_is_a_config_error(tmp_path, cfg_factory, monkeypatch):
    _build_with_layernorm(monkeypatch)
    with pytest.raises(ConfigError, match=r"compute=numpy cannot train this policy: .*LayerNorm.*compute=torch"):
        Trainer(cfg_factory(*SMALL, "compute=numpy"), tmp_path)
