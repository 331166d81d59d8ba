"""robo_ppo's benchmark suite: one entry point, one fresh process per configuration.

    python -m benchmarks.run                  # the full suite (~10 min on 2 cores)
    python -m benchmarks.run --quick          # smoke run (~2 min): fewer configs, short repeats
    python -m benchmarks.run --only raw,throughput,cleanrl
    python -m benchmarks.run --profile cleanrl --task halfcheetah   # pyinstrument report

Sections (``--only``): ``raw`` (engine stepping with random actions, per
engine and num_envs; ``adapter`` rows go through robo_ppo's VecEnv),
``throughput`` (robo_ppo rollout-phase and end-to-end SPS with
``preset=throughput`` on EnvPool, per task), ``cleanrl`` (robo_ppo and
Stable-Baselines3 PPO side by side with the CleanRL-equivalent settings on
HalfCheetah-v5, and their ratio). Every figure is the median of several
repeats; peak RSS is per configuration (each runs in its own process).
Results: a table on stdout and ``benchmarks/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TASKS = {"halfcheetah": "HalfCheetah", "ant": "Ant", "humanoid": "Humanoid"}


def _worker(fn: str, kwargs: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Run ``benchmarks.measure.<fn>(**kwargs)`` in a fresh interpreter; its JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", json.dumps({"fn": fn, "kwargs": kwargs})]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"fn": fn, "kwargs": kwargs, "error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"fn": fn, "kwargs": kwargs, "error": (proc.stderr or proc.stdout)[-2000:]}
    out = json.loads(lines[-1])
    out["process_wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def _machine() -> dict[str, Any]:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "loadavg_start": os.getloadavg()}
    for mod in ("envpool", "mujoco", "gymnasium", "stable_baselines3"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            info[mod] = None
    return info


def _envpool_id(task: str, version: str) -> str:
    return f"{TASKS[task]}-{version}"


def plan(args) -> list[tuple[str, str, dict[str, Any]]]:
    """(section, worker function, kwargs) for every configuration to measure."""
    quick = args.quick
    reps = 3 if quick else args.repeats
    secs = 0.5 if quick else 1.5
    tasks = ["halfcheetah"] if quick else list(TASKS)
    jobs: list[tuple[str, str, dict[str, Any]]] = []
    sections = set(args.only.split(","))
    if "raw" in sections:
        n_list = [1, 64] if quick else [1, 16, 64, 128]
        for task in tasks:
            for n in n_list:
                jobs.append(("raw", "raw_engine", dict(engine="envpool", task_id=_envpool_id(task, args.envpool_version),
                                                       num_envs=n, repeats=reps, seconds=secs)))
            if not quick and args.envpool_version != "v4":
                jobs.append(("raw", "raw_engine", dict(engine="envpool", task_id=_envpool_id(task, "v4"),
                                                       num_envs=64, repeats=reps, seconds=secs)))
            for n in ([1] if quick else [1, 8]):
                jobs.append(("raw", "raw_engine", dict(engine="gymnasium", task_id=f"{TASKS[task]}-v5",
                                                       num_envs=n, repeats=reps, seconds=secs)))
            jobs.append(("raw", "adapter_engine", dict(
                engine="envpool", env_name=task, num_envs=64, repeats=reps, seconds=secs,
                overrides=[f"env.envpool_id={_envpool_id(task, args.envpool_version)}"])))
    if "throughput" in sections:
        for task in tasks:
            jobs.append(("throughput", "robo_ppo_train", dict(
                overrides=[f"env={task}", "preset=throughput",
                           f"env.envpool_id={_envpool_id(task, args.envpool_version)}"],
                iterations=3 if quick else args.train_iterations, warmup=1, raw_baseline=True)))
    if "cleanrl" in sections:
        iters = 2 if quick else 3
        for _ in range(1 if quick else args.pairs):
            jobs.append(("cleanrl", "robo_ppo_train", dict(overrides=["env=halfcheetah", "preset=cleanrl"],
                                                           iterations=iters, warmup=1)))
            jobs.append(("cleanrl", "sb3_train", dict(env_id="HalfCheetah-v5", iterations=iters, warmup=1)))
            if not quick:  # robo_ppo's torch compute path on the same work: where the speed comes from
                jobs.append(("cleanrl", "robo_ppo_train", dict(
                    overrides=["env=halfcheetah", "preset=cleanrl", "compute=torch"], iterations=iters, warmup=1)))
    return jobs


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Derived figures: rollout / raw ratios (same engine task and num_envs), the SB3 ratio."""
    out: dict[str, Any] = {}
    raw = {(r["task"], r["num_envs"]): r["sps"]["median"] for r in results
           if r.get("kind") == "raw" and r.get("engine") == "envpool"}
    tp = []
    for r in results:
        if r.get("kind") == "train" and r.get("impl") == "robo_ppo" and r.get("engine") == "envpool":
            same = r.get("raw_same_process_sps", {}).get("median")
            base = same or raw.get((r["engine_task"], r["num_envs"]))
            ratio = r.get("rollout_over_raw")
            if ratio is None and base:
                ratio = r["rollout_sps"]["median"] / base
            tp.append({"task": r["task"], "engine_task": r["engine_task"], "num_envs": r["num_envs"],
                       "raw_envpool_sps": base,
                       "raw_source": "same process, interleaved" if same else "raw section",
                       "rollout_sps": r["rollout_sps"]["median"], "e2e_sps": r["e2e_sps"]["median"],
                       "rollout_over_raw": ratio, "peak_rss_mib": r["peak_rss_mib"]})
    out["throughput"] = tp
    cleanrl = [r for r in results if r.get("kind") == "train" and r.get("impl") == "robo_ppo"
               and r.get("engine") == "gymnasium" and r.get("num_envs") == 1]
    ours = [r for r in cleanrl if r.get("compute") != "torch"]
    ours_torch = [r for r in cleanrl if r.get("compute") == "torch"]
    sb3 = [r for r in results if r.get("kind") == "train" and r.get("impl") == "sb3"]
    if ours and sb3:
        def pooled(rs, key):
            return _median([v for r in rs for v in r[key]["values"]])

        c = {}
        for key in ("e2e_sps", "rollout_sps", "e2e_cpu_sps", "rollout_cpu_sps"):
            c[f"robo_ppo_{key}"], c[f"sb3_{key}"] = pooled(ours, key), pooled(sb3, key)
            c[f"{key.replace('_sps', '')}_ratio"] = c[f"robo_ppo_{key}"] / c[f"sb3_{key}"]
        if ours_torch:
            c["robo_ppo_torch_e2e_sps"] = pooled(ours_torch, "e2e_sps")
            c["torch_e2e_ratio"] = c["robo_ppo_torch_e2e_sps"] / c["sb3_e2e_sps"]
        c["robo_ppo_peak_rss_mib"] = max(r["peak_rss_mib"] for r in ours)
        c["sb3_peak_rss_mib"] = max(r["peak_rss_mib"] for r in sb3)
        out["cleanrl"] = c
    return out


def print_tables(results: list[dict[str, Any]], derived: dict[str, Any]) -> None:
    print("\n== engine stepping, random actions (env steps/s, median) ==")
    print(f"{'kind':8} {'engine':10} {'task':16} {'num_envs':>8} {'threads':>7} {'steps/s':>10} {'RSS MiB':>8}")
    for r in results:
        if r.get("kind") in ("raw", "adapter"):
            print(f"{r['kind']:8} {r['engine']:10} {r['task']:16} {r['num_envs']:>8} "
                  f"{r.get('num_threads', ''):>7} {r['sps']['median']:>10.0f} {r['peak_rss_mib']:>8.0f}")
    print("\n== training (env steps/s, median over timed iterations; cpu = per CPU-second of the process) ==")
    print(f"{'impl':14} {'task':15} {'engine task':15} {'envs x steps':>12} {'rollout':>9} {'end-to-end':>10} "
          f"{'rollout/cpu':>11} {'e2e/cpu':>8} {'RSS MiB':>8}")
    for r in results:
        if r.get("kind") == "train":
            impl = r["impl"] + ("/torch" if r.get("compute") == "torch" else "")
            print(f"{impl:14} {r['task']:15} {r['engine_task']:15} {str(r['num_envs']) + 'x' + str(r['num_steps']):>12} "
                  f"{r['rollout_sps']['median']:>9.0f} {r['e2e_sps']['median']:>10.0f} "
                  f"{r['rollout_cpu_sps']['median']:>11.0f} {r['e2e_cpu_sps']['median']:>8.0f} {r['peak_rss_mib']:>8.0f}")
    if derived.get("throughput"):
        print("\n== throughput preset: rollout vs raw EnvPool at the same num_envs ==")
        for t in derived["throughput"]:
            ratio = "n/a" if t["rollout_over_raw"] is None else f"{100 * t['rollout_over_raw']:.0f}%"
            raw = "n/a" if t["raw_envpool_sps"] is None else f"{t['raw_envpool_sps']:.0f}"
            print(f"{t['engine_task']:15} N={t['num_envs']:<4} raw {raw:>7} ({t['raw_source']})  rollout "
                  f"{t['rollout_sps']:>7.0f} ({ratio})  end-to-end {t['e2e_sps']:>7.0f}")
    if derived.get("cleanrl"):
        c = derived["cleanrl"]
        print("\n== CleanRL-equivalent config, HalfCheetah-v5, side by side (pooled medians) ==")
        print(f"end to end : robo_ppo {c['robo_ppo_e2e_sps']:.0f} SPS vs Stable-Baselines3 {c['sb3_e2e_sps']:.0f} SPS"
              f" -> {c['e2e_ratio']:.2f}x   (per CPU-second: {c['robo_ppo_e2e_cpu_sps']:.0f} vs "
              f"{c['sb3_e2e_cpu_sps']:.0f} -> {c['e2e_cpu_ratio']:.2f}x)")
        print(f"rollout    : robo_ppo {c['robo_ppo_rollout_sps']:.0f} SPS vs Stable-Baselines3 {c['sb3_rollout_sps']:.0f} SPS"
              f" -> {c['rollout_ratio']:.2f}x   (per CPU-second: {c['rollout_cpu_ratio']:.2f}x)")
        if "torch_e2e_ratio" in c:
            print(f"compute=torch: robo_ppo {c['robo_ppo_torch_e2e_sps']:.0f} SPS end to end -> "
                  f"{c['torch_e2e_ratio']:.2f}x Stable-Baselines3")
    errors = [r for r in results if "error" in r]
    for e in errors:
        print(f"\nFAILED {e['fn']} {e['kwargs']}:\n{e['error']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="raw,throughput,cleanrl", help="comma list of sections")
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--repeats", type=int, default=5, help="repeats of each raw-stepping figure")
    p.add_argument("--train-iterations", type=int, default=5, help="timed iterations per training config")
    p.add_argument("--pairs", type=int, default=3,
                   help="robo_ppo / SB3 process pairs for the CleanRL comparison (alternated)")
    p.add_argument("--envpool-version", default="v5", choices=["v4", "v5"],
                   help="EnvPool MuJoCo ids to use (EnvPool 1.2.5 has both; v5 matches gymnasium v5)")
    p.add_argument("--profile", choices=["cleanrl", "throughput"], help="pyinstrument report of one config")
    p.add_argument("--task", default="halfcheetah", choices=list(TASKS), help="task for --profile")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<timestamp>.json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        from benchmarks import measure

        spec = json.loads(args.worker)
        print(json.dumps(getattr(measure, spec["fn"])(**spec["kwargs"])), flush=True)
        return 0

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.profile:
        path = RESULTS / f"profile_{args.profile}_{args.task}_{stamp}.txt"
        overrides = [f"env={args.task}", f"preset={args.profile}"]
        if args.profile == "throughput":
            overrides.append(f"env.envpool_id={_envpool_id(args.task, args.envpool_version)}")
        r = _worker("robo_ppo_train", dict(overrides=overrides, iterations=3, warmup=1, profile=str(path)))
        if "error" in r:
            print(r["error"])
            return 1
        print(path.read_text())
        print(f"rollout {r['rollout_sps']['median']:.0f} SPS, end-to-end {r['e2e_sps']['median']:.0f} SPS; "
              f"report: {path} (+ .html)")
        return 0

    machine = _machine()
    jobs = plan(args)
    results = []
    for i, (section, fn, kwargs) in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {section}: {fn} {kwargs}", flush=True)
        r = _worker(fn, kwargs)
        r["section"] = section
        results.append(r)
    machine["loadavg_end"] = os.getloadavg()
    derived = summarize([r for r in results if "error" not in r])
    print_tables(results, derived)
    out = Path(args.out) if args.out else RESULTS / f"{stamp}.json"
    out.write_text(json.dumps({"machine": machine, "args": vars(args), "results": results,
                               "derived": derived}, indent=2))
    print(f"\nmachine: {machine['usable_cores']} usable cores, load average {machine['loadavg_start']} at start, "
          f"{machine['loadavg_end']} at end\nresults: {out}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
