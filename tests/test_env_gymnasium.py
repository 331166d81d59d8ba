import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from robo_ppo.envs.gymnasium_env import GymnasiumVecEnv


def test_contract_shapes_dtypes_autoreset_and_final_obs():
    env = GymnasiumVecEnv("InvertedPendulum-v5", 3, max_episode_steps=5)
    obs = env.reset(seed=0)
    assert obs.shape == (3, 4) and obs.dtype == torch.float32
    big = torch.full((3, 1), 100.0)  # far outside [-3, 3]: the seam must clip
    finals = []
    for _ in range(5):
        prev = obs
        obs, rew, term, trunc, info = env.step(big)
        assert rew.shape == (3,) and rew.dtype == torch.float32
        assert term.dtype == torch.bool and trunc.dtype == torch.bool
        assert info["final_obs"].shape == (3, 4)
        done = term | trunc
        finals.append((done, info, prev, obs))
        if done.all():
            break
    done, info, prev, obs = finals[-1]
    # every env ended (terminated by falling or truncated at 5 steps)
    assert len(info["episode_return"]) == int(done.sum())
    # auto-reset: obs is a fresh start (near zero) while final_obs is the last state
    assert torch.all(obs.abs() < 0.02)
    assert not torch.equal(info["final_obs"], obs)
    np.testing.assert_array_equal(info["episode_length"].numpy(), np.full(int(done.sum()), len(finals)))


def test_truncation_is_not_termination():
    env = GymnasiumVecEnv("HalfCheetah-v5", 2, max_episode_steps=7)
    env.reset(seed=1)
    for _ in range(7):
        _, _, term, trunc, info = env.step(torch.zeros(2, 6))
    assert not term.any() and trunc.all()
    assert info["episode_length"].tolist() == [7.0, 7.0]


def test_snapshot_restores_exact_trajectory():
    env = GymnasiumVecEnv("Hopper-v5", 2, max_episode_steps=50)
    env.reset(seed=3)
    g = torch.Generator().manual_seed(0)
    actions = [torch.rand(2, 3, generator=g) * 2 - 1 for _ in range(120)]
    for a in actions[:30]:
        env.step(a)
    snap = env.get_state()
    ref = [env.step(a) for a in actions[30:]]
    env2 = GymnasiumVecEnv("Hopper-v5", 2, max_episode_steps=50)
    env2.reset(seed=99)
    env2.set_state(snap)
    for a, r in zip(actions[30:], ref, strict=True):
        out = env2.step(a)
        assert torch.equal(out[0], r[0]) and torch.equal(out[1], r[1])
        assert torch.equal(out[2], r[2]) and torch.equal(out[3], r[3])
        assert torch.equal(out[4]["episode_return"], r[4]["episode_return"])


def test_discrete_actions_and_names():
    env = GymnasiumVecEnv("CartPole-v1", 2)
    env.reset(seed=0)
    obs, *_ = env.step(torch.tensor([0, 1]))
    assert obs.shape == (2, 4)
    hc = GymnasiumVecEnv("HalfCheetah-v5", 1)
    meta = hc.metadata()
    assert meta["control_dt"] == 0.05
    assert len(meta["action_names"]) == 6 and len(meta["observation_names"]) == 17
    assert meta["observation_names"][0] == "rootz:pos"


def test_steps_like_gymnasium_sync_vector_env_in_same_step_mode():
    """Direct stepping reproduces SyncVectorEnv(SAME_STEP): seeding, auto-reset, final obs."""
    ours = GymnasiumVecEnv("Hopper-v5", 3, max_episode_steps=40)
    ref = SyncVectorEnv([lambda: gym.make("Hopper-v5", max_episode_steps=40, disable_env_checker=True)] * 3,
                        autoreset_mode=AutoresetMode.SAME_STEP)
    obs = ours.reset_arrays(seed=5)
    ref_obs, _ = ref.reset(seed=5)
    np.testing.assert_array_equal(obs, ref_obs.astype(np.float32))
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(100):
        actions = rng.uniform(-1, 1, size=(3, 3)).astype(np.float32)
        obs, rew, term, trunc, info = ours.step_arrays(actions)
        ref_obs, ref_rew, ref_term, ref_trunc, ref_info = ref.step(actions.astype(np.float64))
        np.testing.assert_array_equal(obs, ref_obs.astype(np.float32))
        np.testing.assert_array_equal(rew, ref_rew.astype(np.float32))
        np.testing.assert_array_equal(term, ref_term)
        np.testing.assert_array_equal(trunc, ref_trunc)
        for i in np.flatnonzero(ref_term | ref_trunc):
            np.testing.assert_array_equal(info["final_obs"][i], ref_info["final_obs"][i].astype(np.float32))
            ends += 1
    assert ends >= 3  # falls and time limits both happened
