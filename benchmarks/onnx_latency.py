"""onnxruntime batch-1 latency of an exported robo_ppo policy (median and p99, microseconds).

    python benchmarks/onnx_latency.py                        # fresh HalfCheetah-v5 policy (64x64 MLP)
    python benchmarks/onnx_latency.py --env hopper --iters 20000
    python benchmarks/onnx_latency.py --onnx outputs/hopper/.../policy.onnx

Without ``--onnx`` it builds a freshly initialised policy for ``--env`` (the
network size is what matters for latency, not the weights), exports it with
``robo_ppo.export.export_checkpoint`` (parity check included) and times it.

Measured per call, one observation ``float32 [1, obs_dim]``, one onnxruntime
intra-op thread (the deployment kit's default), after ``--warmup`` calls, the
two variants called alternately so they see the same machine load:

* ``session.run``: onnxruntime alone;
* ``OnnxController.__call__``: the deployment kit (input checks + session.run).

Prints the figures and writes them as JSON (default
``benchmarks/results/onnx_latency.json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def percentiles_us(samples_s: list[float]) -> dict[str, float]:
    a = np.asarray(samples_s) * 1e6
    return {"median_us": float(np.median(a)), "p99_us": float(np.percentile(a, 99)),
            "mean_us": float(a.mean()), "min_us": float(a.min())}


def time_interleaved(fns, inputs, iters: int, warmup: int) -> list[list[float]]:
    """Per-call wall time (s) of each ``fns[k](inputs[k][i % len])``, the functions called in
    turn so that they share whatever load the machine has at the time."""
    n = len(inputs[0])
    for i in range(warmup):
        for fn, xs in zip(fns, inputs, strict=True):
            fn(xs[i % n])
    samples: list[list[float]] = [[] for _ in fns]
    clock = time.perf_counter
    for i in range(iters):
        for k, (fn, xs) in enumerate(zip(fns, inputs, strict=True)):
            x = xs[i % n]
            t0 = clock()
            fn(x)
            samples[k].append(clock() - t0)
    return samples


def fresh_policy_onnx(env: str, workdir: Path) -> Path:
    """Export a freshly initialised policy for ``env`` (no training)."""
    import torch
    from hydra import compose, initialize_config_dir

    from robo_ppo.config import register_configs
    from robo_ppo.export import export_checkpoint
    from robo_ppo.hydra_utils import config_dir
    from robo_ppo.runner.trainer import Trainer

    torch.set_num_threads(1)
    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        cfg = compose("train", overrides=[f"env={env}", "algo.num_envs=1", "algo.num_steps=64",
                                          "algo.num_minibatches=1", "progress=false", "tensorboard=false",
                                          "export_onnx=false", "device=cpu"])
    trainer = Trainer(cfg, workdir / "run")
    try:
        ckpt = trainer.save()
    finally:
        trainer.close()
    report = export_checkpoint(ckpt, workdir / "policy.onnx")
    print(f"exported fresh {env} policy: parity max abs diff {report['max_abs_diff']:.3e}")
    return Path(report["path"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=None, help="existing policy.onnx (default: export one)")
    parser.add_argument("--env", default="halfcheetah", help="task for the fresh policy (conf/env name)")
    parser.add_argument("--iters", type=int, default=20_000, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "onnx_latency.json")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    spec = importlib.util.spec_from_file_location("onnx_controller", REPO / "export" / "onnx_controller.py")
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx if args.onnx is not None else fresh_policy_onnx(args.env, Path(tmp))
        ctrl = kit.OnnxController(path, num_threads=1)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        obs = rng.normal(size=(1024, ctrl.obs_dim)).astype(np.float32)
        batched = obs[:, None, :]  # [1024, 1, obs_dim]: one row per call

        raw, kit_calls = time_interleaved([lambda x: session.run(["actions"], {"obs": x}), ctrl],
                                          [batched, obs], args.iters, args.warmup)
        meta = ctrl.metadata

    result = {
        "benchmark": "onnx_latency",
        "policy": str(args.onnx) if args.onnx else f"fresh {args.env} policy",
        "task_id": meta["task_id"], "obs_dim": ctrl.obs_dim, "act_dim": ctrl.act_dim,
        "batch": 1, "iters": args.iters, "warmup": args.warmup, "intra_op_threads": 1,
        "session_run": percentiles_us(raw),
        "onnx_controller": percentiles_us(kit_calls),
        "onnxruntime": ort.__version__, "opset": meta.get("opset"),
        "python": platform.python_version(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for key, label in (("session_run", "onnxruntime session.run"), ("onnx_controller", "OnnxController call")):
        r = result[key]
        print(f"{label:>24}: median {r['median_us']:7.1f} us   p99 {r['p99_us']:7.1f} us   "
              f"(batch 1, {meta['task_id']} obs {ctrl.obs_dim} -> act {ctrl.act_dim}, {args.iters} calls)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
