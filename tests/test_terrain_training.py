"""Training on terrain (issue #25, docs/terrain.md "Training"): the terrain selected by config, envs spawned on
patches, the terrain curriculum, heights from the ground, the privileged height scan, the grid's edge, exact
resume, flat unchanged, and a go1_rough run that exports its policy."""

import csv
import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import make_cfg, require_engine
from omegaconf import OmegaConf

from robo_ppo.envs.robot_env import RobotVecEnv, make_terrain
from robo_ppo.errors import ConfigError
from robo_ppo.export import read_metadata
from robo_ppo.tasks.events import EVENT_FUNCTIONS, ResetState
from robo_ppo.tasks.terms import PRIVILEGED_OBS, REWARD_FUNCTIONS, StepState

ROUGH = ["env=go1_rough", "engine.num_threads=1", "deploy_check.enabled=false"]


def _env(*overrides, n=8, seed=0):
    cfg = make_cfg(*overrides)
    return RobotVecEnv(cfg.env, cfg.engine.name, n, seed=seed, num_threads=1), cfg


def _put(env, qpos):
    """Write ``qpos`` (float32 ``[N, nq]``) into every env, at rest, and read the sensors."""
    t = env.task
    env.physics.set_state(torch.ones(env.num_envs, dtype=torch.bool), qpos, torch.zeros_like(env.physics.qvel), t.ctrl)
    t._refresh()


def test_terrain_is_a_config_group_and_flat_is_the_default():
    assert make_cfg("env=go1_joystick").env.terrain.layout == "none"
    assert make_cfg("env=go1_joystick", "terrain=rough").env.terrain.num_cols == 10
    rough = make_cfg("env=go1_rough").env
    assert (rough.terrain.layout, rough.terrain.size, rough.task_params.obs_history) == ("grid", 4.0, 2)
    assert make_cfg("env=go1_rough", "terrain=rough").env.terrain.size == 8.0
    assert make_cfg("env=halfcheetah").env.terrain.layout == "none"
    with pytest.raises(ConfigError, match="env.terrain.size"):
        make_terrain({"layout": "grid", "size": 8.02})


def test_flat_default_changes_nothing():
    """The Go1 with the default terrain equals one whose config has no terrain key at all (a config written
    before terrains existed): same metadata, same task state, same observations, bit for bit."""
    cfg = make_cfg("env=go1_joystick", "engine.num_threads=1")
    old = OmegaConf.to_container(cfg.env, resolve=True)
    del old["terrain"]
    envs = [RobotVecEnv(c, "mujoco", 4, seed=5, num_threads=1) for c in (cfg.env, old)]
    assert envs[0].task.terrain is None and envs[0].task.out_of_bounds is None
    assert not any(name.startswith("terrain") for name in envs[0].stat_names)
    assert envs[0].metadata() == envs[1].metadata()
    g = torch.Generator().manual_seed(0)
    actions = [torch.randn(4, 12, generator=g) for _ in range(5)]
    out = [[e.reset(seed=5)] + [e.step(a)[0] for a in actions] for e in envs]
    assert all(torch.equal(a, b) for a, b in zip(*out, strict=True))
    states = [e.task.state_dict()["tensors"] for e in envs]
    assert states[0].keys() == states[1].keys() and not any(k.startswith("terrain") for k in states[0])
    for e in envs:
        e.close()


def test_envs_spawn_on_their_patches_above_the_ground():
    env, cfg = _env(*ROUGH, n=16)
    env.reset(seed=1)
    t, terrain = env.task, env.terrain
    rows, cols = t.terrain_row.numpy(), t.terrain_col.numpy()
    assert rows.max() <= cfg.env.task_params.events.terrain.params.max_init_level and len(set(cols)) > 1
    xyz = t.qpos[:, :3].double().numpy()
    r, c = terrain.patch_of(xyz[:, 0], xyz[:, 1])
    assert (r == rows).all() and (c == cols).all()
    spawn = terrain.spawn[rows, cols]
    assert (np.linalg.norm(xyz[:, :2] - spawn[:, :2], axis=1) <= 0.5 * math.sqrt(2) + 1e-4).all()
    keyframe_z = float(t.init_qpos[2])
    # the base stands the keyframe's height above the highest ground within the footprint, so no foot starts
    # inside a step or an obstacle
    assert (t.base_height().numpy() >= keyframe_z - 1e-4).all()
    t.p.feet_ground_radius = 0.0   # each foot above the ground under it (go1_rough's feet terms look 0.15 m around)
    assert (StepState(t, t.last_act).foot_z.numpy() > -2e-3).all()
    env.close()


def test_curriculum_moves_rows_up_down_and_past_the_top():
    env, _ = _env(*ROUGH, n=8)
    env.reset(seed=0)
    t = env.task
    fn = EVENT_FUNCTIONS["terrain_curriculum"]
    params = t.p.events["terrain"].params
    t.terrain_row = torch.tensor([3, 3, 3, 3, 9, 0, 3, 3])
    t.terrain_col = torch.tensor([4, 4, 4, 4, 4, 4, 4, 4])
    t.steps = torch.tensor([50, 50, 50, 50, 50, 50, 50, 0])
    start = t.terrain_start
    walked = torch.tensor([3.0, 0.1, 1.5, 1.5, 3.0, 0.0, 3.0, 3.0])   # m; half a patch is 2 m
    asked = torch.tensor([6.0, 5.0, 2.0, 2.0, 6.0, 5.0, 6.0, 6.0])   # m, the commanded displacement's length
    t.cmd_displacement = torch.stack([asked * 0.8, asked * -0.6], 1)
    t.last_terminated = torch.tensor([False, False, False, True, False, False, False, False])
    qpos = t.qpos.clone()
    qpos[:, :2] = start + torch.stack([walked * 0.6, walked * 0.8], 1)
    t.qpos = qpos
    mask = torch.tensor([True, True, True, True, True, True, False, True])
    state = ResetState(qpos=t.init_qpos.repeat(8, 1), qvel=torch.zeros(8, env.physics.model.nv))
    before = t.gen.get_state()
    fn.reset(t, state, mask, params)
    rows = t.terrain_row.tolist()
    # up (walked 3 m), down (0.1 m of 5 m commanded), stays (1.5 of 2 m), down (fell), past the top -> a random
    # row, stays at the bottom, not reset, first episode (no steps yet)
    assert rows[:4] == [4, 2, 3, 2] and 0 <= rows[4] <= 9 and rows[5:] == [0, 3, 3]
    assert t.terrain_col[6] == 4 and (t.cmd_displacement[mask] == 0).all()
    assert t.cmd_displacement[6].norm() == pytest.approx(6.0)
    # two draws per env whatever the mask: the random stream does not depend on which envs reset
    after = t.gen.get_state()
    t.gen.set_state(before)
    fn.reset(t, state, torch.zeros(8, dtype=torch.bool), params)
    assert torch.equal(t.gen.get_state(), after)
    # the commanded displacement integrates R(yaw) (vx, vy) dt before every physics step: the command (in the
    # base's yaw frame) turned into the world frame by the base's heading
    t.cmd_displacement = torch.zeros(8, 2)
    t.command = torch.tensor([[0.6, 0.8, 0.3]]).repeat(8, 1)
    yaw = t.base_yaw()
    assert yaw.abs().max() > 0.01   # reset_root_state turned the bases
    fn.pre_step(t, params)
    heading = torch.stack([torch.cos(yaw), torch.sin(yaw)], 1)
    assert torch.allclose(t.cmd_displacement.norm(dim=1), torch.full((8,), t.dt))
    assert torch.allclose((t.cmd_displacement * heading).sum(1), torch.full((8,), 0.6 * t.dt))
    # a command that turns back asks for no displacement: a robot that tracked it has not walked too little
    t.command = torch.tensor([[-0.6, -0.8, 0.3]]).repeat(8, 1)
    fn.pre_step(t, params)
    assert t.cmd_displacement.abs().max() < 1e-6
    stats = fn.stats(t, params)
    assert stats["terrain/level"] == t.terrain_row.float().mean()
    # per type: the mean level of the envs on that type's columns
    kinds = t.terrain.type_ids[0][t.terrain_col.numpy()]
    for k in set(kinds.tolist()):
        on = kinds == k
        want = t.terrain_row.float().numpy()[on].mean()
        assert float(stats[f"terrain/level/{t.terrain.type_names[k]}"]) == pytest.approx(want)
    # random_column false (one type per env, as legged_gym): rows move, columns stay, the same draws
    cols = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    t.terrain_col, t.terrain_row = cols.clone(), torch.full((8,), 3)
    before = t.gen.get_state()
    fn.reset(t, state, torch.ones(8, dtype=torch.bool), dataclasses.replace(params, random_column=False))
    assert torch.equal(t.terrain_col, cols) and (t.terrain_row != 3).any()
    after = t.gen.get_state()
    t.gen.set_state(before)
    fn.reset(t, state, torch.ones(8, dtype=torch.bool), params)
    assert torch.equal(t.gen.get_state(), after)
    env.close()


def _corridor_env():
    env, _ = _env("env=go1_joystick", "terrain=stairs", "engine.num_threads=1", n=2)
    env.reset(seed=0)
    return env


def _first_riser(terrain) -> float:
    """World x of the last sample before the corridor's first step (the riser spans the next sample)."""
    xs = terrain.origin[0] + np.arange(terrain.heights.shape[1]) * terrain.spacing
    i = int(np.flatnonzero(terrain.height_at(xs, np.zeros_like(xs)) > 0.05)[0]) - 1
    return float(xs[i])


def test_base_and_foot_heights_are_measured_from_the_ground():
    env = _corridor_env()
    t, terrain = env.task, env.terrain
    key = t.init_qpos
    step = terrain.config.stairs.step_height
    # on the flat ground before the stairs the heights are the plane's: the keyframe's
    qpos = key.repeat(2, 1)
    qpos[:, 0] = float(terrain.spawn[0, 0, 0])
    _put(env, qpos)
    flat_feet = StepState(t, t.last_act).foot_z.clone()
    assert torch.allclose(t.base_height(), key[2].expand(2), atol=1e-6)
    # the same pose on the top platform, every foot on it, is the same height above the ground
    s = terrain.config.stairs
    x = _first_riser(terrain) + s.steps_up * s.step_width + s.platform / 2
    qpos[:, 0], qpos[:, 2] = x, key[2] + s.steps_up * step
    _put(env, qpos)
    assert torch.allclose(t.base_height(), key[2].expand(2), atol=1e-5)
    assert torch.allclose(StepState(t, t.last_act).foot_z, flat_feet, atol=1e-5)
    # astride the riser (front feet over the step, rear feet before it): the base is measured from the lowest
    # ground under the footprint (the floor), each foot from the ground under it
    qpos[:, 0], qpos[:, 2] = _first_riser(terrain) - 0.02, key[2] + 0.2
    _put(env, qpos)
    assert torch.allclose(t.base_height(), key[2].expand(2) + 0.2, atol=1e-5)
    pos = t.robot.foot_sensor("pos")
    fx, fy, fz = (t.sd[:, pos[:, k]].double().numpy() for k in range(3))
    ground = terrain.height_at(fx, fy)
    assert sorted(np.round(ground[0], 6)) == [0.0, 0.0, step, step]
    assert np.allclose(StepState(t, t.last_act).foot_z.numpy(), fz - ground, atol=1e-5)
    # feet_ground_radius: each foot measured from the highest ground within r of it: at 0.3 m the front feet
    # (on the first step) see the second, the rear feet (on the floor) the first
    for r, want in ((0.1, [step, step, 0.0, 0.0]), (0.3, [2 * step, 2 * step, step, step])):
        t.p.feet_ground_radius = r
        near = np.max([terrain.height_at(fx + dx, fy + dy) for dx, dy in
                       ((0, 0), (r, 0), (-r, 0), (0, r), (0, -r))], axis=0)
        assert np.allclose(StepState(t, t.last_act).foot_z.numpy(), fz - near, atol=1e-5)
        assert np.allclose(near[0], want, atol=1e-6)
    env.close()


def test_height_scan_on_a_known_patch():
    env = _corridor_env()
    t, terrain = env.task, env.terrain
    x0, h = _first_riser(terrain), 0.4
    nx, ny = t.p.height_scan.points
    g = (np.arange(nx) - (nx - 1) / 2) * t.p.height_scan.spacing
    gy = (np.arange(ny) - (ny - 1) / 2) * t.p.height_scan.spacing
    gx, gy = (a.ravel() for a in np.meshgrid(g, gy, indexing="ij"))
    for yaw in (0.0, math.pi / 2, math.pi):
        qpos = t.init_qpos.repeat(2, 1)
        qpos[:, 0], qpos[:, 2] = x0, h
        qpos[:, 3:7] = torch.tensor([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
        _put(env, qpos)
        scan = PRIVILEGED_OBS["height_scan"](t, {})
        assert scan.shape == (2, nx * ny)
        # the grid in the base's yaw frame, on the kit's numpy surface
        px = x0 + math.cos(yaw) * gx - math.sin(yaw) * gy
        py = 0.0 + math.sin(yaw) * gx + math.cos(yaw) * gy
        expected = h - terrain.height_at(px, py)
        assert np.allclose(scan[0].numpy(), expected, atol=1e-5), yaw
        levels = sorted(set(np.round(expected, 4)))
        assert len(levels) >= 2 and max(levels) == pytest.approx(h) and min(levels) < h
    # along the heading (yaw 0), the points at gx >= 0.1 m are on the steps: rows of the [nx, ny] grid
    qpos[:, 3:7] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    _put(env, qpos)
    rows = t.height_scan()[0].reshape(nx, ny)
    assert torch.allclose(rows[:nx // 2 + 1], torch.tensor(h)) and (rows[nx // 2 + 1:] < h - 0.05).all()
    env.close()


def test_leaving_the_grid_truncates():
    env, _ = _env(*ROUGH, n=2)
    env.reset(seed=0)
    t, terrain = env.task, env.terrain
    qpos = t.physics.qpos.clone()
    qpos[0, 0] = float(terrain.origin[0] + terrain.extent[0]) - 0.05   # at the east edge
    _put(env, qpos)
    _, _, terminated, truncated, _ = env.step(torch.zeros(2, 12))
    assert truncated.tolist() == [True, False] and not terminated[0]
    env.close()


def test_terrain_needs_its_curriculum_and_the_curriculum_a_grid():
    with pytest.raises(ConfigError, match="terrain_curriculum"):
        _env("env=go1_joystick", "terrain=rough", "env.terrain.num_rows=2", "env.terrain.num_cols=2", n=1)
    with pytest.raises(ConfigError, match="needs a terrain grid"):
        _env("env=go1_rough", "terrain=flat", n=1)


def test_exact_resume_state_holds_the_terrain_rows():
    # a fixed 1.5 m/s forward command: an episode of random actions ends short of half its commanded
    # distance, so every env above the bottom row moves down at its reset (the rows change in the window)
    cfg = make_cfg(*ROUGH, "env.max_episode_steps=15",
                   "env.task_params.events.command.params.ranges=[[1.5,1.5],[0.0,0.0],[0.0,0.0]]",
                   "env.task_params.events.command.params.full_reversal_s=null",   # fixed commands: no ramp
                   "~env.task_params.events.command_ranges")
    g = torch.Generator().manual_seed(0)
    actions = [torch.randn(8, 12, generator=g) for _ in range(40)]

    def make():
        return RobotVecEnv(cfg.env, "mujoco", 8, seed=3, num_threads=1)

    a = make()
    a.reset(seed=3)
    for x in actions[:20]:
        a.step(x)
    rows = a.task.terrain_row.clone()
    snapshot = a.get_state()
    assert {"terrain_row", "terrain_col", "cmd_displacement", "last_terminated"} <= snapshot["task"]["tensors"].keys()
    expected = [a.step(x) for x in actions[20:]] + [a.task.terrain_row.clone()]
    b = make()
    b.reset(seed=99)
    b.set_state(snapshot)
    got = [b.step(x) for x in actions[20:]] + [b.task.terrain_row.clone()]
    resets = 0
    for e, o in zip(expected[:-1], got[:-1], strict=True):
        assert all(torch.equal(x, y) for x, y in zip(e[:4], o[:4], strict=True))
        assert torch.equal(e[4]["final_critic_obs"], o[4]["final_critic_obs"])
        resets += int((e[2] | e[3]).sum())
    assert resets >= 8 and not torch.equal(expected[-1], rows)   # the window moves rows
    assert torch.equal(expected[-1], got[-1])
    a.close()
    b.close()


@pytest.mark.slow
def test_train_go1_rough_exports_a_policy_with_history(tmp_path):
    """``robo-ppo-train env=go1_rough env.task_params.obs_history=3``, one iteration: policy.onnx carries the
    observation history, and metrics.csv the mean terrain level."""
    run = tmp_path / "run"
    args = ["env=go1_rough", "env.task_params.obs_history=3", "algo.num_envs=8", "algo.num_steps=16", "algo.num_minibatches=2",
            "algo.update_epochs=1", "total_timesteps=128", "eval_episodes=1", "env.max_episode_steps=40",
            "deploy_check.enabled=false", "progress=false", "tensorboard=false", "engine.num_threads=1",
            f"hydra.run.dir={run}"]
    proc = subprocess.run([sys.executable, "-m", "robo_ppo.train", *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = read_metadata(run / "policy.onnx")
    robot = meta["robot"] if "robot" in meta else meta
    assert robot["obs_history"]["length"] == 3
    assert [e["name"] for e in robot["critic_obs_layout"]][-1] == "height_scan"
    assert robot["critic_obs_layout"][-1]["size"] == 77
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert 0 <= float(rows[-1]["terrain/level"]) <= 9
    assert json.loads(json.dumps(robot))["name"] == "go1"


@pytest.mark.slow
def test_mjwarp_steps_on_the_terrain():
    """engine=mjwarp (on Warp's CPU device here) builds the heightfield scene and places the envs the same way."""
    cfg = make_cfg(*ROUGH, "engine=mjwarp")
    require_engine(cfg)
    env = RobotVecEnv(cfg.env, "mjwarp", 2, seed=0)
    env.reset(seed=0)
    t = env.task
    assert (t.base_height() >= float(t.init_qpos[2]) - 1e-4).all()
    for _ in range(3):
        obs, reward, _, _, info = env.step(torch.zeros(2, 12))
    assert torch.isfinite(obs).all() and not info["diverged"].any()
    assert (t.base_height() > 0.15).all() and env.stats()["terrain/level"] <= 2
    env.close()


def test_feet_stumble_at_the_foot_of_a_riser():
    """``feet_stumble``: a foot on the ground whose ground within ``stumble_radius`` rises past
    ``stumble_height`` above it; the front feet 1 cm before the corridor's first riser stumble, the rear
    feet and the same feet 10 cm back or lifted off the ground do not."""
    env = _corridor_env()
    t, terrain = env.task, env.terrain
    pos = t.robot.foot_sensor("pos")
    qpos = t.init_qpos.repeat(2, 1)
    _put(env, qpos)
    front = float(t.sd[0, pos[0, 0]] - qpos[0, 0])   # the front feet's x ahead of the base
    x_riser = _first_riser(terrain)                  # ground 0 here, the first step's height one sample on
    assert terrain.height_at(np.array([x_riser + terrain.spacing]), np.zeros(1))[0] > t.p.stumble_height
    for gap, lift, want in ((0.01, 0.0, [True, True, False, False]), (0.1, 0.0, [False] * 4),
                            (0.01, 0.2, [False] * 4)):
        qpos[:, 0], qpos[:, 2] = x_riser - gap - front, t.init_qpos[2] + lift
        _put(env, qpos)
        s = StepState(t, t.last_act)
        assert s.contact[0].tolist() == [lift == 0.0] * 4
        assert s.stumble[0].tolist() == want, (gap, lift)
        assert REWARD_FUNCTIONS["feet_stumble"](t, s)[0] == sum(want)
    env.close()
