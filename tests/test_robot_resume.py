"""Exact resume of robot tasks: the engine's MuJoCo state, randomized model fields, the task's state
and every generator go into the checkpoint, so an interrupted and resumed run equals an uninterrupted
one bit for bit."""

import json
import signal
import subprocess
import sys
import time

import onnx
import pytest
import torch
from conftest import make_cfg, require_engine
from onnx import numpy_helper

from robo_ppo.envs.robot_env import RobotVecEnv
from robo_ppo.export import read_metadata
from robo_ppo.runner.checkpoint import load_checkpoint
from robo_ppo.runner.trainer import Trainer

SMALL = ["env=go1_joystick", "algo.num_envs=8", "algo.num_steps=16", "algo.num_minibatches=2",
         "algo.update_epochs=2", "eval_interval=2", "eval_episodes=2", "checkpoint_interval=100",
         "env.max_episode_steps=20", "engine.num_threads=2", "deploy_check.enabled=false"]
"""Short episodes: resets, randomization, command resamples and pushes happen inside the window."""


def _steps(env, actions):
    return [env.step(a) for a in actions]


_P = "env.task_params.events.randomize.params"
SUBSTEPS = (f"{_P}.damping_kd=[8.0,24.0]", "~env.task_params.events.mismatch", f"{_P}.damping_step_limit=1.0",
            f"{_P}.damping_substeps=true")
"""Stiff damping draws integrated in per-env substeps (``randomize_model.damping_substeps``)."""


@pytest.mark.parametrize("engine, extra", [("mujoco", ()), ("mjwarp", ()), ("mujoco", SUBSTEPS)],
                         ids=["mujoco", "mjwarp", "mujoco-substeps"])
def test_env_snapshot_continues_bit_for_bit(engine, extra):
    cfg = make_cfg(*SMALL, f"engine={engine}", *extra)
    require_engine(cfg)
    g = torch.Generator().manual_seed(0)
    actions = [torch.randn(8, 12, generator=g) for _ in range(60)]

    def make():
        return RobotVecEnv(cfg.env, engine, 8, seed=3, num_threads=2)

    a = make()
    a.reset(seed=3)
    _steps(a, actions[:30])
    snapshot = a.get_state()
    expected = _steps(a, actions[30:])
    b = make()
    b.reset(seed=99)   # another state entirely, overwritten by the snapshot
    b.set_state(snapshot)
    got = _steps(b, actions[30:])
    resets = 0
    for (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) in zip(expected, got, strict=True):
        assert torch.equal(o1, o2) and torch.equal(r1, r2)
        assert torch.equal(te1, te2) and torch.equal(tr1, tr2)
        assert torch.equal(i1["final_critic_obs"], i2["final_critic_obs"])
        assert torch.equal(i1["reward_terms"], i2["reward_terms"])
        resets += int((te1 | tr1).sum())
    assert resets >= 8   # the window crosses episode ends (time limit 20 steps)
    if extra:            # the substeps come back with the snapshot, and change with the redraws
        assert torch.equal(a.task.substeps, b.task.substeps) and a.task.substeps.max() > 1
        assert not torch.equal(a.task.substeps, snapshot["task"]["tensors"]["substeps"])
    a.close()
    b.close()


def test_interrupted_and_resumed_robot_run_matches_uninterrupted(tmp_path):
    cfg = make_cfg(*SMALL, "total_timesteps=512")  # 4 iterations
    full = Trainer(cfg, tmp_path / "full")
    full.train()
    expected = {k: v.clone() for k, v in full.policy.state_dict().items()}
    expected_eval = full.last_eval
    full.close()

    first = Trainer(cfg, tmp_path / "a")
    first.train(on_iteration=lambda tr: tr.request_stop() if tr.iteration == 2 else None)
    first.close()
    state = load_checkpoint(tmp_path / "a")
    assert state["iteration"] == 2 and state["env_state"] is not None
    second = Trainer(cfg, tmp_path / "b", resume_state=state)
    assert second.envs.task.step_count == 3 * 16   # the task clock: the normalizer warm-up + 2 rollouts
    second.train()
    got = second.policy.state_dict()
    for k, v in expected.items():
        assert torch.equal(v, got[k]), f"{k} differs after resume"
    assert second.last_eval == expected_eval
    second.close()


def _initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _train_cli(run_dir, *args, stop_after_rows=None):
    cmd = [sys.executable, "-m", "robo_ppo.train", *SMALL, "total_timesteps=1024", "progress=false",
           "tensorboard=false", f"hydra.run.dir={run_dir}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if stop_after_rows is not None:
        metrics, deadline = run_dir / "metrics.csv", time.time() + 180
        while not (metrics.exists() and len(metrics.read_text().splitlines()) > stop_after_rows):
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("training did not start: " + proc.communicate()[0][-2000:])
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.slow
def test_sigterm_then_resume_exports_the_uninterrupted_policy_bit_for_bit(tmp_path):
    """The CLI path: SIGTERM mid-run (the stopped run still exports its controller and skips its deploy
    check), ``resume=<run dir>``, and the exported ONNX weights equal those of a run that was never
    stopped (8 iterations)."""
    _train_cli(tmp_path / "full")
    cut = tmp_path / "cut"
    out = _train_cli(cut, "deploy_check.enabled=true", stop_after_rows=3)
    stopped = load_checkpoint(cut)
    assert 3 <= stopped["iteration"] < 8
    # the stopped run kept its outputs: its controller, verified, and no deploy check (it was stopped)
    summary = json.loads((cut / "summary.json").read_text())
    assert not summary["finished"] and summary["onnx_max_abs_diff"] <= 1e-5 and "deploy" not in summary
    meta = read_metadata(cut / "policy.onnx")
    assert meta["global_step"] == stopped["global_step"] and len(meta["robot"]["joint_names"]) == 12
    assert (cut / "learning_curve.png").exists() and not (cut / "deploy.json").exists()
    assert "deploy check skipped (the run was stopped)" in out
    _train_cli(tmp_path / "resumed", f"resume={cut}", "deploy_check.enabled=false")
    expected, got = _initializers(tmp_path / "full" / "policy.onnx"), _initializers(tmp_path / "resumed" / "policy.onnx")
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        assert (value == got[name]).all(), f"ONNX initializer {name} differs after resume"
