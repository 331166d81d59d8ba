"""robo-ppo-replay: ONNX vs checkpoint returns, mismatch refusal, video, CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from hydra import compose, initialize_config_dir

from robo_ppo.errors import CheckpointError, ConfigError
from robo_ppo.hydra_utils import config_dir
from robo_ppo.replay import format_table, replay


@pytest.mark.parametrize("env", ["inverted_pendulum", "cartpole"])
def test_onnx_and_checkpoint_give_same_returns(policies, env):
    ckpt, onnx_path = policies[env]
    kw = dict(episodes=3, seed=11, print_table=False)
    from_onnx = replay(onnx_path, **kw)
    from_ckpt = replay(ckpt, **kw)
    from_run_dir = replay(ckpt.parent.parent, **kw)
    assert from_onnx["source"] == "onnx" and from_ckpt["source"] == "checkpoint"
    assert from_onnx["seeds"] == [11, 12, 13]
    assert from_onnx["lengths"] == from_ckpt["lengths"] == from_run_dir["lengths"]
    np.testing.assert_allclose(from_onnx["returns"], from_ckpt["returns"], rtol=1e-6, atol=1e-6)
    assert from_ckpt["returns"] == from_run_dir["returns"]
    # different seeds -> different episodes (the seed is really used)
    other = replay(onnx_path, episodes=1, seed=12, print_table=False)
    assert other["returns"][0] == pytest.approx(from_onnx["returns"][1])


def test_stochastic_replay_is_seeded(policies):
    ckpt, _ = policies["inverted_pendulum"]
    a = replay(ckpt, episodes=2, seed=3, deterministic=False, print_table=False)
    b = replay(ckpt, episodes=2, seed=3, deterministic=False, print_table=False)
    assert a["returns"] == b["returns"]


def test_table_shows_mean_and_std(policies, capsys):
    _, onnx_path = policies["cartpole"]
    result = replay(onnx_path, episodes=2, seed=0)
    out = capsys.readouterr().out
    assert out.strip() == format_table(result)
    assert "±" in out and "return" in out and "length" in out
    assert f"{result['mean_return']:.2f} ± {result['std_return']:.2f}" in out


def test_refuses_mismatched_task(policies):
    _, onnx_path = policies["cartpole"]
    with pytest.raises(ConfigError, match="CartPole-v1.*does not match the task InvertedPendulum-v5"):
        replay(onnx_path, env_id="InvertedPendulum-v5", print_table=False)
    ckpt, _ = policies["inverted_pendulum"]
    with pytest.raises(ConfigError, match="does not match the task"):
        replay(ckpt, env_id="CartPole-v1", print_table=False)


def test_refuses_tampered_metadata(policies, tmp_path):
    _, onnx_path = policies["inverted_pendulum"]
    model = onnx.load(str(onnx_path))
    props = {p.key: p for p in model.metadata_props}
    # obs_dim that contradicts the graph
    props["obs_dim"].value = "5"
    bad_dim = tmp_path / "bad_dim.onnx"
    onnx.save(model, str(bad_dim))
    with pytest.raises(CheckpointError, match="obs_dim=5"):
        replay(bad_dim, print_table=False)
    # graph and metadata agree, but the task id names another task with other sizes
    props["obs_dim"].value = "4"
    props["task_id"].value = "Hopper-v5"
    other_task = tmp_path / "other_task.onnx"
    onnx.save(model, str(other_task))
    with pytest.raises(ConfigError, match=r"obs_dim 4 vs 11"):
        replay(other_task, print_table=False)
    # no robo_ppo metadata at all
    del model.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(model, str(plain))
    with pytest.raises(CheckpointError, match="not a robo_ppo policy"):
        replay(plain, print_table=False)


def test_refuses_bad_arguments(policies, tmp_path):
    _, onnx_path = policies["inverted_pendulum"]
    with pytest.raises(ConfigError, match="deterministic"):
        replay(onnx_path, deterministic=False, print_table=False)
    with pytest.raises(ConfigError, match="episodes"):
        replay(onnx_path, episodes=0, print_table=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        replay(tmp_path / "nothing.onnx", print_table=False)


def test_video_mp4(policies, tmp_path):
    """Offscreen MP4 (MUJOCO_GL=egl in a subprocess, so no other test's GL state interferes)."""
    _, onnx_path = policies["inverted_pendulum"]
    video = tmp_path / "out" / "replay.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    proc = subprocess.run(
        [sys.executable, "-m", "robo_ppo.replay", f"policy={onnx_path}", "episodes=2", "video=true",
         f"video_path={video}", "max_episode_steps=15", "video_episodes=1",
         f"summary_json={tmp_path / 'summary.json'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "rendering failed" in proc.stderr:
        pytest.skip(f"no offscreen OpenGL here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert "±" in proc.stdout and f"video: {video}" in proc.stdout
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(video))
    frames = [f for f in reader]
    assert reader.get_meta_data()["fps"] == pytest.approx(25.0)  # 1 / control_dt (0.04 s)
    assert len(frames) == 15 and frames[0].shape == (480, 480, 3) and frames[5].mean() > 1.0
    assert not [p for p in video.parent.iterdir() if p.name.startswith(".tmp_")]
    assert (tmp_path / "summary.json").is_file()


@pytest.mark.parametrize("overrides, message", [
    (["policy=/nonexistent/policy.onnx"], "does not exist"),
    ([], "no policy given"),
])
def test_cli_errors_are_one_line(overrides, message, capsys):
    from robo_ppo.replay import _task, register_replay_config

    register_replay_config()
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        cfg = compose("replay", overrides=overrides)
    with pytest.raises(SystemExit) as exc:
        _task(cfg)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
