"""The robot contract inside a policy file: typed, versioned, written by training, read by the kit.

``RobotMetadata`` is the ``robot`` entry of a robot policy's ONNX metadata
(``onnx_controller.read_metadata(path)["robot"]``). The exporter builds it
from the robot description and the task's term declarations
(``robo_ppo/tasks/joystick.py: Joystick.metadata``) and writes
``to_dict()``; the robot-side controller and the MuJoCo harness read it back
with ``from_dict``, which checks every key and fails with one line naming what
is wrong. Nothing else in the kit or in training lists these keys.

Versions (``contract``): 2 is this one. Version 1 files (written before
2026-12; no ``contract`` key) are upgraded on read: the observation term
``joint_pos`` is now ``joint_pos_rel``, and a term's ``sensor`` names a sensor
role (``gyro``) rather than the MuJoCo sensor (``sensors`` maps one to the other).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

CONTRACT_VERSION = 2
"""The ``contract`` version this kit writes and reads (older versions are upgraded, newer refused)."""


class ContractError(Exception):
    """The robot metadata is missing, malformed or of an unknown version; the message (one line)
    names the fix."""


@dataclass
class ModelSource:
    package: str
    """Importable Python package that ships the robot's MuJoCo scene."""
    path: str
    """Scene file relative to the package folder."""
    install: str = ""
    """How to install the package."""


@dataclass
class Fall:
    max_tilt_cos: float = 0.0
    """Fallen when the up axis's z component (cos of the tilt) is below this."""
    min_base_height: float = 0.0
    """... or the base body is below this height (m); 0: not checked."""


@dataclass
class Gait:
    frequency_hz: float
    """The gait clock's frequency on the robot (the middle of the training range)."""
    phase_offsets: list[float]
    """Each foot's phase offset (cycles)."""


@dataclass
class RobotMetadata:
    """Everything a robot-side program needs to run a policy (``J`` joints, in action order).

    The controller: observation ``obs_layout`` (entries ``{name, fn, start, size, scale[, sensor]}``, ``fn``
    a rule of ``rules.OBSERVATIONS``, ``sensor`` a role of ``sensors``), action ``clip(a, *action_clip)``,
    joint targets ``default_pose + action_scale * a``, PD law with ``kp``, ``kd``, ``torque_limits``
    and ``target_range``, policy every ``control_dt`` s, PD every ``sim_dt`` s; the gait clock
    (``gait``) when the policy reads one. The simulator: ``model`` and the names in it (``sensors``,
    ``base_body``, ``imu_site``, ``floor_geom``, ``extra_sensors``), the solver, the keyframe.
    """

    name: str
    task: str
    model: ModelSource
    joint_names: list[str]
    default_pose: list[float]
    action_scale: float
    kp: list[float]
    kd: list[float]
    torque_limits: list[float]
    control_dt: float
    sim_dt: float
    base_body: str
    sensors: dict[str, str]
    """Sensor role (what the controller's inputs are called) -> MuJoCo sensor name in the scene."""
    obs_layout: list[dict[str, Any]]
    commands: list[str]
    command_ranges: dict[str, list[float]]
    contract: int = CONTRACT_VERSION
    init_keyframe: Optional[str] = None
    action_clip: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    target_range: Optional[list[list[float]]] = None
    """Per joint ``[lo, hi]`` of the joint targets (rad); null: the scene's actuator control ranges."""
    armature: Optional[list[float]] = None
    solver_iterations: Optional[int] = None
    solver_ls_iterations: Optional[int] = None
    imu_site: Optional[str] = None
    floor_geom: Optional[str] = None
    critic_obs_layout: list[dict[str, Any]] = field(default_factory=list)
    action_latency: int = 0
    fall: Fall = field(default_factory=Fall)
    extra_sensors: list[dict[str, Any]] = field(default_factory=list)
    """Sensors training added to the scene (the harness adds them too)."""
    gait: Optional[Gait] = None

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ONNX ``robot`` metadata entry); ``None`` fields are left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, robot: Any, source: str = "policy") -> RobotMetadata:
        """Read (and upgrade) a ``robot`` metadata dict.

        Raises:
            ContractError: not a dict, a missing or unknown key, a wrong type, per-joint lists of the
                wrong length, a layout with gaps, or a newer contract version (one line, naming ``source``).
        """
        if not isinstance(robot, dict):
            raise ContractError(f"{source} has no 'robot' metadata; export a robot task's policy with "
                                "robo-ppo-export")
        version = robot.get("contract", 1)
        if not isinstance(version, int) or version > CONTRACT_VERSION:
            raise ContractError(f"{source} needs robot contract version {version}; this kit reads up to "
                                f"{CONTRACT_VERSION}: update the deployment kit (robo_ppo/export)")
        robot = _upgrade_v1(robot) if version == 1 else dict(robot)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(robot) - names)
        if unknown:
            raise ContractError(f"{source}: robot metadata has unknown keys {unknown} (contract {version}); "
                                "re-export the policy")
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in robot]
        if missing:
            raise ContractError(f"{source}: robot metadata lacks {missing}; re-export the policy")
        try:
            robot["model"] = ModelSource(**robot["model"])
            robot["fall"] = Fall(**(robot.get("fall") or {}))
            robot["gait"] = Gait(**robot["gait"]) if robot.get("gait") else None
        except TypeError as e:
            raise ContractError(f"{source}: robot metadata {str(e).split('(')[0].strip()} ({e}); "
                                "re-export the policy") from None
        meta = cls(**robot)
        meta._check(source)
        return meta

    def _check(self, source: str) -> None:
        n = len(self.joint_names)
        for key in ("default_pose", "kp", "kd", "torque_limits", "armature", "target_range"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, list) or len(value) != n):
                raise ContractError(f"{source}: robot metadata {key} does not have one entry per joint ({n}); "
                                    "re-export the policy")
        if not self.obs_layout:
            raise ContractError(f"{source}: robot metadata obs_layout is empty; re-export the policy")
        start = 0
        for entry in self.obs_layout:
            if not isinstance(entry, dict) or entry.get("start") != start or not isinstance(entry.get("size"), int):
                raise ContractError(f"{source}: obs_layout entry {entry!r} does not start at {start} with an "
                                    "integer size; re-export the policy")
            role = entry.get("sensor")
            if role is not None and role not in self.sensors:
                raise ContractError(f"{source}: obs_layout entry {entry.get('name')!r} reads sensor role {role!r}, "
                                    f"which robot metadata 'sensors' lacks; re-export the policy")
            start += entry["size"]
        missing = [c for c in self.commands if c not in self.command_ranges]
        if missing:
            raise ContractError(f"{source}: command_ranges has no range for {missing}; re-export the policy")
        ratio = self.control_dt / self.sim_dt if self.sim_dt > 0 else 0.0
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            raise ContractError(f"{source}: control_dt {self.control_dt} is not a multiple of sim_dt "
                                f"{self.sim_dt}; re-export the policy")

    # ------------------------------------------------------------ derived
    @property
    def obs_dim(self) -> int:
        return sum(e["size"] for e in self.obs_layout)

    @property
    def decimation(self) -> int:
        """Physics (PD) steps per control step."""
        return round(self.control_dt / self.sim_dt)


def _upgrade_v1(robot: dict[str, Any]) -> dict[str, Any]:
    """A version-1 ``robot`` dict in version-2 form (see the module docstring)."""
    robot = dict(robot)
    role_of = {v: k for k, v in (robot.get("sensors") or {}).items()}
    layout = []
    for entry in robot.get("obs_layout") or []:
        entry = dict(entry)
        if entry.get("fn") == "joint_pos":
            entry["fn"] = "joint_pos_rel"
            if entry.get("name") == "joint_pos":   # a term named after its function keeps doing so
                entry["name"] = "joint_pos_rel"
        for key in ("joints", "minus", "commands", "gait"):  # v1 named the metadata keys a term read
            entry.pop(key, None)
        if "sensor" in entry:
            entry["sensor"] = role_of.get(entry["sensor"], entry["sensor"])
        layout.append(entry)
    robot["obs_layout"] = layout
    robot["critic_obs_layout"] = [dict(e, name="joint_pos_rel") if e.get("name") == "joint_pos" else e
                                  for e in robot.get("critic_obs_layout") or []]
    robot.pop("action_offset", None)  # v1: always "default_pose"
    robot["contract"] = CONTRACT_VERSION
    return robot


__all__ = ["RobotMetadata", "ModelSource", "Fall", "Gait", "ContractError", "CONTRACT_VERSION"]
