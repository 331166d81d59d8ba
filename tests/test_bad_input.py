"""Bad input: one clear line, non-zero exit, no traceback, nothing half-written."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from robo_ppo.errors import CheckpointError, NonFiniteError
from robo_ppo.runner.checkpoint import list_checkpoints, load_checkpoint
from robo_ppo.runner.trainer import Trainer


def _cli(*args, cwd):
    cmd = [sys.executable, "-m", "robo_ppo.train", "progress=false", "tensorboard=false",
           "export_onnx=false", f"hydra.run.dir={cwd}/run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["env=nope"], "Could not find 'env/nope'"),
    (["algo.clip_coef=abc"], "full_key: algo.clip_coef"),
    (["algo.clip_cof=0.1"], "Key 'clip_cof' not in 'PPOConfig'"),
    (["algo.lr_schedule=cosine"], "full_key: algo.lr_schedule"),
    (["env.id=NoSuchTask-v9"], "gymnasium has no task 'NoSuchTask-v9'"),
    (["resume=/nonexistent/run"], "/nonexistent/run does not exist"),
    (["algo.num_minibatches=0"], "algo.num_minibatches must be > 0"),
    (["compute=jax"], "compute must be one of auto, torch, numpy"),
])
def test_cli_rejects_bad_input(tmp_path, args, needle):
    res = _cli(*args, cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert needle in out, out
    assert "Traceback" not in out


def test_cli_resume_dir_without_checkpoint_and_corrupt_checkpoint(tmp_path):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    res = _cli(f"resume={empty}", cwd=tmp_path)
    assert res.returncode == 2 and "holds no checkpoint" in res.stderr
    assert "Traceback" not in res.stderr
    (empty / "checkpoints").mkdir()
    (empty / "checkpoints" / "ckpt_0000000064.pt").write_bytes(b"not a checkpoint")
    res = _cli(f"resume={empty}", cwd=tmp_path)
    assert res.returncode == 2 and "cannot read checkpoint" in res.stderr
    assert res.stderr.count("\n") == 1  # one line


def test_foreign_torch_file_is_refused(tmp_path):
    p = tmp_path / "ckpt_0000000001.pt"
    torch.save({"weights": torch.zeros(3)}, p)
    with pytest.raises(CheckpointError, match="not a robo_ppo checkpoint"):
        load_checkpoint(p)


class NaNAfter(gym.Env):
    """A 3-D point mass whose observation turns NaN after ``bad_step`` total steps."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    total_steps = 0
    bad_step = 10_000

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.normal(size=3), {}

    def step(self, action):
        NaNAfter.total_steps += 1
        obs = self.np_random.normal(size=3)
        if NaNAfter.total_steps > NaNAfter.bad_step:
            obs[1] = np.nan
        return obs, float(-abs(action[0])), False, False, {}


gym.register("RoboPPOTestNaN-v0", entry_point=NaNAfter, max_episode_steps=50)


def test_nan_observation_stops_run_and_keeps_last_good_checkpoint(tmp_path, cfg_factory):
    NaNAfter.total_steps, NaNAfter.bad_step = 0, 300  # iteration 3 of 128-step iterations
    cfg = cfg_factory("env=inverted_pendulum", "env.id=RoboPPOTestNaN-v0", "total_timesteps=1280",
                      "algo.num_envs=2", "algo.num_steps=64", "algo.num_minibatches=2",
                      "eval_interval=0", "checkpoint_interval=1")
    tr = Trainer(cfg, tmp_path)
    with pytest.raises(NonFiniteError, match="non-finite observation"):
        tr.train()
    tr.close()
    ckpts = list_checkpoints(tmp_path / "checkpoints")
    assert ckpts, "the good iterations before the NaN were checkpointed"
    state = load_checkpoint(tmp_path)
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("compute", ["torch", "numpy"])
def test_nan_loss_stops_run(tmp_path, cfg_factory, monkeypatch, compute):
    import robo_ppo.algo.ppo as ppo_mod
    from robo_ppo.modules.numpy_policy import NumpyActorCritic

    monkeypatch.setattr(ppo_mod, "value_loss", lambda *a, **k: torch.tensor(float("nan")))
    loss_and_grad = NumpyActorCritic.loss_and_grad
    monkeypatch.setattr(NumpyActorCritic, "loss_and_grad",
                        lambda *a, **k: {**loss_and_grad(*a, **k), "value_loss": float("nan")})
    cfg = cfg_factory("env=inverted_pendulum", "total_timesteps=256", "algo.num_envs=2",
                      "algo.num_steps=64", "algo.num_minibatches=2", "eval_interval=0",
                      f"compute={compute}")
    tr = Trainer(cfg, tmp_path)
    with pytest.raises(NonFiniteError, match="loss became non-finite"):
        tr.train()
    tr.close()
    assert list_checkpoints(tmp_path / "checkpoints") == []
