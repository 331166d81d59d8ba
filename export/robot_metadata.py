"""The robot contract inside a policy file: typed, versioned, written by training, read by the kit.

``RobotMetadata`` is the ``robot`` entry of a robot policy's ONNX metadata
(``onnx_controller.read_metadata(path)["robot"]``). The exporter builds it
from the robot description and the task's term declarations
(``robo_ppo/tasks/joystick.py: Joystick.metadata``) and writes
``to_dict()``; the robot-side controller and the MuJoCo harness read it back
with ``from_dict``, which checks every key and fails with one line naming what
is wrong. Nothing else in the kit or in training lists these keys.

A policy file is untrusted input: ``from_dict`` is the one place that checks
its ``robot`` metadata before anything uses it (the controller, the harness,
``deploy.py``, robo_ppo's replay and deploy check all read it through here),
and ``RobotMetadata.check_policy`` checks it against the ONNX graph's widths.
What is checked: the contract version; every key known and every required
key present; strings are strings; ``model.package`` a dotted Python name and
``model.path`` a relative path that stays inside the package
(:func:`package_path_problem`; ``scene.model_file`` also refuses a symlink
that resolves outside); per-joint arrays (``default_pose``, ``kp``, ``kd``,
``torque_limits``, ``armature``, ``target_range``) one finite number (or
``[lo, hi]`` pair) per joint; ``action_clip`` ``[lo, hi]`` with lo < hi;
``obs_layout`` entries of a known term (``rules.OBSERVATIONS``) with integer
``start``/``size`` tiling the input from 0; ``command_ranges`` a ``[lo, hi]``
pair per command; ``control_dt``/``sim_dt`` positive, the first a multiple
of the second; ``fall`` finite; ``gait`` one phase offset per foot of the
gait clock term; ``command_rate_limit`` one positive rate per command. Any failure raises :class:`ContractError` (one line:
``<file>: robot metadata <field> <what is wrong>; <fix>``).

Versions (``contract``): 4 is this one; it adds ``command_rate_limit`` (per command, per second: the
controller ramps the commands it is given at most this fast, ``rules.ramp_command``, as training did). 3
added ``obs_history`` (the policy input is the last ``length`` observation frames, ``order`` newest first:
``rules.HISTORY_ORDER``). A file is written with the lowest version that holds its content (2 without a
history or a rate limit), so older kits read what they can run. Version 1 files (written before
2026-12) carry no ``contract`` key; they are recognised by v1's
``action_offset`` key (every v1 exporter wrote ``"default_pose"``) and
upgraded on read: the observation term ``joint_pos`` is now
``joint_pos_rel``, and a term's ``sensor`` names a sensor role (``gyro``)
rather than the MuJoCo sensor (``sensors`` maps one to the other). A file
without ``contract`` that is not a v1 file, or of any other version, is
refused, naming the versions this kit reads (``READABLE_CONTRACTS``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Optional

try:
    from .rules import HISTORY_ORDER, OBSERVATIONS
except ImportError:  # run from the kit's folder
    from rules import HISTORY_ORDER, OBSERVATIONS

CONTRACT_VERSION = 4
"""The newest ``contract`` version this kit writes and reads (older versions are upgraded, newer refused);
a file is written with the lowest version that holds its content (``RobotMetadata.to_dict``)."""
READABLE_CONTRACTS = (1, 2, 3, 4)
"""Every ``contract`` version this kit reads (1 is upgraded to 2 on read)."""
_FIX = "re-export the policy"


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
class ObsHistory:
    length: int
    """Observation frames in the policy input (each ``obs_layout`` wide): the current one and the
    ``length - 1`` before it, one control step apart; at an episode's start the first frame repeated."""
    order: str = HISTORY_ORDER
    """``newest_first``: the current frame first (``rules.push_history``)."""


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
    obs_history: Optional[ObsHistory] = None
    """The policy input is a history of observation frames (contract 3); null: one frame."""
    command_rate_limit: Optional[list[float]] = None
    """Per command (``commands`` order), per second (m/s^2, rad/s^2): the controller's command follows the
    one it is given at most this fast, from 0 at its reset (contract 4); null: the given command at once."""

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ONNX ``robot`` metadata entry); ``None`` fields are left out. ``contract``
        is the lowest version that holds the content: 4 with a ``command_rate_limit``, 3 with an
        ``obs_history``, else 2."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        out["contract"] = 4 if self.command_rate_limit is not None else 3 if self.obs_history is not None else 2
        return out

    @classmethod
    def from_dict(cls, robot: Any, source: str = "policy") -> RobotMetadata:
        """Check, upgrade and read a ``robot`` metadata dict (the module docstring lists the checks).

        Args:
            robot: the decoded ``robot`` entry (untrusted: anything JSON can hold).
            source: the file it came from, named first in every message.

        Raises:
            ContractError: not a dict, an unknown or missing contract version, an unknown or missing
                key, a value of the wrong type, size or range, a model path that leaves its package,
                a layout that does not tile the input (one line naming ``source`` and the field).
        """
        if robot is None:
            raise ContractError(f"{source} has no 'robot' metadata; export a robot task's policy with "
                                "robo-ppo-export")
        if not isinstance(robot, dict):
            raise ContractError(f"{source}: robot metadata is {_kind(robot)}, not an object; {_FIX}")
        version = _contract_version(robot, source)
        robot = _upgrade_v1(robot, source) if version == 1 else dict(robot)
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
        _Check(source).robot(robot)
        robot["model"] = ModelSource(**robot["model"])
        robot["fall"] = Fall(**(robot.get("fall") or {}))
        robot["gait"] = Gait(**robot["gait"]) if robot.get("gait") is not None else None
        robot["obs_history"] = ObsHistory(**robot["obs_history"]) if robot.get("obs_history") is not None else None
        return cls(**robot)

    def check_policy(self, obs_dim: int, act_dim: int, discrete: bool, control_dt: float,
                     source: str = "policy") -> None:
        """Check this metadata against the policy it came with: the ONNX input width is the
        ``obs_layout``'s (``obs_dim``), the output has one continuous action per joint, and the file's
        ``control_dt`` is the robot's.

        Raises:
            ContractError: naming both sides (one line).
        """
        n = len(self.joint_names)
        if obs_dim != self.obs_dim:
            frames = f" x obs_history.length {self.history_length}" if self.obs_history is not None else ""
            raise ContractError(f"{source}: robot metadata obs_layout needs obs_dim {self.obs_dim} (where its "
                                f"last term ends{frames}) but the graph input obs has {obs_dim} entries; {_FIX}")
        if discrete or act_dim != n:
            kind = "discrete" if discrete else "continuous"
            raise ContractError(f"{source}: robot metadata joint_names needs {n} continuous actions (one per "
                                f"joint) but the graph output actions has {act_dim} {kind} entries; {_FIX}")
        if not math.isclose(float(control_dt), self.control_dt, rel_tol=0.0, abs_tol=1e-9):
            raise ContractError(f"{source}: control_dt {control_dt} differs from the robot metadata's "
                                f"{self.control_dt}; {_FIX}")

    # ------------------------------------------------------------ derived
    @property
    def frame_dim(self) -> int:
        """One observation frame's width: where the ``obs_layout``'s last term ends."""
        return sum(e["size"] for e in self.obs_layout)

    @property
    def history_length(self) -> int:
        """Observation frames in the policy input (1 without ``obs_history``)."""
        return self.obs_history.length if self.obs_history is not None else 1

    @property
    def obs_dim(self) -> int:
        """The policy input's width: ``frame_dim x history_length``."""
        return self.frame_dim * self.history_length

    @property
    def decimation(self) -> int:
        """Physics (PD) steps per control step."""
        return round(self.control_dt / self.sim_dt)


def _kind(value: Any) -> str:
    """What a JSON value is, for a message: ``a string 'abc'``, ``a list of 3``, ``null``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string {value[:40]!r}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, numbers.Real):
        return f"the number {value!r}"
    return f"a {type(value).__name__}"


def _contract_version(robot: dict[str, Any], source: str) -> int:
    """The contract version of a ``robot`` dict, or :class:`ContractError`: missing (and not a v1
    file), not an integer, or not one of ``READABLE_CONTRACTS``."""
    readable = ", ".join(map(str, READABLE_CONTRACTS))
    if "contract" not in robot:
        if "action_offset" in robot:  # what every version-1 exporter wrote, and no later one
            return 1
        raise ContractError(f"{source}: robot metadata contract is missing (the contract version; this kit "
                            f"reads contract versions {readable}); re-export the policy")
    version = robot["contract"]
    if not isinstance(version, numbers.Integral) or isinstance(version, bool):
        raise ContractError(f"{source}: robot metadata contract is {_kind(version)}, not a contract version "
                            f"(this kit reads contract versions {readable}); re-export the policy")
    if version > max(READABLE_CONTRACTS):
        raise ContractError(f"{source} needs robot contract version {version}; this kit reads contract versions "
                            f"{readable}: update the deployment kit (robo_ppo/export)")
    if version not in READABLE_CONTRACTS:
        raise ContractError(f"{source}: robot metadata contract {version} is not a contract version (this kit "
                            f"reads contract versions {readable}); re-export the policy")
    return int(version)


def _upgrade_v1(robot: dict[str, Any], source: str = "policy") -> dict[str, Any]:
    """A version-1 ``robot`` dict in version-2 form (see the module docstring). Malformed parts are
    left as they are for the checks to name."""
    robot = dict(robot)
    if robot.get("action_offset", "default_pose") != "default_pose":
        raise ContractError(f"{source}: robot metadata action_offset is {_kind(robot['action_offset'])}; "
                            "contract 1 files have 'default_pose': re-export the policy")
    sensors = robot.get("sensors")
    role_of = {v: k for k, v in sensors.items() if isinstance(v, str)} if isinstance(sensors, dict) else {}
    layout = robot.get("obs_layout")
    if isinstance(layout, list):
        upgraded = []
        for entry in layout:
            if isinstance(entry, dict):
                entry = dict(entry)
                if entry.get("fn") == "joint_pos":
                    entry["fn"] = "joint_pos_rel"
                    if entry.get("name") == "joint_pos":   # a term named after its function keeps doing so
                        entry["name"] = "joint_pos_rel"
                for key in ("joints", "minus", "commands", "gait"):  # v1 named the metadata keys a term read
                    entry.pop(key, None)
                if isinstance(entry.get("sensor"), str):
                    entry["sensor"] = role_of.get(entry["sensor"], entry["sensor"])
            upgraded.append(entry)
        robot["obs_layout"] = upgraded
    critic = robot.get("critic_obs_layout")
    if isinstance(critic, list):
        robot["critic_obs_layout"] = [dict(e, name="joint_pos_rel") if isinstance(e, dict)
                                      and e.get("name") == "joint_pos" else e for e in critic]
    robot.pop("action_offset", None)  # v1: always "default_pose"
    robot["contract"] = 2
    return robot


def package_path_problem(path: Any) -> Optional[str]:
    """Why ``path`` cannot name a file inside a package folder (None: it can): not a non-empty string,
    absolute (POSIX or Windows, a drive included), a ``..`` component, a backslash or a NUL. Pure string
    rules, nothing opened; ``scene.model_file`` adds the symlink check against the installed package."""
    if not isinstance(path, str) or not path.strip():
        return f"is {_kind(path)}, not a path inside the package"
    if "\0" in path or "\\" in path:
        return f"{path[:80]!r} holds a NUL or a backslash; it must be a '/'-separated path inside the package"
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or path.startswith("/"):
        return f"{path[:80]!r} is absolute; it must be relative to the package folder"
    if ".." in posix.parts:
        return f"{path[:80]!r} leaves its package (a '..' component); it must stay inside the package folder"
    return None


class _Check:
    """The value checks of :meth:`RobotMetadata.from_dict`, on the raw (upgraded) dict; each failure is a
    :class:`ContractError` ``<source>: robot metadata <field> <problem>; re-export the policy``."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str, fix: str = _FIX):
        raise ContractError(f"{self.source}: robot metadata {key} {problem}; {fix}")

    # ------------------------------------------------------------ scalars
    def string(self, key: str, value: Any, optional: bool = False) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str):
            self.fail(key, f"is {_kind(value)}, not a string")

    def number(self, key: str, value: Any, low: float | None = None, positive: bool = False,
               optional: bool = False) -> float:
        if value is None and optional:
            return math.nan
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            self.fail(key, f"is {_kind(value)}, not a number")
        x = float(value)
        if not math.isfinite(x):
            self.fail(key, f"is {x}, not a finite number")
        if positive and x <= 0:
            self.fail(key, f"is {value!r}; it must be > 0")
        if low is not None and x < low:
            self.fail(key, f"is {value!r}; it must be >= {low:g}")
        return x

    def integer(self, key: str, value: Any, low: int = 0, optional: bool = False) -> int:
        if value is None and optional:
            return low
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            self.fail(key, f"is {_kind(value)}, not an integer")
        if value < low:
            self.fail(key, f"is {value}; it must be >= {low}")
        return int(value)

    # ------------------------------------------------------------- arrays
    def strings(self, key: str, value: Any, unique: bool = True, nonempty: bool = True) -> None:
        if not isinstance(value, list):
            self.fail(key, f"is {_kind(value)}, not a list of names")
        if nonempty and not value:
            self.fail(key, "is empty")
        for i, v in enumerate(value):
            self.string(f"{key}[{i}]", v)
        if unique and len(set(value)) != len(value):
            dup = next(v for v in value if value.count(v) > 1)
            self.fail(key, f"names {dup!r} twice")

    def per_joint(self, key: str, value: Any, n: int, low: float | None = None, pairs: bool = False) -> None:
        if not isinstance(value, list) or len(value) != n:
            got = f"it has {len(value)} entries" if isinstance(value, list) else f"it is {_kind(value)}"
            self.fail(key, f"does not have one entry per joint ({n}): {got}, joint_names has {n}")
        for i, v in enumerate(value):
            if pairs:
                self.pair(f"{key}[{i}]", v, strict=False)
            else:
                self.number(f"{key}[{i}]", v, low=low)

    def pair(self, key: str, value: Any, strict: bool) -> None:
        """``[lo, hi]`` finite, ``lo < hi`` (``strict``) or ``lo <= hi``."""
        if not isinstance(value, list) or len(value) != 2:
            self.fail(key, f"is {_kind(value)}, not a [lo, hi] pair")
        lo, hi = self.number(f"{key}[0]", value[0]), self.number(f"{key}[1]", value[1])
        if lo > hi or (strict and lo == hi):
            self.fail(key, f"is {value!r}; lo must be {'<' if strict else '<='} hi")

    def keys(self, key: str, value: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
        if not isinstance(value, dict):
            self.fail(key, f"is {_kind(value)}, not an object")
        unknown = sorted(str(k) for k in set(value) - set(required) - set(optional))
        missing = [k for k in required if k not in value]
        if unknown or missing:
            self.fail(key, f"has unknown keys {unknown}" if unknown else f"lacks {missing}")

    # -------------------------------------------------------------- robot
    def robot(self, r: dict[str, Any]) -> None:
        self.string("name", r["name"])
        self.string("task", r["task"])
        self.model(r["model"])
        self.strings("joint_names", r["joint_names"])
        n = len(r["joint_names"])
        for key in ("default_pose", "kp", "kd", "torque_limits"):
            self.per_joint(key, r[key], n, low=None if key == "default_pose" else 0.0)
        if r.get("armature") is not None:
            self.per_joint("armature", r["armature"], n, low=0.0)
        if r.get("target_range") is not None:
            self.per_joint("target_range", r["target_range"], n, pairs=True)
        self.number("action_scale", r["action_scale"])
        if "action_clip" in r:
            self.pair("action_clip", r["action_clip"], strict=True)
        control_dt = self.number("control_dt", r["control_dt"], positive=True)
        sim_dt = self.number("sim_dt", r["sim_dt"], positive=True)
        ratio = control_dt / sim_dt
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            raise ContractError(f"{self.source}: robot metadata control_dt {control_dt} is not a multiple of "
                                f"sim_dt {sim_dt}; re-export the policy")
        self.string("base_body", r["base_body"])
        for key in ("init_keyframe", "imu_site", "floor_geom"):
            self.string(key, r.get(key), optional=True)
        for key in ("solver_iterations", "solver_ls_iterations"):
            self.integer(key, r.get(key), optional=True)
        self.integer("action_latency", r.get("action_latency", 0))
        sensors = r["sensors"]
        if not isinstance(sensors, dict):
            self.fail("sensors", f"is {_kind(sensors)}, not an object (sensor role -> MuJoCo sensor)")
        for role, name in sensors.items():
            self.string(f"sensors.{role}", name)
        self.strings("commands", r["commands"], nonempty=False)
        ranges = r["command_ranges"]
        if not isinstance(ranges, dict):
            self.fail("command_ranges", f"is {_kind(ranges)}, not an object (command -> [lo, hi])")
        missing = [c for c in r["commands"] if c not in ranges]
        if missing:
            raise ContractError(f"{self.source}: robot metadata command_ranges has no range for {missing}; "
                                "re-export the policy")
        for name, pair in ranges.items():
            self.pair(f"command_ranges.{name}", pair, strict=False)
        if r.get("fall") is not None:
            self.keys("fall", r["fall"], (), ("max_tilt_cos", "min_base_height"))
            for key, value in r["fall"].items():
                self.number(f"fall.{key}", value)
        gait = r.get("gait")
        if gait is not None:
            self.keys("gait", gait, ("frequency_hz", "phase_offsets"))
            self.number("gait.frequency_hz", gait["frequency_hz"], positive=True)
            offsets = gait["phase_offsets"]
            if not isinstance(offsets, list) or not offsets:
                self.fail("gait.phase_offsets", f"is {_kind(offsets)}, not one phase offset per foot")
            for i, v in enumerate(offsets):
                self.number(f"gait.phase_offsets[{i}]", v)
        self.obs_layout(r["obs_layout"], sensors, gait)
        history = r.get("obs_history")
        if history is not None:
            if r["contract"] < 3:
                self.fail("obs_history", f"needs contract 3, the file says {r['contract']}")
            self.keys("obs_history", history, ("length",), ("order",))
            self.integer("obs_history.length", history["length"], low=1)
            if history.get("order", HISTORY_ORDER) != HISTORY_ORDER:
                self.fail("obs_history.order", f"is {_kind(history['order'])}; this kit builds {HISTORY_ORDER!r} "
                          "histories", "update the deployment kit (robo_ppo/export)")
        rate = r.get("command_rate_limit")
        if rate is not None:
            if r["contract"] < 4:
                self.fail("command_rate_limit", f"needs contract 4, the file says {r['contract']}")
            if not isinstance(rate, list) or len(rate) != len(r["commands"]):
                self.fail("command_rate_limit", f"is {_kind(rate)}, not one rate per command ({len(r['commands'])})")
            for i, v in enumerate(rate):
                self.number(f"command_rate_limit[{i}]", v, positive=True)
        critic = r.get("critic_obs_layout", [])
        if not isinstance(critic, list) or not all(isinstance(e, dict) for e in critic):
            self.fail("critic_obs_layout", f"is {_kind(critic)}, not a list of objects")
        extra = r.get("extra_sensors", [])
        if not isinstance(extra, list):
            self.fail("extra_sensors", f"is {_kind(extra)}, not a list of objects")
        for i, s in enumerate(extra):
            self.keys(f"extra_sensors[{i}]", s, ("name", "type", "objtype", "objname"), ("reftype", "refname"))
            for key in ("name", "type", "objtype", "objname", "reftype", "refname"):
                self.string(f"extra_sensors[{i}].{key}", s.get(key), optional=key in ("reftype", "refname"))

    def model(self, m: Any) -> None:
        self.keys("model", m, ("package", "path"), ("install",))
        package = m["package"]
        self.string("model.package", package)
        if not all(part.isidentifier() for part in package.split(".")):
            self.fail("model.package", f"{package[:80]!r} is not a Python package name")
        problem = package_path_problem(m["path"])
        if problem:
            self.fail("model.path", problem, "refusing to open it: re-export the policy")
        self.string("model.install", m.get("install", ""))

    def obs_layout(self, layout: Any, sensors: dict[str, Any], gait: Any) -> None:
        if not isinstance(layout, list):
            self.fail("obs_layout", f"is {_kind(layout)}, not a list of terms")
        if not layout:
            self.fail("obs_layout", "is empty")
        end = 0
        for i, entry in enumerate(layout):
            key = f"obs_layout[{i}]"
            if not isinstance(entry, dict):
                self.fail(key, f"is {_kind(entry)}, not an object")
            for part in ("name", "fn", "start", "size"):
                if part not in entry:
                    self.fail(key, f"lacks {part!r}")
            self.string(f"{key}.name", entry["name"])
            self.string(f"{key}.fn", entry["fn"])
            if entry["fn"] not in OBSERVATIONS:
                raise ContractError(f"{self.source}: observation term {entry['fn']!r} is unknown to this kit "
                                    f"(robot metadata {key}.fn; known: {sorted(OBSERVATIONS)}); update the "
                                    "deployment kit")
            start = self.integer(f"{key}.start", entry["start"])
            size = self.integer(f"{key}.size", entry["size"], low=1)
            if start != end:
                self.fail(f"{key}.start", f"is {start}; the terms must tile the input, so term {entry['name']!r} "
                          f"must start at {end}, where the previous one ends")
            end = start + size
            if "scale" in entry:
                self.number(f"{key}.scale", entry["scale"])
            role = entry.get("sensor")
            if role is not None:
                self.string(f"{key}.sensor", role)
                if role not in sensors:
                    raise ContractError(f"{self.source}: obs_layout entry {entry['name']!r} reads sensor role "
                                        f"{role!r}, which robot metadata 'sensors' lacks; re-export the policy")
            if entry["fn"] == "gait_phase":
                if gait is None:
                    self.fail("gait", "is missing; the gait clock term needs it")
                feet = len(gait["phase_offsets"])
                if size != 2 * feet:
                    self.fail("gait.phase_offsets", f"has {feet} entries; the gait clock term {entry['name']!r} "
                              f"has size {size} (cos and sin per foot), so it needs {size // 2}")


__all__ = ["RobotMetadata", "ModelSource", "Fall", "Gait", "ObsHistory", "ContractError", "CONTRACT_VERSION",
           "READABLE_CONTRACTS", "package_path_problem"]
