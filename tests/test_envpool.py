"""EnvPool engine: the VecEnv contract, and agreement with gymnasium's tasks.

Skipped when the optional ``envpool`` extra is not installed.
"""

from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

envpool = pytest.importorskip("envpool")

from robo_ppo.envs import make_vec_env  # noqa: E402
from robo_ppo.envs.envpool_env import EnvPoolVecEnv  # noqa: E402
from robo_ppo.errors import ConfigError  # noqa: E402

ENGINE = OmegaConf.create({"name": "envpool", "num_threads": 0})


def env_cfg(**kw):
    base = {"name": "halfcheetah", "id": "HalfCheetah-v5", "envpool_id": "HalfCheetah-v5",
            "max_episode_steps": None, "kwargs": {}}
    base.update(kw)
    return OmegaConf.create(base)


def test_contract_shapes_dtypes_and_same_step_autoreset():
    env = make_vec_env(env_cfg(max_episode_steps=5), ENGINE, 3, seed=3)
    assert isinstance(env, EnvPoolVecEnv) and env.engine == "envpool"
    assert env.obs_dim == 17 and env.action_space.shape == (6,)
    assert env.control_dt == pytest.approx(0.05)
    obs = env.reset(seed=3)
    assert obs.shape == (3, 17) and obs.dtype == torch.float32
    rewards_sum = torch.zeros(3, dtype=torch.float64)
    for t in range(5):
        obs, rew, term, trunc, info = env.step(torch.zeros(3, 6))
        assert rew.shape == (3,) and rew.dtype == torch.float32
        assert term.dtype == torch.bool and trunc.dtype == torch.bool
        assert info["final_obs"].shape == (3, 17) and info["final_obs"].dtype == torch.float32
        rewards_sum += rew.double()
        if t < 4:
            assert not (term | trunc).any() and len(info["episode_return"]) == 0
            assert torch.equal(info["final_obs"], obs)
    # time limit: truncated, not terminated; stats of the finished episodes
    assert trunc.all() and not term.any()
    assert info["episode_length"].tolist() == [5.0, 5.0, 5.0]
    np.testing.assert_allclose(info["episode_return"].numpy(), rewards_sum.numpy(), rtol=1e-5)
    # same-step reset: obs is a fresh start, final_obs the last state of the old episode
    assert not torch.equal(info["final_obs"], obs)
    assert torch.all(obs[:, :8].abs() <= 0.1 + 1e-6)  # qpos noise of reset_noise_scale=0.1
    # the next step continues the new episode normally (its action is not ignored)
    _, rew, term, trunc, info = env.step(torch.zeros(3, 6))
    assert not (term | trunc).any() and torch.all(rew != 0)
    env.close()


def test_reset_obs_matches_envpools_own_autoreset():
    """Our immediate partial reset draws the same initial state EnvPool's next-step
    auto-reset would have returned one call later."""
    env = EnvPoolVecEnv("Hopper-v5", 2, seed=11, max_episode_steps=4)
    raw = envpool.make_gymnasium("Hopper-v5", num_envs=2, batch_size=2, num_threads=env.num_threads,
                                 seed=11, max_episode_steps=4)
    env.reset()
    raw.reset()
    zeros = np.zeros((2, 3))
    for _ in range(4):
        obs, *_ , info = env.step(torch.zeros(2, 3))
        raw_obs, _, raw_term, raw_trunc, _ = raw.step(zeros)
    assert raw_trunc.all()
    np.testing.assert_allclose(info["final_obs"].numpy(), raw_obs.astype(np.float32))
    raw_reset_obs, r, *_ = raw.step(zeros)  # EnvPool: the step after done is the reset
    assert np.all(r == 0)
    np.testing.assert_allclose(obs.numpy(), raw_reset_obs.astype(np.float32))


def test_reset_seed_is_reproducible_and_actions_are_clipped():
    env = EnvPoolVecEnv("HalfCheetah-v5", 2, seed=0)
    a = env.reset(seed=5)
    env.step(torch.ones(2, 6))
    b = env.reset(seed=5)  # rebuilt pool: same episodes again
    assert torch.equal(a, b)
    out_in = env.step(torch.ones(2, 6))
    env.reset(seed=5)
    out_far = env.step(torch.full((2, 6), 50.0))  # clipped to the bound 1.0
    assert torch.equal(out_in[0], out_far[0]) and torch.equal(out_in[1], out_far[1])
    c = env.reset(seed=6)
    assert not torch.equal(a, c)


def _fixed_action_returns(task: str, steps: int, seed: int = 0):
    """Return of one episode (up to ``steps``) under the same uniform random action
    sequence, from the deterministic initial state (reset_noise_scale=0), on both engines."""
    pool = EnvPoolVecEnv(task, 1, seed=0, make_kwargs={"reset_noise_scale": 0.0})
    ref = gym.make(task, reset_noise_scale=0.0)
    o1 = pool.reset().numpy()[0]
    o2, _ = ref.reset(seed=0)
    assert o1.shape == o2.shape
    np.testing.assert_allclose(o1, o2, atol=1e-6)
    rng = np.random.default_rng(seed)
    ret1 = ret2 = 0.0
    end1 = end2 = None
    space = ref.action_space
    n = 0
    for _ in range(steps):
        n += 1
        act = rng.uniform(space.low, space.high).astype(np.float32)
        _, r1, te1, tr1, _ = pool.step(torch.from_numpy(act)[None])
        _, r2, te2, tr2, _ = ref.step(act.astype(np.float64))
        ret1 += float(r1[0])
        ret2 += float(r2)
        if bool(te1[0]) or bool(te2):
            end1, end2 = bool(te1[0]), bool(te2)
            break
    return ret1, ret2, (end1, end2), n


@pytest.mark.parametrize("task,steps,rtol", [
    # smooth dynamics: agree to float32 reward rounding until chaos amplifies the
    # round-off of the two MuJoCo builds (HalfCheetah: ~1e-5 after 100 steps)
    ("HalfCheetah-v5", 50, 1e-6),
    ("Hopper-v5", 200, 1e-6),       # whole episode, including the termination step
    ("Walker2d-v5", 200, 1e-6),
    ("InvertedDoublePendulum-v5", 200, 1e-6),
    ("Humanoid-v5", 200, 1e-4),     # contact forces in the obs: ~1e-6 apart
    ("Ant-v5", 10, 1e-2),           # contact-rich: ~1e-3 apart within steps, episodes diverge
])
def test_fixed_action_returns_agree_with_gymnasium(task, steps, rtol):
    ret_pool, ret_gym, (end1, end2), n = _fixed_action_returns(task, steps)
    assert end1 == end2, f"{task}: termination differs after {n} steps"
    assert ret_pool == pytest.approx(ret_gym, rel=rtol, abs=1e-4)


@pytest.mark.parametrize("task,obs_dim", [("Ant-v4", 27), ("Ant-v5", 105), ("Humanoid-v4", 376),
                                          ("Humanoid-v5", 348), ("InvertedDoublePendulum-v4", 11),
                                          ("InvertedDoublePendulum-v5", 9)])
def test_observation_layouts_by_version(task, obs_dim):
    assert envpool.make_spec(task).gymnasium_observation_space.shape == (obs_dim,)
    if task.endswith("-v5"):
        assert gym.make(task).observation_space.shape == (obs_dim,)


def test_config_errors():
    with pytest.raises(ConfigError, match="engine=gymnasium"):
        make_vec_env(env_cfg(envpool_id=None), ENGINE, 2)
    with pytest.raises(ConfigError, match="EnvPool has no task"):
        make_vec_env(env_cfg(envpool_id="HalfCheetah-v99"), ENGINE, 2)
    with pytest.raises(ConfigError, match="include_cfrc_ext_in_observation"):
        make_vec_env(env_cfg(id="Ant-v5", envpool_id="Ant-v5",
                             kwargs={"include_cfrc_ext_in_observation": False}), ENGINE, 2)


def test_version_mismatch_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="robo_ppo.envs.envpool_env"):
        env = make_vec_env(env_cfg(envpool_id="HalfCheetah-v4"), ENGINE, 1)
    env.close()
    assert "HalfCheetah-v4" in caplog.text


def test_missing_envpool_raises_config_error(monkeypatch):
    import builtins

    from robo_ppo.envs import envpool_env

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "envpool":
            raise ImportError("No module named 'envpool'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match=r"pip install -e \.\[envpool\]"):
        envpool_env._import_envpool()


def test_trainer_runs_on_envpool_and_checkpoints(tmp_path, cfg_factory):
    from robo_ppo.runner.trainer import Trainer

    cfg = cfg_factory("env=halfcheetah", "preset=throughput", "env.envpool_id=HalfCheetah-v5",
                      "algo.num_envs=4", "algo.num_steps=16", "algo.num_minibatches=2",
                      "algo.update_epochs=1", "total_timesteps=128", "eval_interval=0",
                      "eval_episodes=2", "env.max_episode_steps=20", "device=cpu")
    assert cfg.engine.name == "envpool"
    trainer = Trainer(cfg, tmp_path)
    summary = trainer.train()
    trainer.close()
    assert summary["finished"] and summary["global_step"] == 128
    assert summary["checkpoint"] is not None
    state = torch.load(summary["checkpoint"], weights_only=True)
    assert state["env_state"]["engine"] == "envpool"  # a replay snapshot (seed, resets, actions)


@pytest.mark.parametrize("task", ["Hopper-v5", "Ant-v5"])
def test_snapshot_replays_to_the_exact_state(task):
    """EnvPool has no state API; the snapshot (seed, resets per env, current-episode
    actions) is replayed into a rebuilt pool and continues bit for bit."""
    env = EnvPoolVecEnv(task, 3, seed=7, max_episode_steps=25)
    env.reset(seed=7)
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, (3, *env.action_space.shape)) for _ in range(160)]
    for a in actions[:77]:
        env.step_arrays(a)
    snap = env.get_state()
    assert (snap["resets"] >= 3).all()  # initial reset + episodes ended before the snapshot
    assert all(len(a) < 25 for a in snap["episode_actions"])
    ref = [env.step_arrays(a) for a in actions[77:]]
    env2 = EnvPoolVecEnv(task, 3, seed=1, max_episode_steps=25)
    env2.reset(seed=1)
    env2.step_arrays(actions[0])
    env2.set_state(snap)
    ends = 0
    for a, r in zip(actions[77:], ref, strict=True):
        out = env2.step_arrays(a)
        for x, y in zip(out[:4], r[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        for key in ("final_obs", "episode_return", "episode_length"):
            np.testing.assert_array_equal(out[4][key], r[4][key])
        ends += len(r[4]["episode_return"])
    assert ends >= 3
    env.close()
    env2.close()


def test_snapshot_replay_that_does_not_reproduce_the_state_warns(caplog):
    env = EnvPoolVecEnv("HalfCheetah-v5", 2, seed=0)
    env.reset(seed=0)
    for _ in range(3):
        env.step_arrays(np.full((2, 6), 0.3))
    snap = env.get_state()
    snap["last_obs"] = snap["last_obs"] + 1.0  # as if another EnvPool build had written it
    with caplog.at_level(logging.WARNING, logger="robo_ppo.envs.envpool_env"):
        env.set_state(snap)
    assert "did not reproduce the saved observations" in caplog.text
    with pytest.raises(ValueError, match="snapshot holds 2 envs"):
        EnvPoolVecEnv("HalfCheetah-v5", 4, seed=0).set_state(snap)
    # a shorter time limit now: the replayed episodes end early; the envs start new ones
    # at once (the same-step contract holds) and the warning says so
    short = EnvPoolVecEnv("HalfCheetah-v5", 2, seed=0, max_episode_steps=2)
    short.reset(seed=0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="robo_ppo.envs.envpool_env"):
        short.set_state(snap)
    assert "2 episodes ended early" in caplog.text
    _, _, term, trunc, info = short.step_arrays(np.zeros((2, 6)))
    assert not (term | trunc).any() and len(info["episode_return"]) == 0
    _, _, term, trunc, info = short.step_arrays(np.zeros((2, 6)))
    assert trunc.all() and info["episode_length"].tolist() == [2.0, 2.0]
    env.close()


@pytest.mark.parametrize("compute", ["numpy", "torch"])
def test_interrupted_and_resumed_envpool_run_matches_uninterrupted(tmp_path, cfg_factory, compute):
    from robo_ppo.runner.checkpoint import load_checkpoint
    from robo_ppo.runner.trainer import Trainer

    cfg = cfg_factory("env=hopper", "engine=envpool", "algo.num_envs=4", "algo.num_steps=32",
                      "algo.num_minibatches=4", "algo.update_epochs=2", "total_timesteps=512",
                      "eval_interval=0", "eval_episodes=2", "env.max_episode_steps=40", "device=cpu",
                      f"compute={compute}", "checkpoint_interval=100")
    full = Trainer(cfg, tmp_path / "full")
    full.train()
    full.close()
    first = Trainer(cfg, tmp_path / "a")
    first.train(on_iteration=lambda tr: tr.request_stop() if tr.iteration == 2 else None)
    first.close()
    state = load_checkpoint(tmp_path / "a")
    assert state["iteration"] == 2
    second = Trainer(cfg, tmp_path / "b", resume_state=state)
    assert second.train()["finished"]
    second.close()
    for k, v in full.policy.state_dict().items():
        assert torch.equal(v, second.policy.state_dict()[k]), f"{k} differs after resume"
    assert list(second.recent_returns) == list(full.recent_returns)
