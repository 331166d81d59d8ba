from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from omegaconf import OmegaConf

from robo_ppo.envs.gymnasium_env import MJ_DERIVED_FIELDS, GymnasiumVecEnv, filter_mujoco_warnings
from robo_ppo.hydra_utils import config_dir


def gymnasium_tasks() -> list[str]:
    """The gymnasium ids of every task in conf/env/ (those not bound to another engine)."""
    ids = []
    for path in sorted(Path(config_dir(), "env").glob("*.yaml")):
        env = OmegaConf.load(path).env
        if env.get("task") is None:
            ids.append(env.id)
    return ids


GYM_TASKS = gymnasium_tasks()


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


def test_every_gymnasium_task_of_conf_env_is_covered():
    assert set(GYM_TASKS) == {"CartPole-v1", "InvertedPendulum-v5", "InvertedDoublePendulum-v5",
                              "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5"}


@pytest.mark.parametrize("task", GYM_TASKS)
def test_snapshot_restores_exact_trajectory(task):
    """Restored into a VecEnv that ran other episodes, a snapshot continues bit for bit:
    rewards too (Ant-v5 and Humanoid-v5 read positions that MuJoCo holds one substep
    stale after mj_step, so the snapshot must not refresh them with mj_forward)."""
    env = GymnasiumVecEnv(task, 2, max_episode_steps=30)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    if env.is_discrete:
        actions = [rng.integers(0, env.action_space.n, 2) for _ in range(100)]
    else:
        actions = [rng.uniform(-1, 1, (2, *env.action_space.shape)).astype(np.float32) for _ in range(100)]
    for a in actions[:37]:
        env.step_arrays(a)
    snap = env.get_state()
    ref = [env.step_arrays(a) for a in actions[37:]]
    env2 = GymnasiumVecEnv(task, 2, max_episode_steps=30)
    env2.reset(seed=99)
    for _ in range(5):
        env2.step_arrays(actions[0])
    env2.set_state(snap)
    ends = 0
    for t, (a, r) in enumerate(zip(actions[37:], ref, strict=True)):
        out = env2.step_arrays(a)
        for name, x, y in zip(("obs", "reward", "terminated", "truncated"), out[:4], r[:4], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"{task}: {name} differs {t} steps after restore")
        for key in ("final_obs", "episode_return", "episode_length"):
            np.testing.assert_array_equal(out[4][key], r[4][key], err_msg=f"{task}: {key}")
        ends += len(r[4]["episode_return"])
    assert ends >= 2  # episodes ended (and were auto-reset from the restored RNG) after the restore


def test_snapshot_carries_the_stale_derived_arrays_and_restores_them_without_mj_forward():
    env = GymnasiumVecEnv("Ant-v5", 1)
    env.reset(seed=0)
    env.step_arrays(np.full((1, 8), 0.5, np.float32))
    data = env.envs[0].unwrapped.data
    stale = data.xpos.copy()
    snap = env.get_state()
    derived = snap["envs"][0]["mj_derived"]
    assert set(derived) == {f for f in MJ_DERIVED_FIELDS if hasattr(data, f)}
    fresh = GymnasiumVecEnv("Ant-v5", 1)
    fresh.reset(seed=5)
    fresh.set_state(snap)
    restored = fresh.envs[0].unwrapped.data
    np.testing.assert_array_equal(restored.xpos, stale)
    model = fresh.envs[0].unwrapped.model
    mujoco.mj_forward(model, restored)  # what the old restore did: moves the torso it reads
    assert not np.array_equal(restored.xpos, stale)


def test_creating_halfcheetah_prints_no_settotalmass_warning(capfd):
    """MuJoCo 4 deprecates the settotalmass attribute of gymnasium's half_cheetah.xml
    and prints that from C (stderr + MUJOCO_LOG.TXT) for every env made."""
    xml = Path(gym.envs.mujoco.__file__).parent / "assets" / "half_cheetah.xml"
    assert "settotalmass" in xml.read_text()  # the model still sets it: the filter is what helps
    env = GymnasiumVecEnv("HalfCheetah-v5", 2)
    env.close()
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err


def test_mujoco_warning_filter_passes_other_warnings_through(capfd):
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><freejoint/><geom size=".1"/></body></worldbody></mujoco>')
    data = mujoco.MjData(model)
    seen = []
    previous = mujoco.get_mju_user_warning()
    with filter_mujoco_warnings():
        data.qvel[0] = np.nan
        mujoco.mj_step(model, data)  # MuJoCo warns about the bad velocity (and resets the state)
    assert mujoco.get_mju_user_warning() is previous
    assert "Nan, Inf or huge value in QVEL" in capfd.readouterr().err
    mujoco.set_mju_user_warning(seen.append)  # a handler installed before is kept and called
    try:
        with filter_mujoco_warnings():
            mujoco.MjModel.from_xml_string(
                '<mujoco><compiler settotalmass="2"/><worldbody><body><freejoint/>'
                '<geom size=".1"/></body></worldbody></mujoco>')
            data = mujoco.MjData(model)  # MuJoCo prints a warning once per MjData
            data.qvel[0] = np.nan
            mujoco.mj_step(model, data)
    finally:
        mujoco.set_mju_user_warning(previous)
    assert len(seen) == 1 and "QVEL" in seen[0]


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


def test_engines_are_a_registry_of_lazy_factories(monkeypatch):
    """``make_vec_env`` looks the engine up in ``ENGINES`` ("module:factory",
    imported on first use): a new engine is one entry, not another branch."""
    import subprocess
    import sys
    import types

    from robo_ppo import envs

    assert set(envs.ENGINES) == {"gymnasium", "envpool", "brax", "mujoco", "mjwarp"}
    for target in envs.ENGINES.values():
        module, _, attr = target.partition(":")
        assert module.startswith("robo_ppo.envs.") and attr.startswith("make_")
    made = []
    fake = types.ModuleType("fake_engine_mod")
    fake.make = lambda env_cfg, engine_cfg, num_envs, **kw: made.append((env_cfg.id, num_envs, kw)) or "env"
    monkeypatch.setitem(sys.modules, "fake_engine_mod", fake)
    monkeypatch.setitem(envs.ENGINES, "fake", "fake_engine_mod:make")
    cfg = OmegaConf.create({"id": "X-v0", "max_episode_steps": None, "kwargs": {}})
    assert envs.make_vec_env(cfg, OmegaConf.create({"name": "fake"}), 3, seed=4) == "env"
    assert made == [("X-v0", 3, {"device": "cpu", "seed": 4})]
    env = envs.make_vec_env(OmegaConf.create({"id": "CartPole-v1"}), OmegaConf.create({"name": "gymnasium"}), 2)
    assert isinstance(env, GymnasiumVecEnv) and env.num_envs == 2
    # lazy: choosing the gymnasium engine imports neither EnvPool's nor Brax's adapter
    code = ("import sys; from omegaconf import OmegaConf; from robo_ppo.envs import make_vec_env; "
            "make_vec_env(OmegaConf.create({'id': 'CartPole-v1'}), OmegaConf.create({'name': 'gymnasium'}), 1); "
            "print(sorted(m for m in sys.modules if m.startswith('robo_ppo.envs.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "['robo_ppo.envs.base', 'robo_ppo.envs.gymnasium_env']", out.stderr[-2000:]
