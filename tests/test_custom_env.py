"""A user's own gymnasium environment, named in gymnasium's ``module:EnvId`` form:
resolved, trained, checkpointed, resumed, exported and replayed (tests/custom_envs.py)."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest
import torch

from robo_ppo.envs.gymnasium_env import GymnasiumVecEnv, resolve_env_id
from robo_ppo.errors import ConfigError
from robo_ppo.runner.checkpoint import load_checkpoint
from robo_ppo.runner.trainer import Trainer

CUSTOM_ID = "custom_envs:PointReach-v0"
FAST = ["env=inverted_pendulum", f"env.id={CUSTOM_ID}", "total_timesteps=512", "algo.num_envs=2",
        "algo.num_steps=64", "algo.num_minibatches=2", "algo.update_epochs=2", "eval_interval=0",
        "eval_episodes=2"]


def test_module_colon_id_imports_the_module_that_registers_the_task():
    gym.registry.pop("PointReach-v0", None)
    sys.modules.pop("custom_envs", None)
    assert resolve_env_id(CUSTOM_ID) == CUSTOM_ID
    assert "PointReach-v0" in gym.registry
    env = GymnasiumVecEnv(CUSTOM_ID, 2)
    assert env.env_id == CUSTOM_ID and env.obs_dim == 6 and env.action_space.shape == (2,)
    obs = env.reset(seed=0)
    obs2, rew, *_ = env.step(torch.zeros(2, 2))
    assert obs.shape == obs2.shape == (2, 6) and rew.shape == (2,)
    assert env.control_dt == pytest.approx(0.05)


@pytest.mark.parametrize("env_id,needle", [
    ("no_such_module_xyz:Robot-v0", "cannot import module 'no_such_module_xyz'"),
    ("custom_envs:NotRegistered-v0", "registers no gymnasium task 'NotRegistered-v0'"),
    (":Robot-v0", "not of the form module:EnvId"),
    ("NoSuchTask-v9", "gymnasium has no task 'NoSuchTask-v9'"),
])
def test_bad_ids_name_the_fix(env_id, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve_env_id(env_id)


def test_module_that_fails_to_import_is_a_config_error(tmp_path, monkeypatch):
    (tmp_path / "broken_robot_mod.py").write_text("import numpy\nraise RuntimeError('bad xml')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="importing 'broken_robot_mod'.*RuntimeError: bad xml"):
        resolve_env_id("broken_robot_mod:Robot-v0")


def test_module_in_the_working_directory_is_found(tmp_path, monkeypatch):
    """A console script's sys.path lacks the working directory; the module next to
    the user is still found (appended last, so it never shadows a package)."""
    (tmp_path / "cwd_robot_mod.py").write_text(
        "import gymnasium as gym\n"
        "from custom_envs import PointReach\n"
        "gym.register('CwdRobot-v0', entry_point=PointReach, max_episode_steps=10)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_robot_mod", raising=False)
    assert resolve_env_id("cwd_robot_mod:CwdRobot-v0") == "cwd_robot_mod:CwdRobot-v0"
    assert sys.path[-1] == str(tmp_path)
    gym.registry.pop("CwdRobot-v0", None)


def test_custom_env_trains_resumes_exports_and_replays(tmp_path, cfg_factory):
    from robo_ppo.export import export_checkpoint, read_metadata
    from robo_ppo.replay import replay

    cfg = cfg_factory(*FAST)
    full = Trainer(cfg, tmp_path / "full")
    summary = full.train()
    full.close()
    assert summary["finished"] and summary["global_step"] == 512
    assert np.isfinite(summary["eval"]["mean"])
    expected = {k: v.clone() for k, v in full.policy.state_dict().items()}

    # its state is a plain array: the snapshot makes resume exact here too
    first = Trainer(cfg, tmp_path / "a")
    first.train(on_iteration=lambda tr: tr.request_stop() if tr.iteration == 2 else None)
    first.close()
    state = load_checkpoint(tmp_path / "a")
    assert state["env_state"] is not None
    second = Trainer(cfg, tmp_path / "b", resume_state=state)
    second.train()
    second.close()
    for k, v in second.policy.state_dict().items():
        assert torch.equal(v, expected[k]), k

    report = export_checkpoint(summary["checkpoint"], tmp_path / "policy.onnx")
    meta = read_metadata(report["path"])
    assert meta["task_id"] == CUSTOM_ID and meta["obs_dim"] == 6 and meta["act_dim"] == 2
    session = ort.InferenceSession(str(report["path"]), providers=["CPUExecutionProvider"])
    actions = session.run(["actions"], {"obs": np.zeros((3, 6), np.float32)})[0]
    assert actions.shape == (3, 2) and np.all(np.abs(actions) <= 1.0)

    result = replay(report["path"], episodes=2, print_table=False)
    assert result["task_id"] == CUSTOM_ID and result["lengths"] == [100, 100]
