"""Brax engine (robo_ppo/envs/brax_env.py): VecEnv contract, DLPack, presets, training.

Without the extra (``pip install -e '.[brax]'``) the tests that need JAX skip
(``pytest.importorskip("brax")``); the config and error-path tests still run.

Every test runs on CPU. XLA compiles dominate the wall time (one compile of the
batched step per task, pipeline and num_envs: 30-90 s each on a loaded 2-core
machine), so the compiled tests share three compiles: ant/mjx and
halfcheetah/spring with N=4 built once per module, and the CLI run in a
subprocess (which loads the ant compile from a persistent JAX cache the
module fills). Those tests are marked ``slow``; ``-m 'not slow'`` keeps the
config and error-path tests, which compile nothing. GPU-only checks skip
without CUDA.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import make_cfg

from robo_ppo.envs import make_vec_env
from robo_ppo.envs.brax_env import BraxVecEnv, _kernel, make_brax_vec_env
from robo_ppo.errors import ConfigError

N = 4
LIMIT = 6           # episode length used by the contract tests (a traced argument: no recompile)
TASKS = {"ant": "mjx", "halfcheetah": "spring"}   # two pipelines, one compile each


def import_jax():
    pytest.importorskip("brax")
    return pytest.importorskip("jax")


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    """A persistent compilation cache for this module, so the CLI subprocess
    reuses the ant compile instead of paying it again."""
    jax = import_jax()
    path = str(tmp_path_factory.mktemp("jax_cache"))
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", path)
    yield path
    jax.config.update("jax_compilation_cache_dir", before)


@pytest.fixture(scope="module")
def envs(jax_cache) -> dict[str, BraxVecEnv]:
    made = {}
    for task, pipeline in TASKS.items():
        cfg = make_cfg(f"env={task}", "engine=brax", f"engine.pipeline={pipeline}",
                       f"env.max_episode_steps={LIMIT}")
        made[task] = make_vec_env(cfg.env, cfg.engine, N, device="cpu", seed=0)
    yield made
    for env in made.values():
        env.close()


def random_actions(env: BraxVecEnv, gen: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    return scale * (2 * torch.rand(env.num_envs, env.action_space.shape[0], generator=gen) - 1)


# ----------------------------------------------------------- no compiles
def test_task_without_brax_version_names_the_fix():
    cfg = make_cfg("env=cartpole", "engine=brax")
    with pytest.raises(ConfigError, match="brax_id"):
        make_vec_env(cfg.env, cfg.engine, 2)


def test_unknown_pipeline_and_task_raise_config_error():
    cfg = make_cfg("env=ant", "engine=brax", "engine.pipeline=physx")
    with pytest.raises(ConfigError, match="engine.pipeline"):
        make_vec_env(cfg.env, cfg.engine, 2)


def test_unknown_brax_task_lists_the_known_ones():
    import_jax()
    with pytest.raises(ConfigError, match="no task 'nosuch'.*'ant'"):
        BraxVecEnv("nosuch", 2)


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "brax.envs", None)   # `import brax.envs` now fails
    cfg = make_cfg("env=ant", "engine=brax")
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[brax\]'"):
        make_brax_vec_env(cfg.env, cfg.engine, 2)


@pytest.mark.parametrize("preset, num_envs, device", [("brax_gpu", 4096, "auto"), ("brax_cpu", 128, "cpu")])
def test_presets_select_brax_with_one_override(preset, num_envs, device):
    cfg = make_cfg(f"preset={preset}", "env=halfcheetah")
    assert cfg.engine.name == "brax" and cfg.engine.pipeline == "mjx"
    assert cfg.device == device
    # the preset replaces the task's single-env gymnasium preset ...
    assert cfg.algo.num_envs == num_envs and cfg.algo.learning_rate == 3e-4
    # ... and evaluates on the training batch size (no second XLA compile)
    assert cfg.eval_episodes == num_envs
    assert make_cfg(f"preset={preset}", "env=ant", "algo.num_envs=8").eval_episodes == 8


# ----------------------------------------------------- compiled (slow)
@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_contract_shapes_dtypes_and_spaces(envs, task):
    env = envs[task]
    obs_dim, act_dim = {"ant": (27, 8), "halfcheetah": (17, 6)}[task]
    assert (env.engine, env.env_id, env.pipeline, env.num_envs) == ("brax", task, TASKS[task], N)
    assert env.observation_space.shape == (obs_dim,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (act_dim,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    assert env.control_dt == pytest.approx(0.05, rel=1e-5)   # both tasks: 50 ms per step
    obs = env.reset(seed=0)
    assert obs.shape == (N, obs_dim) and obs.dtype == torch.float32 and obs.device.type == "cpu"
    # actions outside the bounds are clipped inside the step, not rejected
    obs, rew, term, trunc, info = env.step(random_actions(env, torch.Generator().manual_seed(0), 3.0))
    assert obs.shape == (N, obs_dim) and obs.dtype == torch.float32
    assert rew.shape == (N,) and rew.dtype == torch.float32 and torch.isfinite(rew).all()
    assert term.shape == trunc.shape == (N,) and term.dtype == trunc.dtype == torch.bool
    assert info["final_obs"].shape == (N, obs_dim) and info["final_obs"].dtype == torch.float32
    for key in ("episode_return", "episode_length"):
        assert info[key].dtype == torch.float32 and info[key].shape == (0,)
    assert info["episode_done"].dtype == torch.bool and info["episode_return_all"].shape == (N,)
    assert torch.equal(info["final_obs"], obs)     # nothing ended: final_obs == obs
    with pytest.raises(ValueError, match="actions must have shape"):
        env.step(torch.zeros(N + 1, act_dim))


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_time_limit_truncates_and_auto_resets_with_final_obs(envs, task):
    env = envs[task]
    # the same task without a time limit (same compile) shows where the episode would have gone
    free = BraxVecEnv(task, N, pipeline=TASKS[task], episode_length=1000)
    gen = torch.Generator().manual_seed(1)
    obs, free_obs = env.reset(seed=5), free.reset(seed=5)
    assert torch.equal(obs, free_obs)
    total = torch.zeros(N)
    for t in range(1, LIMIT + 1):
        a = random_actions(env, gen, 0.3)
        obs, rew, term, trunc, info = env.step(a)
        free_obs, free_rew, *_ = free.step(a)
        total += rew
        assert not term.any()
        if t < LIMIT:
            assert not trunc.any() and torch.equal(obs, free_obs) and torch.equal(rew, free_rew)
    # step LIMIT: every env truncated (not terminated), obs already reset, final obs kept
    assert trunc.all() and info["episode_done"].all()
    assert torch.allclose(info["final_obs"], free_obs)
    assert not torch.allclose(obs, free_obs)
    assert torch.equal(info["episode_length"], torch.full((N,), float(LIMIT)))
    assert torch.allclose(info["episode_return"], total, atol=1e-4)
    # each env starts a fresh, differently seeded episode; counters restart
    assert len({tuple(row.tolist()) for row in obs}) == N
    for _ in range(LIMIT - 1):
        obs, rew, term, trunc, info = env.step(random_actions(env, gen, 0.3))
        assert not trunc.any() and len(info["episode_return"]) == 0
    obs, rew, term, trunc, info = env.step(random_actions(env, gen, 0.3))
    assert trunc.all()
    free.close()


def lift_torso(env: BraxVecEnv, rows: list[int]) -> None:
    """Put the Ant torso of ``rows`` at z=3, outside the healthy range (0.2, 1.0)."""
    jax = import_jax()
    c = jax.tree_util.tree_unflatten(env._kernel.carry_def, env._carry)
    ps = c.env_state.pipeline_state
    ps = ps.replace(q=ps.q.at[rows, 2].set(3.0), qpos=ps.qpos.at[rows, 2].set(3.0))
    env._carry = jax.tree_util.tree_leaves(c._replace(env_state=c.env_state.replace(pipeline_state=ps)))


@pytest.mark.slow
def test_termination_is_not_truncation(envs):
    env = envs["ant"]
    env.reset(seed=2)
    env.step(torch.zeros(N, 8))
    before = env.get_state()
    lift_torso(env, [0])          # env 0 terminates on the next step
    obs, rew, term, trunc, info = env.step(torch.zeros(N, 8))
    assert term.tolist() == [True, False, False, False] and not trunc.any()
    assert info["final_obs"][0, 0] > 2.0 and obs[0, 0] < 1.0   # obs[0] is the torso height
    assert torch.equal(info["final_obs"][1:], obs[1:])
    assert info["episode_length"].tolist() == [2.0] and info["episode_return"].shape == (1,)
    # one finished env is reset on a gathered subset, three on the whole batch:
    # env 0's next episode is the same either way (it depends on env 0's key only)
    obs_subset = obs.clone()
    env.set_state(before)
    lift_torso(env, [0, 1, 2])
    obs, rew, term, trunc, info = env.step(torch.zeros(N, 8))
    assert term.tolist() == [True, True, True, False]
    assert torch.equal(obs[0], obs_subset[0]) and torch.equal(obs[3], obs_subset[3])


@pytest.mark.slow
def test_seeding_is_reproducible(envs):
    env = envs["ant"]
    a, b, c = env.reset(seed=3).clone(), env.reset(seed=3).clone(), env.reset(seed=4).clone()
    assert torch.equal(a, b) and not torch.equal(a, c)
    fresh = BraxVecEnv("ant", N, pipeline="mjx", episode_length=LIMIT, seed=3)
    first, second = fresh.reset().clone(), fresh.reset().clone()
    assert torch.equal(first, a) and not torch.equal(first, second)   # seedless resets move on


@pytest.mark.slow
def test_dlpack_shares_memory_on_cpu(envs):
    env = envs["ant"]
    obs = env.reset(seed=0)
    assert obs.data_ptr() == env.last_jax_out.obs.unsafe_buffer_pointer()
    outs = env.step(torch.zeros(N, 8))
    jax_out = env.last_jax_out
    for tensor, array in zip(outs[:4], (jax_out.obs, jax_out.reward, jax_out.terminated,
                                        jax_out.truncated), strict=True):
        assert tensor.data_ptr() == array.unsafe_buffer_pointer()
    assert outs[4]["final_obs"].data_ptr() == jax_out.final_obs.unsafe_buffer_pointer()
    # torch -> JAX (actions) and back without a copy
    actions = torch.rand(N, 8)
    as_jax = env._to_jax(actions)
    assert as_jax.unsafe_buffer_pointer() == actions.data_ptr() and as_jax.dtype == np.float32
    assert env._to_torch(as_jax).data_ptr() == actions.data_ptr()
    # wrong dtype / non-contiguous input is converted (one copy), not rejected
    odd = torch.rand(8, N, dtype=torch.float64).T
    assert np.allclose(np.asarray(env._to_jax(odd)), odd.numpy())


@pytest.mark.slow
def test_no_recompile_across_resets_limits_and_envs(envs):
    env = envs["ant"]
    env.reset(seed=0)
    env.step(torch.zeros(N, 8))
    compiled = _kernel("ant", "mjx").advance._cache_size()
    other = BraxVecEnv("ant", N, pipeline="mjx", episode_length=3, seed=9)   # e.g. the eval envs
    other.reset()
    for _ in range(4):
        other.step(torch.zeros(N, 8))
    assert _kernel("ant", "mjx").advance._cache_size() == compiled
    other.close()


@pytest.mark.slow
def test_snapshot_round_trip_is_exact(envs, tmp_path):
    env = envs["ant"]
    env.reset(seed=11)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        env.step(random_actions(env, gen))
    torch.save(env.get_state(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    acts = [random_actions(env, gen) for _ in range(LIMIT)]   # crosses the time limit
    first = [tuple(x.clone() for x in env.step(a)[:4]) for a in acts]
    env.set_state(state)
    again = [tuple(x.clone() for x in env.step(a)[:4]) for a in acts]
    for x, y in zip(first, again, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True))
    with pytest.raises(ValueError, match="does not fit"):
        envs["halfcheetah"].set_state(state)


@pytest.mark.slow
def test_trains_end_to_end_in_process(envs, tmp_path):
    from robo_ppo.train import run

    # num_envs and eval_episodes = N reuse the module's ant compile
    cfg = make_cfg("env=ant", "engine=brax", f"algo.num_envs={N}", "algo.num_steps=8",
                   "algo.num_minibatches=2", "total_timesteps=96", "env.max_episode_steps=10",
                   "eval_interval=0", f"eval_episodes={N}", "device=cpu")
    summary = run(cfg, tmp_path)
    assert summary["finished"] and summary["global_step"] == 96
    # episodes end at the 10-step limit unless the ant falls first (its healthy-z termination)
    assert np.isfinite(summary["eval"]["mean"]) and 1 <= summary["eval"]["mean_length"] <= 10
    assert (tmp_path / "metrics.csv").is_file() and summary["checkpoint"]
    state = torch.load(summary["checkpoint"], weights_only=True)
    assert state["env_state"]["engine"] == "brax" and state["env_meta"]["engine"] == "brax"


@pytest.mark.slow
def test_cli_trains_a_few_iterations(envs, jax_cache, tmp_path):
    cmd = [sys.executable, "-m", "robo_ppo.train", "env=ant", "engine=brax", f"algo.num_envs={N}",
           "algo.num_steps=16", "algo.num_minibatches=4", "total_timesteps=128",
           "env.max_episode_steps=20", "eval_interval=0", f"eval_episodes={N}", "progress=false",
           "export_onnx=false", "tensorboard=false", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONWARNINGS="ignore", JAX_COMPILATION_CACHE_DIR=jax_cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "metrics.csv").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_outputs_alias_jax_buffers():
    jax = import_jax()
    if not any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("JAX sees no GPU: install the CUDA plugin (docs/brax.md)")
    env = BraxVecEnv("ant", 64, pipeline="mjx", episode_length=LIMIT, device="cuda")
    obs = env.reset(seed=0)
    assert obs.is_cuda and obs.data_ptr() == env.last_jax_out.obs.unsafe_buffer_pointer()
    actions = torch.rand(64, 8, device="cuda")
    assert env._to_jax(actions).unsafe_buffer_pointer() == actions.data_ptr()
    for _ in range(LIMIT):
        obs, rew, term, trunc, info = env.step(actions)
    assert obs.is_cuda and rew.is_cuda and trunc.all() and info["final_obs"].is_cuda
    assert info["episode_done"].is_cuda and info["episode_return"].shape == (64,)


def test_step_info_makes_episode_lists_only_when_read():
    """The [K] contract tensors come from the [N] ones on first access (no host sync unless read)."""
    from robo_ppo.envs.base import StepInfo

    info = StepInfo({"episode_done": torch.tensor([True, False, True]),
                      "episode_return_all": torch.tensor([1.0, 0.0, 3.0]),
                      "episode_length_all": torch.tensor([5.0, 0.0, 7.0])})
    assert "episode_return" in info and not dict.__contains__(info, "episode_return")
    assert info["episode_return"].tolist() == [1.0, 3.0] and info.get("episode_length").tolist() == [5.0, 7.0]
    assert info.get("missing", 4) == 4
    with pytest.raises(KeyError):
        info["missing"]
