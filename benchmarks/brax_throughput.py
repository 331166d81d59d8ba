"""Brax engine throughput: env steps/s and end-to-end robo_ppo SPS per num_envs.

    python benchmarks/brax_throughput.py                                  # ant, mjx, 8 32 128 envs
    python benchmarks/brax_throughput.py --env halfcheetah --pipeline spring --num-envs 64 256
    python benchmarks/brax_throughput.py --num-envs 1024 4096 16384 --device cuda --steps 500   # on a GPU
    python benchmarks/brax_throughput.py --raw                            # + bare brax step, no adapter

For each ``num_envs`` (all in this one process, so the compiled step is
shared between the phases):

* ``compile_s``: the first ``reset`` (trace + XLA compile of the batched step;
  near zero when ``JAX_COMPILATION_CACHE_DIR`` already holds it);
* ``env_sps``: env steps/s through ``BraxVecEnv.step`` with uniform random
  actions made by torch on the learner's device (includes DLPack hand-over
  and the auto-reset/time-limit bookkeeping);
* ``raw_sps`` (``--raw``): ``jax.jit(jax.vmap(env.step))`` alone, the
  physics ceiling (one more compile per num_envs);
* ``train_sps``: robo_ppo end to end (rollout + PPO update, no evaluation)
  with ``preset=brax_cpu`` (``brax_gpu`` on a CUDA learner, or ``--preset``) at that num_envs, over
  ``--train-iters`` iterations after one warm-up iteration; ``rollout_sps``
  is the rollout phase alone.

Prints a table and writes ``benchmarks/results/brax_throughput_<env>_<pipeline>_<platform>_<time>.json``.
Figures on a shared machine move with its load: the JSON records the load
average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402


def _versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))}
    for pkg in ("torch", "jax", "jaxlib", "brax", "mujoco", "mujoco-mjx", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from robo_ppo.config import register_configs
    from robo_ppo.hydra_utils import config_dir

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        return compose(config_name="train", overrides=overrides)


def measure_env(args, n: int, device) -> dict[str, Any]:
    """Compile time and env steps/s through the VecEnv, random actions."""
    import torch

    from robo_ppo.envs.brax_env import BraxVecEnv

    env = BraxVecEnv(args.env, n, pipeline=args.pipeline, device=device, seed=0,
                     episode_length=args.episode_length)
    t0 = time.perf_counter()
    env.reset(seed=0)
    compile_s = time.perf_counter() - t0
    act_dim = env.action_space.shape[0]
    gen = torch.Generator(device=device).manual_seed(0)

    def actions():
        return 2 * torch.rand(n, act_dim, generator=gen, device=device) - 1

    for _ in range(args.warmup):
        env.step(actions())
    repeats = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            obs, *_ = env.step(actions())
        float(obs[0, 0])                 # wait for the last step
        repeats.append(n * args.steps / (time.perf_counter() - t0))
    env.close()
    repeats.sort()
    return {"compile_s": round(compile_s, 1), "env_sps": round(repeats[len(repeats) // 2]),
            "env_sps_repeats": [round(r) for r in repeats],
            "ms_per_step": round(1000 * n / repeats[len(repeats) // 2], 3)}


def measure_raw(args, n: int) -> dict[str, Any]:
    """The bare ``jit(vmap(env.step))`` of brax, without the adapter."""
    import jax
    import jax.numpy as jnp

    from robo_ppo.envs.brax_env import _kernel

    env = _kernel(args.env, args.pipeline).env

    def canon(tree):
        return jax.tree.map(lambda x: jax.lax.convert_element_type(x, jnp.result_type(x)), tree)

    reset = jax.jit(lambda k: canon(jax.vmap(env.reset)(k)))
    step = jax.jit(lambda s, a: canon(jax.vmap(env.step)(s, a)))
    state = reset(jax.random.split(jax.random.PRNGKey(0), n))
    key = jax.random.PRNGKey(1)
    acts = [jax.random.uniform(k, (n, int(env.action_size)), minval=-1, maxval=1)
            for k in jax.random.split(key, 8)]
    t0 = time.perf_counter()
    state = jax.block_until_ready(step(state, acts[0]))
    compile_s = time.perf_counter() - t0
    for i in range(args.warmup):
        state = step(state, acts[i % 8])
    jax.block_until_ready(state)
    repeats = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for i in range(args.steps):
            state = step(state, acts[i % 8])
        jax.block_until_ready(state)
        repeats.append(n * args.steps / (time.perf_counter() - t0))
    repeats.sort()
    return {"raw_compile_s": round(compile_s, 1), "raw_sps": round(repeats[len(repeats) // 2])}


def measure_train(args, n: int) -> dict[str, Any]:
    """robo_ppo end to end at ``n`` envs (no evaluation), after one warm-up iteration."""
    from robo_ppo.runner.trainer import Trainer

    overrides = [*([f"preset={args.preset}"] if args.preset != "none" else []), f"env={args.env}",
                 f"engine.pipeline={args.pipeline}",
                 f"algo.num_envs={n}", f"device={args.device}",
                 *([f"algo.num_steps={args.num_steps}"] if args.num_steps else []),
                 f"env.max_episode_steps={args.episode_length}", "total_timesteps=1000000000",
                 "eval_interval=0", "checkpoint_interval=1000000", "progress=false",
                 "tensorboard=false", "export_onnx=false", f"torch_threads={args.torch_threads}",
                 *args.override]
    cfg = _compose(overrides)
    stamps: list[float] = []
    rollout_s: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp))
        collect = trainer._collect_rollout

        def timed_collect():
            t0 = time.perf_counter()
            out = collect()
            rollout_s.append(time.perf_counter() - t0)
            return out

        trainer._collect_rollout = timed_collect

        def on_iteration(tr):
            stamps.append(time.perf_counter())
            if len(stamps) > args.train_iters:
                tr.request_stop()

        trainer.train(on_iteration=on_iteration)
        trainer.close()
    batch = n * cfg.algo.num_steps
    wall = stamps[-1] - stamps[0]
    return {"train_sps": round(batch * args.train_iters / wall),
            "rollout_sps": round(batch * args.train_iters / sum(rollout_s[1:])),
            "batch": batch, "num_steps": cfg.algo.num_steps, "train_iters": args.train_iters}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="ant", help="brax.envs task name (default ant); robot tasks: benchmarks/robot_throughput.py")
    p.add_argument("--pipeline", default="mjx", choices=["mjx", "generalized", "positional", "spring"])
    p.add_argument("--num-envs", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--device", default="auto", help="learner device: auto, cpu, cuda")
    p.add_argument("--steps", type=int, default=100, help="timed env steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--episode-length", type=int, default=1000)
    p.add_argument("--raw", action="store_true", help="also time the bare brax step (one more compile)")
    p.add_argument("--no-train", action="store_true", help="skip the end-to-end training measurement")
    p.add_argument("--preset", default=None,
                   help="conf/preset for training (default brax_gpu on a CUDA learner, else brax_cpu)")
    p.add_argument("--num-steps", type=int, default=None, help="algo.num_steps (default: the preset's)")
    p.add_argument("--train-iters", type=int, default=3)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for training")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    args = p.parse_args(argv)

    import torch

    from robo_ppo.envs.brax_env import _import_brax
    from robo_ppo.runner.trainer import select_device

    jax, _ = _import_brax()
    torch.set_num_threads(max(1, args.torch_threads))
    device = select_device(args.device)
    if args.preset is None:
        args.preset = "brax_gpu" if device.type == "cuda" else "brax_cpu"
    info = _versions()
    info.update({"jax_devices": [str(d) for d in jax.devices()], "learner_device": str(device),
                 "env": args.env, "pipeline": args.pipeline, "preset": args.preset,
                 "loadavg_start": os.getloadavg(),
                 "jax_compilation_cache_dir": jax.config.jax_compilation_cache_dir,
                 "command": " ".join([sys.executable, *sys.argv])})
    rows = []
    for n in args.num_envs:
        row: dict[str, Any] = {"num_envs": n}
        row.update(measure_env(args, n, device))
        if args.raw:
            row.update(measure_raw(args, n))
        if not args.no_train:
            row.update(measure_train(args, n))
        rows.append(row)
        print(json.dumps(row), flush=True)
    info["loadavg_end"] = os.getloadavg()
    result = {"machine": info, "rows": rows}

    cols = ["num_envs", "compile_s", "env_sps", "ms_per_step", "raw_sps", "rollout_sps", "train_sps"]
    cols = [c for c in cols if any(c in r for r in rows)]
    print(f"\n{args.env} / {args.pipeline} on {info['jax_devices'][0]} (learner {device}), "
          f"load {info['loadavg_start'][0]:.1f} -> {info['loadavg_end'][0]:.1f}")
    print(" | ".join(f"{c:>11}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r.get(c, ''):>11}" for c in cols))
    measure.write_result(result, args.out,
                         f"brax_throughput_{args.env}_{args.pipeline}_{jax.devices()[0].platform}")
    return result


if __name__ == "__main__":
    main()
