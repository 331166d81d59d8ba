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


def plot_learning_curve(csv_path: Path, out_path: Path, title: Optional[str] = None) -> None:
    """Plot training and evaluation returns against env steps into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, train, esteps, evals = [], [], [], []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row["episodic_return"]:
                steps.append(int(row["global_step"]))
                train.append(float(row["episodic_return"]))
            if row["eval_return"]:
                esteps.append(int(row["global_step"]))
                evals.append(float(row["eval_return"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, train, label="training episodes (stochastic)", alpha=0.7)
    if evals:
        ax.plot(esteps, evals, "o-", label="evaluation (deterministic)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title or "learning curve")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
