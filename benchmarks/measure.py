"""Measurements, one configuration per call; ``run.py`` runs each in a fresh process.

Every function returns a plain dict (JSON-ready) with the per-repeat values,
their median, and the process's peak resident memory. Units: steps/s are
environment steps (summed over envs) per wall-clock second; memory in MiB.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
"""Where benchmarks write their JSON (gitignored)."""


def write_result(result: dict[str, Any], out: Optional[str], stem: str):
    """Write ``result`` as JSON to ``out``, or to ``benchmarks/results/<stem>_<time>.json``; prints and
    returns the path."""
    import json

    path = Path(out) if out else RESULTS / f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return path


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss``, Linux KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / 2**20


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": float(statistics.median(values)), "values": [round(v, 1) for v in values]}


def _timed_repeats(step_fn, steps_per_call: int, repeats: int, seconds: float) -> list[float]:
    """Call ``step_fn`` in ``repeats`` blocks of about ``seconds`` each; steps/s per block."""
    # calibrate the block length on a short warm-up
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < min(0.3, seconds):
        step_fn()
        calls += 1
    per_call = (time.perf_counter() - t0) / calls
    n = max(5, int(seconds / max(per_call, 1e-7)))
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            step_fn()
        out.append(n * steps_per_call / (time.perf_counter() - t0))
    return out


# ---------------------------------------------------------------- raw engines
def raw_engine(engine: str, task_id: str, num_envs: int, num_threads: int = 0, repeats: int = 5,
               seconds: float = 1.5, seed: int = 0) -> dict[str, Any]:
    """Random-action stepping of the engine's own batched API (no torch, no robo_ppo).

    ``engine``: ``envpool`` (``envpool.make_gymnasium``, sync mode, its
    next-step auto-reset) or ``gymnasium`` (``SyncVectorEnv``, same-step
    auto-reset). Actions are drawn once (16 batches) and cycled, so RNG cost
    is not timed.
    """
    rng = np.random.default_rng(seed)
    if engine == "envpool":
        import envpool

        from robo_ppo.envs.envpool_env import default_num_threads

        threads = num_threads or default_num_threads(num_envs)
        env = envpool.make_gymnasium(task_id, num_envs=num_envs, batch_size=num_envs,
                                     num_threads=threads, seed=seed)
        env.reset()
        space = env.action_space
    elif engine == "gymnasium":
        import gymnasium as gym
        from gymnasium.vector import AutoresetMode, SyncVectorEnv

        threads = 1
        env = SyncVectorEnv([lambda: gym.make(task_id, disable_env_checker=True)] * num_envs,
                            autoreset_mode=AutoresetMode.SAME_STEP)
        env.reset(seed=seed)
        space = env.single_action_space
    else:
        raise ValueError(f"unknown engine {engine!r}")
    actions = rng.uniform(space.low, space.high, size=(16, num_envs, *space.shape))
    i = [0]

    def step():
        env.step(actions[i[0] & 15])
        i[0] += 1

    sps = _timed_repeats(step, num_envs, repeats, seconds)
    env.close()
    return {"kind": "raw", "engine": engine, "task": task_id, "num_envs": num_envs,
            "num_threads": threads, "sps": _summary(sps), "peak_rss_mib": peak_rss_mib()}


def adapter_engine(engine: str, env_name: str, num_envs: int, overrides: list[str] = (),
                   repeats: int = 5, seconds: float = 1.5) -> dict[str, Any]:
    """Random-action stepping through robo_ppo's VecEnv (torch tensors in and out)."""
    import torch

    from robo_ppo.envs import make_vec_env

    cfg = compose_config([f"env={env_name}", f"engine={engine}", *overrides])
    torch.set_num_threads(1)
    env = make_vec_env(cfg.env, cfg.engine, num_envs, seed=0)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    acts = torch.rand(16, num_envs, env.action_space.shape[0], generator=gen) * 2 - 1
    i = [0]

    def step():
        env.step(acts[i[0] & 15])
        i[0] += 1

    sps = _timed_repeats(step, num_envs, repeats, seconds)
    env.close()
    return {"kind": "adapter", "engine": engine, "task": env.env_id, "num_envs": num_envs,
            "sps": _summary(sps), "peak_rss_mib": peak_rss_mib()}


# ------------------------------------------------------------------ robo_ppo
def compose_config(overrides: list[str]):
    """The ``train`` config composed with Hydra's compose API (no run directory)."""
    from hydra import compose, initialize_config_dir

    from robo_ppo.config import register_configs
    from robo_ppo.hydra_utils import config_dir

    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        return compose("train", overrides=list(overrides))


BENCH_OVERRIDES = ["tensorboard=false", "progress=false", "export_onnx=false", "eval_interval=0",
                   "checkpoint_interval=1000000", "total_timesteps=100000000", "device=cpu"]


def robo_ppo_train(overrides: list[str], iterations: int = 5, warmup: int = 1,
                   profile: Optional[str] = None, raw_baseline: bool = False) -> dict[str, Any]:
    """End-to-end ``Trainer.train`` iterations of robo_ppo, timed per iteration.

    End-to-end time of an iteration = between two consecutive ``on_iteration``
    callbacks (rollout, GAE, update, parameter check, metrics row, CSV log);
    rollout time = ``Trainer._collect_rollout`` alone. The first ``warmup``
    iterations are not timed. ``*_cpu_sps`` divide by the process's CPU time
    (all its threads) instead of wall time: for single-threaded configurations
    that is robust to other load on the machine. ``raw_baseline`` (EnvPool
    only): after every iteration, time raw EnvPool stepping (random actions)
    of the same task, num_envs and threads in this process, outside the timed
    intervals; ``rollout_over_raw`` is the median of each iteration's rollout
    SPS over the raw SPS measured right after it, so both sides of the ratio
    see the same load. ``profile``: write a pyinstrument report of the timed
    iterations to this path (``.txt``; ``.html`` beside it).
    """
    from robo_ppo.runner.trainer import Trainer

    cfg = compose_config([*BENCH_OVERRIDES, *overrides])   # the caller's overrides win (e.g. device=cuda)
    raw_blocks: list[float] = []
    raw_step = None
    if raw_baseline and cfg.engine.name == "envpool":
        import envpool

        from robo_ppo.envs.envpool_env import default_num_threads

        n = int(cfg.algo.num_envs)
        raw_pool = envpool.make_gymnasium(cfg.env.envpool_id, num_envs=n, batch_size=n, seed=12345,
                                          num_threads=int(cfg.engine.num_threads) or default_num_threads(n))
        raw_pool.reset()
        space = raw_pool.action_space
        raw_actions = np.random.default_rng(0).uniform(space.low, space.high, size=(16, n, *space.shape))

        def raw_step():
            t0 = time.perf_counter()
            for i in range(int(cfg.algo.num_steps)):
                raw_pool.step(raw_actions[i & 15])
            raw_blocks.append(n * int(cfg.algo.num_steps) / (time.perf_counter() - t0))
    run_dir = tempfile.mkdtemp(prefix="robo_ppo_bench_")
    trainer = Trainer(cfg, run_dir)
    rollout_s: list[float] = []
    rollout_cpu: list[float] = []
    stamps: list[float] = []
    cpu_stamps: list[float] = []
    resumes: list[float] = []
    cpu_resumes: list[float] = []
    collect = trainer._collect_rollout

    def timed_collect():
        t0, c0 = time.perf_counter(), time.process_time()
        out = collect()
        rollout_s.append(time.perf_counter() - t0)
        rollout_cpu.append(time.process_time() - c0)
        return out

    trainer._collect_rollout = timed_collect
    profiler = None

    def on_iteration(tr):
        nonlocal profiler
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())
        if len(stamps) == warmup and profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        if len(stamps) >= warmup + iterations:
            tr.request_stop()
        if raw_step is not None:
            raw_step()
        resumes.append(time.perf_counter())
        cpu_resumes.append(time.process_time())

    stamps_start, cpu_start = time.perf_counter(), time.process_time()
    trainer.train(on_iteration=on_iteration)
    if profiler is not None:
        profiler.stop()
        with open(profile, "w") as f:
            f.write(profiler.output_text(unicode=False, color=False, show_all=False))
        with open(os.path.splitext(profile)[0] + ".html", "w") as f:
            f.write(profiler.output_html())
    trainer.close()
    batch = trainer.batch_size
    begins, cpu_begins = [stamps_start, *resumes], [cpu_start, *cpu_resumes]
    timed = range(warmup, len(stamps))
    e2e = [batch / (stamps[i] - begins[i]) for i in timed]
    e2e_cpu = [batch / (cpu_stamps[i] - cpu_begins[i]) for i in timed]
    roll = [batch / rollout_s[i] for i in timed]
    roll_cpu = [batch / rollout_cpu[i] for i in timed]
    a = cfg.algo
    extra = {}
    if raw_blocks:
        extra["raw_same_process_sps"] = _summary([raw_blocks[i] for i in timed])
        extra["rollout_over_raw"] = float(statistics.median(
            batch / rollout_s[i] / raw_blocks[i] for i in timed))
    return {"kind": "train", "impl": "robo_ppo", "task": cfg.env.id,
            "engine": cfg.engine.name, "compute": trainer.compute,
            "engine_task": cfg.env.envpool_id if cfg.engine.name == "envpool" else cfg.env.id,
            "num_envs": a.num_envs, "num_steps": a.num_steps, "update_epochs": a.update_epochs,
            "num_minibatches": a.num_minibatches, "torch_threads": cfg.torch_threads,
            "overrides": list(overrides), "iterations_timed": len(e2e),
            "rollout_sps": _summary(roll), "e2e_sps": _summary(e2e),
            "rollout_cpu_sps": _summary(roll_cpu), "e2e_cpu_sps": _summary(e2e_cpu),
            **extra, "peak_rss_mib": peak_rss_mib()}


# ------------------------------------------------------ Stable-Baselines3 PPO
def sb3_train(env_id: str = "HalfCheetah-v5", iterations: int = 3, warmup: int = 1,
              seed: int = 1) -> dict[str, Any]:
    """Stable-Baselines3 PPO with the CleanRL-equivalent settings, timed per iteration.

    1 env (DummyVecEnv) x 2048 steps, VecNormalize (obs clip 5, reward clip
    10, gamma 0.99), 10 epochs x minibatches of 64, Adam 3e-4 linearly
    annealed, GAE(0.99, 0.95), clip 0.2 for policy and value, grad-norm 0.5, separate
    64x64 tanh actor and critic, orthogonal init, ``torch.set_num_threads(1)``,
    CPU. Iteration time = between two ``_on_rollout_start`` callbacks.
    """
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    torch.set_num_threads(1)
    n_steps = 2048
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(env_id)]), norm_obs=True, norm_reward=True,
                        clip_obs=5.0, clip_reward=10.0, gamma=0.99)
    model = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=64, n_epochs=10,
                learning_rate=lambda progress_remaining: 3e-4 * progress_remaining,
                gamma=0.99, gae_lambda=0.95, clip_range=0.2, clip_range_vf=0.2, ent_coef=0.0, vf_coef=0.5,
                max_grad_norm=0.5, seed=seed, device="cpu", verbose=0,
                policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]),
                                   activation_fn=torch.nn.Tanh, ortho_init=True))

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.starts: list[float] = []
            self.rollout_ends: list[float] = []

            self.cpu_starts: list[float] = []
            self.cpu_rollout_ends: list[float] = []

        def _on_rollout_start(self) -> None:
            self.starts.append(time.perf_counter())
            self.cpu_starts.append(time.process_time())

        def _on_rollout_end(self) -> None:
            self.rollout_ends.append(time.perf_counter())
            self.cpu_rollout_ends.append(time.process_time())

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            self.starts.append(time.perf_counter())
            self.cpu_starts.append(time.process_time())

    clock = Clock()
    model.learn(total_timesteps=n_steps * (warmup + iterations), callback=clock, progress_bar=False)
    s, r = clock.starts, clock.rollout_ends
    e2e = [n_steps / (s[i + 1] - s[i]) for i in range(warmup, warmup + iterations)]
    roll = [n_steps / (r[i] - s[i]) for i in range(warmup, warmup + iterations)]
    cs, cr = clock.cpu_starts, clock.cpu_rollout_ends
    e2e_cpu = [n_steps / (cs[i + 1] - cs[i]) for i in range(warmup, warmup + iterations)]
    roll_cpu = [n_steps / (cr[i] - cs[i]) for i in range(warmup, warmup + iterations)]
    import stable_baselines3

    return {"kind": "train", "impl": "sb3", "sb3_version": stable_baselines3.__version__, "task": env_id,
            "engine": "gymnasium", "engine_task": env_id, "num_envs": 1, "num_steps": n_steps,
            "update_epochs": 10, "num_minibatches": 32, "torch_threads": 1,
            "iterations_timed": len(e2e), "rollout_sps": _summary(roll), "e2e_sps": _summary(e2e),
            "rollout_cpu_sps": _summary(roll_cpu), "e2e_cpu_sps": _summary(e2e_cpu),
            "peak_rss_mib": peak_rss_mib()}
