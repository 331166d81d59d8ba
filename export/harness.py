"""The MuJoCo harness: a robot-side controller driving a simulated robot, the sim2sim check.

``MujocoHarness`` builds the robot's scene (``scene.build_scene`` with torque
motors, as on the robot) and feeds the hardware controller
(``robot_controller.RobotController``) exactly what a robot's driver would:
the sensor roles it reads from ``MjData.sensordata``, the joint encoders from
``qpos``/``qvel``, and the command of a schedule (``schedules.py``). Every
``control_dt`` it calls ``controller.step``; every ``sim_dt`` it applies
``controller.torques``. Around that it adds what only a simulator can:
action latency, base velocity pushes, other dynamics than the model's
(floor friction, mass scale, payload), terrain (``terrain.py``: the robot
starts on a patch of a generated heightfield), the fall count and resets,
video, and the tracking table (``report.py``). It knows no robot by name: the policy's
metadata says everything. Imports numpy, onnxruntime, mujoco (+ imageio for
video); never torch or robo_ppo.
"""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

try:
    from .headless import default_gl
except ImportError:  # run from the kit's folder
    from headless import default_gl
default_gl()   # before mujoco's import, which reads MUJOCO_GL
import mujoco  # noqa: E402

try:
    from . import rules, scene
    from . import terrain as terrain_mod
    from .onnx_controller import ControllerError
    from .report import MEASURED
    from .robot_controller import RobotController
    from .schedules import ScheduleError, default_schedule
except ImportError:  # run from the kit's folder
    import rules
    import scene
    import terrain as terrain_mod
    from onnx_controller import ControllerError
    from report import MEASURED
    from robot_controller import RobotController
    from schedules import ScheduleError, default_schedule

__all__ = ["DAMPING_STEP_LIMIT", "DeployError", "MujocoHarness", "damping_step", "damping_substeps", "run", "SKIP_S"]

DAMPING_STEP_LIMIT = 0.5
"""The largest ``h * rho(M^-1 D)`` the harness lets one integration step of the joints' passive damping
take (h: the step, M: the joint-space inertia at the keyframe, D: the joints' passive damping, rho: the
largest eigenvalue). MuJoCo integrates damping explicitly when a scene disables ``eulerdamp`` (all the robot
scenes here do), and the explicit update ``v <- (1 - h M^-1 D) v`` keeps ``1 - h lambda`` of a mode's
velocity where the physics keeps ``exp(-h lambda)``: it diverges past 2 and flips the sign past 1; at 0.5 it
keeps 0.50 against 0.61. Added damping (``damping``, ``damping_kd``) beyond this limit is integrated in
substeps (``MujocoHarness.substeps``)."""

SKIP_S = 1.0
"""Seconds skipped at the start of each segment (and after a fall reset) before averaging velocities."""
_SCENE_HINT = "pass the robot's own scene with --model, or re-export the policy"


class DeployError(Exception):
    """Bad input (policy metadata, model, options); the message (one line) names the fix."""


def _named(model: mujoco.MjModel, objtype, name: Any, what: str) -> int:
    i = mujoco.mj_name2id(model, objtype, str(name)) if isinstance(name, str) else -1
    if i < 0:
        raise DeployError(f"the model has no {objtype.name[6:].lower()} {name!r} ({what}); {_SCENE_HINT}")
    return i


def _sensor_slice(model: mujoco.MjModel, name: Any, what: str) -> slice:
    i = _named(model, mujoco.mjtObj.mjOBJ_SENSOR, name, what)
    adr = int(model.sensor_adr[i])
    return slice(adr, adr + int(model.sensor_dim[i]))


def damping_step(model: mujoco.MjModel, dofs, qpos0=None) -> float:
    """``h * rho(M^-1 D)``: the explicit damping step's size for the joints ``dofs`` (dof addresses), with
    ``h`` the model's timestep, ``M`` the joint-space inertia at ``qpos0`` (default: the model's
    ``qpos0``), ``D`` the passive damping of ``dofs`` (``dof_damping``) and ``rho`` the largest eigenvalue
    (those of ``M^-1 D`` are those of the symmetric ``D^1/2 M^-1 D^1/2``, real and >= 0). Explicit
    integration of the damping is stable below 2 and monotone below 1 (``DAMPING_STEP_LIMIT``)."""
    data = mujoco.MjData(model)
    if qpos0 is not None:
        data.qpos[:] = qpos0
    mujoco.mj_forward(model, data)
    full = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, full)
    dofs = np.asarray(dofs)
    root_d = np.zeros(model.nv)
    root_d[dofs] = np.sqrt(np.maximum(model.dof_damping[dofs], 0.0))
    sym = root_d[:, None] * np.linalg.inv(full) * root_d[None, :]
    return float(model.opt.timestep * np.linalg.eigvalsh(sym).max())


def damping_substeps(model: mujoco.MjModel, dofs, qpos0=None, limit: float = DAMPING_STEP_LIMIT) -> int:
    """The fewest integration steps per physics step, ``max(1, ceil(damping_step / limit))``, that keep
    each one's ``h rho(M^-1 D)`` (:func:`damping_step`, same arguments) within ``limit``. The deploy loop
    uses it with ``DAMPING_STEP_LIMIT``; training (``randomize_model.damping_substeps``) with its own limit."""
    return max(1, math.ceil(damping_step(model, dofs, qpos0) / limit))


class MujocoHarness:
    """A robot under its ONNX controller in MuJoCo.

    Args:
        policy_path: ``policy.onnx`` with ``robot`` metadata.
        model_xml: scene XML (default: the metadata's model in its installed package).
        meshes: load visual meshes (needed only for video).
        seed: seeds the random yaw (+-``init_yaw`` rad) of every reset and the pushes.
        latency: control steps between a controller output and its application (default: the
            metadata's ``action_latency``).
        push: horizontal base velocity kick U(0, push) m/s in a random direction every
            U(``push_interval``) s (0: none).
        floor_friction: sliding friction of the metadata's ``floor_geom`` (None: the model's).
        mass_scale: multiplies the mass of every body of the robot (its base body's tree).
        payload: kg added to the base body (after ``mass_scale``).
        damping: passive damping added to every joint of the policy (N m s / rad), beyond the model's.
        damping_kd: more passive damping, this multiple of each joint's kd (the same mismatch for robots of
            other gains: 2 N m s / rad on a joint of kd 0.5 is 4 kd).
        frictionloss_scale, armature_scale: multiply the joints' friction loss and armature (rotor inertia).
        controller: the ``RobotController`` of ``policy_path`` to drive the robot with (default: a new one);
            the harness resets it with the robot.
        terrain: None (default): the model's floor. A ``terrain.Placement`` (or anything ``terrain.place``
            takes, at level 0): the floor geom (``floor_geom``) becomes the terrain's heightfield and every
            reset puts the robot on the placement's spawn point (the keyframe shifted by its x, y and ground
            height); base heights (fall check, ``min_height``) are then measured from the lowest ground within
            the robot's footprint (the horizontal reach of its colliding geoms from the base, at the keyframe).
        substeps: integration steps per physics step (each ``sim_dt / substeps``, the PD torque held over
            them, so the controller runs as on the model's step). None (default): 1, or where added damping
            (``damping``, ``damping_kd``) takes the explicit damping step (:func:`damping_step`) past
            ``DAMPING_STEP_LIMIT``, the fewest that keep it within: 4 for the G1 at +4 kd, whose damping
            the model's 2 ms step would integrate unstably. Attribute ``substeps``; in ``run``'s summary.

    Attributes: ``controller`` (``RobotController``), ``robot`` (its ``RobotMetadata``), ``model``,
    ``data``, ``commands``, ``control_dt``, ``latency``, ``terrain`` (the ``Placement`` or None).

    Raises:
        DeployError, ControllerError: bad policy, metadata, model or option (one line).
    """

    def __init__(self, policy_path: str | Path, model_xml: str | Path | None = None, meshes: bool = False,
                 seed: int = 0, init_yaw: float = 0.1, latency: int | None = None, push: float = 0.0,
                 push_interval: tuple[float, float] = (5.0, 10.0), floor_friction: float | None = None,
                 mass_scale: float = 1.0, payload: float = 0.0, damping: float = 0.0, frictionloss_scale: float = 1.0,
                 armature_scale: float = 1.0, controller: RobotController | None = None, damping_kd: float = 0.0,
                 terrain: Any = None, substeps: int | None = None):
        self.controller = ctrl = controller if controller is not None else RobotController(policy_path)
        self.robot = robot = ctrl.robot
        self.path = ctrl.policy.path
        unknown = [c for c in robot.commands if c not in MEASURED]
        if unknown:
            raise DeployError(f"{self.path.name}: command {unknown[0]!r} is unknown to this harness (known: "
                              f"{sorted(MEASURED)}); update export/report.py MEASURED")
        try:
            if terrain is not None and not isinstance(terrain, terrain_mod.Placement):
                terrain = terrain_mod.place(terrain)
        except terrain_mod.TerrainError as e:
            raise DeployError(str(e)) from None
        self.terrain = terrain
        try:
            xml = Path(model_xml) if model_xml is not None else scene.model_file(
                robot.model.package, robot.model.path, robot.model.install)
            built = scene.build_scene(
                xml, robot.joint_names, robot.kp, robot.kd, robot.torque_limits, actuators="motor",
                sim_dt=robot.sim_dt, armature=robot.armature, extra_sensors=robot.extra_sensors, meshes=meshes,
                solver_iterations=robot.solver_iterations, solver_ls_iterations=robot.solver_ls_iterations,
                terrain=terrain.terrain if terrain is not None else None, floor_geom=robot.floor_geom)
        except scene.SceneError as e:
            raise DeployError(f"{e}; {_SCENE_HINT}") from None
        if ctrl.target_low is None and np.isfinite(built.target_range).any():  # contract 1: the scene's range
            self.controller = ctrl = RobotController(ctrl.policy, target_range=built.target_range)
        self.model = model = built.model
        self.data = mujoco.MjData(model)
        self.qadr, self.dadr, self.act_idx = built.qpos_adr, built.dof_adr, built.act_ids
        self.control_dt, self.decimation = ctrl.control_dt, robot.decimation
        if robot.imu_site:
            _named(model, mujoco.mjtObj.mjOBJ_SITE, robot.imu_site, "imu_site")
        self.base = _named(model, mujoco.mjtObj.mjOBJ_BODY, robot.base_body, "base_body")
        root = model.body_jntadr[self.base]
        if root < 0 or model.jnt_type[root] != mujoco.mjtJoint.mjJNT_FREE:
            raise DeployError(f"base body {robot.base_body!r} has no free joint (base_body); {_SCENE_HINT}")
        self.root_qpos, self.root_dof = int(model.jnt_qposadr[root]), int(model.jnt_dofadr[root])
        self._set_dynamics(floor_friction, mass_scale, payload)
        self._set_joints(damping, damping_kd, frictionloss_scale, armature_scale)
        if robot.init_keyframe:
            self.key = _named(model, mujoco.mjtObj.mjOBJ_KEY, robot.init_keyframe, "init_keyframe")
        else:
            self.key = 0 if model.nkey else -1
        self._set_substeps(substeps, added_damping=damping > 0 or damping_kd > 0)
        # the sensor roles the controller reads, those that measure tracking, and the orientation (falls)
        self.commands = list(robot.commands)
        measure_roles = [MEASURED[c][0] for c in self.commands]
        wanted = [r for r in ctrl.required_inputs if r not in ("joint_pos", "joint_vel")] + measure_roles
        if "orientation" in robot.sensors:
            wanted.append("orientation")
        self._roles = {}
        for role in dict.fromkeys(wanted):
            if role not in robot.sensors:
                raise DeployError(f"{self.path.name}: robot metadata sensors has no {role!r} role; re-export the policy")
            self._roles[role] = _sensor_slice(model, robot.sensors[role], f"sensors.{role}")
        self._measure = []
        for c in self.commands:
            role, k, _ = MEASURED[c]
            sl = self._roles[role]
            if sl.stop - sl.start <= k:
                raise DeployError(f"sensor {robot.sensors[role]!r} (sensors.{role}) has no component {k}; {_SCENE_HINT}")
            self._measure.append(sl.start + k)
        self._measure = np.array(self._measure)
        self.latency = int(robot.action_latency if latency is None else latency)
        if self.latency < 0:
            raise DeployError(f"latency must be >= 0 control steps, got {self.latency}")
        self.push, self.push_interval = float(push), (float(push_interval[0]), float(push_interval[1]))
        if self.push < 0 or not 0 < self.push_interval[0] <= self.push_interval[1]:
            raise DeployError(f"push must be >= 0 m/s and push_interval 0 < lo <= hi s, got {push}, {push_interval}")
        self.rng = np.random.default_rng(seed)
        self.init_yaw = float(init_yaw)
        self._footprint = self._reach() if terrain is not None else 0.0
        self._pending: deque = deque()
        self._until_push = 0
        self.pushes = 0

    def _set_dynamics(self, floor_friction: float | None, mass_scale: float, payload: float) -> None:
        """Other dynamics than the model file's (robustness checks; training randomizes the same fields)."""
        m = self.model
        if floor_friction is not None:
            if not floor_friction > 0:
                raise DeployError(f"floor friction must be > 0, got {floor_friction}")
            floor = _named(m, mujoco.mjtObj.mjOBJ_GEOM, self.robot.floor_geom, "floor_geom")
            m.geom_friction[floor, 0] = floor_friction
            pairs = (m.pair_geom1 == floor) | (m.pair_geom2 == floor)   # explicit floor contacts carry their own
            m.pair_friction[pairs, :2] = floor_friction
        if not mass_scale > 0 or m.body_mass[self.base] * mass_scale + payload <= 0:
            raise DeployError(f"mass_scale must be > 0 and leave the base a positive mass, got {mass_scale}, "
                              f"payload {payload}")
        robot_bodies = m.body_rootid == m.body_rootid[self.base]
        m.body_mass[robot_bodies] *= mass_scale
        m.body_mass[self.base] += payload

    def _set_joints(self, damping: float, damping_kd: float, frictionloss_scale: float, armature_scale: float) -> None:
        """Another model of the same robot's joints (model mismatch: what a real robot's gearboxes and
        motors add to a model)."""
        if not (damping >= 0 and damping_kd >= 0 and frictionloss_scale >= 0 and armature_scale >= 0):
            raise DeployError(f"damping, damping_kd, frictionloss_scale and armature_scale must be >= 0, got "
                              f"{damping}, {damping_kd}, {frictionloss_scale}, {armature_scale}")
        m, dof = self.model, self.dadr
        m.dof_damping[dof] += damping + damping_kd * np.asarray(self.robot.kd, dtype=np.float64)
        m.dof_frictionloss[dof] *= frictionloss_scale
        m.dof_armature[dof] *= armature_scale

    # -------------------------------------------------------------- state
    def reset(self) -> None:
        """The ``init_keyframe`` turned by a random yaw, the controller reset, no pending targets;
        ends with ``mj_forward`` so the sensors match the state (as after every :meth:`step`)."""
        if self.key >= 0:
            mujoco.mj_resetDataKeyframe(self.model, self.data, self.key)
        else:
            mujoco.mj_resetData(self.model, self.data)
        self.data.time = 0.0
        yaw = self.rng.uniform(-self.init_yaw, self.init_yaw)
        quat = self.data.qpos[self.root_qpos + 3:self.root_qpos + 7]
        mujoco.mju_mulQuat(quat, np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]), quat.copy())
        if self.terrain is not None:
            self.data.qpos[self.root_qpos:self.root_qpos + 3] += self.terrain.spawn
        self.data.ctrl[:] = 0.0
        self.controller.reset()
        self._pending = deque(self.controller.default_pose.copy() for _ in range(self.latency))
        self._until_push = self._push_steps()
        mujoco.mj_forward(self.model, self.data)

    def _reach(self) -> float:
        """The horizontal distance (m) from the base to the farthest colliding geom of the robot at the
        init keyframe (its footprint on terrain)."""
        m, d = self.model, mujoco.MjData(self.model)
        if self.key >= 0:
            mujoco.mj_resetDataKeyframe(m, d, self.key)
        mujoco.mj_forward(m, d)
        geoms = np.flatnonzero((m.body_rootid[m.geom_bodyid] == m.body_rootid[self.base])
                               & ((m.geom_contype != 0) | (m.geom_conaffinity != 0)))
        if not geoms.size:
            return 0.0
        return float(np.linalg.norm(d.geom_xpos[geoms, :2] - d.xpos[self.base, :2], axis=1).max())

    def _set_substeps(self, substeps: int | None, added_damping: bool) -> None:
        """``substeps`` as given (an int >= 1), or chosen (class docstring); the model's timestep divided by it."""
        if substeps is None:
            substeps = 1
            if added_damping:
                qpos0 = self.model.key_qpos[self.key] if self.key >= 0 else None
                substeps = damping_substeps(self.model, self.dadr, qpos0)
        elif isinstance(substeps, bool) or not isinstance(substeps, (int, np.integer)) or substeps < 1:
            raise DeployError(f"substeps must be an integer >= 1, got {substeps!r}")
        self.substeps = int(substeps)
        self.model.opt.timestep /= self.substeps

    def _push_steps(self) -> int:
        return round(self.rng.uniform(*self.push_interval) / self.control_dt) if self.push > 0 else 0

    def measurements(self) -> dict[str, np.ndarray]:
        """What the robot's driver would hand the controller: each sensor role's reading, ``joint_pos``
        and ``joint_vel`` (float64 copies; the sensors are current after :meth:`reset` / :meth:`step`)."""
        d = self.data
        out = {role: d.sensordata[sl].copy() for role, sl in self._roles.items()}
        out["joint_pos"], out["joint_vel"] = d.qpos[self.qadr].copy(), d.qvel[self.dadr].copy()
        return out

    def base_height(self) -> float:
        """The base body's height (m) above the ground (z = 0; on terrain, the lowest ground within the robot's
        footprint around the base)."""
        x, y, z = self.data.xpos[self.base]
        if self.terrain is None:
            return float(z)
        return float(z - self.terrain.terrain.lowest_near(x, y, self._footprint))

    def measured(self) -> np.ndarray:
        """What tracks each command (``MEASURED``), from the current sensors, float64 ``[len(commands)]``."""
        return self.data.sensordata[self._measure].copy()

    def orientation(self) -> np.ndarray:
        """The base's orientation quaternion (w, x, y, z), float64 ``[4]``: the orientation sensor's, else the
        base body's (``rules.projected_gravity`` turns it into the tilt)."""
        if "orientation" in self._roles:
            return self.data.sensordata[self._roles["orientation"]].copy()
        return self.data.xquat[self.base].copy()

    def fallen(self) -> bool:
        """The robot's fall condition (``rules.fallen``): tilt (from :meth:`orientation`) and the base height."""
        fall = self.robot.fall
        return bool(rules.fallen(rules.projected_gravity(self.orientation()), fall.max_tilt_cos,
                                 self.base_height(), fall.min_base_height))

    # --------------------------------------------------------------- step
    def step(self, command) -> np.ndarray:
        """One control step: the controller's targets from the current measurements (applied
        ``latency`` steps later), then ``decimation`` physics steps of PD torques (``controller.torques``
        from the current encoders, then ``mj_step2``, ``mj_step1``: training's order, so the sensors
        describe the new state). Returns the controller's clipped action ``[J]``."""
        ctrl = self.controller
        self._pending.append(ctrl.step(self.measurements(), np.asarray(command, dtype=np.float64)))
        target = self._pending.popleft()
        if self.push > 0:
            self._until_push -= 1
            if self._until_push <= 0:  # a kick of the base velocity, as training's push
                angle, kick = self.rng.uniform(0, 2 * math.pi), self.rng.uniform(0, self.push)
                self.data.qvel[self.root_dof:self.root_dof + 2] += kick * np.array([math.cos(angle), math.sin(angle)])
                mujoco.mj_forward(self.model, self.data)
                self.pushes += 1
                self._until_push = self._push_steps()
        d, qa, da = self.data, self.qadr, self.dadr
        for _ in range(self.decimation):
            self.physics_step(ctrl.torques(d.qpos[qa], d.qvel[da], target))
        return ctrl.last_action

    def physics_step(self, torques) -> None:
        """One physics step (``sim_dt``) with joint ``torques`` (N m, ``joint_names`` order) on the motors:
        ``mj_step2`` then ``mj_step1``, so the sensors describe the new state (the engines' order); ``substeps``
        times, at ``sim_dt / substeps``, with the same torques."""
        self.data.ctrl[self.act_idx] = torques
        for _ in range(self.substeps):
            mujoco.mj_step2(self.model, self.data)
            mujoco.mj_step1(self.model, self.data)

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
            size: tuple[int, int] = (640, 480), on_frame=None, control_step=None,
            heading_stiffness: float | None = None) -> dict[str, Any]:
        """Follow ``schedule`` [(duration_s, *command), ...] (command in ``commands`` order); on a fall,
        count it, reset, go on.

        Achieved values are noise-free sensor readings (``MEASURED``: e.g. vx, vy from the
        ``local_linvel`` role, yaw rate from ``gyro`` z), averaged over each segment after skipping its
        first ``skip_s`` s and ``skip_s`` s after each fall reset. Returns ``{"segments": [{"duration_s",
        "<c>_cmd", "<c>" for each command c, "falls", "min_height", "samples", "x_end", "y_end", "ground_max"}],
        "summary": {...},
        "commands", "falls": [{"segment", "time_in_segment_s", "up_z", "base_height"}]}`` (``falls``: where
        each fall was detected, the z of the base's up axis and its height in m); a segment with no sample
        after the skip has ``nan`` means. ``x_end``, ``y_end``: where the base is at the segment's end, in m
        from its start point (world axes; a fall reset moves it back there); ``ground_max``: the highest
        ground under the base during the segment, m above the start's ground (0 without terrain; the
        summary's ``ground_max`` is the run's: +0.8 m on top of the stairs corridor). ``video``: MP4 at
        ``1 / (control_dt * frame_every)`` fps. ``on_frame(frame, info) -> frame``: optional, called on
        each video frame (uint8 [H, W, 3]) before it is written; ``info`` holds ``step``, ``time_s``,
        ``segment`` (index), ``segments``, ``commands`` (names), ``command``, ``velocity`` (measured,
        same order) and ``falls``. ``control_step(command)``: one control step of your own instead of
        :meth:`step` (e.g. a robot's driver loop around the controller, with :meth:`measurements` and
        :meth:`physics_step` standing in for the hardware).

        ``heading_stiffness`` (None: off): an operator who holds headings. Each segment's ``yaw_rate`` entry is
        then a heading (rad, world frame: 0 along the scene's +x axis, the stairs corridor's axis), and every
        control step commands the yaw rate ``rules.heading_command(heading now, that heading,
        heading_stiffness, the yaw_rate range)``, as training's ``heading_prob`` does. The segment's
        ``yaw_rate_cmd`` is then the mean commanded yaw rate over its samples, and it adds ``heading_cmd`` and
        ``heading_err`` (the mean absolute heading error, rad); the summary adds ``mean_abs_heading_err``.

        Raises:
            ScheduleError: a malformed schedule. DeployError: video cannot be rendered, or a heading
            operator for a policy without a ``yaw_rate`` command.
        """
        k_cmd = len(self.commands)
        yaw_i = self.commands.index("yaw_rate") if "yaw_rate" in self.commands else None
        if heading_stiffness is not None and (yaw_i is None or not heading_stiffness > 0):
            raise DeployError(f"heading_stiffness needs a policy with a yaw_rate command (this one: {self.commands}) "
                              f"and a value > 0 (got {heading_stiffness})")
        try:
            schedule = [tuple(float(v) for v in seg) for seg in schedule]
        except (TypeError, ValueError):
            schedule = []
        if not schedule or any(len(s) != 1 + k_cmd or not s[0] > 0 for s in schedule):
            raise ScheduleError(f"schedule must be a non-empty list of (duration_s > 0, {', '.join(self.commands)})")
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
        t0, rows, k, fallen_before, fall_events = time.perf_counter(), [], 0, 0, []
        self.pushes = 0
        self.reset()
        if writer is not None:
            cam.distance = self._camera_distance()
        skip, since_reset = round(skip_s / self.control_dt), 0  # in control steps
        try:
            start = self.data.xpos[self.base].copy()  # after reset: the start point
            ground0 = self.terrain.spawn[2] if self.terrain is not None else 0.0
            for seg, (duration, *command) in enumerate(schedule):
                samples, falls, min_h, ground_max, sent_yaw, heading_err = [], 0, math.inf, 0.0, [], []
                for i in range(round(duration / self.control_dt)):
                    if self.fallen():
                        falls += 1
                        fall_events.append({"segment": seg, "time_in_segment_s": round(i * self.control_dt, 3),
                                            "up_z": round(float(-rules.projected_gravity(self.orientation())[2]), 3),
                                            "base_height": round(self.base_height(), 3)})
                        self.reset()
                        since_reset = 0
                    sent = command
                    if heading_stiffness is not None:   # the operator steers toward the segment's heading
                        now, lo, hi = rules.heading(self.orientation()), *self.robot.command_ranges["yaw_rate"]
                        sent = list(command)
                        sent[yaw_i] = float(rules.heading_command(now, command[yaw_i], heading_stiffness, lo, hi))
                    if i >= skip and since_reset >= skip:
                        samples.append(self.measured())
                        if heading_stiffness is not None:
                            sent_yaw.append(sent[yaw_i])
                            heading_err.append(abs(float(rules.wrap_angle(command[yaw_i] - now))))
                    min_h = min(min_h, self.base_height())
                    if self.terrain is not None:
                        x, y = self.data.xpos[self.base, :2]
                        ground_max = max(ground_max, float(self.terrain.terrain.height_at(x, y)) - ground0)
                    if writer is not None and k % frame_every == 0:
                        renderer.update_scene(self.data, camera=cam)
                        frame = renderer.render()
                        if on_frame is not None:
                            frame = on_frame(frame, {"step": k, "time_s": k * self.control_dt, "segment": seg,
                                                     "segments": len(schedule), "commands": self.commands,
                                                     "command": tuple(sent),
                                                     "velocity": tuple(float(v) for v in self.measured()),
                                                     "falls": fallen_before + falls})
                        writer.append_data(frame)
                    (control_step or self.step)(sent)
                    since_reset += 1
                    k += 1
                mean = np.mean(samples, axis=0) if samples else np.full(k_cmd, np.nan)
                row: dict[str, Any] = {"duration_s": duration}
                for c, want, got in zip(self.commands, command, mean, strict=True):
                    row[f"{c}_cmd"], row[c] = want, float(got)
                if heading_stiffness is not None:
                    row["heading_cmd"], row["yaw_rate_cmd"] = command[yaw_i], _mean(sent_yaw)
                    row["heading_err"] = _mean(heading_err)
                row.update(falls=falls, min_height=min_h, samples=len(samples),
                           x_end=float(self.data.xpos[self.base, 0] - start[0]),
                           y_end=float(self.data.xpos[self.base, 1] - start[1]), ground_max=ground_max)
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
        if heading_stiffness is not None:
            summary["mean_abs_heading_err"] = _mean([r["heading_err"] for r in rows if r["samples"]])
            summary["heading_stiffness"] = float(heading_stiffness)
        summary.update(falls=sum(r["falls"] for r in rows), pushes=self.pushes, wall_s=time.perf_counter() - t0,
                       sim_s=k * self.control_dt, skip_s=skip_s, latency=self.latency, substeps=self.substeps,
                       ground_max=max(r["ground_max"] for r in rows))
        out = {"policy": str(self.path), "robot_name": self.robot.name,
               "commands": list(self.commands), "segments": rows, "summary": summary, "falls": fall_events}
        if self.terrain is not None:
            out["terrain"] = self.terrain.to_dict()
        return out


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def run(policy_path: str | Path, schedule=None, seed: int = 0, video: str | Path | None = None,
        model_xml: str | Path | None = None, latency: int | None = None, push: float = 0.0,
        floor_friction: float | None = None, mass_scale: float = 1.0, payload: float = 0.0, damping: float = 0.0,
        frictionloss_scale: float = 1.0, armature_scale: float = 1.0, damping_kd: float = 0.0,
        terrain: Any = None, substeps: int | None = None, **kwargs) -> dict[str, Any]:
    """Build a :class:`MujocoHarness` (meshes only when ``video``) and run ``schedule`` (default
    :func:`schedules.default_schedule` of the policy's commands); ``kwargs`` go to :meth:`MujocoHarness.run`."""
    harness = MujocoHarness(policy_path, model_xml=model_xml, meshes=video is not None, seed=seed, latency=latency,
                            push=push, floor_friction=floor_friction, mass_scale=mass_scale, payload=payload,
                            damping=damping, frictionloss_scale=frictionloss_scale, armature_scale=armature_scale,
                            damping_kd=damping_kd, terrain=terrain, substeps=substeps)
    plan = schedule if schedule is not None else default_schedule(harness.commands)
    return harness.run(plan, video=video, **kwargs)


ERRORS = (DeployError, ScheduleError, ControllerError)
"""Every error a bad input raises in the harness (each with a one-line message)."""
