"""Physics divergence in robot tasks is contained: the env is reset, the step is counted
(``physics/diverged``) and dropped from the update, nothing non-finite reaches the normalizer, the
buffer or the loss, and a run that keeps diverging stops with one line and keeps its checkpoint."""

import csv
import math
import subprocess
import sys

import torch
from conftest import make_cfg

from robo_ppo.envs.robot_env import RobotVecEnv
from robo_ppo.runner.checkpoint import list_checkpoints
from robo_ppo.runner.trainer import Trainer

SMALL = ["env=go1_joystick", "algo.num_envs=8", "algo.num_steps=16", "algo.num_minibatches=2",
         "algo.update_epochs=1", "eval_interval=0", "eval_episodes=1", "engine.num_threads=2",
         "deploy_check.enabled=false", "progress=false", "tensorboard=false"]


def _poison(env: RobotVecEnv, row: int) -> None:
    """A NaN in one env's MuJoCo state, as a blown-up solver leaves it."""
    env.physics.datas[row].qvel[2] = math.nan


def test_nan_in_one_env_resets_only_that_env_and_nothing_non_finite_leaves_the_env():
    cfg = make_cfg(*SMALL)
    env = RobotVecEnv(cfg.env, "mujoco", 8, seed=0, num_threads=2)
    env.reset()
    for _ in range(5):
        env.step(torch.zeros(8, 12))
    _poison(env, 3)
    obs, reward, terminated, truncated, info = env.step(torch.zeros(8, 12))
    assert info["diverged"].tolist() == [i == 3 for i in range(8)]
    assert truncated[3] and not terminated[3] and not info["episode_done"][3]   # no task episode ends
    assert reward[3] == 0 and (info["reward_terms"][3] == 0).all()
    for x in (obs, reward, info["final_obs"], info["final_critic_obs"], env.last_critic_obs(), info["reward_terms"]):
        assert torch.isfinite(x).all()
    assert env._steps[3] == 0 and (env._steps[torch.arange(8) != 3] == 6).all()
    # the reset env runs on normally
    obs, reward, *_, info = env.step(torch.zeros(8, 12))
    assert not info["diverged"].any() and torch.isfinite(obs).all() and reward[3] > 0
    env.close()


def test_a_diverged_step_is_counted_and_dropped_from_the_update(tmp_path):
    cfg = make_cfg(*SMALL, "total_timesteps=256", "memory_interval=1")   # 2 iterations
    trainer = Trainer(cfg, tmp_path)
    physics, calls = trainer.envs.physics, []
    step = physics.step

    def poisoned_step(ctrl, nsubsteps):
        calls.append(1)
        if len(calls) == 5:   # the 5th step of the first rollout
            _poison(trainer.envs, 6)
        step(ctrl, nsubsteps)

    physics.step = poisoned_step
    batches = []
    flatten = trainer.buffer.flatten
    trainer.buffer.flatten = lambda *a: batches.append(flatten(*a)) or batches[-1]
    trainer.train()
    assert trainer.buffer.diverged.sum() == 0   # the second rollout is clean
    assert [len(b["obs"]) for b in batches] == [8 * 16 - 1, 8 * 16]
    assert all(torch.isfinite(v).all() for b in batches for v in b.values())
    for name, value in trainer.policy.state_dict().items():
        assert torch.isfinite(value).all(), name
    trainer.close()
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["physics/diverged"] for r in rows] == ["1", "0"]
    assert all(float(r["rss_mb"]) > 100 and int(r["py_heap_blocks"]) > 0 for r in rows)


def test_gae_gives_a_diverged_step_no_advantage_and_bootstraps_the_step_before():
    from robo_ppo.algo.gae import compute_gae

    rewards = torch.tensor([[1.0], [math.nan], [1.0]]).nan_to_num(0.0)
    values = torch.tensor([[0.5], [2.0], [0.5]])
    next_values = torch.tensor([[0.0], [7.0], [0.3]])   # [1]: V(fresh obs) of the diverged row, unused
    terminated = torch.zeros(3, 1, dtype=torch.bool)
    truncated = torch.tensor([[False], [True], [False]])
    valid = torch.tensor([[True], [False], [True]])
    adv, _ = compute_gae(rewards, values, values.roll(-1, 0).where(~truncated, next_values), terminated,
                         truncated, 0.9, 0.95, valid=valid)
    assert adv[1, 0] == 0
    assert torch.isclose(adv[0, 0], torch.tensor(1.0 + 0.9 * 2.0 - 0.5))   # bootstraps V(obs[1])


def test_a_run_that_keeps_diverging_stops_with_one_line_and_keeps_its_checkpoint(tmp_path):
    """A timestep far too large (0.1 s for the Go1, whose model uses 0.004 s): about 3% of the random
    policy's steps blow up, above the 1% limit, so the run stops after ``divergence.patience``
    iterations with exit code 2 and one line naming the likely cause."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "robo_ppo.train", *SMALL, "algo.num_envs=32", "total_timesteps=100000",
           "env.task_params.sim_dt=0.1", "env.task_params.control_dt=0.1", "checkpoint_interval=1",
           "divergence.patience=2", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robo_ppo error: the physics diverged in ")
    assert "env.task_params.sim_dt (now 0.1 s)" in lines[0]
    with open(run_dir / "metrics.csv", newline="") as f:
        diverged = [int(r["physics/diverged"]) for r in csv.DictReader(f)]
    assert diverged and diverged[-1] > 0.01 * 32 * 16
    ckpts = list_checkpoints(run_dir / "checkpoints")
    assert ckpts and torch.load(ckpts[-1], weights_only=True)["iteration"] == len(diverged)
