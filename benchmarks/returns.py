"""Returns at a fixed step budget over seeds, and time to a stated return.

    python -m benchmarks.returns                                   # 5 tasks x seeds 1,2,3, each task's preset
    python -m benchmarks.returns --tasks hopper,walker2d --seeds 1,2 --root /tmp/runs
    python -m benchmarks.returns --preset fast --steps 3000000 engine.num_threads=1
    python -m benchmarks.returns --runs /tmp/runs/hopper /tmp/runs/fast --update-readme
    python -m benchmarks.returns --runs DIR --threshold halfcheetah=3000,5000 --ttr-source train

Each run of the task x seed grid is one ``robo-ppo-train`` process
(``python -m robo_ppo.train env=<task> seed=<s> [preset=...] [overrides] hydra.run.dir=<dir>``),
one after another (``--jobs N`` runs N at once). A run directory that already holds a
``summary.json`` is read, not run again (``--rerun`` to train it anew). ``--runs DIR...`` only
reads finished run directories (or folders holding them, searched recursively).

Per run: the final deterministic evaluation the trainer writes to ``summary.json``
(``eval_episodes`` episodes, mean action, frozen normalizer), the training wall time and SPS
from the same file, and from ``metrics.csv`` the env steps and wall time (seconds since the
start of the training loop, evaluations included, process start-up excluded) at which the run
first reached each stated return. Stalls (an iteration 5x slower than the run's median plus
8 s: the process was stopped) are subtracted from wall times and SPS; the JSON keeps the
measured figures too (``measured_wall_time_s``, ``stall_s``).

Per (task, configuration): mean and std (sample std, n-1) of the final evaluation over seeds,
min, per-seed values, mean wall time and SPS, the task's goal and whether the mean met it.

Output: a markdown table on stdout, ``benchmarks/results/returns_<timestamp>.json`` (every run's
figures), ``--markdown FILE``, and ``--update-readme [FILE]``, which rewrites only the region
between ``<!-- returns:begin -->`` and ``<!-- returns:end -->`` of README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- returns:begin -->", "<!-- returns:end -->"

TASKS = ["halfcheetah", "hopper", "walker2d", "ant", "humanoid"]
ENV_IDS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5",
           "ant": "Ant-v5", "humanoid": "Humanoid-v5"}
GOALS = {"halfcheetah": 5000.0, "hopper": 2500.0, "walker2d": 3500.0, "ant": 2500.0, "humanoid": 750.0}
"""Mean final deterministic return over seeds at 1M env steps (issue #11)."""

README_INTRO = ("Returns over seeds at a fixed step budget (final deterministic evaluation, "
                "`eval_episodes` episodes per seed), written by `python -m benchmarks.returns "
                "--update-readme`; method, machine and commands in `benchmarks/README.md`.")
QUIET = ["progress=false", "tensorboard=false"]
"""Added to every run the tool starts (no progress bar in a subprocess, no event files)."""
PLUMBING = ("seed", "env", "hydra", "progress", "tensorboard", "export_onnx", "torch_threads",
            "engine.num_threads", "total_timesteps", "eval_interval", "checkpoint_interval",
            "keep_checkpoints", "device", "debug")
"""Override keys that do not define the configuration (left out of its label): the seed, the task
and step budget (own columns), where and how the run logs, and thread counts (they change speed,
not what is learned)."""


# ----------------------------------------------------------------- reading runs
def _float(value: Any) -> Optional[float]:
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a run's ``metrics.csv`` with ``global_step`` (int), ``wall_time``, ``SPS``,
    ``episodic_return``, ``eval_return``, ``eval_return_std`` as floats (None when empty)."""
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            if not raw.get("global_step"):
                continue
            rows.append({"global_step": int(float(raw["global_step"])),
                         "wall_time": _float(raw.get("wall_time")),
                         "SPS": _float(raw.get("SPS")),
                         "episodic_return": _float(raw.get("episodic_return")),
                         "eval_return": _float(raw.get("eval_return")),
                         "eval_return_std": _float(raw.get("eval_return_std"))})
    return rows


def stall_seconds(rows: list[dict[str, Any]], factor: float = 5.0, slack: float = 8.0) -> list[float]:
    """Cumulative seconds of stalls up to each row: an iteration that took longer than ``factor``
    times the run's median iteration plus ``slack`` seconds counts its excess over the median as
    a stall (the process was stopped, e.g. SIGSTOP'ed or the machine suspended; evaluations and
    checkpoints are far shorter). Training wall times minus these are the time spent running."""
    walls = [r["wall_time"] for r in rows]
    if any(w is None for w in walls) or len(walls) < 3:
        return [0.0] * len(rows)
    deltas = [walls[0]] + [b - a for a, b in zip(walls, walls[1:], strict=False)]
    median = sorted(deltas)[len(deltas) // 2]
    out, total = [], 0.0
    for d in deltas:
        if d > factor * median + slack:
            total += d - median
        out.append(total)
    return out


def time_to_return(rows: list[dict[str, Any]], threshold: float, source: str = "eval",
                   window: int = 10) -> Optional[dict[str, float]]:
    """The first row at which the run reached ``threshold``: ``{"global_step", "wall_time",
    "value"}``, or None if it never did.

    ``wall_time`` is the row's training wall time less its ``stall`` (``read_run`` sets it from
    ``stall_seconds``) when the row has one.

    ``source="eval"``: the deterministic evaluation return (rows that have one);
    ``source="train"``: the trailing mean of the per-iteration training return
    (``episodic_return``, mean of the episodes finished in that iteration) over the last
    ``window`` iterations that finished an episode.
    """
    if source not in ("eval", "train"):
        raise ValueError(f"source must be eval or train, got {source!r}")
    recent: list[float] = []
    for row in rows:
        if source == "eval":
            value = row["eval_return"]
        else:
            if row["episodic_return"] is None:
                continue
            recent = (recent + [row["episodic_return"]])[-window:]
            value = sum(recent) / len(recent)
        if value is not None and value >= threshold:
            wall = row["wall_time"]
            if wall is not None and row.get("stall") is not None:
                wall -= row["stall"]
            return {"global_step": row["global_step"], "wall_time": wall, "value": value}
    return None


def _load_yaml(path: Path) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def config_hash(cfg: dict[str, Any]) -> str:
    """Short hash of what a run learns with: the resolved ``env``, ``algo`` and ``engine.name``
    and the step budget (not the seed, threads, logging or paths). Two runs with the same label
    but different task files (a preset edited between them) get different hashes."""
    import hashlib

    key = {"env": cfg.get("env"), "algo": cfg.get("algo"), "engine": (cfg.get("engine") or {}).get("name"),
           "total_timesteps": cfg.get("total_timesteps")}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]


def upgrade_override(override: str) -> str:
    """A saved command-line override in today's key names: a run saved before a config key
    rename (``robo_ppo.config.RENAMED_KEYS``) recorded e.g. ``backend.num_threads=1``, which
    becomes ``engine.num_threads=1``, so its label and grouping match a new run's."""
    from robo_ppo.config import RENAMED_KEYS

    body = override.lstrip("+~")
    prefix = override[:len(override) - len(body)]
    key, sep, value = body.partition("=")
    head, dot, rest = key.partition(".")
    return prefix + RENAMED_KEYS.get(head, head) + dot + rest + sep + value


def config_label(task: str, overrides: list[str]) -> str:
    """The command-line form of a run's configuration: ``env=<task>`` plus the overrides that
    define it (``PLUMBING`` keys left out), in the order given."""
    kept = []
    for ov in overrides:
        key = ov.lstrip("+~").split("=", 1)[0]
        if any(key == p or key.startswith(p + ".") for p in PLUMBING):
            continue
        kept.append(ov)
    return " ".join([f"env={task}", *kept])


def read_run(run_dir: Path | str, thresholds: Optional[dict[str, list[float]]] = None,
             ttr_source: str = "eval", ttr_window: int = 10) -> dict[str, Any]:
    """Everything the tables need from one run directory.

    Reads ``config.yaml`` (task, seed, step budget), ``.hydra/overrides.yaml`` (configuration
    label), ``summary.json`` (final evaluation, wall time, SPS; absent = unfinished),
    ``metrics.csv`` (time to each return in ``thresholds[task]``, default the task's goal) and
    ``returns_job.json`` (process wall time, when this tool started the run).
    """
    from robo_ppo.config import upgrade_saved_config

    run_dir = Path(run_dir)
    cfg = upgrade_saved_config(_load_yaml(run_dir / "config.yaml"))  # a run saved before a key rename
    task = cfg["env"]["name"]
    overrides_path = run_dir / ".hydra" / "overrides.yaml"
    overrides = [upgrade_override(str(o)) for o in _load_yaml(overrides_path)] if overrides_path.is_file() else []
    run: dict[str, Any] = {
        "dir": str(run_dir), "task": task, "env_id": cfg["env"]["id"], "seed": int(cfg["seed"]),
        "config_hash": config_hash(cfg),
        "total_timesteps": int(cfg["total_timesteps"]), "label": config_label(task, overrides),
        "overrides": overrides, "engine": cfg["engine"]["name"],
        "num_envs": int(cfg["algo"]["num_envs"]), "finished": False,
    }
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        ev = summary.get("eval") or {}
        run.update({"finished": bool(summary.get("finished")), "global_step": summary.get("global_step"),
                    "wall_time_s": summary.get("wall_time_s"), "SPS": summary.get("SPS"),
                    "eval_mean": ev.get("mean"), "eval_std": ev.get("std"), "eval_min": ev.get("min"),
                    "eval_max": ev.get("max"), "eval_mean_length": ev.get("mean_length")})
    job_path = run_dir / "returns_job.json"
    if job_path.is_file():
        job = json.loads(job_path.read_text())
        run["process_wall_s"] = job.get("process_wall_s")
        run["loadavg"] = [job.get("loadavg_start"), job.get("loadavg_end")]
    metrics_path = run_dir / "metrics.csv"
    rows = read_metrics(metrics_path) if metrics_path.is_file() else []
    for row, stall in zip(rows, stall_seconds(rows), strict=True):
        row["stall"] = stall
    run["stall_s"] = rows[-1]["stall"] if rows else 0.0
    if run.get("wall_time_s") is not None:
        # the measured training time, and the same without stalls (a stopped process)
        run["measured_wall_time_s"] = run["wall_time_s"]
        run["wall_time_s"] = run["wall_time_s"] - run["stall_s"]
        if run["stall_s"] > 0 and run.get("SPS"):
            run["measured_SPS"] = run["SPS"]
            run["SPS"] = run["SPS"] * run["measured_wall_time_s"] / max(run["wall_time_s"], 1e-9)
    if rows:
        run.setdefault("global_step", rows[-1]["global_step"])
        evals = [(r["global_step"], r["eval_return"]) for r in rows if r["eval_return"] is not None]
        run["eval_curve"] = evals
        run["best_eval"] = max((v for _, v in evals), default=None)
    levels = (thresholds or {}).get(task) or ([GOALS[task]] if task in GOALS else [])
    run["ttr_source"] = ttr_source
    run["time_to_return"] = {str(_fmt_num(t)): time_to_return(rows, t, ttr_source, ttr_window)
                             for t in levels}
    return run


def _finished(run_dir: Path) -> bool:
    """The run dir holds the summary of a run that trained to its end (a run stopped by
    SIGINT/SIGTERM writes ``summary.json`` with ``finished: false``)."""
    try:
        return bool(json.loads((run_dir / "summary.json").read_text()).get("finished"))
    except (OSError, ValueError):
        return False


def find_runs(paths: list[Path | str]) -> list[Path]:
    """Run directories (holding ``config.yaml`` and ``metrics.csv`` or ``summary.json``) among
    ``paths`` and below them, sorted."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        candidates = [p, *(c.parent for c in p.rglob("config.yaml"))]
        for c in candidates:
            if ".stale-" in c.name:  # an earlier run the grid moved aside
                continue
            if (c / "config.yaml").is_file() and ((c / "metrics.csv").is_file() or (c / "summary.json").is_file()):
                found.add(c.resolve())
    return sorted(found)


# ----------------------------------------------------------------- aggregating
def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, s


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, configuration label, step budget), in ``TASKS`` order then label:
    final evaluation over the finished seeds (mean, sample std, min, max, per seed), mean
    training wall time and SPS, goal and whether the mean met it, and per stated return the
    seeds that reached it with their env steps and wall times. Unfinished runs are counted
    in ``unfinished`` only."""
    groups: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["task"], r["label"], r["total_timesteps"], r.get("config_hash", "")), []).append(r)
    labels: dict[tuple[str, str, int], int] = {}
    for task, label, steps, _ in groups:
        labels[(task, label, steps)] = labels.get((task, label, steps), 0) + 1
    order = {t: i for i, t in enumerate(TASKS)}
    out = []
    for (task, label, steps, chash), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99),
                                                                                   *kv[0][1:])):
        if labels[(task, label, steps)] > 1:  # same command line, different task files: tell them apart
            label = f"{label} [config {chash}]"
        done = sorted((r for r in rs if r["finished"] and r.get("eval_mean") is not None), key=lambda r: r["seed"])
        row: dict[str, Any] = {"task": task, "env_id": rs[0]["env_id"], "label": label, "total_timesteps": steps,
                               "config_hash": chash,
                               "seeds": [r["seed"] for r in done], "unfinished": sorted(r["seed"] for r in rs
                                                                                        if r not in done),
                               "goal": GOALS.get(task)}
        if done:
            finals = [float(r["eval_mean"]) for r in done]
            mean, std = _mean_std(finals)
            walls = [float(r["wall_time_s"]) for r in done if r.get("wall_time_s") is not None]
            sps = [float(r["SPS"]) for r in done if r.get("SPS") is not None]
            row.update({"per_seed": finals, "per_seed_episode_std": [r.get("eval_std") for r in done],
                        "mean": mean, "std": std, "min": min(finals), "max": max(finals),
                        "wall_time_s": sum(walls) / len(walls) if walls else None,
                        "SPS": sum(sps) / len(sps) if sps else None,
                        "stall_s": sum(float(r.get("stall_s") or 0.0) for r in done)})
            row["met"] = None if row["goal"] is None else bool(mean >= row["goal"])
        ttr: dict[str, Any] = {}
        for r in done:
            for level, hit in r.get("time_to_return", {}).items():
                entry = ttr.setdefault(level, {"reached": 0, "of": len(done), "steps": [], "wall_time": []})
                if hit is not None:
                    entry["reached"] += 1
                    entry["steps"].append(hit["global_step"])
                    entry["wall_time"].append(hit["wall_time"])
        row["time_to_return"] = ttr
        out.append(row)
    return out


# ----------------------------------------------------------------- markdown
def _steps(n: float) -> str:
    """Env steps, rounded: 1M, 1.54M, 205k, 512."""
    if n >= 1e6:
        return f"{n / 1e6:.3g}M"
    if n >= 1e3:
        return f"{n / 1e3:.0f}k"
    return str(int(n))


def _minutes(s: Optional[float]) -> str:
    if s is None:
        return ""
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def markdown(rows: list[dict[str, Any]], ttr_source: str = "eval") -> str:
    """The results table and the time-to-return table for ``aggregate``'s rows."""
    lines = ["| task | configuration | steps | seeds | final eval return, mean ± std over seeds | min | "
             "per seed | wall time per run | SPS | goal | met |",
             "|---|---|---|---|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        seeds = ",".join(map(str, r["seeds"])) or "-"
        if r["unfinished"]:
            seeds += f" ({len(r['unfinished'])} unfinished)"
        if "mean" in r:
            per_seed = " / ".join(f"{x:.0f}" for x in r["per_seed"])
            met = "" if r["met"] is None else ("**met**" if r["met"] else "missed")
            lines.append(f"| {r['env_id']} | `{r['label']}` | {_steps(r['total_timesteps'])} | {seeds} | "
                         f"**{r['mean']:.0f} ± {r['std']:.0f}** | {r['min']:.0f} | {per_seed} | "
                         f"{_minutes(r['wall_time_s'])}{' †' if r['stall_s'] else ''} | {r['SPS']:.0f} | "
                         f"{'' if r['goal'] is None else _fmt_num(r['goal'])} | {met} |")
        else:
            lines.append(f"| {r['env_id']} | `{r['label']}` | {_steps(r['total_timesteps'])} | {seeds} | "
                         f"| | | | | {'' if r['goal'] is None else _fmt_num(r['goal'])} | |")
    what = ("deterministic evaluation (10 episodes) first ≥ the return" if ttr_source == "eval"
            else "training return (rolling mean over iterations) first ≥ the return")
    ttr_lines = ["| task | configuration | return | seeds that reached it | env steps, per seed | "
                 "wall time, per seed |", "|---|---|---:|---|---|---|"]
    for r in rows:
        for level, e in r.get("time_to_return", {}).items():
            if not e["of"]:
                continue
            steps = " / ".join(_steps(s) for s in e["steps"]) or "-"
            walls = " / ".join(_minutes(w) for w in e["wall_time"]) or "-"
            ttr_lines.append(f"| {r['env_id']} | `{r['label']}` | {level} | {e['reached']} of {e['of']} | "
                             f"{steps} | {walls} |")
    text = "\n".join(lines)
    if any(r.get("stall_s") for r in rows):
        text += ("\n\n† a run of this row was stopped for a while (a stall: an iteration 5x slower than "
                 "its median plus 8 s); the stall is subtracted from wall time, SPS and time to return.")
    if len(ttr_lines) > 2:
        text += f"\n\nTime to return ({what}; wall time of the training loop, evaluations included):\n\n"
        text += "\n".join(ttr_lines)
    return text


def replace_region(text: str, body: str, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with everything between the ``begin`` and ``end`` marker lines replaced by
    ``body``; the markers and every byte outside them are kept. Raises ValueError unless each
    marker occurs exactly once, begin before end."""
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ValueError(f"expected one {begin!r} and one {end!r} marker")
    i, j = text.index(begin) + len(begin), text.index(end)
    if j < i:
        raise ValueError(f"{end!r} comes before {begin!r}")
    return text[:i] + "\n" + body.strip("\n") + "\n" + text[j:]


def update_file(path: Path, body: str) -> None:
    """Rewrite the marked region of ``path`` (``replace_region``); line endings and encoding of
    the rest of the file are kept byte for byte."""
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    new = replace_region(text, body)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(new)


# ----------------------------------------------------------------- running
def run_command(task: str, seed: int, run_dir: Path, preset: Optional[str], steps: Optional[int],
                extra: list[str]) -> list[str]:
    """The ``robo-ppo-train`` command line of one grid cell."""
    cmd = [sys.executable, "-m", "robo_ppo.train", f"env={task}", f"seed={seed}"]
    if preset:
        cmd.append(f"preset={preset}")
    if steps:
        cmd.append(f"total_timesteps={steps}")
    return [*cmd, *QUIET, *extra, f"hydra.run.dir={run_dir}"]


def run_one(cmd: list[str], run_dir: Path, nice: int = 0) -> dict[str, Any]:
    """Run one training process (its output to ``run_dir/returns_job.log``); write and return
    ``returns_job.json`` (command, exit code, process wall time, load averages)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    full = (["nice", "-n", str(nice)] if nice else []) + cmd
    job: dict[str, Any] = {"cmd": shlex.join(full), "loadavg_start": os.getloadavg()}
    t0 = time.perf_counter()
    with open(run_dir / "returns_job.log", "w") as log:
        proc = subprocess.run(full, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONWARNINGS="ignore"))
    job.update({"returncode": proc.returncode, "process_wall_s": round(time.perf_counter() - t0, 1),
                "loadavg_end": os.getloadavg()})
    (run_dir / "returns_job.json").write_text(json.dumps(job, indent=2))
    return job


def _parse_thresholds(specs: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for spec in specs:
        task, _, values = spec.partition("=")
        if not values:
            raise SystemExit(f"--threshold takes TASK=R1[,R2...], got {spec!r}")
        out[task] = [float(v) for v in values.split(",")]
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.returns", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names (conf/env/)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    p.add_argument("--preset", default=None, help="a conf/preset/ file applied to every run (e.g. fast)")
    p.add_argument("--steps", type=int, default=None, help="total_timesteps (default: the task's preset, 1M)")
    p.add_argument("--jobs", type=int, default=1, help="runs at the same time (default 1)")
    p.add_argument("--nice", type=int, default=0, help="run the training processes under nice -n N")
    p.add_argument("--root", default=None,
                   help="where the grid's run dirs go (default outputs/returns/<timestamp>); "
                        "<root>/<preset or 'task'>/<task>/seed<s>")
    p.add_argument("--rerun", action="store_true", help="train again where a finished run dir exists")
    p.add_argument("--runs", nargs="+", default=None, metavar="DIR",
                   help="read these finished run dirs (or folders holding them) instead of training")
    p.add_argument("--threshold", action="append", default=[], metavar="TASK=R1[,R2]",
                   help="stated returns for time to return (default: the task's goal); repeatable")
    p.add_argument("--ttr-source", choices=("eval", "train"), default="eval",
                   help="time to return from the periodic deterministic evaluation (default) or from the "
                        "training return's rolling mean")
    p.add_argument("--ttr-window", type=int, default=10, help="--ttr-source train: iterations averaged")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/returns_<timestamp>.json)")
    p.add_argument("--markdown", default=None, help="also write the tables to this file")
    p.add_argument("--update-readme", nargs="?", const=str(README), default=None, metavar="FILE",
                   help=f"rewrite the region between {BEGIN} and {END} (default README.md)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides passed to every run (key=value)")
    args = p.parse_args(argv)
    thresholds = _parse_thresholds(args.threshold)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    jobs: list[dict[str, Any]] = []
    if args.runs:
        if args.overrides:
            p.error("overrides apply to runs the tool starts, not to --runs")
        run_dirs = find_runs(args.runs)
        if not run_dirs:
            p.error(f"no run directories (config.yaml + metrics.csv/summary.json) under {args.runs}")
    else:
        tasks = [t for t in args.tasks.split(",") if t]
        seeds = [int(s) for s in args.seeds.split(",") if s]
        root = Path(args.root) if args.root else ROOT / "outputs" / "returns" / stamp
        grid = []
        for task in tasks:
            for seed in seeds:
                run_dir = (root / (args.preset or "task") / task / f"seed{seed}").resolve()
                cmd = run_command(task, seed, run_dir, args.preset, args.steps, args.overrides)
                if _finished(run_dir) and not args.rerun:
                    print(f"[returns] {run_dir}: finished run found, read", flush=True)
                    continue
                if run_dir.exists():  # an unfinished or rerun dir: the trainer would append to its metrics.csv
                    stale = run_dir.with_name(f"{run_dir.name}.stale-{stamp}")
                    run_dir.rename(stale)
                    print(f"[returns] {run_dir}: moved the earlier run to {stale.name}", flush=True)
                grid.append((cmd, run_dir))
        run_dirs = [(root / (args.preset or "task") / t / f"seed{s}").resolve() for t in tasks for s in seeds]

        def work(item):
            cmd, run_dir = item
            print(f"[returns] start {shlex.join(cmd)}", flush=True)
            job = run_one(cmd, run_dir, args.nice)
            print(f"[returns] exit {job['returncode']} after {job['process_wall_s']} s: {run_dir}", flush=True)
            return job

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            jobs = list(pool.map(work, grid))

    runs = []
    for d in run_dirs:
        if (d / "config.yaml").is_file():
            runs.append(read_run(d, thresholds, args.ttr_source, args.ttr_window))
        else:
            print(f"[returns] {d}: no config.yaml (the run failed to start; see returns_job.log)", file=sys.stderr)
    rows = aggregate(runs)
    table = markdown(rows, args.ttr_source)
    print(table)
    out = Path(args.out) if args.out else RESULTS / f"returns_{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
               "loadavg_end": os.getloadavg()}
    out.write_text(json.dumps({"machine": machine, "args": vars(args), "goals": GOALS, "rows": rows,
                               "runs": runs, "jobs": jobs}, indent=2, default=str))
    print(f"\nresults: {out}")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.update_readme:
        update_file(Path(args.update_readme), README_INTRO + "\n\n" + table)
        print(f"updated the {BEGIN} region of {args.update_readme}")
    failed = [j for j in jobs if j["returncode"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
