"""The robot's MuJoCo model as a task trains on it, with every name resolved once.

``RobotModel(description, sim_dt)`` finds the scene file in its installed
package and builds it with the deployment kit's ``scene.build_scene`` (the
scene edits the MuJoCo harness applies too): each joint's actuator computes
the PD law of ``rules.pd_torques`` inside the physics step
(``actuators="pd"``), the description's torque limits and armature, its
``extra_sensors``, one ``actuatorfrc`` sensor per joint for the privileged
observation, meshes and textures dropped; with a terrain (``terrain.Terrain`` of the
deploy kit, docs/terrain.md), the description's floor geom becomes its heightfield.
It then resolves every name of the description to indices, failing at start-up
with one line that names what the model lacks.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from robo_ppo.deploy_kit import scene
from robo_ppo.deploy_kit.scene import FORCE_SENSOR, SceneError
from robo_ppo.errors import ConfigError
from robo_ppo.robots.description import RobotDescription, expand_extra_sensors, per_joint


def model_file(desc: RobotDescription) -> Path:
    """The scene file of ``desc.model`` inside its installed package.

    Raises:
        ConfigError: the package is not installed or lacks the file.
    """
    try:
        return scene.model_file(desc.model.package, desc.model.path, desc.model.install)
    except SceneError as e:
        raise ConfigError(f"robot {desc.name}: {e} (robot.model)") from None


def _config_key(scene_error: str, feet: list[str]) -> str:
    """The description key to fix for a ``SceneError`` message (a per-foot sensor of a site the scene
    lacks: ``robot.feet`` names it)."""
    if any(f"has no site {foot!r}" in scene_error for foot in feet):
        return "robot.feet"
    for words, key in ((("no joint", "actuator in"), "robot.joint_names"), (("torque limit",), "robot.torque_limits"),
                       (("MuJoCo mjt", "sensor '"), "robot.extra_sensors")):
        if any(w in scene_error for w in words):
            return key
    return "robot.model"


class RobotModel:
    """A robot description bound to its compiled MuJoCo model.

    Args:
        desc: the robot description.
        sim_dt: physics timestep (s) written into the model.
        solver_iterations, solver_ls_iterations: constraint solver (line-search) iterations written
            into the model (None: the file's).
        meshes: keep visual meshes and textures (for video); training drops them.
        terrain: a generated terrain (``robo_ppo.deploy_kit.terrain.Terrain``) that replaces the floor geom
            ``desc.floor_geom`` (``scene.build_scene(terrain=...)``); None: the scene's own floor.

    Attributes (``J`` joints, ``F`` feet): ``model`` (``mujoco.MjModel``), ``njoints``,
    ``qpos_adr`` / ``dof_adr`` / ``act_ids`` int ``[J]``, ``default_pose`` float ``[J]`` (rad),
    ``init_qpos`` float ``[nq]``, ``kp`` / ``kd`` / ``torque_limits`` float ``[J]`` (N m: the
    description's, else the actuator's ``forcerange``, else the joint's ``actuatorfrcrange``),
    ``joint_range`` float ``[J, 2]`` (rad), ``base_body``, ``floor_geom``, ``imu_site``,
    ``feet_sites`` int ``[F]``, ``sensor(role)`` -> slice of ``sensordata``,
    ``foot_sensor(kind)`` -> int ``[F, dim]`` indices, ``force_adr`` int ``[J]``, ``extra_sensors``
    (the description's, expanded per foot: what the metadata carries for the deploy loop), ``terrain``
    (the ``Terrain`` or None) and ``footprint`` (m: the horizontal reach of the robot's colliding geoms
    from the base at the init keyframe; the deploy loop's fall check measures the base height from the
    lowest ground within it).

    Raises:
        ConfigError: the model lacks a joint, actuator, body, site, sensor,
            geom or keyframe the description names (one line naming it).
    """

    def __init__(self, desc: RobotDescription, sim_dt: float, meshes: bool = False,
                 solver_iterations: int | None = None, solver_ls_iterations: int | None = None,
                 terrain=None):
        self.desc = desc
        self.terrain = terrain
        self.path = model_file(desc)
        n = len(desc.joint_names)
        self.extra_sensors = expand_extra_sensors(desc)
        try:
            built = scene.build_scene(
                self.path, desc.joint_names, per_joint(desc.kp, n), per_joint(desc.kd, n), desc.torque_limits,
                actuators="pd", sim_dt=sim_dt, armature=desc.armature, extra_sensors=self.extra_sensors,
                force_sensors=True, meshes=meshes, arena_mb=desc.arena_mb, solver_iterations=solver_iterations,
                solver_ls_iterations=solver_ls_iterations,
                **({"terrain": terrain, "floor_geom": desc.floor_geom} if terrain is not None else {}))
        except SceneError as e:
            raise ConfigError(f"robot {desc.name}: {e} ({_config_key(str(e), list(desc.feet))})") from None
        self.model = m = built.model
        self.njoints = n
        self.qpos_adr, self.dof_adr, self.act_ids = built.qpos_adr, built.dof_adr, built.act_ids
        jid = [m.dof_jntid[d] for d in self.dof_adr]
        self.joint_range = m.jnt_range[jid].astype(np.float64)
        self.kp, self.kd = np.asarray(per_joint(desc.kp, n)), np.asarray(per_joint(desc.kd, n))
        self.torque_limits = built.torque_limits
        self.target_range = built.target_range
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
        self.footprint = self._reach(key)

    def _reach(self, key: int) -> float:
        """The largest horizontal distance (m) from the base body to a colliding geom of the robot at
        keyframe ``key``: the robot's footprint (the deploy loop's, ``harness.MujocoHarness``)."""
        m = self.model
        d = mujoco.MjData(m)
        mujoco.mj_resetDataKeyframe(m, d, key)
        mujoco.mj_kinematics(m, d)
        robot = m.body_rootid[m.geom_bodyid] == m.body_rootid[self.base_body]
        geoms = np.flatnonzero(robot & ((m.geom_contype != 0) | (m.geom_conaffinity != 0)))
        if not geoms.size:
            return 0.0
        return float(np.linalg.norm(d.geom_xpos[geoms, :2] - d.xpos[self.base_body, :2], axis=1).max())

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


__all__ = ["RobotModel", "model_file", "FORCE_SENSOR"]
