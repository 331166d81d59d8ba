"""Run outputs: TensorBoard events, metrics.csv, learning_curve.png, progress bar."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Optional

COLUMNS = ["iteration", "global_step", "wall_time", "SPS", "episodic_return", "episodic_length",
           "eval_return", "eval_return_std", "policy_loss", "value_loss", "entropy", "approx_kl",
           "clipfrac", "explained_variance", "learning_rate", "kl_beta"]

TB_TAGS = {
    "episodic_return": "charts/episodic_return", "episodic_length": "charts/episodic_length",
    "SPS": "charts/SPS", "learning_rate": "charts/learning_rate", "eval_return": "charts/eval_return",
    "kl_beta": "charts/kl_beta", "policy_loss": "losses/policy_loss", "value_loss": "losses/value_loss",
    "entropy": "losses/entropy", "approx_kl": "losses/approx_kl", "clipfrac": "losses/clipfrac",
    "explained_variance": "losses/explained_variance",
}


class RunLogger:
    """Appends one row per iteration to ``metrics.csv`` and writes the same
    scalars to TensorBoard (tags as in CleanRL: ``charts/*``, ``losses/*``)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, progress: bool = True,
                 total_steps: int = 0, initial_step: int = 0, extra_columns: tuple[str, ...] = ()):
        self.run_dir = run_dir
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
        if self.tb is not None:
            tags = TB_TAGS | {k: k for k in self.columns[len(COLUMNS):]}
            for key, tag in tags.items():
                v = row.get(key)
                if v is not None and v != "" and not (isinstance(v, float) and math.isnan(v)):
                    self.tb.add_scalar(tag, float(v), step)
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
    evaluation (deterministic) as points with their std across episodes. Columns beyond
    ``COLUMNS`` (e.g. ``reward/<term>``) are ignored. Returns ``{"points", "window",
    "eval_points"}`` (what was drawn).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, train, esteps, evals, estd = [], [], [], [], []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("episodic_return"):
                steps.append(int(row["global_step"]))
                train.append(float(row["episodic_return"]))
            if row.get("eval_return"):
                esteps.append(int(row["global_step"]))
                evals.append(float(row["eval_return"]))
                estd.append(float(row.get("eval_return_std") or 0.0))
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
    if train or evals:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return {"points": len(train), "window": window, "eval_points": len(evals)}


class NullLogger:
    """``RunLogger``'s interface writing nothing: the logger of data-parallel ranks other than 0."""

    def log(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass
