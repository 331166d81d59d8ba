"""Exact resume: interrupted + resumed == uninterrupted, bit for bit, on CPU."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import require_engine
from omegaconf import OmegaConf

from robo_ppo.export import export_checkpoint, read_metadata
from robo_ppo.hydra_utils import config_dir
from robo_ppo.runner.checkpoint import list_checkpoints, load_checkpoint
from robo_ppo.runner.trainer import Trainer

SMALL = ["algo.num_envs=2", "algo.num_steps=64", "algo.num_minibatches=4", "algo.update_epochs=2",
         "eval_interval=0", "eval_episodes=2", "checkpoint_interval=100"]


def _final_state(trainer: Trainer):
    return {k: v.clone() for k, v in trainer.policy.state_dict().items()}


def gymnasium_task_names() -> list[str]:
    """Every task file in conf/env/ that runs on the gymnasium engine."""
    names = []
    for path in sorted(Path(config_dir(), "env").glob("*.yaml")):
        conf = OmegaConf.load(path)
        if conf.env.get("task") is None:
            names.append(conf.env.name)
    return names


GYM_TASKS = gymnasium_task_names()


def test_every_gymnasium_task_is_resumed_below():
    assert set(GYM_TASKS) == {"cartpole", "inverted_pendulum", "inverted_double_pendulum", "halfcheetah",
                              "hopper", "walker2d", "ant", "humanoid"}


@pytest.mark.parametrize("task,extra", [
    # every task, short episodes so terminations/truncations and auto-resets happen inside the run
    # (Ant-v5 and Humanoid-v5 read MuJoCo's one-substep-stale body positions in their reward)
    *[pytest.param(t, ["env.max_episode_steps=20"], id=t) for t in GYM_TASKS],
    ("hopper", ["algo.loss=kl", "algo.lr_schedule=adaptive"]),  # PPO1 beta + adaptive lr state
    ("inverted_pendulum", ["env.max_episode_steps=20", "compute=torch"]),  # the torch compute path
    ("hopper", ["algo.loss=kl", "algo.lr_schedule=adaptive", "compute=torch"]),
    ("ant", ["env.max_episode_steps=20", "compute=torch"]),
])
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, cfg_factory, task, extra):
    cfg = cfg_factory(f"env={task}", "total_timesteps=512", *SMALL, *extra)  # 4 iterations
    require_engine(cfg)
    full = Trainer(cfg, tmp_path / "full")
    full.train()
    expected = _final_state(full)
    full_opt = full.ppo.optimizer.state_dict()
    full.close()

    first = Trainer(cfg, tmp_path / "a")
    first.train(on_iteration=lambda tr: tr.request_stop() if tr.iteration == 2 else None)
    assert first.iteration == 2
    first.close()
    state = load_checkpoint(tmp_path / "a")
    assert state["iteration"] == 2 and state["global_step"] == 256

    second = Trainer(cfg, tmp_path / "b", resume_state=state)
    summary = second.train()
    assert summary["finished"] and second.global_step == 512
    got = _final_state(second)
    for k in expected:
        assert torch.equal(expected[k], got[k]), f"{k} differs after resume"
    opt = second.ppo.optimizer.state_dict()
    for pid, s in full_opt["state"].items():
        assert torch.equal(s["exp_avg"], opt["state"][pid]["exp_avg"])
    assert second.ppo.kl_beta == full.ppo.kl_beta
    assert second.ppo.learning_rate == full.ppo.learning_rate
    second.close()


def test_checkpoint_of_one_compute_path_resumes_on_the_other(tmp_path, cfg_factory):
    cfg = cfg_factory("env=hopper", "total_timesteps=512", *SMALL, "compute=torch")
    first = Trainer(cfg, tmp_path / "a")
    first.train(on_iteration=lambda tr: tr.request_stop() if tr.iteration == 2 else None)
    first.close()
    state = load_checkpoint(tmp_path / "a")
    cfg.compute = "numpy"
    second = Trainer(cfg, tmp_path / "b", resume_state=state)
    # the torch Adam moments became the numpy path's flat state
    first_m = torch.cat([s["exp_avg"].reshape(-1) for s in state["ppo"]["optimizer"]["state"].values()])
    assert torch.equal(torch.from_numpy(second.ppo.exp_avg), first_m)
    assert second.ppo.step_count == 2 * 2 * 4
    assert second.train()["finished"]
    second.close()


def test_checkpoint_loads_weights_only_and_is_complete(tmp_path, cfg_factory):
    cfg = cfg_factory("env=inverted_pendulum", "total_timesteps=128", *SMALL)
    tr = Trainer(cfg, tmp_path)
    tr.train()
    tr.close()
    path = list_checkpoints(tmp_path / "checkpoints")[-1]
    state = torch.load(path, weights_only=True)
    for key in ("model", "ppo", "reward_scaler", "rng", "env_state", "config", "iteration", "global_step"):
        assert key in state
    assert "obs_normalizer.rms.mean" in state["model"]
    assert state["model"]["obs_normalizer.rms.mean"].dtype == torch.float64
    assert not list(tmp_path.glob("checkpoints/.tmp_*"))


def test_sigterm_finishes_iteration_checkpoints_and_exits_zero(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "robo_ppo.train", "env=inverted_pendulum", "total_timesteps=10000000",
           "progress=false", "tensorboard=false", "export_onnx=false", "eval_interval=0",
           "checkpoint_interval=100000", "algo.num_envs=2", "algo.num_steps=64",
           f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = run_dir / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("training did not start: " + proc.communicate()[0][-2000:])
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]
    ckpts = list_checkpoints(run_dir / "checkpoints")
    assert len(ckpts) == 1
    state = load_checkpoint(ckpts[0])
    rows = len(metrics.read_text().splitlines()) - 1
    assert state["iteration"] == rows  # the checkpoint holds the last finished iteration
    assert os.path.getsize(ckpts[0]) > 0


def test_cli_resume_extends_a_run_with_its_saved_config(tmp_path):
    base = [sys.executable, "-m", "robo_ppo.train", "progress=false", "tensorboard=false",
            "export_onnx=false", "eval_interval=0", "eval_episodes=2"]
    first = subprocess.run([*base, "env=cartpole", "total_timesteps=512", f"hydra.run.dir={tmp_path}/a"],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run([*base, f"resume={tmp_path}/a", "total_timesteps=1024",
                             f"hydra.run.dir={tmp_path}/b"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    state = load_checkpoint(tmp_path / "b")
    assert state["global_step"] == 1024 and state["config"]["env"]["id"] == "CartPole-v1"
    assert "id: CartPole-v1" in (tmp_path / "b" / "config.yaml").read_text()
    recorded = json.loads((tmp_path / "b" / "environment.json").read_text())
    assert torch.__version__.startswith(recorded["packages"]["torch"].split("+")[0])
    assert recorded["cpu"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    # each part of the run names where it trained, in the checkpoint and in the exported policy
    assert [e["from_step"] for e in state["environments"]] == [0, 512]
    assert all(e["cpu"] == recorded["cpu"] and e["packages"] == recorded["packages"] for e in state["environments"])
    meta = read_metadata(export_checkpoint(tmp_path / "b", num_samples=10_000)["path"])
    assert meta["train_environments"] == state["environments"]
    refused = subprocess.run([*base, f"resume={tmp_path}/a", "env=hopper", f"hydra.run.dir={tmp_path}/c"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "cannot change env when resuming" in refused.stderr


def test_resume_of_a_run_dir_skips_a_truncated_newest_checkpoint(tmp_path):
    """A run killed while its newest checkpoint was being written by something
    other than the trainer (a copy, a full disk): resume=<run dir> continues
    from the newest checkpoint that loads and names the skipped one; the
    damaged file passed explicitly is one line and exit 2."""
    base = [sys.executable, "-m", "robo_ppo.train", "env=inverted_pendulum", "progress=false",
            "tensorboard=false", "export_onnx=false", *SMALL, "checkpoint_interval=1", "keep_checkpoints=3"]
    first = subprocess.run([*base, "total_timesteps=512", f"hydra.run.dir={tmp_path}/a"],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    ckpts = list_checkpoints(tmp_path / "a" / "checkpoints")
    assert [load_checkpoint(c)["global_step"] for c in ckpts] == [256, 384, 512]
    newest = ckpts[-1]
    newest.write_bytes(newest.read_bytes()[: os.path.getsize(newest) // 2])  # truncated

    second = subprocess.run([*base, f"resume={tmp_path}/a", "total_timesteps=640", f"hydra.run.dir={tmp_path}/b"],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    log_text = (tmp_path / "b" / "train.log").read_text()
    assert f"skipped 1 damaged checkpoint(s) of {tmp_path}/a" in log_text
    assert f"{newest.name} (" in log_text and "loaded ckpt_0000000384.pt" in log_text
    assert f"resuming from {ckpts[1]} at step 384" in log_text
    resumed = list_checkpoints(tmp_path / "b" / "checkpoints")
    assert load_checkpoint(resumed[-1])["global_step"] == 640
    assert load_checkpoint(resumed[0])["global_step"] == 512  # 384 + one iteration: it continued from 384

    explicit = subprocess.run([*base, f"resume={newest}", f"hydra.run.dir={tmp_path}/c"],
                              capture_output=True, text=True, timeout=120)
    assert explicit.returncode == 2 and explicit.stderr.count("\n") == 1, explicit.stderr[-2000:]
    assert f"cannot read checkpoint {newest}" in explicit.stderr


def _saved_before_the_engine_rename(src: Path, dst: Path, engine: str | None = None) -> Path:
    """A copy of checkpoint ``src`` as robo_ppo wrote it before the simulator-engine config group was
    named ``engine``: the group under ``backend`` (same place in the config), and no engine in
    ``env_meta``, so every reader has to take the engine from the saved config."""
    state = torch.load(src, weights_only=True)
    state["config"] = {("backend" if k == "engine" else k): v for k, v in state["config"].items()}
    if engine is not None:
        state["config"]["backend"]["name"] = engine
    (state.get("env_meta") or {}).pop("engine", None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, dst)
    return dst


def test_upgrade_saved_config_renames_backend_to_engine():
    from robo_ppo.config import upgrade_saved_config

    old = {"env": {"id": "Hopper-v5"}, "algo": {}, "backend": {"name": "envpool", "num_threads": 2}, "seed": 1}
    assert list(upgrade_saved_config(old)) == ["env", "algo", "engine", "seed"]  # in place, order kept
    assert old["engine"] == {"name": "envpool", "num_threads": 2}
    new = {"env": {}, "engine": {"name": "mujoco"}}
    assert upgrade_saved_config(new) == {"env": {}, "engine": {"name": "mujoco"}}
    assert upgrade_saved_config(None) is None


def test_a_checkpoint_saved_before_the_engine_rename_resumes_exports_and_replays(tmp_path, cfg_factory):
    """resume=, robo-ppo-export and robo-ppo-replay of a checkpoint whose config says ``backend``
    (robo_ppo.config.upgrade_saved_config, applied by read_checkpoint)."""
    from robo_ppo.errors import ConfigError
    from robo_ppo.export import export_checkpoint, read_metadata
    from robo_ppo.replay import load_policy
    from robo_ppo.train import resume_config

    tr = Trainer(cfg_factory("env=inverted_pendulum", "total_timesteps=128", *SMALL), tmp_path / "new")
    tr.train()
    tr.close()
    new = list_checkpoints(tmp_path / "new" / "checkpoints")[-1]
    old = _saved_before_the_engine_rename(new, tmp_path / "old" / "checkpoints" / new.name)
    assert "backend" in torch.load(old, weights_only=True)["config"]

    state = load_checkpoint(tmp_path / "old")
    assert "backend" not in state["config"] and state["config"]["engine"]["name"] == "gymnasium"
    with pytest.raises(ConfigError, match="cannot change engine when resuming .run used engine=gymnasium"):
        resume_config(cfg_factory("env=inverted_pendulum", "engine=envpool"), state["config"],
                      [f"resume={old}", "engine=envpool"])

    cmd = [sys.executable, "-m", "robo_ppo.train", f"resume={tmp_path / 'old'}", "total_timesteps=256",
           "engine.num_threads=1", "progress=false", "tensorboard=false", "export_onnx=false",
           f"hydra.run.dir={tmp_path / 'resumed'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = load_checkpoint(tmp_path / "resumed")
    assert resumed["global_step"] == 256 and resumed["config"]["engine"] == {"name": "gymnasium", "num_threads": 1,
                                                                             "pipeline": "mjx"}
    saved_yaml = OmegaConf.load(tmp_path / "resumed" / "config.yaml")
    assert "backend" not in saved_yaml and saved_yaml.engine.name == "gymnasium"

    onnx_path = export_checkpoint(old, tmp_path / "old.onnx")["path"]
    assert read_metadata(onnx_path)["engine"] == "gymnasium"  # from the saved config: env_meta has none
    assert load_policy(old).task["id"] == "InvertedPendulum-v5"

    brax = _saved_before_the_engine_rename(new, tmp_path / "brax" / new.name, engine="brax")
    with pytest.raises(ConfigError, match="trained on the Brax engine"):
        load_policy(brax)
