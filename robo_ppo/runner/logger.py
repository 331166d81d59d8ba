"""Run outputs: TensorBoard events, metrics.csv, learning_curve.png, progress
bar, and optionally Weights & Biases (``start_wandb`` / ``finish_wandb``)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Optional

from robo_ppo.errors import ConfigError

COLUMNS = ["iteration", "global_step", "wall_time", "SPS", "rollout_SPS", "episodic_return", "episodic_length",
           "recent_return", "eval_return", "eval_return_std", "policy_loss", "value_loss", "entropy", "approx_kl",
           "clipfrac", "explained_variance", "learning_rate", "kl_beta", "kl", "early_stop", "rss_mb",
           "py_heap_blocks"]
"""metrics.csv's columns, one per value of the trainer's row (``Trainer._row``;
``reward/<term>`` columns follow when the task reports reward terms). ``SPS``:
env steps per second since this process started training; ``rollout_SPS``: the
iteration's rollout alone; ``recent_return``: mean of the last 100 finished
training episodes; ``kl``: exact KL of the update (``algo.loss=kl`` only);
``early_stop``: 1 when ``target_kl`` ended the update; ``rss_mb``, ``py_heap_blocks``: process memory
every ``memory_interval`` iterations (``runner/memory.py``); a robot task adds ``physics/diverged``, the
env steps of the iteration whose physics diverged (``envs/robot_env.py``), and its statistics at the
end of the rollout (the env's ``stat_names``: ``terrain/level``, the mean terrain level on a grid)."""

TB_TAGS = {
    "episodic_return": "charts/episodic_return", "episodic_length": "charts/episodic_length",
    "recent_return": "charts/recent_return", "SPS": "charts/SPS", "rollout_SPS": "charts/rollout_SPS",
    "learning_rate": "charts/learning_rate", "eval_return": "charts/eval_return",
    "eval_return_std": "charts/eval_return_std", "kl_beta": "charts/kl_beta",
    "policy_loss": "losses/policy_loss", "value_loss": "losses/value_loss", "entropy": "losses/entropy",
    "approx_kl": "losses/approx_kl", "clipfrac": "losses/clipfrac", "bounds_loss": "losses/bounds_loss",
    "symmetry_loss": "losses/symmetry_loss",
    "explained_variance": "losses/explained_variance", "kl": "losses/kl", "early_stop": "losses/early_stop",
    "rss_mb": "memory/rss_mb", "py_heap_blocks": "memory/py_heap_blocks",
}
"""TensorBoard and W&B tags of the columns (CleanRL's ``charts/*``, ``losses/*``);
``reward/<term>`` columns keep their own name."""


class RunLogger:
    """Appends one row per iteration to ``metrics.csv`` and writes the same
    scalars to TensorBoard and, with ``wandb_run``, to W&B (tags ``TB_TAGS``),
    at step ``global_step``.

    ``wandb_run``: an open W&B run (``start_wandb``); this logger does not finish it."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, progress: bool = True,
                 total_steps: int = 0, initial_step: int = 0, extra_columns: tuple[str, ...] = (),
                 wandb_run: Any = None):
        self.run_dir = run_dir
        self.wandb_run = wandb_run
        self.columns = COLUMNS + list(extra_columns)
        """csv columns; ``extra_columns`` (e.g. ``reward/<term>``) also go to TensorBoard under their own name."""
        self.csv_path = run_dir / "metrics.csv"
        new = not self.csv_path.exists()
        self._csv_file = open(self.csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=self.columns)
        if new:
            self._csv.writeheader()
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"))
        self.progress = None
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self.task = self.progress.add_task("train", total=total_steps, completed=initial_step, info="")
            self.progress.start()

    def log(self, row: dict) -> None:
        self._csv.writerow({k: row.get(k, "") for k in self.columns})
        self._csv_file.flush()
        step = int(row["global_step"])
        if self.tb is not None or self.wandb_run is not None:
            tags = TB_TAGS | {k: TB_TAGS.get(k, k) for k in self.columns[len(COLUMNS):]}
            scalars = {tag: float(v) for key, tag in tags.items()
                       if (v := row.get(key)) is not None and v != "" and not (isinstance(v, float) and math.isnan(v))}
            if self.tb is not None:
                for tag, v in scalars.items():
                    self.tb.add_scalar(tag, v, step)
            if self.wandb_run is not None:
                self.wandb_run.log(scalars, step=step)
        if self.progress is not None:
            ret = row.get("recent_return")
            info = f"SPS {row['SPS']:.0f}  return {ret:.1f}" if ret is not None else f"SPS {row['SPS']:.0f}"
            if row.get("eval_return") not in (None, ""):
                info += f"  eval {row['eval_return']:.1f}"
            self.progress.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.tb is not None:
            self.tb.close()
        self._csv_file.close()


def rolling_mean_std(values, window: int):
    """Trailing rolling mean and standard deviation of ``values`` over ``window`` points (fewer at the
    start: point ``i`` averages ``values[max(0, i - window + 1) : i + 1]``); float64 arrays of len(values)."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if x.size == 0:
        return x.copy(), x.copy()
    mean, std = np.empty_like(x), np.empty_like(x)
    for i in range(x.size):  # a few thousand iterations at most: clarity over a cumsum trick
        chunk = x[max(0, i - window + 1):i + 1]
        mean[i], std[i] = chunk.mean(), chunk.std()
    return mean, std


def smoothing_window(n: int) -> int:
    """Rolling window for ``n`` points: about a twentieth of the run, at least 1, at most 100."""
    return int(min(100, max(1, round(n / 20))))


def plot_learning_curve(csv_path: Path, out_path: Path, title: Optional[str] = None) -> dict:
    """Plot training and evaluation returns against env steps into a PNG.

    Training: each iteration's mean episode return as a faint line, its rolling mean
    (:func:`smoothing_window` iterations) bold with a +-1 std band of the same window;
    evaluation (deterministic) as points with their std across episodes; a run on terrain
    (a ``terrain/level`` column) adds the envs' mean terrain level on a right-hand axis, and
    each ``terrain/level/<type>`` column (the mean level on that type's patches) as a thin line.
    Other columns beyond ``COLUMNS`` (e.g. ``reward/<term>``) are ignored. Returns
    ``{"points", "window", "eval_points", "level_points", "type_lines"}`` (what was drawn).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, train, esteps, evals, estd, lsteps, levels = [], [], [], [], [], [], []
    by_type: dict[str, list[float]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("terrain/level"):
                lsteps.append(int(row["global_step"]))
                levels.append(float(row["terrain/level"]))
                for k, v in row.items():
                    if k.startswith("terrain/level/") and v:
                        by_type.setdefault(k.removeprefix("terrain/level/"), []).append(float(v))
            if row.get("episodic_return"):
                steps.append(int(row["global_step"]))
                train.append(float(row["episodic_return"]))
            if row.get("eval_return"):
                esteps.append(int(row["global_step"]))
                evals.append(float(row["eval_return"]))
                estd.append(float(row.get("eval_return_std") or 0.0))
    by_type = {k: v for k, v in by_type.items() if len(v) == len(lsteps)}  # a column every terrain row has
    window = smoothing_window(len(train))
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        mean, std = rolling_mean_std(train, window)
        line, = ax.plot(steps, train, alpha=0.25, linewidth=0.8, label="training return (mean per iteration)")
        ax.plot(steps, mean, color=line.get_color(), linewidth=2.0, label=f"rolling mean ({window} iterations)")
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0,
                        label="rolling mean ± std")
    if evals:
        ax.errorbar(esteps, evals, yerr=estd, fmt="o-", capsize=3, label="evaluation (deterministic) ± std")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title or "learning curve")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if levels:
        ax2 = ax.twinx()
        ax2.plot(lsteps, levels, color="tab:green", linewidth=1.5, label="mean terrain level (right axis)")
        for name, values in by_type.items():
            ax2.plot(lsteps, values, linewidth=0.7, alpha=0.7, linestyle="--", label=f"on {name}")
        ax2.set_ylabel("mean terrain level")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, **({"fontsize": "x-small", "ncol": 2, "framealpha": 0.6} if len(handles) > 5 else {}))
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return {"points": len(train), "window": window, "eval_points": len(evals), "level_points": len(levels),
            "type_lines": len(by_type) if levels else 0}


WANDB_HINT = "pip install 'robo_ppo[wandb]' (the wandb extra)"


def start_wandb(cfg, run_dir: Path) -> Any:
    """Open the W&B run of a training run (call on rank 0 only).

    ``cfg``: the resolved train config; ``cfg.wandb`` (``robo_ppo.config.WandbConfig``)
    gives project, entity, group, name (default: the run directory's name), tags
    and mode; the whole config, resolved, becomes the W&B run's config. W&B's
    files go to ``$WANDB_DIR`` if set, else into the run directory
    (``<run_dir>/wandb/``). Returns the ``wandb`` run.

    Raises:
        ConfigError: the ``wandb`` package is not installed, or W&B refused to
            start (e.g. online mode without a login).
    """
    try:
        import wandb
    except ImportError:
        raise ConfigError(f"wandb.enabled=true needs the wandb package: {WANDB_HINT}") from None
    from omegaconf import OmegaConf

    w = cfg.wandb
    try:
        return wandb.init(project=w.project, entity=w.entity, group=w.group, name=w.name or run_dir.name,
                          tags=list(w.tags) or None, mode=w.mode, job_type="train",
                          dir=os.environ.get("WANDB_DIR") or str(run_dir),
                          config=OmegaConf.to_container(cfg, resolve=True))
    except Exception as e:  # noqa: BLE001 - wandb raises its own types (UsageError, CommError, ...)
        first = (str(e).splitlines() or [""])[0][:200]
        raise ConfigError(f"cannot start the W&B run ({type(e).__name__}: {first}); run `wandb login`, "
                          "or set wandb.mode=offline (sync later with `wandb sync`)") from None


def finish_wandb(run: Any, run_dir: Path, summary: dict, failed: bool = False) -> None:
    """Close a W&B run: log ``learning_curve.png`` (``charts/learning_curve``),
    ``policy.onnx`` (``summary["onnx"]``) as a ``model`` artifact named
    ``policy-<run id>``, and the final evaluation and SPS into the run summary.
    ``failed``: the training raised; the run is marked failed (exit code 1)."""
    import wandb

    try:
        curve = run_dir / "learning_curve.png"
        if curve.exists():
            run.log({"charts/learning_curve": wandb.Image(str(curve))})
        if summary.get("onnx"):
            artifact = wandb.Artifact(f"policy-{run.id}", type="model",
                                      metadata={"global_step": summary.get("global_step"),
                                                "onnx_max_abs_diff": summary.get("onnx_max_abs_diff")})
            artifact.add_file(summary["onnx"], name="policy.onnx")
            run.log_artifact(artifact)
        evaluation = summary.get("eval") or {}
        run.summary.update({"final/eval_return": evaluation.get("mean"), "final/eval_return_std": evaluation.get("std"),
                            "final/SPS": summary.get("SPS"), "final/global_step": summary.get("global_step")})
    finally:
        run.finish(exit_code=1 if failed else 0)


class NullLogger:
    """``RunLogger``'s interface writing nothing: the logger of data-parallel ranks other than 0."""

    def log(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass
