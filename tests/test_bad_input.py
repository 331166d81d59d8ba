"""Bad input: one clear line, non-zero exit, no traceback, nothing half-written.

A few representative cases run the three CLIs in a subprocess; the rest call
the guards those CLIs go through (``train.check_config``, ``train.resume_config``,
``make_vec_env``, ``load_checkpoint``, the export/replay loaders) in-process.
"""

import logging
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from robo_ppo.envs import make_vec_env
from robo_ppo.errors import CheckpointError, ConfigError, NonFiniteError, report_errors
from robo_ppo.runner.checkpoint import list_checkpoints, load_checkpoint
from robo_ppo.runner.trainer import Trainer, select_compute, validate_config
from robo_ppo.train import check_config, prepare_resume_state, resume_config


def _cli(*args, cwd):
    """``robo-ppo-train`` with ``args``; on HalfCheetah (small and fast) unless ``args`` pick an env."""
    env = [] if any(a.startswith(("env=", "resume=")) for a in args) else ["env=halfcheetah"]
    cmd = [sys.executable, "-m", "robo_ppo.train", "progress=false", "tensorboard=false",
           "export_onnx=false", f"hydra.run.dir={cwd}/run", *env, *args]
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
    (["device=gpu"], "device must be auto, cpu, cuda or cuda:<index>, got 'gpu'"),
    (["checkpoint_interval=0"], "checkpoint_interval must be >= 1"),
    (["algo.activation=gelu"], "algo.activation must be one of tanh, relu, elu, silu, got 'gelu'"),
    (["env=hopper", "+env.kwargs.no_such_option=1"], "check env.kwargs {'no_such_option': 1}"),
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
    NaNAfter.total_steps = 0  # count training steps only (not a warm-up rollout at construction)
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


# --------------------------------------------------- every key, in-process guards
@pytest.mark.parametrize("overrides,needle", [
    # top level
    (["seed=-1"], "seed must be >= 0"),
    (["device=gpu"], "device must be auto, cpu, cuda or cuda:<index>, got 'gpu'"),
    (["device="], "device must be auto, cpu, cuda or cuda:<index>, got ''"),
    (["torch_threads=-1"], "torch_threads must be >= 0"),
    (["update_threads=-1"], "update_threads must be >= 0"),
    (["eval_interval=-1"], "eval_interval must be >= 0"),
    (["eval_episodes=0"], "eval_episodes must be >= 1"),
    (["checkpoint_interval=0"], "checkpoint_interval must be >= 1"),
    (["checkpoint_interval=-5"], "checkpoint_interval must be >= 1"),
    (["keep_checkpoints=-1"], "keep_checkpoints must be >= 0"),
    (["engine.num_threads=-2"], "engine.num_threads must be >= 0"),
    (["wandb.mode=cloud"], "wandb.mode must be online, offline, disabled or null"),
    (["wandb.project= "], "wandb.project must be a non-empty W&B project name"),
    # algo
    (["algo.activation=gelu"], "algo.activation must be one of tanh, relu, elu, silu"),
    (["algo.actor_hidden_sizes=[64,0]"], r"algo.actor_hidden_sizes must be layer widths >= 1, got \[64, 0\]"),
    (["algo.critic_hidden_sizes=[-4]"], "algo.critic_hidden_sizes must be layer widths >= 1"),
    (["algo.max_grad_norm=0"], "algo.max_grad_norm must be > 0"),
    (["algo.vf_clip_coef=-1"], "algo.vf_clip_coef must be > 0"),
    (["algo.reward_clip=0"], "algo.reward_clip must be > 0"),
    (["algo.kl_target=0"], "algo.kl_target must be > 0"),
    (["algo.kl_coef_init=-1"], "algo.kl_coef_init must be > 0"),
    (["algo.desired_kl=0"], "algo.desired_kl must be > 0"),
    (["algo.adam_eps=-1e-8"], "algo.adam_eps must be >= 0"),
    (["algo.vf_coef=-0.5"], "algo.vf_coef must be >= 0"),
    (["algo.bounds_loss_coef=-0.1"], "algo.bounds_loss_coef must be >= 0"),
    (["algo.symmetry_augmentation=true", "algo.loss=kl"], "algo.symmetry_augmentation needs the clipped surrogate"),
    (["algo.target_kl=0"], "algo.target_kl must be > 0 or null"),
    (["algo.lr_min=0.1", "algo.lr_max=0.01"], "0 < lr_min <= lr_max"),
    (["algo.ent_coef=nan"], "algo.ent_coef must be a finite number, got nan"),
    (["algo.learning_rate=inf"], "algo.learning_rate must be a finite number, got inf"),
])
def test_check_config_names_the_key(cfg_factory, overrides, needle):
    cfg = cfg_factory("env=inverted_pendulum", *overrides)
    with pytest.raises(ConfigError, match=needle):
        check_config(cfg)


def test_check_config_accepts_the_shipped_tasks(cfg_factory):
    for task in ("cartpole", "halfcheetah", "humanoid"):
        check_config(cfg_factory(f"env={task}"))
    check_config(cfg_factory("env=hopper", "algo=ppo_kl", "device=cpu", "algo.target_kl=0.02",
                             "algo.actor_hidden_sizes=[]"))


@pytest.mark.parametrize("overrides,needle", [
    (["total_timesteps=0"], "total_timesteps must be > 0"),
    (["algo.num_steps=0"], "algo.num_steps must be > 0"),
    (["algo.update_epochs=0"], "algo.update_epochs must be > 0"),
    (["algo.gamma=1.5"], r"algo.gamma must be in \(0, 1\]"),
    (["algo.gae_lambda=-0.1"], r"algo.gae_lambda must be in \[0, 1\]"),
    (["algo.learning_rate=0"], "algo.learning_rate must be > 0"),
    (["algo.clip_coef=0"], "algo.clip_coef must be > 0"),
    (["algo.obs_clip=0"], "algo.obs_clip must be > 0"),
])
def test_trainer_sizes_are_checked(cfg_factory, overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate_config(cfg_factory("env=inverted_pendulum", *overrides))


@pytest.mark.parametrize("override,key", [
    ("algo.loss=ppo3", "algo.loss"),
    ("algo.lr_schedule=cosine", "algo.lr_schedule"),
    ("progress=maybe", "progress"),
    ("seed=abc", "seed"),
    ("algo.num_envs=1.5", "algo.num_envs"),
])
def test_enums_and_types_fail_at_composition_naming_the_key(cfg_factory, override, key):
    """Hydra refuses these before robo_ppo runs; its message (the error and its
    cause, as the CLI prints them) names the key."""
    with pytest.raises(Exception) as info:
        cfg_factory("env=inverted_pendulum", override)
    assert f"full_key: {key}" in f"{info.value}\n{info.value.__cause__}"


def _env_cfg(**kw):
    base = {"name": "inverted_pendulum", "id": "InvertedPendulum-v5", "envpool_id": "InvertedPendulum-v5",
            "brax_id": None, "max_episode_steps": None, "kwargs": {}}
    base.update(kw)
    return OmegaConf.create(base)


@pytest.mark.parametrize("env,engine,needle", [
    ({}, {"name": "mjx"}, r"engine.name must be one of \('gymnasium', 'envpool', 'brax', 'mujoco', 'mjwarp'\), got 'mjx'"),
    ({"brax_id": "ant"}, {"name": "brax", "pipeline": "foo"}, "engine.pipeline must be one of"),
    ({"max_episode_steps": 0}, {"name": "gymnasium"}, "env.max_episode_steps must be >= 1"),
    ({"max_episode_steps": -5}, {"name": "envpool"}, "env.max_episode_steps must be >= 1"),
    ({"kwargs": {"no_such_option": 1}}, {"name": "gymnasium"}, "check env.kwargs"),
    ({"id": "NoSuchTask-v9"}, {"name": "gymnasium"}, "gymnasium has no task 'NoSuchTask-v9'"),
    ({"id": "no_such_pkg:Robot-v0"}, {"name": "gymnasium"}, "cannot import module 'no_such_pkg'"),
])
def test_engine_and_task_values_name_the_fix(env, engine, needle):
    with pytest.raises(ConfigError, match=needle):
        make_vec_env(_env_cfg(**env), OmegaConf.create(engine), 2)


def test_compute_enum():
    with pytest.raises(ConfigError, match="compute must be one of auto, torch, numpy, got 'jax'"):
        select_compute("jax", torch.device("cpu"), "gymnasium")


# ------------------------------------------------------------ file arguments
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """Empty, truncated and foreign files, as .pt and .onnx, next to a real checkpoint and ONNX file."""
    import onnx
    from conftest import make_run
    from onnx import TensorProto, helper

    from robo_ppo.export import export_checkpoint

    d = tmp_path_factory.mktemp("bad_files")
    ckpt = make_run(d, "inverted_pendulum", train=False)
    onnx_path = export_checkpoint(ckpt, d / "policy.onnx")["path"]
    ckpt_bytes, onnx_bytes = ckpt.read_bytes(), onnx_path.read_bytes()
    files = {"swapped.pt": onnx_bytes,     # an ONNX file passed as a checkpoint
             "swapped.onnx": ckpt_bytes}   # a checkpoint passed as an ONNX file
    for suffix, good in ((".pt", ckpt_bytes), (".onnx", onnx_bytes)):
        files[f"empty{suffix}"] = b""
        files[f"truncated{suffix}"] = good[: len(good) // 2]
        files[f"text{suffix}"] = b"hello, not a model\n"
    paths = {name: d / name for name in files}
    for name, data in files.items():
        paths[name].write_bytes(data)
    for name, obj in (("foreign.pt", {"weights": torch.zeros(3)}),   # another project's checkpoint
                      ("list.pt", [1, 2, 3]),
                      ("hollow.pt", {"format_version": 1, "config": {}, "model": {}, "ppo": {},
                                     "iteration": 0, "global_step": 0, "spaces": {}})):
        paths[name] = d / name
        torch.save(obj, paths[name])
    graph = helper.make_graph([helper.make_node("Identity", ["obs"], ["actions"])], "g",
                              [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [None, 4])])
    paths["foreign.onnx"] = d / "foreign.onnx"   # an ONNX model of another tool
    onnx.save(helper.make_model(graph), paths["foreign.onnx"])
    paths["no_run"] = d / "no_run"
    paths["no_run"].mkdir()
    paths["missing.pt"] = d / "missing.pt"
    return paths, ckpt, onnx_path


PT_CASES = [("empty.pt", "cannot read checkpoint"), ("truncated.pt", "cannot read checkpoint"),
            ("text.pt", "cannot read checkpoint"), ("swapped.pt", "cannot read checkpoint"),
            ("foreign.pt", "not a robo_ppo checkpoint"), ("list.pt", "not a robo_ppo checkpoint"),
            ("hollow.pt", "not a complete robo_ppo checkpoint"), ("no_run", "holds no checkpoint"),
            ("missing.pt", "does not exist")]
ONNX_CASES = [("empty.onnx", "not a robo_ppo policy file"), ("truncated.onnx", "cannot read .* as ONNX"),
              ("text.onnx", "cannot read .* as ONNX"), ("swapped.onnx", "cannot read .* as ONNX"),
              ("foreign.onnx", "not a robo_ppo policy file")]


@pytest.mark.parametrize("name,needle", PT_CASES)
def test_resume_file_is_refused_with_one_line(bad_files, name, needle):
    paths, _, _ = bad_files
    with pytest.raises(CheckpointError, match=needle) as info:
        load_checkpoint(paths[name])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name,needle", PT_CASES)
def test_export_checkpoint_file_is_refused(bad_files, tmp_path, name, needle):
    from robo_ppo.export import export_checkpoint

    paths, _, _ = bad_files
    with pytest.raises(CheckpointError, match=needle):
        export_checkpoint(paths[name], tmp_path / "out.onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("name,needle", PT_CASES + ONNX_CASES)
def test_replay_policy_file_is_refused(bad_files, name, needle):
    from robo_ppo.replay import load_policy

    paths, _, _ = bad_files
    with pytest.raises(CheckpointError, match=needle):
        load_policy(paths[name])


def test_cli_file_arguments_of_the_three_commands(bad_files, tmp_path):
    paths, _, _ = bad_files
    runs = [
        ([sys.executable, "-m", "robo_ppo.train", f"resume={paths['empty.pt']}",
          f"hydra.run.dir={tmp_path}/run"], "cannot read checkpoint"),
        ([sys.executable, "-m", "robo_ppo.export", f"checkpoint={paths['hollow.pt']}",
          f"output={tmp_path}/x.onnx"], "not a complete robo_ppo checkpoint"),
        ([sys.executable, "-m", "robo_ppo.replay", f"policy={paths['truncated.onnx']}"], "as ONNX"),
    ]
    for cmd, needle in runs:
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert res.returncode == 2, res.stderr[-2000:]
        assert needle in res.stderr and "Traceback" not in res.stdout + res.stderr
        assert res.stderr.strip().count("\n") == 0, res.stderr  # one line


# ------------------------------------------------------------------ resume
def test_resume_refuses_keys_the_checkpoint_is_shaped_by(bad_files, cfg_factory):
    _, ckpt, _ = bad_files
    state = load_checkpoint(ckpt)
    cfg = cfg_factory("env=inverted_pendulum", f"resume={ckpt}")
    for ov, needle in [("algo.num_envs=3", "cannot change algo.num_envs when resuming"),
                       ("algo.actor_hidden_sizes=[8]", "cannot change algo.actor_hidden_sizes"),
                       ("env.id=Hopper-v5", "cannot change env.id"),
                       ("+env.kwargs.reset_noise_scale=0.5", "cannot change env.kwargs"),
                       ("engine.name=envpool", "cannot change engine.name"),
                       ("algo.learning_rate=abc", "override 'algo.learning_rate=abc' does not fit"),
                       ("algo.no_such_key=1", "override 'algo.no_such_key=1' does not fit")]:
        with pytest.raises(ConfigError, match=needle):
            resume_config(cfg, state["config"], [f"resume={ckpt}", ov])
    # the algo group has no name key: its loss tells PPO1 from PPO2
    with pytest.raises(ConfigError, match="cannot change algo when resuming .*algo.loss=clip"):
        resume_config(cfg_factory("env=inverted_pendulum", "algo=ppo_kl"), state["config"],
                      [f"resume={ckpt}", "algo=ppo_kl"])
    same = state["config"]["algo"]["num_envs"]
    merged = resume_config(cfg, state["config"], [f"resume={ckpt}", f"algo.num_envs={same}",
                                                  "total_timesteps=99999", "env.max_episode_steps=30"])
    assert merged.total_timesteps == 99999 and merged.env.max_episode_steps == 30


def test_resume_without_a_snapshot_restarts_episodes_and_their_accumulators(bad_files, caplog):
    _, ckpt, _ = bad_files
    state = load_checkpoint(ckpt)
    state["env_state"] = None  # a checkpoint of an engine that could not snapshot
    state["reward_scaler"]["returns"] = torch.ones_like(state["reward_scaler"]["returns"])
    with caplog.at_level(logging.INFO, logger="robo_ppo"):
        prepare_resume_state(state)
    assert "envs restart from fresh episodes" in caplog.text
    assert torch.count_nonzero(state["reward_scaler"]["returns"]) == 0


def test_os_errors_are_one_line_too(capsys, tmp_path):
    target = tmp_path / "no_such_dir" / "x.json"

    @report_errors
    def task(cfg):
        target.write_text("{}")

    with pytest.raises(SystemExit) as info:
        task(OmegaConf.create({"debug": False}))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"No such file or directory: '{target}'" in err
    with pytest.raises(FileNotFoundError):
        task(OmegaConf.create({"debug": True}))
