"""benchmarks/returns.py: reading run directories, time to return, the tables, the README
region rewrite, and the task and fast presets it measures (no training: fake run dirs)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from conftest import make_cfg

from benchmarks import returns as R
from robo_ppo.runner.logger import COLUMNS

TASKS = ["halfcheetah", "hopper", "walker2d", "ant", "humanoid"]


def fake_run(path: Path, task: str = "hopper", seed: int = 1, rows=(), summary_eval=None,
             overrides=None, total_timesteps: int = 6000, finished: bool = True) -> Path:
    """A run directory as robo-ppo-train writes it: config.yaml, .hydra/overrides.yaml,
    metrics.csv (the logger's real columns), summary.json (when ``summary_eval`` is given)."""
    path.mkdir(parents=True)
    env_id = R.ENV_IDS.get(task, "Foo-v5")
    (path / "config.yaml").write_text(
        f"env:\n  name: {task}\n  id: {env_id}\nalgo:\n  num_envs: 1\nengine:\n  name: gymnasium\n"
        f"seed: {seed}\ntotal_timesteps: {total_timesteps}\n")
    (path / ".hydra").mkdir()
    ovs = overrides if overrides is not None else [f"env={task}", f"seed={seed}", "progress=false",
                                                   f"hydra.run.dir={path}"]
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in ovs))
    with open(path / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for i, (step, wall, train_ret, eval_ret) in enumerate(rows, 1):
            w.writerow({k: "" for k in COLUMNS} | {
                "iteration": i, "global_step": step, "wall_time": wall, "SPS": step / wall,
                "episodic_return": "" if train_ret is None else train_ret,
                "eval_return": "" if eval_ret is None else eval_ret,
                "eval_return_std": "" if eval_ret is None else 1.5, "policy_loss": 0.1})
    if summary_eval is not None:
        (path / "summary.json").write_text(json.dumps({
            "iterations": len(rows), "global_step": total_timesteps, "finished": finished,
            "wall_time_s": rows[-1][1] if rows else 1.0, "SPS": 1234.5,
            "eval": {"mean": summary_eval, "std": 10.0, "min": summary_eval - 20, "max": summary_eval + 20,
                     "mean_length": 1000.0}, "checkpoint": None}))
    return path


ROWS = [  # global_step, wall_time, episodic_return (training), eval_return
    (1000, 10.0, 100.0, None),
    (2000, 20.0, None, 900.0),
    (3000, 30.0, 3000.0, None),
    (4000, 40.0, 2800.0, 2600.0),
    (5000, 50.0, 2900.0, None),
    (6000, 60.0, 2950.0, 2400.0),
]


# ------------------------------------------------------------------ reading runs
def test_read_run_parses_summary_overrides_and_metrics(tmp_path):
    d = fake_run(tmp_path / "r", task="hopper", seed=2, rows=ROWS, summary_eval=2400.0,
                 overrides=["env=hopper", "seed=2", "preset=fast", "algo.learning_rate=1e-4",
                            "torch_threads=1", "engine.num_threads=1", "total_timesteps=6000",
                            "progress=false", "hydra.run.dir=x"])
    run = R.read_run(d)
    assert run["task"] == "hopper" and run["env_id"] == "Hopper-v5" and run["seed"] == 2
    assert run["finished"] is True and run["total_timesteps"] == 6000
    assert run["eval_mean"] == 2400.0 and run["eval_std"] == 10.0 and run["eval_min"] == 2380.0
    assert run["wall_time_s"] == 60.0 and run["SPS"] == 1234.5
    # plumbing (seed, threads, budget, logging, hydra) is not part of the configuration label
    assert run["label"] == "env=hopper preset=fast algo.learning_rate=1e-4"
    assert run["eval_curve"] == [(2000, 900.0), (4000, 2600.0), (6000, 2400.0)]
    assert run["best_eval"] == 2600.0
    # default stated return = the task's goal (2500): first eval >= 2500 is at 4000 steps, 40 s
    assert run["time_to_return"] == {"2500": {"global_step": 4000, "wall_time": 40.0, "value": 2600.0}}


def test_time_to_return_eval_and_train_sources(tmp_path):
    rows = R.read_metrics(fake_run(tmp_path / "r", rows=ROWS) / "metrics.csv")
    assert [r["global_step"] for r in rows] == [1000, 2000, 3000, 4000, 5000, 6000]
    assert rows[0]["eval_return"] is None and rows[1]["eval_return"] == 900.0
    assert R.time_to_return(rows, 900.0, "eval") == {"global_step": 2000, "wall_time": 20.0, "value": 900.0}
    assert R.time_to_return(rows, 2601.0, "eval") is None  # never reached; later evals are lower
    # train: trailing mean over iterations that finished an episode (row 2 has none and is skipped)
    hit = R.time_to_return(rows, 1500.0, "train", window=2)
    assert hit["global_step"] == 3000 and hit["value"] == pytest.approx((100.0 + 3000.0) / 2)
    hit = R.time_to_return(rows, 2900.0, "train", window=2)
    assert hit["global_step"] == 4000 and hit["value"] == pytest.approx(2900.0)
    assert R.time_to_return(rows, 2900.0, "train", window=1)["global_step"] == 3000
    assert R.time_to_return(rows, 1e9, "train") is None
    with pytest.raises(ValueError):
        R.time_to_return(rows, 1.0, "best")


def test_stalls_are_subtracted_from_wall_time_and_time_to_return(tmp_path):
    # iterations of ~10 s; the 4th took 310 s (the process was stopped for 300 s)
    rows = [(1000, 10.0, 100.0, None), (2000, 20.0, 200.0, None), (3000, 30.0, 300.0, 900.0),
            (4000, 340.0, 400.0, 2600.0), (5000, 350.0, 500.0, None), (6000, 360.0, 600.0, 2700.0)]
    parsed = R.read_metrics(fake_run(tmp_path / "m", rows=rows) / "metrics.csv")
    assert R.stall_seconds(parsed) == [0.0, 0.0, 0.0, 300.0, 300.0, 300.0]
    assert R.stall_seconds(R.read_metrics(fake_run(tmp_path / "q", rows=ROWS) / "metrics.csv")) == [0.0] * 6
    run = R.read_run(fake_run(tmp_path / "r", rows=rows, summary_eval=2700.0))
    assert run["stall_s"] == 300.0 and run["measured_wall_time_s"] == 360.0 and run["wall_time_s"] == 60.0
    assert run["SPS"] == pytest.approx(1234.5 * 6) and run["measured_SPS"] == 1234.5
    assert run["time_to_return"]["2500"] == {"global_step": 4000, "wall_time": 40.0, "value": 2600.0}
    (row,) = R.aggregate([run])
    assert row["stall_s"] == 300.0 and row["wall_time_s"] == 60.0
    text = R.markdown([row])
    assert "| 60 s † |" in text and "† a run of this row was stopped" in text


def test_unfinished_run_and_find_runs(tmp_path):
    fake_run(tmp_path / "a" / "hopper" / "seed1", rows=ROWS, summary_eval=2400.0)
    fake_run(tmp_path / "a" / "hopper" / "seed2", seed=2, rows=ROWS[:3])  # still running: no summary.json
    (tmp_path / "a" / "not_a_run").mkdir()
    found = R.find_runs([tmp_path / "a"])
    assert [p.name for p in found] == ["seed1", "seed2"]
    unfinished = R.read_run(found[1])
    assert unfinished["finished"] is False and "eval_mean" not in unfinished
    assert unfinished["global_step"] == 3000
    with pytest.raises(FileNotFoundError):
        R.find_runs([tmp_path / "missing"])


# ------------------------------------------------------------------ aggregating and tables
def _three_seeds(tmp_path, finals=(2400.0, 2700.0, 2550.0), task="hopper"):
    runs = []
    for seed, final in enumerate(finals, 1):
        rows = [(1000, 10.0 * seed, 100.0, None), (2000, 20.0 * seed, 2000.0, final + 100 * (seed == 2))]
        runs.append(R.read_run(fake_run(tmp_path / task / f"seed{seed}", task=task, seed=seed, rows=rows,
                                         summary_eval=final)))
    return runs


def test_aggregate_mean_sample_std_min_and_goal(tmp_path):
    runs = _three_seeds(tmp_path)
    runs.append(R.read_run(fake_run(tmp_path / "hopper" / "seed4", seed=4, rows=ROWS[:2])))  # unfinished
    (row,) = R.aggregate(runs)
    assert row["seeds"] == [1, 2, 3] and row["unfinished"] == [4]
    assert row["mean"] == pytest.approx(2550.0)
    assert row["std"] == pytest.approx(150.0)  # sample std (n-1) of 2400, 2700, 2550
    assert row["min"] == 2400.0 and row["max"] == 2700.0 and row["per_seed"] == [2400.0, 2700.0, 2550.0]
    assert row["goal"] == 2500.0 and row["met"] is True
    assert row["wall_time_s"] == pytest.approx((20.0 + 40.0 + 60.0) / 3)
    # goal 2500 reached by seeds 2 (2800 at 2000 steps) and 3 (2550), not seed 1 (2400)
    ttr = row["time_to_return"]["2500"]
    assert ttr["reached"] == 2 and ttr["of"] == 3 and ttr["steps"] == [2000, 2000]
    assert ttr["wall_time"] == [40.0, 60.0]
    (missed,) = R.aggregate(_three_seeds(tmp_path / "low", finals=(2400.0, 2450.0, 2500.0)))
    assert missed["mean"] == pytest.approx(2450.0) and missed["met"] is False


def test_aggregate_groups_by_task_and_configuration(tmp_path):
    runs = _three_seeds(tmp_path, task="hopper") + _three_seeds(tmp_path, task="humanoid")
    runs.append(R.read_run(fake_run(tmp_path / "fast", task="hopper", rows=ROWS, summary_eval=1000.0,
                                    overrides=["env=hopper", "preset=fast"])))
    rows = R.aggregate(runs)
    assert [(r["task"], r["label"]) for r in rows] == [
        ("hopper", "env=hopper"), ("hopper", "env=hopper preset=fast"), ("humanoid", "env=humanoid")]
    assert rows[1]["seeds"] == [1] and rows[1]["std"] == 0.0 and rows[1]["met"] is False
    assert rows[2]["goal"] == 750.0 and rows[2]["met"] is True


def test_step_counts_are_rounded():
    assert [R._steps(n) for n in (512, 6000, 204800, 999424, 1_000_000, 1_536_000, 2_000_000)] == [
        "512", "6k", "205k", "999k", "1M", "1.54M", "2M"]


def test_same_label_different_task_files_are_separate_rows(tmp_path):
    runs = _three_seeds(tmp_path / "a")
    other = fake_run(tmp_path / "b" / "seed1", rows=ROWS, summary_eval=1000.0)
    cfg = (other / "config.yaml").read_text().replace("num_envs: 1", "num_envs: 8")  # the preset changed
    (other / "config.yaml").write_text(cfg)
    run = R.read_run(other)
    assert run["label"] == runs[0]["label"] == "env=hopper" and run["config_hash"] != runs[0]["config_hash"]
    assert runs[0]["config_hash"] == runs[1]["config_hash"]  # the seed is not part of it
    rows = R.aggregate([*runs, run])
    assert len(rows) == 2 and all(r["label"].startswith("env=hopper [config ") for r in rows)
    assert sorted(len(r["seeds"]) for r in rows) == [1, 3]
    # a run moved aside by the grid is not read again
    (tmp_path / "a" / "hopper" / "seed1").rename(tmp_path / "a" / "hopper" / "seed1.stale-20260101-000000")
    assert [p.name for p in R.find_runs([tmp_path / "a"])] == ["seed2", "seed3"]


def test_a_run_saved_before_the_engine_rename_groups_with_new_runs(tmp_path):
    """A run directory whose config.yaml and overrides say ``backend`` (saved before the engine group had
    that name) reads like a new run of the same configuration: same label, hash and engine."""
    ovs = ["env=hopper", "seed={}", "preset=fast", "{}.num_threads=1", "engine=envpool"]
    new = fake_run(tmp_path / "new", seed=1, rows=ROWS, summary_eval=2400.0,
                   overrides=[o.format(1) if "seed" in o else o.format("engine") for o in ovs])
    old = fake_run(tmp_path / "old", seed=2, rows=ROWS, summary_eval=2600.0,
                   overrides=[o.format(2) if "seed" in o else o.format("backend").replace("engine=", "backend=")
                              for o in ovs])
    (old / "config.yaml").write_text((old / "config.yaml").read_text().replace("engine:", "backend:"))
    assert "backend.num_threads=1" in (old / ".hydra" / "overrides.yaml").read_text()
    runs = [R.read_run(new), R.read_run(old)]
    assert [r["label"] for r in runs] == ["env=hopper preset=fast engine=envpool"] * 2
    assert runs[0]["config_hash"] == runs[1]["config_hash"] and [r["engine"] for r in runs] == ["gymnasium"] * 2
    assert runs[1]["overrides"][3:] == ["engine.num_threads=1", "engine=envpool"]
    (row,) = R.aggregate(runs)
    assert row["seeds"] == [1, 2]
    assert R.upgrade_override("~backend") == "~engine" and R.upgrade_override("algo.x=backend") == "algo.x=backend"


def test_markdown_table_rows(tmp_path):
    rows = R.aggregate(_three_seeds(tmp_path))
    text = R.markdown(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| task | configuration | steps | seeds |")
    hopper = next(ln for ln in lines if ln.startswith("| Hopper-v5 | `env=hopper` | 6k | 1,2,3 |"))
    cells = [c.strip() for c in hopper.strip("|").split("|")]
    assert cells[4] == "**2550 ± 150**" and cells[5] == "2400" and cells[6] == "2400 / 2700 / 2550"
    assert cells[7] == "40 s" and cells[8] == "1234" and cells[9] == "2500" and cells[10] == "**met**"
    ttr = next(ln for ln in lines if ln.startswith("| Hopper-v5 | `env=hopper` | 2500 |"))
    assert "2 of 3" in ttr and "2k / 2k" in ttr and "40 s / 60 s" in ttr


# ------------------------------------------------------------------ README region
README_TEXT = ("# title\r\n\nintro ünïcode\n\n## Results\n\n" + R.BEGIN + "\nold table\n| a |\n" + R.END
               + "\n\ntail text\n   trailing spaces   \n")


def test_replace_region_keeps_everything_outside_byte_identical(tmp_path):
    new = R.replace_region(README_TEXT, "| new | table |\n|---|---|\n")
    before, after = README_TEXT.split(R.BEGIN)[0], README_TEXT.split(R.END)[1]
    assert new.startswith(before + R.BEGIN + "\n| new | table |\n|---|---|\n" + R.END)
    assert new.endswith(R.END + after)
    assert "old table" not in new
    assert R.replace_region(new, "x") == R.replace_region(README_TEXT, "x")  # idempotent on the region
    path = tmp_path / "README.md"
    path.write_bytes(README_TEXT.encode())
    R.update_file(path, "body")
    data = path.read_bytes()
    b, e = README_TEXT.encode().split(R.BEGIN.encode()), README_TEXT.encode().split(R.END.encode())
    assert data.startswith(b[0] + R.BEGIN.encode() + b"\nbody\n" + R.END.encode()) and data.endswith(e[1])
    assert b"\r\n" in data  # line endings outside the region are not normalized


@pytest.mark.parametrize("text", ["no markers", R.BEGIN + " only begin", R.END + "\n" + R.BEGIN,
                                  R.BEGIN + R.BEGIN + R.END])
def test_replace_region_refuses_bad_markers(text):
    with pytest.raises(ValueError):
        R.replace_region(text, "x")


def test_repository_readme_has_one_region():
    text = (Path(R.__file__).resolve().parent.parent / "README.md").read_text()
    assert text.count(R.BEGIN) == 1 and text.count(R.END) == 1
    assert text.index(R.BEGIN) < text.index(R.END)


def test_cli_reads_runs_and_updates_readme(tmp_path, capsys):
    _three_seeds(tmp_path / "runs")
    readme = tmp_path / "README.md"
    readme.write_bytes(README_TEXT.encode())
    out = tmp_path / "r.json"
    md = tmp_path / "t.md"
    assert R.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--markdown", str(md),
                   "--threshold", "hopper=2000,2600", "--update-readme", str(readme)]) == 0
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 3 and data["rows"][0]["mean"] == pytest.approx(2550.0)
    assert set(data["rows"][0]["time_to_return"]) == {"2000", "2600"}
    assert data["rows"][0]["time_to_return"]["2600"]["reached"] == 1  # seed 2's 2800
    text = readme.read_text()
    assert md.read_text().strip() in text and "old table" not in text
    assert readme.read_bytes().endswith(README_TEXT.encode().split(R.END.encode())[1])
    assert "**2550 ± 150**" in capsys.readouterr().out


def test_grid_runs_each_cell_once_and_reuses_finished_runs(tmp_path, monkeypatch):
    started = []

    def fake_run_one(cmd, run_dir, nice=0):
        started.append(cmd)
        assert cmd[1:3] == ["-m", "robo_ppo.train"] and cmd[-1] == f"hydra.run.dir={run_dir}"
        task = next(c for c in cmd if c.startswith("env=")).split("=")[1]
        seed = int(next(c for c in cmd if c.startswith("seed=")).split("=")[1])
        fake_run(run_dir, task=task, seed=seed, rows=ROWS, summary_eval=100.0 * seed,
                 overrides=[c for c in cmd[3:] if not c.startswith("hydra.")])
        return {"returncode": 0, "process_wall_s": 1.0}

    monkeypatch.setattr(R, "run_one", fake_run_one)
    args = ["--tasks", "hopper,ant", "--seeds", "1,2", "--preset", "fast", "--steps", "6000",
            "--root", str(tmp_path / "grid"), "--out", str(tmp_path / "a.json"), "engine.num_threads=1"]
    assert R.main(args) == 0
    assert len(started) == 4
    assert all("preset=fast" in c and "total_timesteps=6000" in c and "engine.num_threads=1" in c
               and "progress=false" in c for c in started)
    assert (tmp_path / "grid" / "fast" / "ant" / "seed2" / "summary.json").is_file()
    rows = json.loads((tmp_path / "a.json").read_text())["rows"]
    assert [(r["task"], r["label"], r["per_seed"]) for r in rows] == [
        ("hopper", "env=hopper preset=fast", [100.0, 200.0]), ("ant", "env=ant preset=fast", [100.0, 200.0])]
    started.clear()
    assert R.main(args) == 0 and started == []  # finished runs are read, not trained again
    assert R.main([*args, "--rerun", "--tasks", "ant", "--seeds", "1"]) == 0
    assert len(started) == 1
    # the earlier run is moved aside, not appended to (the trainer appends to an existing metrics.csv)
    stale = [p.name for p in (tmp_path / "grid" / "fast" / "ant").iterdir() if ".stale-" in p.name]
    assert len(stale) == 1 and stale[0].startswith("seed1.stale-")
    # an unfinished run dir (no summary.json) is trained again, after moving it aside
    (tmp_path / "grid" / "fast" / "hopper" / "seed2" / "summary.json").unlink()
    started.clear()
    assert R.main([*args, "--tasks", "hopper"]) == 0
    assert len(started) == 1 and "seed=2" in started[0]
    # so is a run stopped early (SIGTERM: summary.json with finished false)
    summary = tmp_path / "grid" / "fast" / "hopper" / "seed1" / "summary.json"
    summary.write_text(json.dumps(json.loads(summary.read_text()) | {"finished": False}))
    started.clear()
    assert R.main([*args, "--tasks", "hopper"]) == 0
    assert len(started) == 1 and "seed=1" in started[0]


# ------------------------------------------------------------------ presets
def test_task_presets_compose_with_their_tuned_values():
    from omegaconf import OmegaConf

    def plain(cfg):
        return OmegaConf.to_container(cfg, resolve=True)

    hopper = make_cfg("env=hopper")  # CleanRL/Baselines settings
    assert hopper.env.id == "Hopper-v5" and hopper.engine.name == "gymnasium"
    assert (hopper.algo.num_envs, hopper.algo.num_steps, hopper.algo.num_minibatches) == (1, 2048, 32)
    assert list(hopper.algo.actor_hidden_sizes) == [64, 64] and hopper.algo.activation == "tanh"
    assert plain(hopper) == plain(make_cfg("env=hopper", "preset=cleanrl"))
    walker = make_cfg("env=walker2d")  # measured as env=walker2d preset=cleanrl eval_interval=25
    assert walker.engine.name == "gymnasium" and walker.eval_interval == 25
    assert plain(walker) == plain(make_cfg("env=walker2d", "preset=cleanrl", "eval_interval=25"))
    humanoid = make_cfg("env=humanoid")
    assert humanoid.engine.name == "gymnasium" and humanoid.algo.num_envs == 4
    assert humanoid.algo.init_log_std == -0.5 and humanoid.algo.clip_vloss is False
    ant = make_cfg("env=ant")  # the fast preset's recipe at 1M steps, on EnvPool
    assert ant.engine.name == "envpool"
    assert OmegaConf.to_container(ant, resolve=True) == OmegaConf.to_container(
        make_cfg("env=ant", "preset=fast", "total_timesteps=1000000"), resolve=True)
    assert make_cfg("env=ant", "engine=gymnasium").engine.name == "gymnasium"
    for task in TASKS:
        cfg = make_cfg(f"env={task}")
        assert cfg.env.id == R.ENV_IDS[task] and cfg.total_timesteps == 1_000_000
        assert cfg.env.envpool_id == R.ENV_IDS[task]  # the fast preset steps the same -v5 task
        # a command-line override still wins over the task preset
        assert make_cfg(f"env={task}", "algo.learning_rate=0.123").algo.learning_rate == 0.123


@pytest.mark.parametrize("task", TASKS)
def test_fast_preset_composes_over_every_task(task):
    cfg = make_cfg(f"env={task}", "preset=fast")
    base = make_cfg(f"env={task}")
    assert cfg.env.id == base.env.id == R.ENV_IDS[task]
    assert cfg.engine.name == "envpool" and cfg.torch_threads == 1
    a = cfg.algo
    assert (a.num_envs, a.num_steps, a.num_minibatches, a.update_epochs) == (32, 64, 4, 5)
    assert list(a.actor_hidden_sizes) == [128, 128] and list(a.critic_hidden_sizes) == [128, 128]
    assert a.activation == "relu" and a.init_log_std == -2.0 and a.lr_schedule.value == "linear"
    assert a.gamma == 0.99 and a.clip_vloss is False
    assert cfg.total_timesteps == 2_000_000
    # the preset is applied after the task file: it replaces the task's tuned values
    assert math.isclose(a.learning_rate, 3e-4)
    over = make_cfg(f"env={task}", "preset=fast", "engine.num_threads=1", "total_timesteps=1000")
    assert over.engine.num_threads == 1 and over.total_timesteps == 1000


def test_run_command_line():
    cmd = R.run_command("ant", 3, Path("/x/ant/seed3"), "fast", 2_000_000, ["engine.num_threads=1"])
    assert cmd[1:] == ["-m", "robo_ppo.train", "env=ant", "seed=3", "preset=fast", "total_timesteps=2000000",
                       "progress=false", "tensorboard=false", "engine.num_threads=1",
                       "hydra.run.dir=/x/ant/seed3"]
    assert R.run_command("ant", 1, Path("/d"), None, None, [])[3:] == [
        "env=ant", "seed=1", "progress=false", "tensorboard=false", "hydra.run.dir=/d"]
