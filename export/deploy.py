"""The deploy loop of every robo_ppo robot policy: the robot-side controller, run in plain MuJoCo.

One file for every robot: the policy's ``robot`` metadata (written by the
exporter from the robot description and the task's term declarations) says
everything the loop needs, so nothing here names a robot, a sensor, a site, a
body or a file. The model is ``robot["model"]["path"]`` inside the installed
package ``robot["model"]["package"]`` (or ``--model``); its joint actuators
become torque motors, as on the robot. Every ``control_dt`` the controller
builds the observation from the entries of ``robot["obs_layout"]`` (each
``scale * OBS_FUNCTIONS[fn](...)``: the numpy twins of the deploy-able terms
of ``robo_ppo/tasks/terms.py``), calls the ONNX policy (``onnx_controller.py``)
and turns the action into joint targets ``q* = default_pose + action_scale *
a``; a PD loop sends clipped torques every ``sim_dt``. Imports numpy,
onnxruntime, mujoco (+ imageio for video); never torch or robo_ppo.

    python deploy.py policy.onnx                               # default 5-segment command schedule
    python deploy.py policy.onnx --schedule random --segments 20 --seconds 5 --seed 0
    python deploy.py policy.onnx --video robot.mp4 --json result.json
    python deploy.py policy.onnx --latency 1 --push 1.0        # one step of action latency, velocity kicks
    python deploy.py policy.onnx --floor-friction 0.4 --mass-scale 1.1 --payload 1.0   # other dynamics

Needs ``pip install numpy onnxruntime mujoco`` and the robot's model package (the
policy's ``robot.model.install`` says how; or pass ``--model path/to/scene.xml``),
plus ``imageio[ffmpeg]`` for ``--video``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless offscreen rendering; read when mujoco is imported
import mujoco  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_controller import ControllerError, OnnxController  # noqa: E402

__all__ = ["DeployError", "OBS_FUNCTIONS", "MEASURED", "model_file", "load_model", "check_robot", "Observer",
           "PDController", "Runner", "run", "default_schedule", "random_schedule", "format_table", "main"]

SKIP_S = 1.0
"""Seconds skipped at the start of each segment (and after a fall reset) before averaging velocities."""
_REQUIRED = ("model", "joint_names", "default_pose", "action_scale", "kp", "kd", "torque_limits", "control_dt",
             "sim_dt", "base_body", "imu_site", "sensors", "obs_layout", "commands", "command_ranges")
_SCENE_HINT = "pass the robot's own scene with --model, or re-export the policy"


class DeployError(Exception):
    """Bad input (policy metadata, model, schedule); the message (one line) names the fix."""


# ------------------------------------------------------------------ names
def _named(model: mujoco.MjModel, objtype, name: Any, what: str) -> int:
    """Id of the named object; ``what`` says which metadata entry named it."""
    i = mujoco.mj_name2id(model, objtype, str(name)) if isinstance(name, str) else -1
    if i < 0:
        raise DeployError(f"the model has no {objtype.name[6:].lower()} {name!r} ({what}); {_SCENE_HINT}")
    return i


def _sensor_slice(model: mujoco.MjModel, name: Any, what: str) -> slice:
    i = _named(model, mujoco.mjtObj.mjOBJ_SENSOR, name, what)
    adr = int(model.sensor_adr[i])
    return slice(adr, adr + int(model.sensor_dim[i]))


def _robot_list(robot: dict[str, Any], key: Any, what: str) -> list:
    """``robot[key]`` for an observation entry that refers to another metadata key (e.g. ``joint_names``)."""
    if not isinstance(key, str) or not isinstance(robot.get(key), list):
        raise DeployError(f"{what} refers to metadata {key!r}, which is not a list in the robot metadata; "
                          "re-export the policy")
    return robot[key]


def gravity_from_quat(quat: np.ndarray) -> np.ndarray:
    """Unit gravity direction in the frame of a (w, x, y, z) orientation quaternion: ``-R[2, :]``."""
    w, x, y, z = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    return -np.array([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)])


# ------------------------------------------------------------ observation
Reader = Callable[[mujoco.MjData, np.ndarray, np.ndarray], np.ndarray]
"""``(data, last_action, command) -> float64 [size]``: one observation term of the current state."""


def _obs_sensor(model, robot, entry, what) -> tuple[int, Reader]:
    sl = _sensor_slice(model, entry.get("sensor"), what)
    return sl.stop - sl.start, lambda data, last_action, command: data.sensordata[sl]


def _obs_projected_gravity(model, robot, entry, what) -> tuple[int, Reader]:
    sl = _sensor_slice(model, entry.get("sensor"), what)
    if sl.stop - sl.start != 4:
        raise DeployError(f"sensor {entry.get('sensor')!r} ({what}) is not a quaternion; {_SCENE_HINT}")
    return 3, lambda data, last_action, command: gravity_from_quat(data.sensordata[sl])


def _joint_ids(model, robot, entry, what) -> list[int]:
    names = _robot_list(robot, entry.get("joints", "joint_names"), what)
    return [_named(model, mujoco.mjtObj.mjOBJ_JOINT, j, what) for j in names]


def _obs_joint_pos(model, robot, entry, what) -> tuple[int, Reader]:
    qadr = np.array([model.jnt_qposadr[j] for j in _joint_ids(model, robot, entry, what)])
    minus = np.zeros(len(qadr))
    if entry.get("minus"):
        minus = np.asarray(_robot_list(robot, entry["minus"], what), dtype=np.float64)
        if minus.shape != qadr.shape:
            raise DeployError(f"{what}: metadata {entry['minus']!r} has {minus.size} entries for {qadr.size} "
                              "joints; re-export the policy")
    return len(qadr), lambda data, last_action, command: data.qpos[qadr] - minus


def _obs_joint_vel(model, robot, entry, what) -> tuple[int, Reader]:
    dadr = np.array([model.jnt_dofadr[j] for j in _joint_ids(model, robot, entry, what)])
    return len(dadr), lambda data, last_action, command: data.qvel[dadr]


def _obs_last_action(model, robot, entry, what) -> tuple[int, Reader]:
    return len(robot["joint_names"]), lambda data, last_action, command: last_action


def _obs_command(model, robot, entry, what) -> tuple[int, Reader]:
    n = len(_robot_list(robot, entry.get("commands", "commands"), what))
    return n, lambda data, last_action, command: command


def _obs_gait_phase(model, robot, entry, what) -> tuple[int, Reader]:
    gait = robot.get(entry.get("gait", "gait"))
    try:
        freq = float(gait["frequency_hz"])
        offsets = np.asarray(gait["phase_offsets"], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
        raise DeployError(f"{what} needs the gait clock (robot metadata 'gait': frequency_hz, phase_offsets); "
                          "re-export the policy") from None

    def read(data, last_action, command):  # data.time: seconds since reset (Runner.reset zeroes it)
        phase = 2 * math.pi * (offsets + freq * data.time)
        return np.concatenate([np.cos(phase), np.sin(phase)])

    return 2 * offsets.size, read


OBS_FUNCTIONS: dict[str, Callable[..., tuple[int, Reader]]] = {
    "sensor": _obs_sensor,                        # the named MuJoCo sensor (entry["sensor"])
    "projected_gravity": _obs_projected_gravity,  # unit gravity in the frame of an orientation sensor
    "joint_pos": _obs_joint_pos,                  # encoder angles minus the default pose (rad)
    "joint_vel": _obs_joint_vel,                  # encoder velocities (rad/s)
    "last_action": _obs_last_action,              # the previous policy action (clipped)
    "command": _obs_command,                      # the command, in robot["commands"] order
    "gait_phase": _obs_gait_phase,                # cos, sin of each foot's gait phase from the time since reset
}
"""``fn`` of an ``obs_layout`` entry -> ``bind(model, robot, entry, what) -> (size, reader)``. Binding
resolves every name once (start-up fails on a name the model lacks); the reader is the numpy twin of
the training term of the same name in ``robo_ppo/tasks/terms.py`` (a test holds them equal)."""

MEASURED: dict[str, tuple[str, int, str]] = {
    "vx": ("local_linvel", 0, "m/s"), "vy": ("local_linvel", 1, "m/s"), "yaw_rate": ("gyro", 2, "rad/s"),
}
"""Command name -> (sensor role in ``robot["sensors"]``, component, unit): what measures how well the
robot tracks it. A policy whose commands are not all here fails at start-up."""


def check_robot(robot: Any, source: str = "policy") -> None:
    """Check ``robot`` metadata without the model: required keys and per-joint list lengths.

    Raises:
        DeployError: one line naming the problem.
    """
    if not isinstance(robot, dict):
        raise DeployError(f"{source} has no 'robot' metadata; export a robot task's policy with robo-ppo-export")
    missing = [k for k in _REQUIRED if k not in robot]
    if missing:
        raise DeployError(f"{source}: robot metadata lacks {missing}; re-export the policy")
    n = len(robot["joint_names"])
    for key in ("default_pose", "kp", "kd", "torque_limits"):
        if not isinstance(robot[key], list) or len(robot[key]) != n:
            raise DeployError(f"{source}: robot metadata {key} does not have one entry per joint ({n}); re-export")
    unknown = [c for c in robot["commands"] if c not in MEASURED]
    if unknown:
        raise DeployError(f"{source}: command {unknown[0]!r} is unknown to this deploy loop (known: "
                          f"{sorted(MEASURED)}); update export/deploy.py MEASURED")
    if not isinstance(robot["obs_layout"], list) or not robot["obs_layout"]:
        raise DeployError(f"{source}: robot metadata obs_layout is empty; re-export the policy")


class Observer:
    """Robot-side observation: float32 ``[size]`` per ``robot["obs_layout"]``, each entry
    ``scale * OBS_FUNCTIONS[fn]`` of the current ``MjData`` (sensors must be current: after
    ``mj_step1`` or ``mj_forward``), the last action and the command.

    Raises:
        DeployError: an entry's ``fn`` is unknown, it names a sensor/joint the model lacks, or the
            layout has a gap, an overlap or a size that differs from the model's (one line).
    """

    def __init__(self, model: mujoco.MjModel, robot: dict[str, Any]):
        self.terms: list[tuple[str, int, int, float, Reader]] = []
        offset = 0
        for entry in sorted(robot["obs_layout"], key=lambda e: int(e.get("start", 0))):
            name = entry.get("name")
            fn = entry.get("fn") or name
            what = f"obs_layout entry {name!r}"
            if fn not in OBS_FUNCTIONS:
                raise DeployError(f"{what} uses the observation function {fn!r}, unknown to this deploy loop "
                                  f"(known: {sorted(OBS_FUNCTIONS)}); update export/deploy.py OBS_FUNCTIONS")
            size, reader = OBS_FUNCTIONS[fn](model, robot, entry, what)
            if int(entry.get("start", -1)) != offset or int(entry.get("size", -1)) != size:
                raise DeployError(f"{what} (start {entry.get('start')}, size {entry.get('size')}) overlaps, "
                                  f"leaves a gap or does not fit the model (start {offset}, size {size}); "
                                  f"{_SCENE_HINT}")
            self.terms.append((name, offset, size, float(entry.get("scale", 1.0)), reader))
            offset += size
        self.size = offset

    def __call__(self, data: mujoco.MjData, last_action, command) -> np.ndarray:
        last_action, command = np.asarray(last_action, np.float64), np.asarray(command, np.float64)
        obs = np.empty(self.size, dtype=np.float32)
        for _, start, size, scale, reader in self.terms:
            obs[start:start + size] = scale * np.asarray(reader(data, last_action, command), np.float64)
        return obs


# ------------------------------------------------------------------ model
def model_file(robot: dict[str, Any]) -> Path:
    """The scene file ``robot["model"]["path"]`` inside the installed package ``robot["model"]["package"]``."""
    src = robot.get("model") or {}
    package, rel = src.get("package"), src.get("path")
    hint = f"; install it: {src['install']}" if src.get("install") else ""
    if not package or not rel:
        raise DeployError("robot metadata model lacks package/path; re-export the policy or pass --model")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise DeployError(f"the model package {package!r} of robot {robot.get('name')!r} is not installed{hint} "
                          "(or pass --model path/to/scene.xml)")
    path = Path(spec.origin).parent / rel
    if not path.is_file():
        raise DeployError(f"{package} has no {rel}{hint} (or pass --model path/to/scene.xml)")
    return path


def load_model(robot: dict[str, Any], xml: str | Path | None = None,
               meshes: bool = False) -> tuple[mujoco.MjModel, np.ndarray]:
    """The robot's scene with a torque interface, as on the robot; returns ``(model, target_range)``.

    Args:
        robot: ``robot`` metadata.
        xml: a scene file (default: :func:`model_file`).
        meshes: keep mesh geoms and textures (for video; made collision-free, as training drops them).

    The actuator of each ``joint_names`` joint becomes a direct motor (on the ``MjSpec``, before
    compiling): gain 1, no bias, gear 1, ``ctrl`` = joint torque in N*m with ``ctrlrange = forcerange =
    +-torque_limits``; those joints' damping is set to 0 because :class:`PDController` applies ``kd``.
    Friction loss and armature stay (``robot["armature"]``, when present, is written). Keyframe ``ctrl``
    values are zeroed. The sensors of ``robot["extra_sensors"]`` (those training added to the scene) are
    added. ``target_range`` float64 ``[J, 2]`` is the original actuators' control range
    (the clamp training applies to joint targets), ``+-inf`` where unlimited.
    """
    path = Path(xml) if xml is not None else model_file(robot)
    if not path.is_file():
        raise DeployError(f"model file {path} does not exist; pass a MuJoCo scene XML with --model")
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except ValueError as e:
        raise DeployError(f"cannot parse {path.name}: {str(e).splitlines()[0]}; pass a MuJoCo scene XML") from None
    mesh_geoms = [g for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH]
    if meshes:
        for g in mesh_geoms:
            g.contype = g.conaffinity = 0
    else:
        for g in mesh_geoms:
            spec.delete(g)
        for mesh in list(spec.meshes):
            spec.delete(mesh)
        for mat in spec.materials:
            mat.textures = [""] * len(mat.textures)
        for tex in list(spec.textures):
            spec.delete(tex)
    names = list(robot["joint_names"])
    joints = {j.name: j for j in spec.joints}
    acts = {}
    for a in spec.actuators:
        if a.trntype == mujoco.mjtTrn.mjTRN_JOINT and a.target in names:
            acts.setdefault(a.target, a)
    for j in names:
        if j not in joints:
            raise DeployError(f"the model has no joint {j!r} (joint_names); {_SCENE_HINT}")
        if j not in acts:
            raise DeployError(f"no actuator drives joint {j!r} (joint_names) in {path.name}; {_SCENE_HINT}")
    try:
        original = spec.compile()
    except ValueError as e:
        raise DeployError(f"cannot compile {path.name}: {str(e).splitlines()[0]}") from None
    target_range = np.full((len(names), 2), [-np.inf, np.inf])
    for k, j in enumerate(names):
        a = mujoco.mj_name2id(original, mujoco.mjtObj.mjOBJ_ACTUATOR, acts[j].name) if acts[j].name else -1
        if a < 0:  # unnamed: the first actuator of the joint
            jid = mujoco.mj_name2id(original, mujoco.mjtObj.mjOBJ_JOINT, j)
            a = int(np.flatnonzero((original.actuator_trntype == mujoco.mjtTrn.mjTRN_JOINT)
                                   & (original.actuator_trnid[:, 0] == jid))[0])
        if original.actuator_ctrllimited[a]:
            target_range[k] = original.actuator_ctrlrange[a]
    armature = robot.get("armature")
    for k, j in enumerate(names):
        act, limit = acts[j], float(robot["torque_limits"][k])
        act.set_to_motor()  # gain 1, bias none
        gear = np.zeros(len(act.gear))
        gear[0] = 1.0
        act.gear = gear
        act.ctrlrange = act.forcerange = [-limit, limit]
        act.ctrllimited = act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        joints[j].damping = np.zeros_like(joints[j].damping)  # (a polynomial in MuJoCo 4)
        if armature is not None:
            joints[j].armature = float(armature[k])
    for key in spec.keys:
        if len(key.ctrl):
            key.ctrl = np.zeros(len(key.ctrl))
    for s in robot.get("extra_sensors") or []:
        try:
            ref = s.get("reftype")
            spec.add_sensor(name=s["name"], type=getattr(mujoco.mjtSensor, f"mjSENS_{s['type'].upper()}"),
                            objtype=getattr(mujoco.mjtObj, f"mjOBJ_{s['objtype'].upper()}"), objname=s["objname"],
                            reftype=getattr(mujoco.mjtObj, f"mjOBJ_{ref.upper()}" if ref else "mjOBJ_UNKNOWN"),
                            refname=s.get("refname") or "")
        except (AttributeError, KeyError, TypeError):
            raise DeployError(f"robot metadata extra_sensors entry {s!r} is not a MuJoCo sensor; re-export the "
                              "policy") from None
    try:
        model = spec.compile()
    except ValueError as e:
        raise DeployError(f"cannot compile {path.name}: {str(e).splitlines()[0]}") from None
    model.opt.timestep = float(robot["sim_dt"])  # simulate at the training rate, with its solver
    if robot.get("solver_iterations") is not None:
        model.opt.iterations = int(robot["solver_iterations"])
    if robot.get("solver_ls_iterations") is not None:
        model.opt.ls_iterations = int(robot["solver_ls_iterations"])
    return model, target_range


class PDController:
    """Joint PD: ``tau = clip(kp * (q_target - q) - kd * qd, -torque_limits, torque_limits)``.

    Args: ``kp`` N*m/rad, ``kd`` N*m*s/rad (scalars or ``[J]``), ``torque_limits`` N*m ``[J]``. Run it
    every sim/servo step while the policy updates ``q_target`` every control step.
    """

    def __init__(self, kp, kd, torque_limits):
        self.kp, self.kd = np.asarray(kp, dtype=np.float64), np.asarray(kd, dtype=np.float64)
        self.limits = np.asarray(torque_limits, dtype=np.float64)

    def torques(self, q_target: np.ndarray, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        tau = self.kp * (np.asarray(q_target) - q) - self.kd * np.asarray(qd)
        return np.clip(tau, -self.limits, self.limits)


# --------------------------------------------------------------- schedule
_DEFAULT_SEGMENTS = ({"vx": 1.0}, {"vx": 0.5, "yaw_rate": 1.0}, {"vy": 0.5}, {"vx": -0.5}, {})


def default_schedule(commands=("vx", "vy", "yaw_rate"), seconds: float = 5.0) -> list[tuple[float, ...]]:
    """Segments ``(duration_s, *command)`` in ``commands`` order: forward, turn, sidestep, backward, stop."""
    return [(float(seconds), *(float(seg.get(c, 0.0)) for c in commands)) for seg in _DEFAULT_SEGMENTS]


def random_schedule(n_segments: int = 20, seconds: float = 5.0, seed: int = 0,
                    ranges: dict[str, list[float]] | None = None, p_zero: float = 0.1,
                    commands=None) -> list[tuple[float, ...]]:
    """``n_segments`` segments of uniform commands inside ``ranges`` (name -> [lo, hi]), in ``commands``
    order (default: the order of ``ranges``); each is the zero command with probability ``p_zero``."""
    if not ranges:
        raise DeployError("a random schedule needs the policy's command_ranges; re-export the policy")
    commands = list(commands or ranges)
    missing = [c for c in commands if c not in ranges]
    if missing:
        raise DeployError(f"command_ranges has no range for {missing}; re-export the policy")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_segments):
        cmd = [float(rng.uniform(*ranges[c])) for c in commands]
        out.append((float(seconds), *([0.0] * len(commands) if rng.random() < p_zero else cmd)))
    return out


# ----------------------------------------------------------------- runner
class Runner:
    """A robot under an ONNX policy in MuJoCo, with the robot-side loop.

    Args:
        policy_path: ``policy.onnx`` with ``robot`` metadata.
        model_xml: scene XML (default: the metadata's model in its installed package).
        meshes: load visual meshes (needed only for video).
        seed: seeds the random yaw (+-``init_yaw`` rad) of every reset and the pushes.
        latency: control steps between a policy output and its application (default: the metadata's
            ``action_latency``; 1 applies the previous step's action, as in training).
        push: horizontal base velocity kick U(0, push) m/s in a random direction every
            U(``push_interval``) s (0: none).
        floor_friction: sliding friction of the metadata's ``floor_geom`` (None: the model's).
        mass_scale: multiplies the mass of every body of the robot (its base body's tree).
        payload: kg added to the base body (after ``mass_scale``).

    Raises:
        DeployError, ControllerError: bad policy, metadata or model (one line).
    """

    def __init__(self, policy_path: str | Path, model_xml: str | Path | None = None, meshes: bool = False,
                 seed: int = 0, init_yaw: float = 0.1, latency: int | None = None, push: float = 0.0,
                 push_interval: tuple[float, float] = (5.0, 10.0), floor_friction: float | None = None,
                 mass_scale: float = 1.0, payload: float = 0.0):
        self.ctrl = OnnxController(policy_path)
        self.robot = robot = self.ctrl.metadata.get("robot")
        name = Path(policy_path).name
        check_robot(robot, name)
        self.model, target_range = load_model(robot, model_xml, meshes=meshes)
        model = self.model
        self.data = mujoco.MjData(model)
        self.observer = Observer(model, robot)
        self.joint_names = list(robot["joint_names"])
        n = len(self.joint_names)
        if self.ctrl.obs_dim != self.observer.size or self.ctrl.act_dim != n or self.ctrl.discrete:
            raise DeployError(f"{name}: obs_dim {self.ctrl.obs_dim}, act_dim {self.ctrl.act_dim}; its robot "
                              f"metadata needs obs_dim {self.observer.size} and {n} continuous actions: "
                              "re-export the policy")
        self.control_dt, sim_dt = float(robot["control_dt"]), float(robot["sim_dt"])
        self.decimation = round(self.control_dt / sim_dt)
        if self.decimation < 1 or abs(self.decimation * sim_dt - self.control_dt) > 1e-9 \
                or abs(self.ctrl.control_dt - self.control_dt) > 1e-9:
            raise DeployError(f"{name}: control_dt {self.control_dt} (metadata {self.ctrl.control_dt}) is not a "
                              f"multiple of sim_dt {sim_dt}; re-export the policy")
        self.pd = PDController(robot["kp"], robot["kd"], robot["torque_limits"])
        self.q0 = np.asarray(robot[robot.get("action_offset", "default_pose")], dtype=np.float64)
        self.scale = float(robot["action_scale"])
        self.action_clip = tuple(float(x) for x in robot.get("action_clip", (-1.0, 1.0)))
        self.target_lo, self.target_hi = target_range[:, 0], target_range[:, 1]
        jids = [_named(model, mujoco.mjtObj.mjOBJ_JOINT, j, "joint_names") for j in self.joint_names]
        self.qadr = np.array([model.jnt_qposadr[j] for j in jids])
        self.dadr = np.array([model.jnt_dofadr[j] for j in jids])
        self.act_idx = np.array([int(np.flatnonzero((model.actuator_trntype == mujoco.mjtTrn.mjTRN_JOINT)
                                                    & (model.actuator_trnid[:, 0] == j))[0]) for j in jids])
        _named(model, mujoco.mjtObj.mjOBJ_SITE, robot["imu_site"], "imu_site")
        self.base = _named(model, mujoco.mjtObj.mjOBJ_BODY, robot["base_body"], "base_body")
        root = model.body_jntadr[self.base]
        if root < 0 or model.jnt_type[root] != mujoco.mjtJoint.mjJNT_FREE:
            raise DeployError(f"base body {robot['base_body']!r} has no free joint (base_body); {_SCENE_HINT}")
        self.root_qpos, self.root_dof = int(model.jnt_qposadr[root]), int(model.jnt_dofadr[root])
        self._set_dynamics(floor_friction, mass_scale, payload)
        keyframe = robot.get("init_keyframe")
        if keyframe:
            self.key = _named(model, mujoco.mjtObj.mjOBJ_KEY, keyframe, "init_keyframe")
        else:
            self.key = 0 if model.nkey else -1
        sensors = robot["sensors"]

        def role(r: str, what: str) -> slice:
            if r not in sensors:
                raise DeployError(f"{name}: robot metadata sensors has no {r!r} role ({what}); "
                                  "re-export the policy")
            return _sensor_slice(model, sensors[r], f"sensors.{r}")

        self.commands = list(robot["commands"])
        self._measure = []
        for c in self.commands:
            r, k, _ = MEASURED[c]
            sl = role(r, f"measures command {c}")
            if sl.stop - sl.start <= k:
                raise DeployError(f"sensor {sensors[r]!r} (sensors.{r}) has no component {k}; {_SCENE_HINT}")
            self._measure.append(sl.start + k)
        self._measure = np.array(self._measure)
        self._orientation = role("orientation", "fall check") if "orientation" in sensors else None
        fall = robot.get("fall") or {}
        self.max_tilt_cos = float(fall.get("max_tilt_cos", 0.0))
        self.min_base_height = float(fall.get("min_base_height", 0.0))
        self.latency = int(robot.get("action_latency", 0) if latency is None else latency)
        if self.latency < 0:
            raise DeployError(f"latency must be >= 0 control steps, got {self.latency}")
        self.push, self.push_interval = float(push), (float(push_interval[0]), float(push_interval[1]))
        if self.push < 0 or not 0 < self.push_interval[0] <= self.push_interval[1]:
            raise DeployError(f"push must be >= 0 m/s and push_interval 0 < lo <= hi s, got {push}, "
                              f"{push_interval}")
        self.rng = np.random.default_rng(seed)
        self.init_yaw = float(init_yaw)
        self.last_action = np.zeros(n, dtype=np.float32)
        self.applied = np.zeros(n, dtype=np.float32)
        self._pending: deque = deque()
        self._until_push = 0
        self.pushes = 0

    def _set_dynamics(self, floor_friction: float | None, mass_scale: float, payload: float) -> None:
        """Other dynamics than the model file's (robustness checks; training randomizes the same fields)."""
        m = self.model
        if floor_friction is not None:
            if not floor_friction > 0:
                raise DeployError(f"floor friction must be > 0, got {floor_friction}")
            floor = _named(m, mujoco.mjtObj.mjOBJ_GEOM, self.robot.get("floor_geom"), "floor_geom")
            m.geom_friction[floor, 0] = floor_friction
        if not mass_scale > 0 or m.body_mass[self.base] * mass_scale + payload <= 0:
            raise DeployError(f"mass_scale must be > 0 and leave the base a positive mass, got {mass_scale}, "
                              f"payload {payload}")
        robot_bodies = m.body_rootid == m.body_rootid[self.base]
        m.body_mass[robot_bodies] *= mass_scale
        m.body_mass[self.base] += payload

    # -------------------------------------------------------------- state
    def reset(self) -> None:
        """The ``init_keyframe`` turned by a random yaw, zero last action and pending actions, the clock
        (``data.time``) at 0; ends with ``mj_forward`` so the sensors match the state (as after every
        :meth:`step`)."""
        if self.key >= 0:
            mujoco.mj_resetDataKeyframe(self.model, self.data, self.key)
        else:
            mujoco.mj_resetData(self.model, self.data)
        self.data.time = 0.0  # the clock of time-based observation terms (a gait phase) restarts
        yaw = self.rng.uniform(-self.init_yaw, self.init_yaw)
        quat = self.data.qpos[self.root_qpos + 3:self.root_qpos + 7]
        mujoco.mju_mulQuat(quat, np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]), quat.copy())
        self.data.ctrl[:] = 0.0
        self.last_action[:] = 0.0
        self.applied[:] = 0.0
        self._pending = deque(np.zeros(len(self.joint_names), np.float32) for _ in range(self.latency))
        self._until_push = self._push_steps()
        mujoco.mj_forward(self.model, self.data)

    def _push_steps(self) -> int:
        return round(self.rng.uniform(*self.push_interval) / self.control_dt) if self.push > 0 else 0

    def base_height(self) -> float:
        return float(self.data.xpos[self.base, 2])

    def measured(self) -> np.ndarray:
        """What tracks each command (``MEASURED``), from the current sensors, float64 ``[len(commands)]``."""
        return self.data.sensordata[self._measure].copy()

    def fallen(self) -> bool:
        """The robot's ``fall`` condition: the z component of the up axis (from the orientation sensor,
        else the base body) below ``max_tilt_cos``, or the base below ``min_base_height`` m (if > 0)."""
        if self._orientation is not None:
            up_z = -gravity_from_quat(self.data.sensordata[self._orientation])[2]
        else:
            up_z = float(self.data.xmat[self.base, 8])
        low = 0 < self.min_base_height and self.base_height() < self.min_base_height
        return bool(up_z < self.max_tilt_cos or low)

    # --------------------------------------------------------------- step
    def apply(self, action: np.ndarray) -> None:
        """One control step (``decimation`` sim steps) of a clipped policy output ``action`` [J]: the
        action ``latency`` steps old becomes the joint target ``q0 + action_scale * a`` (clamped to the
        original actuators' range); per sim step PD torques from the current ``q``, ``qd``, then
        ``mj_step2``, ``mj_step1`` (training's order: the sensors describe the new state after it)."""
        action = np.asarray(action, dtype=np.float32)
        self._pending.append(action)
        applied = self._pending.popleft()
        if self.push > 0:
            self._until_push -= 1
            if self._until_push <= 0:  # a kick of the base velocity, as training's push
                angle, kick = self.rng.uniform(0, 2 * math.pi), self.rng.uniform(0, self.push)
                kick_xy = kick * np.array([math.cos(angle), math.sin(angle)])
                self.data.qvel[self.root_dof:self.root_dof + 2] += kick_xy
                mujoco.mj_forward(self.model, self.data)
                self.pushes += 1
                self._until_push = self._push_steps()
        target = np.clip(self.q0 + self.scale * applied, self.target_lo, self.target_hi)
        m, d, qa, da = self.model, self.data, self.qadr, self.dadr
        for _ in range(self.decimation):
            d.ctrl[self.act_idx] = self.pd.torques(target, d.qpos[qa], d.qvel[da])
            mujoco.mj_step2(m, d)
            mujoco.mj_step1(m, d)
        self.applied = applied
        self.last_action = action

    def step(self, command) -> np.ndarray:
        """Observe, act, :meth:`apply`; returns the clipped action ``[J]``."""
        obs = self.observer(self.data, self.last_action, np.asarray(command, dtype=np.float64))
        action = np.clip(self.ctrl(obs), *self.action_clip).astype(np.float32)
        self.apply(action)
        return action

    def _camera_distance(self) -> float:
        """3.5x the robot's radius (its geoms around the base's subtree centre of mass, now)."""
        m = self.model
        geoms = np.flatnonzero(m.body_rootid[m.geom_bodyid] == m.body_rootid[self.base])
        if not geoms.size:
            return 1.5
        com = self.data.subtree_com[self.base]
        radius = np.max(np.linalg.norm(self.data.geom_xpos[geoms] - com, axis=1) + m.geom_rbound[geoms])
        return max(3.5 * float(radius), 1.0)

    # ---------------------------------------------------------------- run
    def run(self, schedule, video: str | Path | None = None, frame_every: int = 1, skip_s: float = SKIP_S,
            size: tuple[int, int] = (640, 480), on_frame=None) -> dict[str, Any]:
        """Follow ``schedule`` [(duration_s, *command), ...] (command in ``robot["commands"]`` order); on a
        fall, count it, reset, go on.

        Achieved values are noise-free sensor readings (``MEASURED``: e.g. vx, vy from the
        ``local_linvel`` role, yaw rate from ``gyro`` z), averaged over each segment after skipping its
        first ``skip_s`` s and ``skip_s`` s after each fall reset. Returns ``{"segments": [{"duration_s",
        "<c>_cmd", "<c>" for each command c, "falls", "min_height", "samples"}], "summary": {...},
        "commands"}``; a segment with no sample after the skip has ``nan`` means. ``video``: MP4 at
        ``1 / (control_dt * frame_every)`` fps. ``on_frame(frame, info) -> frame``: optional, called on
        each video frame (uint8 [H, W, 3]) before it is written; ``info`` holds ``step``, ``time_s``,
        ``segment`` (index), ``segments``, ``commands`` (names), ``command``, ``velocity`` (measured,
        same order) and ``falls``.
        """
        k_cmd = len(self.commands)
        try:
            schedule = [tuple(float(v) for v in seg) for seg in schedule]
        except (TypeError, ValueError):
            schedule = []
        if not schedule or any(len(s) != 1 + k_cmd or not s[0] > 0 for s in schedule):
            raise DeployError(f"schedule must be a non-empty list of (duration_s > 0, {', '.join(self.commands)})")
        writer = renderer = None
        if video is not None:
            import imageio.v2 as imageio

            self.model.vis.quality.offsamples = 0  # no multisampling and no shadows: ~50 ms/frame instead
            try:  # of 0.5 s in software GL
                renderer = mujoco.Renderer(self.model, height=size[1], width=size[0])
            except Exception as e:  # GL backends raise assorted types
                raise DeployError(f"cannot render offscreen ({str(e).splitlines()[0][:120]}); set MUJOCO_GL=egl "
                                  "(or osmesa) before starting, or drop --video") from None
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            cam = mujoco.MjvCamera()
            cam.type, cam.trackbodyid = mujoco.mjtCamera.mjCAMERA_TRACKING, self.base
            cam.elevation, cam.azimuth = -20.0, 120.0
            writer = imageio.get_writer(str(video), fps=1.0 / (self.control_dt * frame_every))
        t0, rows, k, fallen_before = time.perf_counter(), [], 0, 0
        self.pushes = 0
        self.reset()
        if writer is not None:
            cam.distance = self._camera_distance()
        skip, since_reset = round(skip_s / self.control_dt), 0  # in control steps
        try:
            for seg, (duration, *command) in enumerate(schedule):
                samples, falls, min_h = [], 0, math.inf
                for i in range(round(duration / self.control_dt)):
                    if self.fallen():
                        falls += 1
                        self.reset()
                        since_reset = 0
                    if i >= skip and since_reset >= skip:
                        samples.append(self.measured())
                    min_h = min(min_h, self.base_height())
                    if writer is not None and k % frame_every == 0:
                        renderer.update_scene(self.data, camera=cam)
                        frame = renderer.render()
                        if on_frame is not None:
                            frame = on_frame(frame, {"step": k, "time_s": k * self.control_dt, "segment": seg,
                                                     "segments": len(schedule), "commands": self.commands,
                                                     "command": tuple(command),
                                                     "velocity": tuple(float(v) for v in self.measured()),
                                                     "falls": fallen_before + falls})
                        writer.append_data(frame)
                    self.step(command)
                    since_reset += 1
                    k += 1
                mean = np.mean(samples, axis=0) if samples else np.full(k_cmd, np.nan)
                row: dict[str, Any] = {"duration_s": duration}
                for c, want, got in zip(self.commands, command, mean, strict=True):
                    row[f"{c}_cmd"], row[c] = want, float(got)
                row.update(falls=falls, min_height=min_h, samples=len(samples))
                rows.append(row)
                fallen_before += falls
        finally:
            if writer is not None:
                writer.close()
                renderer.close()
        summary = {}
        for c in self.commands:
            err = [abs(r[c] - r[f"{c}_cmd"]) for r in rows if r["samples"]]
            summary[f"mean_abs_{c}_err"] = float(np.mean(err)) if err else math.nan
        summary.update(falls=sum(r["falls"] for r in rows), pushes=self.pushes, wall_s=time.perf_counter() - t0,
                       sim_s=k * self.control_dt, skip_s=skip_s, latency=self.latency)
        return {"policy": str(self.ctrl.path), "robot_name": self.robot.get("name"),
                "commands": list(self.commands), "segments": rows, "summary": summary}


def run(policy_path: str | Path, schedule=None, seed: int = 0, video: str | Path | None = None,
        model_xml: str | Path | None = None, latency: int | None = None, push: float = 0.0,
        floor_friction: float | None = None, mass_scale: float = 1.0, payload: float = 0.0,
        **kwargs) -> dict[str, Any]:
    """Build a :class:`Runner` (meshes only when ``video``) and run ``schedule`` (default
    :func:`default_schedule` of the policy's commands); ``kwargs`` go to :meth:`Runner.run`."""
    runner = Runner(policy_path, model_xml=model_xml, meshes=video is not None, seed=seed, latency=latency,
                    push=push, floor_friction=floor_friction, mass_scale=mass_scale, payload=payload)
    plan = schedule if schedule is not None else default_schedule(runner.commands)
    return runner.run(plan, video=video, **kwargs)


def format_table(result: dict[str, Any]) -> str:
    """Aligned plain-text table of :meth:`Runner.run`'s result."""
    s, commands = result["summary"], result["commands"]

    def f(x: float, w: int) -> str:
        return f"{round(x, 2) + 0.0:>{w}.2f}"  # + 0.0: no "-0.00"

    widths = [max(6, len(c) + 4) for c in commands]
    header = " | ".join(f"{c + '_cmd':>{w}} {c:>{w}}" for c, w in zip(commands, widths, strict=True))
    lines = [f"measured: means after skipping the first {s['skip_s']:.1f} s of each segment (and of each "
             "fall reset); " + ", ".join(f"{c} {MEASURED[c][2]} ({MEASURED[c][0]}[{MEASURED[c][1]}])"
                                         for c in commands),
             f"{'seg':>3} {'dur_s':>5} | {header} | {'falls':>5}"]
    for i, r in enumerate(result["segments"]):
        cells = " | ".join(f"{f(r[c + '_cmd'], w)} {f(r[c], w)}" for c, w in zip(commands, widths, strict=True))
        lines.append(f"{i:>3} {r['duration_s']:>5.1f} | {cells} | {r['falls']:>5}")
    errs = ", ".join(f"{c} {s[f'mean_abs_{c}_err']:.3f} {MEASURED[c][2]}" for c in commands)
    pushes = f"; pushes {s['pushes']}" if s.get("pushes") else ""
    lines.append(f"mean |err|: {errs}; falls {s['falls']}{pushes}; sim {s['sim_s']:.1f} s in "
                 f"{s['wall_s']:.1f} s wall")
    return "\n".join(lines)


def _json_safe(x):
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", help="policy.onnx of a robot task (with 'robot' metadata)")
    parser.add_argument("--schedule", choices=["default", "random"], default="default")
    parser.add_argument("--segments", type=int, default=20, help="random schedule: number of segments")
    parser.add_argument("--seconds", type=float, default=5.0, help="random schedule: seconds per segment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--video", default=None, help="write an MP4 here (1 / control_dt fps, tracking camera)")
    parser.add_argument("--model", default=None, help="scene XML (default: the policy's robot model)")
    parser.add_argument("--json", default=None, help="write the result as JSON here")
    parser.add_argument("--latency", type=int, default=None,
                        help="control steps of action latency (default: the policy's action_latency)")
    parser.add_argument("--push", type=float, default=0.0, help="max base velocity kick (m/s); 0: none")
    parser.add_argument("--push-interval", type=float, nargs=2, default=(5.0, 10.0), metavar=("LO", "HI"),
                        help="seconds between kicks, uniform")
    parser.add_argument("--floor-friction", type=float, default=None, help="floor sliding friction (default: model's)")
    parser.add_argument("--mass-scale", type=float, default=1.0, help="multiplies every robot body's mass")
    parser.add_argument("--payload", type=float, default=0.0, help="kg added to the base body")
    args = parser.parse_args(argv)
    try:
        runner = Runner(args.policy, model_xml=args.model, meshes=args.video is not None, seed=args.seed,
                        latency=args.latency, push=args.push, push_interval=tuple(args.push_interval),
                        floor_friction=args.floor_friction, mass_scale=args.mass_scale, payload=args.payload)
        if args.schedule == "random":
            if args.segments < 1 or not args.seconds > 0:
                raise DeployError("--segments must be >= 1 and --seconds > 0")
            schedule = random_schedule(args.segments, args.seconds, args.seed, runner.robot.get("command_ranges"),
                                       commands=runner.commands)
        else:
            schedule = default_schedule(runner.commands)
        result = runner.run(schedule, video=args.video)
    except (DeployError, ControllerError, OSError) as e:
        print(f"deploy error: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(_json_safe(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
