"""Run outputs: metrics.csv columns and the learning-curve plot."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from robo_ppo.runner.logger import COLUMNS, plot_learning_curve


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_metrics_csv_fills_episodic_length(runs):
    """Every iteration that finished episodes logs their mean length; on InvertedPendulum-v5 (reward 1 per
    step, 0 on the terminating step) the mean return lies within 1 of the mean length."""
    run_dir = runs[("inverted_pendulum", True)].parent.parent
    rows = read_rows(run_dir / "metrics.csv")
    with_episodes = [r for r in rows if r["episodic_return"] != ""]
    assert len(rows) == 4 and len(with_episodes) >= 3
    for r in with_episodes:
        assert r["episodic_length"] != "", r
        length, ret = float(r["episodic_length"]), float(r["episodic_return"])
        assert length >= 1
        assert length - 1 - 1e-9 <= ret <= length + 1e-9
    assert all(r["episodic_length"] == "" for r in rows if r["episodic_return"] == "")
    assert (run_dir / "learning_curve.png").stat().st_size > 1000


def test_rolling_mean_std_matches_a_direct_computation():
    from robo_ppo.runner.logger import rolling_mean_std, smoothing_window

    rng = np.random.default_rng(0)
    x = rng.normal(size=57).cumsum()
    for window in (1, 5, 57, 100):
        mean, std = rolling_mean_std(x, window)
        want = [x[max(0, i - window + 1):i + 1] for i in range(len(x))]
        np.testing.assert_allclose(mean, [w.mean() for w in want], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(std, [w.std() for w in want], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(rolling_mean_std(x, 1)[1], 0.0)
    assert rolling_mean_std([], 3)[0].size == 0
    with pytest.raises(ValueError):
        rolling_mean_std(x, 0)
    assert [smoothing_window(n) for n in (0, 1, 30, 200, 5000)] == [1, 1, 2, 10, 100]


def write_metrics(path, n: int, extra: tuple[str, ...] = (), eval_every: int = 10):
    """A synthetic metrics.csv: noisy rising returns, evaluation every ``eval_every`` rows, some rows
    without finished episodes, ``extra`` columns (e.g. ``reward/<term>``) after the standard ones."""
    rng = np.random.default_rng(1)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS + list(extra))
        w.writeheader()
        for i in range(n):
            row = {k: "" for k in w.fieldnames}
            row.update(iteration=i + 1, global_step=(i + 1) * 2048, wall_time=i, SPS=1000.0)
            if i % 7 != 3:
                row["episodic_return"] = 10.0 * i + rng.normal(scale=200.0)
                row["episodic_length"] = 1000.0
            if (i + 1) % eval_every == 0:
                row["eval_return"], row["eval_return_std"] = 10.0 * i, 5.0
            for k in extra:
                row[k] = rng.normal()
            w.writerow(row)


@pytest.mark.parametrize("extra", [(), ("reward/tracking_lin_vel", "reward/feet_air_time"), ("terrain/level",),
                                   ("terrain/level", "terrain/level/flat", "terrain/level/pyramid_stairs_up")])
def test_learning_curve_plots_rolling_mean_and_band(tmp_path, extra):
    from PIL import Image

    from robo_ppo.runner.logger import smoothing_window

    csv_path, png = tmp_path / "metrics.csv", tmp_path / "learning_curve.png"
    write_metrics(csv_path, 240, extra)
    drawn = plot_learning_curve(csv_path, png, title="synthetic")
    n_train = sum(1 for i in range(240) if i % 7 != 3)
    levels = 240 if "terrain/level" in extra else 0  # a terrain run: its mean level on a right-hand axis
    types = sum(k.startswith("terrain/level/") for k in extra)  # and the level per terrain type, thin
    assert drawn == {"points": n_train, "window": smoothing_window(n_train), "eval_points": 24,
                     "level_points": levels, "type_lines": types}
    assert drawn["window"] == 10
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (700, 400)
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.std() > 10  # something was drawn


def test_learning_curve_without_episodes(tmp_path):
    """A run too short to finish an episode (header, rows without returns) still gets a PNG."""
    csv_path, png = tmp_path / "metrics.csv", tmp_path / "lc.png"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerow({k: "" for k in COLUMNS} | {"iteration": 1, "global_step": 64})
    assert plot_learning_curve(csv_path, png) == {"points": 0, "window": 1, "eval_points": 0, "level_points": 0,
                                               "type_lines": 0}
    assert png.stat().st_size > 1000
