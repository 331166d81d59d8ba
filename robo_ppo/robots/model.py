"""The robot's MuJoCo model as a task trains on it, with every name resolved once.

``RobotModel(description, sim_dt)`` finds the scene file in its installed
package, edits it on the ``MjSpec`` (the description's gains, torque limits and
armature; the description's ``extra_sensors``; one ``actuatorfrc`` sensor per
joint for the privileged observation; meshes and textures dropped for training: every body of the
supported robots declares its inertia, so the dynamics do not change) and
resolves every name of the description to indices, failing at start-up with
one line that names what the model lacks.

Actuation as trained: each joint's actuator becomes a PD actuator,
``force = clip(kp (ctrl - q) - kd qd, -limit, limit)`` (MuJoCo's affine bias:
``biasprm = (0, -kp, -kd)``), and the joint's own damping is removed, so the
whole PD output is clipped at the torque limit as a motor clips it, at the
physics rate. The deployment kit applies the same law with explicit torques
(``export/deploy.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mujoco
import numpy as np

from robo_ppo.errors import ConfigError
from robo_ppo.robots.description import RobotDescription, expand_extra_sensors, per_joint

FORCE_SENSOR = "robo_ppo_actuator_force_{joint}"
"""Name of the ``actuatorfrc`` sensor added for each joint (N m)."""


def model_file(desc: RobotDescription) -> Path:
    """The scene file of ``desc.model`` inside its installed package.

    Raises:
        ConfigError: the package is not installed or lacks the file.
    """
    src = desc.model
    hint = f"; install it: {src.install}" if src.install else ""
    spec = importlib.util.find_spec(src.package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"robot {desc.name}: the model package {src.package!r} is not installed{hint}")
    path = Path(spec.origin).parent / src.path
    if not path.is_file():
        raise ConfigError(f"robot {desc.name}: {src.package} has no {src.path} (robot.model.path){hint}")
    return path


def add_sensors(spec: mujoco.MjSpec, sensors: list[dict], where: str) -> None:
    """Add frame/site sensors to ``spec``: dicts of ``name``, ``type`` (``mjtSensor`` name without
    ``mjSENS_``, e.g. ``framepos``), ``objtype``, ``objname`` and optional ``reftype``/``refname``
    (``RobotDescription.extra_sensors``, expanded).

    Raises:
        ConfigError: an unknown sensor or object type (one line naming ``where``).
    """
    def enum(kind, prefix: str, value: str | None, key: str):
        member = getattr(kind, f"{prefix}{str(value).upper()}", None) if value else None
        if member is None:
            known = sorted(n[len(prefix):].lower() for n in kind.__members__ if n.startswith(prefix))
            raise ConfigError(f"{where}: {key} {value!r} is not a MuJoCo {kind.__name__} name; known: {known}")
        return member

    for s in sensors:
        ref = s.get("reftype")
        spec.add_sensor(name=s["name"], type=enum(mujoco.mjtSensor, "mjSENS_", s["type"], "type"),
                        objtype=enum(mujoco.mjtObj, "mjOBJ_", s["objtype"], "objtype"), objname=s["objname"],
                        reftype=enum(mujoco.mjtObj, "mjOBJ_", ref, "reftype") if ref else mujoco.mjtObj.mjOBJ_UNKNOWN,
                        refname=s.get("refname") or "")


def strip_visuals(spec: mujoco.MjSpec, meshes: bool = False, textures: bool = False) -> None:
    """Delete mesh geoms and meshes (unless ``meshes``) and textures (unless ``textures``) from ``spec``.
    Textures are most of a scene's memory (the Go1's: 11.8 MB per model copy)."""
    if not meshes:
        for geom in [g for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH]:
            spec.delete(geom)
        for mesh in list(spec.meshes):
            spec.delete(mesh)
    if not textures:
        for mat in spec.materials:
            mat.textures = [""] * len(mat.textures)
        for tex in list(spec.textures):
            spec.delete(tex)


class RobotModel:
    """A robot description bound to its compiled MuJoCo model.

    Args:
        desc: the robot description.
        sim_dt: physics timestep (s) written into the model.
        solver_iterations, solver_ls_iterations: constraint solver (line-search) iterations written
            into the model (None: the file's).
        meshes: keep visual meshes and textures (for video); training drops them.

    Attributes (``J`` joints, ``F`` feet): ``model`` (``mujoco.MjModel``), ``njoints``,
    ``qpos_adr`` / ``dof_adr`` / ``act_ids`` int ``[J]``, ``default_pose`` float ``[J]`` (rad),
    ``init_qpos`` float ``[nq]``, ``kp`` / ``kd`` / ``torque_limits`` float ``[J]`` (N m: the
    description's, else the actuator's ``forcerange``, else the joint's ``actuatorfrcrange``),
    ``joint_range`` float ``[J, 2]`` (rad), ``base_body``, ``floor_geom``, ``imu_site``,
    ``feet_sites`` int ``[F]``, ``sensor(role)`` -> slice of ``sensordata``,
    ``foot_sensor(kind)`` -> int ``[F, dim]`` indices, ``force_adr`` int ``[J]``, ``extra_sensors``
    (the description's, expanded per foot: what the metadata carries for the deploy loop).

    Raises:
        ConfigError: the model lacks a joint, actuator, body, site, sensor,
            geom or keyframe the description names (one line naming it).
    """

    def __init__(self, desc: RobotDescription, sim_dt: float, meshes: bool = False,
                 solver_iterations: int | None = None, solver_ls_iterations: int | None = None):
        self.desc = desc
        self.path = model_file(desc)
        try:
            spec = mujoco.MjSpec.from_file(str(self.path))
        except ValueError as e:
            raise ConfigError(f"robot {desc.name}: cannot parse {self.path.name}: {str(e).splitlines()[0]}") from None
        strip_visuals(spec, meshes=meshes, textures=meshes)
        if desc.arena_mb is not None:
            spec.memory = int(desc.arena_mb * 2**20)
        n = len(desc.joint_names)
        kp, kd = per_joint(desc.kp, n), per_joint(desc.kd, n)
        joint_actuators = {a.target: a for a in spec.actuators if a.trntype == mujoco.mjtTrn.mjTRN_JOINT}
        joints = {j.name: j for j in spec.joints}
        for i, name in enumerate(desc.joint_names):
            if name not in joints:
                raise ConfigError(f"robot {desc.name}: the model has no joint {name!r} (robot.joint_names)")
            if name not in joint_actuators:
                raise ConfigError(f"robot {desc.name}: joint {name!r} has no actuator in {self.path.name}")
            act = joint_actuators[name]
            act.gaintype, act.biastype = mujoco.mjtGain.mjGAIN_FIXED, mujoco.mjtBias.mjBIAS_AFFINE
            gain, bias = np.zeros(len(act.gainprm)), np.zeros(len(act.biasprm))
            gain[0], bias[1], bias[2] = kp[i], -kp[i], -kd[i]   # force = kp (ctrl - q) - kd qd
            act.gainprm, act.biasprm = gain, bias
            if desc.torque_limits is not None:
                act.forcerange = [-desc.torque_limits[i], desc.torque_limits[i]]
                act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
            joints[name].damping = np.zeros_like(joints[name].damping)   # kd is the actuator's
            if desc.armature is not None:
                joints[name].armature = float(desc.armature[i])
            spec.add_sensor(name=FORCE_SENSOR.format(joint=name), type=mujoco.mjtSensor.mjSENS_ACTUATORFRC,
                            objtype=mujoco.mjtObj.mjOBJ_ACTUATOR, objname=act.name or "")
        self.extra_sensors = expand_extra_sensors(desc)
        add_sensors(spec, self.extra_sensors, f"robot {desc.name}: robot.extra_sensors")
        try:
            m = spec.compile()
        except ValueError as e:
            raise ConfigError(f"robot {desc.name}: cannot compile {self.path.name}: {str(e).splitlines()[0]}") from None
        m.opt.timestep = sim_dt
        if m.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4:
            raise ConfigError(f"robot {desc.name}: {self.path.name} uses the RK4 integrator; the engines step "
                              "with mj_step2/mj_step1 (Euler or implicit integrators only)")
        if solver_iterations is not None:
            m.opt.iterations = int(solver_iterations)
        if solver_ls_iterations is not None:
            m.opt.ls_iterations = int(solver_ls_iterations)
        self.model = m
        self.njoints = n
        jid = [self._id(mujoco.mjtObj.mjOBJ_JOINT, j, "robot.joint_names") for j in desc.joint_names]
        self.qpos_adr = np.array([m.jnt_qposadr[j] for j in jid])
        self.dof_adr = np.array([m.jnt_dofadr[j] for j in jid])
        self.act_ids = np.array([int(np.flatnonzero((m.actuator_trntype == mujoco.mjtTrn.mjTRN_JOINT)
                                                    & (m.actuator_trnid[:, 0] == j))[0]) for j in jid])
        self.joint_range = m.jnt_range[jid].astype(np.float64)
        self.kp, self.kd = np.asarray(kp), np.asarray(kd)
        # the actuator's force range, else the joint's actuator force range (a PD clipped as a whole either way)
        joint_limit = np.where(m.jnt_actfrclimited[jid], np.abs(m.jnt_actfrcrange[jid]).max(axis=1), 0.0)
        act_limit = np.where(m.actuator_forcelimited[self.act_ids],
                             np.abs(m.actuator_forcerange[self.act_ids]).max(axis=1), 0.0)
        self.torque_limits = np.where(act_limit > 0, act_limit, joint_limit)
        if not (self.torque_limits > 0).all():
            bad = desc.joint_names[int(np.flatnonzero(self.torque_limits <= 0)[0])]
            raise ConfigError(f"robot {desc.name}: joint {bad!r} has no torque limit in {self.path.name} (actuator "
                              "forcerange or joint actuatorfrcrange): set robot.torque_limits")
        key = self._id(mujoco.mjtObj.mjOBJ_KEY, desc.init_keyframe, "robot.init_keyframe")
        self.init_qpos = m.key_qpos[key].copy()
        self.default_pose = (np.asarray(desc.default_pose, np.float64) if desc.default_pose is not None
                             else self.init_qpos[self.qpos_adr].copy())
        self.base_body = self._id(mujoco.mjtObj.mjOBJ_BODY, desc.base_body, "robot.base_body")
        root = m.body_jntadr[self.base_body]
        if root < 0 or m.jnt_type[root] != mujoco.mjtJoint.mjJNT_FREE:
            raise ConfigError(f"robot {desc.name}: base body {desc.base_body!r} has no free joint (robot.base_body)")
        self.root_qpos, self.root_dof = int(m.jnt_qposadr[root]), int(m.jnt_dofadr[root])
        self.imu_site = self._id(mujoco.mjtObj.mjOBJ_SITE, desc.imu_site, "robot.imu_site")
        self.floor_geom = self._id(mujoco.mjtObj.mjOBJ_GEOM, desc.floor_geom, "robot.floor_geom")
        self.feet_sites = np.array([self._id(mujoco.mjtObj.mjOBJ_SITE, f, "robot.feet") for f in desc.feet], int)
        self._roles = {role: self._sensor(name, f"robot.sensors.{role}") for role, name in desc.sensors.items()}
        self._feet = {}
        for kind in ("contact", "linvel", "pos"):
            pattern = getattr(desc.foot_sensors, kind)
            if pattern:
                self._feet[kind] = np.stack([np.arange(s.start, s.stop) for s in (
                    self._sensor(pattern.format(foot=f), f"robot.foot_sensors.{kind}") for f in desc.feet)])
        self.force_adr = np.array([self._sensor(FORCE_SENSOR.format(joint=j), "").start for j in desc.joint_names])

    # ------------------------------------------------------------------ names
    def _id(self, objtype, name: str, key: str) -> int:
        i = mujoco.mj_name2id(self.model, objtype, name)
        if i < 0:
            kind = objtype.name[6:].lower()
            raise ConfigError(f"robot {self.desc.name}: the model {self.path.name} has no {kind} {name!r} ({key})")
        return i

    def _sensor(self, name: str, key: str) -> slice:
        i = self._id(mujoco.mjtObj.mjOBJ_SENSOR, name, key)
        adr = int(self.model.sensor_adr[i])
        return slice(adr, adr + int(self.model.sensor_dim[i]))

    def sensor(self, role: str) -> slice:
        """``sensordata`` slice of the sensor the description names for ``role``.

        Raises:
            ConfigError: the description names no sensor for ``role``.
        """
        if role not in self._roles:
            raise ConfigError(f"robot {self.desc.name} names no sensor for {role!r}: add it to robot.sensors "
                              f"(known roles here: {sorted(self._roles)})")
        return self._roles[role]

    def sensor_name(self, role: str) -> str:
        self.sensor(role)
        return self.desc.sensors[role]

    def foot_sensor(self, kind: str) -> np.ndarray:
        """int ``[F, dim]`` ``sensordata`` indices of the per-foot sensor ``kind`` (contact, linvel, pos).

        Raises:
            ConfigError: the description has no ``robot.foot_sensors.<kind>``.
        """
        if kind not in self._feet:
            raise ConfigError(f"robot {self.desc.name} has no per-foot {kind!r} sensor: set robot.foot_sensors.{kind}")
        return self._feet[kind]


__all__ = ["RobotModel", "model_file", "strip_visuals", "add_sensors", "FORCE_SENSOR"]
