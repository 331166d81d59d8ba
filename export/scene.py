"""The robot's MuJoCo scene as a policy sees it: every scene edit, written once.

Training (``robo_ppo/robots/model.py``) and the MuJoCo harness
(``harness.py``) both build their model with :func:`build_scene`, so the
robot they simulate is the same scene with the same edits:

* the joints' actuators follow the PD law of ``rules.pd_torques``: in training
  as MuJoCo PD actuators (``actuators="pd"``: ``rules.pd_actuator``; MuJoCo
  runs the law inside each physics step), in the harness as torque motors
  (``actuators="motor"``: the controller computes the law, as on the robot);
* each actuated joint's own damping is removed (``kd`` is the law's) and its
  armature set when given;
* the sensors training added (``extra_sensors``) are added;
* visual meshes and textures are dropped (kept, collision-free, for video);
* the timestep and solver iterations are the training ones;
* optionally (``terrain=``), the floor geom becomes a terrain's heightfield (``terrain.py``).

Imports mujoco and numpy only.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

try:
    from . import terrain as terrain_mod
    from .robot_metadata import package_path_problem
    from .rules import pd_actuator
except ImportError:  # run from the kit's folder
    import terrain as terrain_mod
    from robot_metadata import package_path_problem
    from rules import pd_actuator

FORCE_SENSOR = "robo_ppo_actuator_force_{joint}"
"""Name of the ``actuatorfrc`` sensor added for each joint with ``force_sensors`` (N m)."""


class SceneError(Exception):
    """The scene lacks something the robot needs, or cannot be read; the message names what."""


@dataclass
class Scene:
    """A compiled robot scene.

    Attributes (``J`` joints in action order): ``model`` (``mujoco.MjModel``), ``path``, ``qpos_adr`` /
    ``dof_adr`` / ``act_ids`` int ``[J]``, ``torque_limits`` float ``[J]`` (N m), ``target_range``
    float ``[J, 2]`` (the original actuators' control range, ``+-inf`` where unlimited), ``terrain``
    (the ``terrain.Terrain`` under the robot, None: the scene's own floor).
    """

    model: Any
    path: Path
    qpos_adr: np.ndarray
    dof_adr: np.ndarray
    act_ids: np.ndarray
    torque_limits: np.ndarray
    target_range: np.ndarray
    terrain: Any = None


def model_file(package: str, path: str, install: str = "") -> Path:
    """The scene file ``path`` inside the installed Python package ``package``.

    ``path`` comes from a policy file (untrusted), so it must stay inside the package: it is checked
    as a string first (``robot_metadata.package_path_problem``: relative, no ``..``), then resolved
    against the package folder, symlinks included, and refused unless it lands inside it; all before
    anything is opened. The package is located without importing it (nor its parents).

    Raises:
        SceneError: a path that leaves the package, a package name that is not a Python name, the
            package is not installed, or it lacks the file.
    """
    hint = f"; install it: {install}" if install else ""
    if not package or not path:
        raise SceneError("the model source lacks package/path")
    problem = package_path_problem(path)
    if problem:
        raise SceneError(f"model.path {problem}; refusing to open it")
    parts = package.split(".") if isinstance(package, str) else [""]
    if not all(part.isidentifier() for part in parts):
        raise SceneError(f"model.package {str(package)[:80]!r} is not a Python package name")
    roots = _package_dirs(parts)
    if not roots:
        raise SceneError(f"the model package {package!r} is not installed{hint}")
    for root in roots:
        root = root.resolve()
        found = (root / path).resolve()
        if not found.is_relative_to(root):
            raise SceneError(f"model.path {path!r} resolves outside the package {package} ({found}: a symlink); "
                             "refusing to open it")
        if found.is_file():
            return found
    raise SceneError(f"{package} has no {path}{hint}")


def _package_dirs(parts: list[str]) -> list[Path]:
    """The folders of the package ``.``-joined ``parts``, found without importing it or its parents
    (a regular package: its ``__init__``'s folder; a namespace package: each of its folders)."""
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: found, not imported
        for i in range(1, len(parts)):
            locations = spec.submodule_search_locations if spec is not None else None
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i + 1]), locations) if locations else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return []
    if spec.origin and spec.has_location:
        return [Path(spec.origin).parent]
    return [Path(d) for d in spec.submodule_search_locations]


def _enum(kind, prefix: str, value: str | None, key: str):
    member = getattr(kind, f"{prefix}{str(value).upper()}", None) if value else None
    if member is None:
        known = sorted(n[len(prefix):].lower() for n in kind.__members__ if n.startswith(prefix))
        raise SceneError(f"{key} {value!r} is not a MuJoCo {kind.__name__} name; known: {known}")
    return member


def add_sensors(spec: mujoco.MjSpec, sensors: Sequence[dict[str, Any]]) -> None:
    """Add frame/site sensors to ``spec``: dicts of ``name``, ``type`` (``mjtSensor`` name without
    ``mjSENS_``, e.g. ``framepos``), ``objtype``, ``objname`` and optional ``reftype``/``refname``.

    Raises:
        SceneError: an unknown sensor or object type, or an object the scene lacks (named)."""
    for s in sensors:
        for kind, name in ((s.get("objtype"), s["objname"]), (s.get("reftype"), s.get("refname"))):
            find = getattr(spec, str(kind), None) if kind else None
            if callable(find) and name and find(name) is None:
                raise SceneError(f"sensor {s['name']!r}: the scene has no {kind} {name!r}")
        ref = s.get("reftype")
        spec.add_sensor(name=s["name"], type=_enum(mujoco.mjtSensor, "mjSENS_", s.get("type"), "type"),
                        objtype=_enum(mujoco.mjtObj, "mjOBJ_", s.get("objtype"), "objtype"), objname=s["objname"],
                        reftype=_enum(mujoco.mjtObj, "mjOBJ_", ref, "reftype") if ref else mujoco.mjtObj.mjOBJ_UNKNOWN,
                        refname=s.get("refname") or "")


def strip_visuals(spec: mujoco.MjSpec, meshes: bool = False) -> None:
    """Delete mesh geoms, meshes and textures from ``spec`` (``meshes``: keep them, collision-free,
    for video). Every body of the supported robots declares its inertia, so the dynamics do not
    change; textures are most of a scene's memory (11.8 MB per model copy for a Playground quadruped scene)."""
    mesh_geoms = [g for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH]
    if meshes:
        for geom in mesh_geoms:
            geom.contype = geom.conaffinity = 0
        return
    for geom in mesh_geoms:
        spec.delete(geom)
    for mesh in list(spec.meshes):
        spec.delete(mesh)
    for mat in spec.materials:
        mat.textures = [""] * len(mat.textures)
    for tex in list(spec.textures):
        spec.delete(tex)


def _compile(spec: mujoco.MjSpec, path: Path):
    try:
        return spec.compile()
    except ValueError as e:
        raise SceneError(f"cannot compile {path.name}: {str(e).splitlines()[0]}") from None


def build_scene(path: str | Path, joint_names: Sequence[str], kp: Sequence[float], kd: Sequence[float],
                torque_limits: Sequence[float] | None, *, actuators: str, sim_dt: float,
                armature: Sequence[float] | None = None, extra_sensors: Sequence[dict[str, Any]] = (),
                force_sensors: bool = False, meshes: bool = False, arena_mb: float | None = None,
                solver_iterations: int | None = None, solver_ls_iterations: int | None = None,
                terrain: Any = None, floor_geom: str | None = None) -> Scene:
    """Compile the robot's scene with the edits of the module docstring.

    Args:
        path: the scene XML.
        joint_names: actuated joints in action order; each must have a joint actuator.
        kp, kd: per joint (N m/rad, N m s/rad).
        torque_limits: per joint (N m); None: the scene's (the actuator's ``forcerange``, else the
            joint's ``actuatorfrcrange``), which must exist.
        actuators: ``"pd"`` (MuJoCo PD actuators, ``ctrl`` = joint target) or ``"motor"`` (``ctrl`` =
            torque, clamped to ``+-torque_limits``).
        sim_dt: physics timestep (s).
        armature: per joint (kg m^2); None: the scene's.
        extra_sensors: sensors to add (``add_sensors``).
        force_sensors: add an ``actuatorfrc`` sensor per joint (``FORCE_SENSOR``).
        meshes: keep visual meshes and textures (collision-free).
        arena_mb: ``MjData`` arena size (MB); None: MuJoCo's default.
        solver_iterations, solver_ls_iterations: None: the scene's.
        terrain: None (default): the scene's floor as it is. A ``terrain.Terrain`` (or anything
            ``terrain.generate`` takes): the geom ``floor_geom`` (the robot's, e.g. its metadata's) becomes
            its heightfield, keeping its name, friction and contact bits (``Terrain.apply``); a config of
            ``layout: none`` changes nothing.
        floor_geom: the scene's floor geom; needed with ``terrain``.

    Raises:
        SceneError: the file cannot be read or compiled, lacks a joint or its actuator, has no torque
            limit for a joint, uses the RK4 integrator (the engines step with mj_step2/mj_step1), or
            ``terrain`` is given and cannot be generated or the scene has no world-body geom ``floor_geom``.
    """
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"model file {path} does not exist")
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except ValueError as e:
        raise SceneError(f"cannot parse {path.name}: {str(e).splitlines()[0]}") from None
    strip_visuals(spec, meshes=meshes)
    if arena_mb is not None:
        spec.memory = int(arena_mb * 2**20)
    joints = {j.name: j for j in spec.joints}
    acts: dict[str, Any] = {}
    for a in spec.actuators:
        if a.trntype == mujoco.mjtTrn.mjTRN_JOINT:
            acts.setdefault(a.target, a)
    for name in joint_names:
        if name not in joints:
            raise SceneError(f"the model {path.name} has no joint {name!r}")
        if name not in acts:
            raise SceneError(f"joint {name!r} has no actuator in {path.name}")
    original = _compile(spec, path)
    jid = [mujoco.mj_name2id(original, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joint_names]
    act_ids = np.array([int(np.flatnonzero((original.actuator_trntype == mujoco.mjtTrn.mjTRN_JOINT)
                                           & (original.actuator_trnid[:, 0] == j))[0]) for j in jid])
    target_range = np.where(original.actuator_ctrllimited[act_ids, None].astype(bool),
                            original.actuator_ctrlrange[act_ids], [-np.inf, np.inf])
    if torque_limits is None:
        # the actuator's force range, else the joint's actuator force range
        joint_limit = np.where(original.jnt_actfrclimited[jid], np.abs(original.jnt_actfrcrange[jid]).max(axis=1), 0.0)
        act_limit = np.where(original.actuator_forcelimited[act_ids],
                             np.abs(original.actuator_forcerange[act_ids]).max(axis=1), 0.0)
        limits = np.where(act_limit > 0, act_limit, joint_limit)
        if not (limits > 0).all():
            bad = joint_names[int(np.flatnonzero(limits <= 0)[0])]
            raise SceneError(f"joint {bad!r} has no torque limit in {path.name} (actuator forcerange or joint "
                             "actuatorfrcrange)")
    else:
        limits = np.asarray(torque_limits, dtype=np.float64)
    for i, name in enumerate(joint_names):
        act = acts[name]
        if actuators == "pd":
            law = pd_actuator(float(kp[i]), float(kd[i]), float(limits[i]), len(act.gainprm))
            act.gaintype, act.biastype = mujoco.mjtGain.mjGAIN_FIXED, mujoco.mjtBias.mjBIAS_AFFINE
            act.gainprm, act.biasprm = law["gainprm"], law["biasprm"]
            if torque_limits is not None:
                act.forcerange = law["forcerange"]
                act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        elif actuators == "motor":
            act.set_to_motor()  # gain 1, no bias
            gear = np.zeros(len(act.gear))
            gear[0] = 1.0
            act.gear = gear
            act.ctrlrange = act.forcerange = [-float(limits[i]), float(limits[i])]
            act.ctrllimited = act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        else:
            raise ValueError(f"actuators must be 'pd' or 'motor', not {actuators!r}")
        joints[name].damping = np.zeros_like(joints[name].damping)  # kd is the PD law's
        if armature is not None:
            joints[name].armature = float(armature[i])
        if force_sensors:
            spec.add_sensor(name=FORCE_SENSOR.format(joint=name), type=mujoco.mjtSensor.mjSENS_ACTUATORFRC,
                            objtype=mujoco.mjtObj.mjOBJ_ACTUATOR, objname=act.name or "")
    if actuators == "motor":
        for key in spec.keys:  # keyframe ctrl is a joint target for the scene's position actuators
            if len(key.ctrl):
                key.ctrl = np.zeros(len(key.ctrl))
    add_sensors(spec, extra_sensors)
    if terrain is not None:
        try:
            if not isinstance(terrain, terrain_mod.Terrain):
                terrain = terrain_mod.generate(terrain)
            if terrain is not None:
                terrain.apply(spec, floor_geom)
        except terrain_mod.TerrainError as e:
            raise SceneError(f"terrain: {e}") from None
    model = _compile(spec, path)
    model.opt.timestep = float(sim_dt)
    if model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4:
        raise SceneError(f"{path.name} uses the RK4 integrator; the engines step with mj_step2/mj_step1 (Euler "
                         "or implicit integrators only)")
    if solver_iterations is not None:
        model.opt.iterations = int(solver_iterations)
    if solver_ls_iterations is not None:
        model.opt.ls_iterations = int(solver_ls_iterations)
    return Scene(model=model, path=path, qpos_adr=np.array([model.jnt_qposadr[j] for j in jid]),
                 dof_adr=np.array([model.jnt_dofadr[j] for j in jid]), act_ids=act_ids, torque_limits=limits,
                 target_range=target_range, terrain=terrain)


__all__ = ["Scene", "SceneError", "build_scene", "model_file", "add_sensors", "strip_visuals", "FORCE_SENSOR"]
