"""Data-parallel scaling: the same training run as one process and under torchrun.

    python -m benchmarks.scaling                          # HalfCheetah, 1M steps, both engines, 1 vs 2 ranks
    python -m benchmarks.scaling --steps 200000 --engines envpool --ranks 1,2
    python -m benchmarks.scaling --device cuda --engines brax --ranks 1 --torchrun-single
    python -m benchmarks.scaling --preset task --engines gymnasium --steps 200000   # the task's own preset

Each configuration is a real ``robo-ppo-train`` run in a fresh process:
``python -m robo_ppo.train`` for 1 rank, ``torchrun --standalone
--nproc_per_node=N -m robo_ppo.train`` for N ranks (``--torchrun-single`` adds
a 1-rank torchrun run: the distributed code path's overhead). ``total_timesteps``
counts all ranks' env steps, so every run trains on the same number of
samples. The table gives end-to-end SPS and wall time from each run's
``summary.json`` and its final deterministic evaluation (10 episodes).
Results: stdout and ``benchmarks/results/scaling_<timestamp>.json``.

Engines and presets: ``gymnasium`` = ``preset=cleanrl`` (1 env x 2048 steps per
rank), ``envpool`` = ``preset=throughput`` (64 envs x 64 steps per rank, one
EnvPool thread per rank), ``brax`` = ``preset=brax_gpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PRESETS = {"gymnasium": ["preset=cleanrl"], "envpool": ["preset=throughput"], "brax": ["preset=brax_gpu"]}


def run_one(engine: str, ranks: int, torchrun: bool, args, out: Path) -> dict:
    run_dir = out / f"{engine}_{ranks}rank{'_torchrun' if torchrun else ''}"
    preset = PRESETS[engine] if args.preset is None else (
        [f"engine={engine}"] if args.preset == "task" else [f"preset={args.preset}", f"engine={engine}"])
    overrides = [f"env={args.env}", *preset, f"total_timesteps={args.steps}", f"seed={args.seed}",
                 f"device={args.device}", "progress=false", "tensorboard=false", "export_onnx=false",
                 f"hydra.run.dir={run_dir}"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
                if torchrun else [sys.executable])
    cmd = [*launcher, "-m", "robo_ppo.train", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"engine": engine, "ranks": ranks, "torchrun": torchrun, "command": " ".join(cmd[1:]),
            "SPS": summary["SPS"], "train_wall_s": summary["wall_time_s"], "process_wall_s": wall,
            "global_step": summary["global_step"], "iterations": summary["iterations"],
            "eval_return": summary["eval"]["mean"], "eval_std": summary["eval"]["std"],
            "run_dir": str(run_dir)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="halfcheetah")
    p.add_argument("--engines", default="gymnasium,envpool")
    p.add_argument("--ranks", default="1,2", help="comma-separated rank counts (1 = plain process)")
    p.add_argument("--torchrun-single", action="store_true", help="also run 1 rank under torchrun")
    p.add_argument("--preset", default=None,
                   help="'task' = the task's own preset (conf/env/), or a conf/preset/ name; "
                        "default: cleanrl on gymnasium, throughput on envpool, brax_gpu on brax")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="/tmp/robo_ppo_scaling", help="where the run directories go")
    args = p.parse_args()
    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for engine in args.engines.split(","):
        configs = [(int(r), int(r) > 1) for r in args.ranks.split(",")]
        if args.torchrun_single:
            configs.insert(1, (1, True))
        for ranks, torchrun in configs:
            row = run_one(engine, ranks, torchrun, args, out)
            rows.append(row)
            print(f"{engine:9s} ranks={ranks} torchrun={torchrun!s:5s} SPS={row['SPS']:8.0f} "
                  f"wall={row['train_wall_s']:7.1f}s return={row['eval_return']:8.1f} +- {row['eval_std']:.1f}",
                  flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"scaling_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"env": args.env, "steps": args.steps, "loadavg_end": os.getloadavg(),
                                "cores": len(os.sched_getaffinity(0)), "rows": rows}, indent=2))
    print(f"| engine | ranks | SPS | wall (s) | return at {args.steps:,} steps |\n|---|---|---|---|---|")
    for r in rows:
        label = f"{r['ranks']}{' (torchrun)' if r['torchrun'] and r['ranks'] == 1 else ''}"
        print(f"| {r['engine']} | {label} | {r['SPS']:.0f} | {r['train_wall_s']:.0f} | "
              f"{r['eval_return']:.0f} ± {r['eval_std']:.0f} |")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
