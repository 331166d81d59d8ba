"""Data-parallel PPO under torchrun (gloo, 2 ranks on the CPU) and Hydra's joblib launcher.

Each test launches real processes: ``torchrun`` (``python -m
torch.distributed.run --standalone``) running tests/dist_worker.py or the
``robo_ppo.train`` CLI, and a Hydra multirun.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robo_ppo.errors import ConfigError
from robo_ppo.modules.normalizer import merge_moments

HERE = Path(__file__).resolve().parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
QUIET = ["progress=false", "tensorboard=true", "eval_episodes=1", "torch_threads=1"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL="egl", PYTHONWARNINGS="ignore")


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


# 3 iterations of 2 ranks x 2 envs x 64 steps; the KL drives decisions in both variants
SMALL = ["env=halfcheetah", "total_timesteps=768", "algo.num_envs=2", "algo.num_steps=64",
         "algo.num_minibatches=4", "algo.update_epochs=2", "eval_interval=0", "export_onnx=false",
         "progress=false", "tensorboard=false", "torch_threads=1"]
VARIANTS = {
    # numpy kernel, PPO1's adaptive KL penalty (beta from the all-reduced final KL)
    "numpy": ["compute=numpy", "algo.loss=kl"],
    # torch kernel, adaptive learning rate and target_kl early stop (all-reduced minibatch KL)
    "torch": ["compute=torch", "algo.lr_schedule=adaptive", "algo.target_kl=0.05"],
}


@pytest.mark.parametrize("compute", sorted(VARIANTS))
def test_two_ranks_stay_identical_and_share_statistics(tmp_path, compute):
    _run([*TORCHRUN, str(HERE / "dist_worker.py"), str(tmp_path), *SMALL, *VARIANTS[compute]], tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["compute"] == r1["compute"] == compute
    assert r0["iterations"] == r1["iterations"] == 3
    assert r0["global_step"] == 768  # all ranks' env steps
    # the ranks saw different data ...
    assert not torch.equal(r0["seen"][0], r1["seen"][0])
    # ... and still hold bit-identical parameters after 3 iterations
    assert torch.equal(r0["flat_params"], r1["flat_params"])
    # the observation statistics are those of all ranks' observations together
    for key in ("mean", "var", "count"):
        assert torch.equal(r0["final"][key], r1["final"][key])
        assert torch.equal(r0["start"][key], r1["start"][key])
    allobs = torch.cat(r0["seen"] + r1["seen"])
    mean, var, count = merge_moments(r0["start"]["mean"], r0["start"]["var"], float(r0["start"]["count"]),
                                     allobs.mean(0), allobs.var(0, unbiased=False), float(len(allobs)))
    assert float(r0["final"]["count"]) == count
    torch.testing.assert_close(r0["final"]["mean"], mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(r0["final"]["var"], var, rtol=1e-10, atol=1e-12)
    # the reward scaler's statistics agree, and equal one scaler's over all envs
    for key in r0["reward_scaler"]:
        assert torch.equal(r0["reward_scaler"][key], r1["reward_scaler"][key])
    assert r0["reward_scaler_max_diff"] < 1e-5 and r1["reward_scaler_max_diff"] < 1e-5


def _union_stats(r0: dict, r1: dict):
    """The statistics one learner would hold: rank 0's start-of-training
    statistics merged with every observation both ranks folded in."""
    allobs = torch.cat(r0["seen"] + r1["seen"])
    return merge_moments(r0["start"]["mean"], r0["start"]["var"], float(r0["start"]["count"]),
                         allobs.mean(0), allobs.var(0, unbiased=False), float(len(allobs)))


# 3 iterations of 2 ranks x 16 Go1 envs x 8 steps on native MuJoCo (the robot recipe otherwise)
ROBOT = ["env=go1_joystick", "total_timesteps=768", "algo.num_envs=16", "algo.num_steps=8",
         "algo.num_minibatches=2", "algo.update_epochs=2", "eval_episodes=1", "deploy_check.enabled=false",
         "progress=false", "tensorboard=false", "torch_threads=1", "hydra.run.dir=run"]


def test_two_ranks_robot_task_cli(tmp_path):
    """``torchrun ... -m robo_ppo.train env=go1_joystick`` with 2 ranks: both
    ranks' own episodes, the actor's and the asymmetric critic's normalizers and
    the reward scaler merged over both, identical parameters, one thread share
    per rank, and rank 0 alone writes the run (one policy.onnx with the robot contract)."""
    pytest.importorskip("mujoco")
    from robo_ppo.export import read_metadata
    from robo_ppo.runner.checkpoint import list_checkpoints, load_checkpoint
    from robo_ppo.runner.distributed import cores_per_rank

    _run([*TORCHRUN, str(HERE / "dist_worker.py"), str(tmp_path), "--cli", *ROBOT], tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["iterations"] == r1["iterations"] == 3
    assert r0["global_step"] == r1["global_step"] == 768  # all ranks' env steps
    # each rank steps its own episodes (seed + rank * num_envs), not one rank's data twice
    for key in ("obs", "critic_obs"):
        assert r0["first"][key] is not None and not torch.equal(r0["first"][key], r1["first"][key]), key
    # ... and after 3 iterations of those different data the ranks hold identical parameters
    assert torch.equal(r0["flat_params"], r1["flat_params"])
    # both normalizers (actor 96 values: two frames of 48; the privileged critic's) hold the statistics of both ranks' data
    assert sorted(r0["norms"]) == ["critic_obs_normalizer", "obs_normalizer"]
    for name in r0["norms"]:
        n0, n1 = r0["norms"][name], r1["norms"][name]
        assert not torch.equal(n0["seen"][0], n1["seen"][0]), name
        for key in ("mean", "var", "count"):
            assert torch.equal(n0["start"][key], n1["start"][key]), (name, key)
            assert torch.equal(n0["final"][key], n1["final"][key]), (name, key)
        mean, var, count = _union_stats(n0, n1)
        steps = 3 * 16 * 8
        assert sum(len(x) for x in n0["seen"]) == sum(len(x) for x in n1["seen"]) == steps
        assert float(n0["final"]["count"]) == count == float(n0["start"]["count"]) + 2 * steps
        torch.testing.assert_close(n0["final"]["mean"], mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(n0["final"]["var"], var, rtol=1e-10, atol=1e-12)
        alone = torch.cat(n0["seen"])  # what rank 0 would hold from its own data only
        mean0, _, _ = merge_moments(n0["start"]["mean"], n0["start"]["var"], float(n0["start"]["count"]),
                                    alone.mean(0), alone.var(0, unbiased=False), float(len(alone)))
        assert not torch.allclose(n0["final"]["mean"], mean0), name
    assert r0["norms"]["critic_obs_normalizer"]["final"]["mean"].numel() > 48   # a frame and the privileged terms
    # the reward scaler (normalize_reward in the robot recipe) counts every rank's env steps
    assert r0["reward_scaler"] is not None
    for key, value in r0["reward_scaler"].items():
        assert torch.equal(value, r1["reward_scaler"][key]), key
    assert float(r0["reward_scaler"]["count"]) == 768
    # threads: each rank's share of the cores for MuJoCo (engine num_threads 0) and for the update
    # (update_threads 2 in the robot env files)
    share = cores_per_rank(2)
    for r in (r0, r1):
        assert r["engine_threads"] == min(share, 16)
        assert r["update_threads"] == [min(2, share)] * 3
    # rank 0 alone wrote the run: one directory with one controller carrying the robot contract
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.pt", "rank1.pt", "run"]
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("*.onnx")) == ["policy.onnx"]
    meta = read_metadata(run / "policy.onnx")
    assert meta["robot"]["name"] == "go1" and meta["task_name"] == "go1_joystick"
    assert meta["engine"] == "mujoco" and meta["obs_dim"] == 96 and meta["global_step"] == 768
    ckpts = list_checkpoints(run / "checkpoints")
    assert len(ckpts) == 1
    state = load_checkpoint(ckpts[-1])
    assert state["world_size"] == 2 and len(state["other_ranks"]) == 1 and state["global_step"] == 768
    assert torch.equal(state["model"]["critic_obs_normalizer.rms.mean"],
                       r0["norms"]["critic_obs_normalizer"]["final"]["mean"])
    assert not torch.equal(state["next_obs"], state["other_ranks"][0]["next_obs"])
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "reward/tracking_lin_vel" in header.split(",")
    assert (run / "summary.json").is_file() and (run / "config.yaml").is_file()


def _rows(metrics: Path) -> int:
    return max(0, len(metrics.read_text().splitlines()) - 1) if metrics.is_file() else 0


@pytest.mark.slow
def test_cli_two_ranks_sigterm_then_resume(tmp_path):
    """Only rank 0 writes; SIGTERM to torchrun stops both ranks after the same
    iteration with one checkpoint; the run resumes with 2 ranks and continues."""
    from robo_ppo.runner.checkpoint import list_checkpoints, load_checkpoint

    cmd = [*TORCHRUN, "-m", "robo_ppo.train", "env=halfcheetah", "algo.num_envs=1", "algo.num_steps=256",
           "algo.num_minibatches=4", "algo.update_epochs=2", "total_timesteps=10000000",
           "checkpoint_interval=100000", "eval_interval=0", *QUIET, "hydra.run.dir=run"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    metrics = tmp_path / "run" / "metrics.csv"
    deadline = time.time() + 240
    while _rows(metrics) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert _rows(metrics) >= 3, proc.communicate()[0][-4000:] if proc.poll() is not None else "no progress"
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert len(ckpts) == 1, output[-4000:]
    state = load_checkpoint(ckpts[0])
    assert state["world_size"] == 2 and len(state["other_ranks"]) == 1
    assert state["iteration"] == _rows(metrics) and state["global_step"] == state["iteration"] * 512
    # rank 1 wrote nothing: one run directory, one TensorBoard file, one row per iteration
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert len(list((tmp_path / "run" / "tb").iterdir())) == 1
    # other_ranks holds rank 1's own envs and RNG
    assert not torch.equal(state["next_obs"], state["other_ranks"][0]["next_obs"])

    # a 2-rank checkpoint cannot be resumed by one process: it would drop rank 1's envs
    from conftest import make_cfg

    from robo_ppo.runner.trainer import Trainer
    from robo_ppo.train import prepare_resume_state, resume_config

    cfg = resume_config(make_cfg(f"resume={tmp_path / 'run'}"), state["config"], [])
    with pytest.raises(ConfigError, match="2 rank"):
        Trainer(cfg, tmp_path / "single", resume_state=prepare_resume_state(state))

    target = state["global_step"] + 2 * 512
    _run([*TORCHRUN, "-m", "robo_ppo.train", f"resume={tmp_path / 'run'}", f"total_timesteps={target}",
          "hydra.run.dir=run2"], tmp_path)
    resumed = load_checkpoint(list_checkpoints(tmp_path / "run2" / "checkpoints")[-1])
    assert resumed["global_step"] == target and resumed["iteration"] == state["iteration"] + 2
    assert (tmp_path / "run2" / "policy.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run2", "single"]


@pytest.mark.slow
def test_joblib_multirun_two_jobs(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs the sweep extra")
    _run([sys.executable, "-m", "robo_ppo.train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
          "env=cartpole", "seed=1,2", "total_timesteps=1024", "algo.num_steps=256", "algo.num_minibatches=4",
          "algo.update_epochs=2", *QUIET, "hydra.sweep.dir=multi"], tmp_path)
    runs = sorted(p for p in (tmp_path / "multi").iterdir() if p.is_dir())
    assert len(runs) == 2
    for num, (run, seed) in enumerate(zip(runs, (1, 2), strict=True)):
        assert run.name.startswith(f"{num}_") and f"seed={seed}" in run.name
        assert (run / "summary.json").is_file() and (run / "policy.onnx").is_file()
        assert f"\nseed: {seed}\n" in (run / "config.yaml").read_text()


def test_one_rank_under_torchrun_equals_the_plain_run(tmp_path):
    """The distributed code path with one rank (gloo, all collectives live)
    trains exactly what a plain process trains: same checkpoint tensors."""
    from robo_ppo.runner.checkpoint import list_checkpoints, load_checkpoint

    args = ["-m", "robo_ppo.train", "env=cartpole", "total_timesteps=1024", "algo.num_envs=2", "algo.num_steps=256",
            "algo.num_minibatches=4", "algo.update_epochs=2", "algo.target_kl=0.02", *QUIET, "export_onnx=false"]
    _run([sys.executable, *args, "hydra.run.dir=plain"], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", *args,
          "hydra.run.dir=torchrun"], tmp_path)
    a, b = (load_checkpoint(list_checkpoints(tmp_path / d / "checkpoints")[-1]) for d in ("plain", "torchrun"))
    assert a["global_step"] == b["global_step"] > 0 and a["iteration"] >= 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert "world_size" not in b  # one rank: a plain checkpoint, resumable without torchrun
