"""Is the numpy compute path still worth keeping next to a compiled torch path?

End-to-end SPS of ``preset=cleanrl`` (HalfCheetah-v5, 1 env x 2048 steps, 10
epochs x 32 minibatches of 64, 64x64 tanh, one torch thread) for:

* ``numpy``: ``compute=numpy`` (the default on a CPU);
* ``torch``: ``compute=torch``, eager;
* ``torch_compile_update``: ``compute=torch`` with ``torch.compile`` of the
  update's loss (``TorchKernel.loss_terms``: forward of actor and critic and
  the PPO loss; AOTAutograd compiles its backward too); gradient clip and
  fused Adam stay eager;
* ``torch_compile_all``: as above, plus ``torch.compile`` of the rollout's
  per-step policy calls (``normalize``, ``act``, ``get_value``).

Each variant runs in its own process (``--worker``), rounds alternate the
variants so they see the same load; timing as ``benchmarks.measure.robo_ppo_train``
(1 warm-up iteration, which includes the compile, then ``--iterations`` timed);
``process_s`` is the worker's whole wall time (start-up, compile and all
iterations).

    python -m benchmarks.compiled_torch                  # 2 rounds, prints a table and writes JSON
    python -m benchmarks.compiled_torch --rounds 3 --iterations 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "numpy": ["compute=numpy"],
    "torch": ["compute=torch"],
    "torch_compile_update": ["compute=torch"],
    "torch_compile_all": ["compute=torch"],
}
BASE = ["env=halfcheetah", "preset=cleanrl", "torch_threads=1"]


def worker(variant: str, iterations: int) -> dict:
    import torch

    from benchmarks.measure import robo_ppo_train
    from robo_ppo.runner import trainer as trainer_mod

    if variant.startswith("torch_compile"):
        original_init = trainer_mod.Trainer.__init__

        def init(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            kernel = self.ppo.kernel
            kernel.loss_terms = torch.compile(kernel.loss_terms, dynamic=False)
            if variant == "torch_compile_all":
                for name in ("normalize", "act", "get_value"):
                    setattr(self.policy, name, torch.compile(getattr(self.policy, name), dynamic=False))

        trainer_mod.Trainer.__init__ = init
    t0 = time.perf_counter()
    out = robo_ppo_train([*BASE, *VARIANTS[variant]], iterations=iterations, warmup=1)
    out["variant"] = variant
    out["process_s"] = time.perf_counter() - t0
    from torch._dynamo.utils import counters

    out["graph_breaks"] = sum(counters["graph_break"].values())  # 0: each compiled function is one graph
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--iterations", type=int, default=3, help="timed iterations per process")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.iterations)), flush=True)
        return
    variants = args.variants.split(",")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    load_start = os.getloadavg()
    for r in range(args.rounds):
        for v in variants:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.compiled_torch", "--worker", v,
                                   "--iterations", str(args.iterations)], capture_output=True, text=True)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                sys.exit(f"{v} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            res = json.loads(line[0][7:])
            results[v].append(res)
            print(f"round {r + 1} {v}: e2e {res['e2e_sps']['median']:.0f} SPS, "
                  f"process {res['process_s']:.0f} s", flush=True)
    def pool(key):
        return {v: statistics.median(x for res in rs for x in res[key]["values"]) for v, rs in results.items()}

    pooled, pooled_cpu = pool("e2e_sps"), pool("e2e_cpu_sps")
    base, base_cpu = pooled.get("numpy"), pooled_cpu.get("numpy")
    print("\n| compute | end-to-end SPS (wall, pooled median) | per process | vs numpy | SPS per CPU second "
          "| vs numpy | process wall time | graph breaks |")
    print("|---|---:|---|---:|---:|---:|---|---:|")
    for v, rs in results.items():
        per = " / ".join(f"{res['e2e_sps']['median']:.0f}" for res in rs)
        ratio = f"{pooled[v] / base:.2f}" if base else "-"
        ratio_cpu = f"{pooled_cpu[v] / base_cpu:.2f}" if base_cpu else "-"
        wall = " / ".join(f"{res['process_s']:.0f} s" for res in rs)
        breaks = max(res["graph_breaks"] for res in rs)
        print(f"| {v} | {pooled[v]:.0f} | {per} | {ratio} | {pooled_cpu[v]:.0f} | {ratio_cpu} | {wall} | {breaks} |")
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"compiled_torch_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"results": results, "pooled_e2e_sps": pooled, "pooled_e2e_cpu_sps": pooled_cpu,
                                "loadavg_start": load_start, "loadavg_end": os.getloadavg()}, indent=1))
    print(f"\nwrote {path}; load average {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
